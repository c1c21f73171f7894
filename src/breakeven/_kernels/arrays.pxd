# What every drop-in function needs to tell the arrays its kernels take from
# the rest, shared by the kernel families' modules.
#
# A drop-in has NumPy's signature.  It checks, in C, whether its inputs are
# what the kernel takes: the check gives the call's plan (CallPlan), or a
# reason (explain() says it in these words) and the call is NumPy's own
# function, so the result, and any error, is NumPy's.  A call the kernel
# takes asks the dispatch core for its threads through the public Cython
# API (dispatch.pxd), as any library's kernel does.
cimport numpy as cnp
from cpython.exc cimport PyErr_Clear, PyErr_Occurred

from breakeven cimport dispatch

cdef extern from "numpy/arrayobject.h":
    # a NumPy scalar of the array's dtype holding *data (np.float64(x), ...)
    object PyArray_Scalar(void *data, cnp.PyArray_Descr *descr, object base)
    # an empty array shaped like the prototype (np.empty_like)
    object PyArray_NewLikeArray(cnp.ndarray prototype, cnp.NPY_ORDER order,
                                cnp.PyArray_Descr *descr, int subok)

cdef extern from *:
    """
    #define be_is_double_scalar(o) PyArray_IsScalar((o), Double)
    #define be_is_float_scalar(o) PyArray_IsScalar((o), Float)
    #define be_is_integer_scalar(o) PyArray_IsScalar((o), Integer)
    #define be_is_floating_scalar(o) PyArray_IsScalar((o), Floating)
    #define BE_NOT_FLOAT "not a contiguous float32/float64 ndarray"
    """
    bint PyArray_IsScalar_Double "be_is_double_scalar"(object o)
    bint PyArray_IsScalar_Float "be_is_float_scalar"(object o)
    bint PyArray_IsScalar_Integer "be_is_integer_scalar"(object o)
    bint PyArray_IsScalar_Floating "be_is_floating_scalar"(object o)
    # the reason every family's check gives for an array no kernel takes
    const char *NOT_FLOAT "BE_NOT_FLOAT"

cdef enum:
    # Below this many elements the serial kernel runs with the GIL held
    # (releasing and retaking it costs more than the work).
    NOGIL_MIN = 8192


# How a drop-in runs a call its check accepts: the kernel's slot, the
# dtype's type number and the work.
ctypedef struct CallPlan:
    int kernel
    int typenum
    Py_ssize_t work


cdef inline int float_typenum(object a) noexcept:
    """NumPy's type number of a C-contiguous, native float32 or float64
    ndarray (exactly) of at least one dimension, else -1.  It may be
    unaligned (arrays unpickled from a byte stream, as Dask delivers them,
    often are): :func:`aligned` gives the kernels an aligned copy."""
    cdef cnp.ndarray arr
    cdef int t
    if not cnp.PyArray_CheckExact(a):
        return -1
    arr = <cnp.ndarray>a
    if cnp.PyArray_NDIM(arr) == 0 or not cnp.PyArray_IS_C_CONTIGUOUS(arr) \
            or not cnp.PyArray_ISNOTSWAPPED(arr):
        return -1
    t = cnp.PyArray_TYPE(arr)
    return t if t == cnp.NPY_DOUBLE or t == cnp.NPY_FLOAT else -1


cdef inline cnp.ndarray aligned(object a):
    """An input the kernels can read: ``a``, or an aligned copy of it."""
    if cnp.PyArray_ISALIGNED(<cnp.ndarray>a):
        return <cnp.ndarray>a
    return <cnp.ndarray>cnp.PyArray_NewCopy(<cnp.ndarray>a, cnp.NPY_CORDER)


cdef inline bint disjoint_or_same(cnp.ndarray a, cnp.ndarray b) noexcept:
    cdef char *pa = <char *>cnp.PyArray_DATA(a)
    cdef char *pb = <char *>cnp.PyArray_DATA(b)
    if pa == pb:
        return True
    return pa + cnp.PyArray_NBYTES(a) <= pb or pb + cnp.PyArray_NBYTES(b) <= pa


cdef inline bint writeable_like(object out, cnp.ndarray x) noexcept:
    """out is an exact ndarray of x's shape and dtype, C-contiguous, writeable,
    and x itself or not overlapping it."""
    if not cnp.PyArray_CheckExact(out):
        return False
    cdef cnp.ndarray o = <cnp.ndarray>out
    return (cnp.PyArray_TYPE(o) == cnp.PyArray_TYPE(x)
            and cnp.PyArray_ISCARRAY(o) and cnp.PyArray_ISNOTSWAPPED(o)
            and cnp.PyArray_SAMESHAPE(o, x) and disjoint_or_same(o, x))


cdef inline object scalar_of(void *value, cnp.ndarray like):
    return PyArray_Scalar(value, cnp.PyArray_DESCR(like), None)


cdef inline bint error_set() noexcept:
    """Whether a conversion left an exception set (it is cleared)."""
    if PyErr_Occurred() != NULL:
        PyErr_Clear()
        return True
    return False


cdef inline tuple plan_tuple(const char *reason, CallPlan *p, bint serial=False):
    """A check's answer for explain(): (reason, slot, type number, work);
    slot -1 when NumPy computes the call (a ``serial`` reason still runs the
    kernel, serially)."""
    if reason != NULL and not serial:
        return reason.decode(), -1, -1, 0
    return (reason.decode() if reason != NULL else ""), p.kernel, p.typenum, p.work


cdef inline int start_dropins(str module) except -1:
    """A family module's start: NumPy's C API and the dispatch core's, each
    looked up once per module (each module has its own pointers)."""
    cnp.import_array()
    if dispatch.import_breakeven() != 0:
        raise ImportError(f"{module}: the dispatch core's C API is missing")
    return 0
