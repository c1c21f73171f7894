"""The callable ``@breakeven.kernel`` returns: a thin type written in C.

A call goes straight from the caller to the kernel through vectorcall, with
no Python frame of breakeven in between: the dtype of the first ndarray
argument, the user's ``work(*args)``, then the dispatch core's ``begin()``
through the public Cython API (``breakeven/dispatch.pxd``, as any library's
kernel uses it), the serial variant or the parallel one with the granted
thread count appended, and ``end()``.
"""
cimport numpy as cnp
from cpython.object cimport PyObject


cdef extern from "Python.h":
    ctypedef struct PyTupleObject:
        PyObject *ob_item[1]

from breakeven cimport dispatch

cnp.import_array()
if dispatch.import_breakeven() != 0:
    raise ImportError(f"{__name__}: the dispatch core's C API is missing")

cdef extern from *:
    """
    typedef struct {
        PyObject_HEAD
        vectorcallfunc vectorcall;
        PyObject *serial;
        PyObject *parallel;   /* NULL: the serial one runs at any count */
        PyObject *work;       /* work(*args); NULL: the size of args[work_arg] */
        Py_ssize_t work_arg;
        int kernel;
        PyObject *dict;
        PyObject *weakrefs;
    } be_kcall;

    static PyObject *be_kcall_reducer = NULL;

    /* A call's dtype (of its first ndarray argument; float64 if none) and
       work: ``work(*args)``, or with ``work`` NULL the size of argument
       ``work_arg`` (an ndarray's size, else its len()); -1 with an
       exception set if that fails. */
    static int be_kcall_measure(PyObject *work_fn, Py_ssize_t work_arg,
                                PyObject *const *args, Py_ssize_t nargs,
                                int *typenum, Py_ssize_t *work) {
        Py_ssize_t i;
        PyObject *w;
        *typenum = BE_FLOAT64;
        for (i = 0; i < nargs; i++) {
            if (PyArray_Check(args[i])) {
                *typenum = PyArray_TYPE((PyArrayObject *)args[i]);
                break;
            }
        }
        if (work_fn == NULL) {
            if (work_arg >= nargs) {
                PyErr_Format(PyExc_TypeError, "the work is the size of argument "
                             "%zd, but the call has %zd", work_arg, nargs);
                return -1;
            }
            if (PyArray_Check(args[work_arg])) {
                *work = PyArray_SIZE((PyArrayObject *)args[work_arg]);
                return 0;
            }
            *work = PyObject_Length(args[work_arg]);
            return *work < 0 ? -1 : 0;
        }
        w = PyObject_Vectorcall(work_fn, args, nargs, NULL);
        if (w == NULL)
            return -1;
        *work = PyNumber_AsSsize_t(w, PyExc_OverflowError);
        Py_DECREF(w);
        if (*work == -1 && PyErr_Occurred())
            return -1;
        return 0;
    }

    static PyObject *be_kcall_vectorcall(PyObject *op, PyObject *const *args,
                                         size_t nargsf, PyObject *kwnames) {
        be_kcall *self = (be_kcall *)op;
        Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), i, work;
        int typenum, nt;
        be_call call;
        PyObject *res, *n_obj, *small[9], **buf;
        if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
            PyErr_SetString(PyExc_TypeError,
                            "a dispatched kernel takes positional arguments only");
            return NULL;
        }
        if (be_kcall_measure(self->work, self->work_arg, args, nargs, &typenum,
                             &work) < 0)
            return NULL;
        nt = be_begin(&call, self->kernel, typenum, work);
        if (nt <= 1 || self->parallel == NULL) {
            res = PyObject_Vectorcall(self->serial, args, nargs, NULL);
        } else {
            buf = small;
            if (nargs + 1 > 9) {
                buf = (PyObject **)PyMem_Malloc((nargs + 1) * sizeof(PyObject *));
                if (buf == NULL) {
                    be_end(&call);
                    return PyErr_NoMemory();
                }
            }
            n_obj = PyLong_FromLong(nt);
            if (n_obj == NULL) {
                res = NULL;
            } else {
                for (i = 0; i < nargs; i++)
                    buf[i] = args[i];
                buf[nargs] = n_obj;
                res = PyObject_Vectorcall(self->parallel, buf, nargs + 1, NULL);
                Py_DECREF(n_obj);
            }
            if (buf != small)
                PyMem_Free(buf);
        }
        be_end(&call);
        return res;
    }

    static int be_kcall_traverse(PyObject *op, visitproc visit, void *arg) {
        be_kcall *self = (be_kcall *)op;
        Py_VISIT(self->serial);
        Py_VISIT(self->parallel);
        Py_VISIT(self->work);
        Py_VISIT(self->dict);
        return 0;
    }

    static int be_kcall_clear(PyObject *op) {
        be_kcall *self = (be_kcall *)op;
        Py_CLEAR(self->serial);
        Py_CLEAR(self->parallel);
        Py_CLEAR(self->work);
        Py_CLEAR(self->dict);
        return 0;
    }

    static void be_kcall_dealloc(PyObject *op) {
        be_kcall *self = (be_kcall *)op;
        PyObject_GC_UnTrack(op);
        if (self->weakrefs != NULL)
            PyObject_ClearWeakRefs(op);
        be_kcall_clear(op);
        Py_TYPE(op)->tp_free(op);
    }

    static PyObject *be_kcall_repr(PyObject *op) {
        PyObject *name = PyObject_GetAttrString(op, "__qualname__"), *r;
        if (name == NULL) {
            PyErr_Clear();
            return PyUnicode_FromString("<dispatched kernel>");
        }
        r = PyUnicode_FromFormat("<dispatched kernel %S>", name);
        Py_DECREF(name);
        return r;
    }

    static PyObject *be_kcall_reduce(PyObject *op, PyObject *unused) {
        if (be_kcall_reducer == NULL) {
            PyErr_SetString(PyExc_TypeError, "cannot pickle a dispatched kernel");
            return NULL;
        }
        return PyObject_CallOneArg(be_kcall_reducer, op);
    }

    static PyMethodDef be_kcall_methods[] = {
        {"__reduce__", be_kcall_reduce, METH_NOARGS, NULL},
        {NULL, NULL, 0, NULL}
    };

    static PyGetSetDef be_kcall_getset[] = {
        {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL}
    };

    static PyTypeObject be_kcall_type = {
        PyVarObject_HEAD_INIT(NULL, 0)
        .tp_name = "breakeven.KernelCall",
        .tp_basicsize = sizeof(be_kcall),
        .tp_dealloc = be_kcall_dealloc,
        .tp_vectorcall_offset = offsetof(be_kcall, vectorcall),
        .tp_repr = be_kcall_repr,
        .tp_call = PyVectorcall_Call,
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
                    | Py_TPFLAGS_HAVE_VECTORCALL,
        .tp_doc = "A kernel dispatched by breakeven (see breakeven.kernel).",
        .tp_traverse = be_kcall_traverse,
        .tp_clear = be_kcall_clear,
        .tp_weaklistoffset = offsetof(be_kcall, weakrefs),
        .tp_methods = be_kcall_methods,
        .tp_getset = be_kcall_getset,
        .tp_dictoffset = offsetof(be_kcall, dict),
    };

    static PyObject *be_kcall_type_ready(void) {
        if (PyType_Ready(&be_kcall_type) < 0)
            return NULL;
        Py_INCREF((PyObject *)&be_kcall_type);
        return (PyObject *)&be_kcall_type;
    }

    static PyObject *be_kcall_new(PyObject *serial, PyObject *parallel,
                                  PyObject *work, Py_ssize_t work_arg, int kernel) {
        be_kcall *self = PyObject_GC_New(be_kcall, &be_kcall_type);
        if (self == NULL)
            return NULL;
        self->vectorcall = be_kcall_vectorcall;
        Py_INCREF(serial);
        self->serial = serial;
        Py_XINCREF(parallel);
        self->parallel = parallel;
        Py_XINCREF(work);
        self->work = work;
        self->work_arg = work_arg;
        self->kernel = kernel;
        self->dict = NULL;
        self->weakrefs = NULL;
        PyObject_GC_Track((PyObject *)self);
        return (PyObject *)self;
    }

    static void be_kcall_set_reducer(PyObject *f) {
        Py_XINCREF(f);
        Py_XSETREF(be_kcall_reducer, f);
    }
    """
    int be_kcall_measure(PyObject *work_fn, Py_ssize_t work_arg, PyObject **args,
                         Py_ssize_t nargs, int *typenum, Py_ssize_t *work) except -1
    object be_kcall_type_ready()
    object be_kcall_new(object serial, PyObject *parallel, PyObject *work,
                        Py_ssize_t work_arg, int kernel)
    void be_kcall_set_reducer(object f)


KernelCall = be_kcall_type_ready()


def make(serial, parallel, work, int kernel):
    """A dispatched callable: ``serial(*args)`` or ``parallel(*args,
    n_threads)`` (``parallel`` None: ``serial`` whatever the count), as the
    core decides for kernel slot ``kernel`` and the work of the call: see
    :func:`measure`."""
    if not callable(serial) or (parallel is not None and not callable(parallel)):
        raise TypeError("serial (and parallel, if given) must be callable")
    fn, arg = _work_spec(work)
    return be_kcall_new(serial, <PyObject *>parallel if parallel is not None
                        else NULL, <PyObject *>fn if fn is not None else NULL,
                        arg, kernel)


class ArgumentSize:
    """``work`` given as an argument's index: the size of that argument (an
    array's ``size``, else its ``len()``).  Callable like any ``work``;
    the dispatched callable takes it in C, without calling it."""

    __slots__ = ("index",)

    def __init__(self, index):
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise TypeError(f"work must be callable, or the index of the argument "
                            f"whose size is the work; got {index!r}")
        self.index = index

    def __call__(self, *args):
        return measure(self, args)[1]

    def __repr__(self):
        return f"ArgumentSize({self.index})"


def work_function(work):
    """``work`` as the registry keeps it: a callable (an int becomes an
    :class:`ArgumentSize`)."""
    return work if callable(work) else ArgumentSize(work)


def _work_spec(work):
    """(callable or None, argument index) of a ``work``."""
    if isinstance(work, ArgumentSize):
        return None, work.index
    if callable(work):
        return work, -1
    return None, ArgumentSize(work).index


def measure(work, tuple args):
    """(NumPy type number, work) of a call with these arguments, as the
    dispatched callable measures them: the dtype of the first ndarray
    argument (float64 if none), and ``work(*args)`` or, for ``work`` an
    int ``i``, the size of argument ``i``."""
    cdef int typenum
    cdef Py_ssize_t w
    fn, arg = _work_spec(work)
    be_kcall_measure(<PyObject *>fn if fn is not None else NULL, arg,
                     <PyObject **>&(<PyTupleObject *>args).ob_item[0]
                     if len(args) else NULL, len(args), &typenum, &w)
    return typenum, w


def _restore(module, qualname):
    """A pickled dispatched kernel: the object of that name in its module."""
    import importlib

    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _reduce(obj):
    return _restore, (obj.__module__, obj.__qualname__)


be_kcall_set_reducer(_reduce)
