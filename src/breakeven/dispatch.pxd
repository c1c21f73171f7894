# breakeven's public Cython API: ask the dispatch core, around a prange loop
# of your own and without the GIL, how many threads a call should run with.
#
#     # cython: language_level=3
#     from cython.parallel cimport prange
#     from breakeven cimport dispatch as be
#
#     be.import_breakeven()        # once, at module level (like import_array)
#
#     cdef inline double _relu(double v) noexcept nogil:
#         return v if v > 0 else 0.0
#
#     def relu(const double[::1] x, double[::1] out):
#         cdef be.Call call
#         cdef Py_ssize_t i, n = x.shape[0]
#         cdef int nt
#         with nogil:
#             nt = be.begin(&call, RELU, be.FLOAT64, n)
#             if nt > 1:
#                 for i in prange(n, num_threads=nt):
#                     out[i] = _relu(x[i])
#             else:          # a plain loop: no OpenMP region for a serial call
#                 for i in range(n):
#                     out[i] = _relu(x[i])
#             be.end(&call)
#
#     # the kernel's slot, from its registration (Python, at import)
#     cdef int RELU = breakeven.register("mylib.relu", relu, ...).slot
#
# begin() takes the cores it grants from the process's core budget and end()
# gives them back and feeds the call's time to the contention check: every
# begin() must be followed by one end() on the same Call, on the same thread.
# Both cost nanoseconds, need no GIL and may be called from many threads at
# once (also from inside an OpenMP region, where begin() grants 1 thread).
#
# breakeven optional at run time: the functions are looked up through a
# capsule (breakeven._core._C_API) by import_breakeven(), which returns -1,
# raising nothing, when breakeven cannot be imported.  Until it has succeeded,
# begin() returns 1 (begin_or(): the fallback you give) and end() does
# nothing, so a library can keep its own rule when breakeven is absent.
#
# The dtype argument is NumPy's type number (cnp.NPY_FLOAT64, ...); FLOAT64,
# FLOAT32, ... below are the same numbers, for modules that do not cimport
# numpy.

cdef extern from *:
    """
    #ifndef BREAKEVEN_DISPATCH_API_H
    #define BREAKEVEN_DISPATCH_API_H
    #include <Python.h>

    /* The version of the function table; a core of another version is not
       used (import_breakeven() returns -1). */
    #define BE_API_VERSION 1

    /* NumPy's type numbers (stable across NumPy versions). */
    #define BE_INT32 5
    #define BE_INT64 (sizeof(long) == 8 ? 7 : 9)
    #define BE_FLOAT32 11
    #define BE_FLOAT64 12
    #define BE_COMPLEX64 14
    #define BE_COMPLEX128 15

    /* One call, on the caller's stack: filled by begin(), read by end(). */
    typedef struct be_call {
        int kernel;       /* the slot; -1: end() has nothing to do */
        int dtype;        /* the core's dtype index */
        int threads;      /* threads granted */
        int flags;        /* what end() must undo or record */
        Py_ssize_t work;
        long long start;  /* ns, when timed */
        void *reserved;
    } be_call;

    typedef struct be_api {
        int version;      /* BE_API_VERSION */
        int size;         /* sizeof(be_api) of the core */
        int (*begin)(be_call *call, int kernel, int dtype, Py_ssize_t work);
        void (*end)(be_call *call);
        int (*usable_cpus)(void);
    } be_api;

    /* Each module that cimports this file has its own pointer. */
    static const be_api **be__api_slot(void) {
        static const be_api *api = NULL;
        return &api;
    }

    static inline int be_import(void) {
        PyObject *mod, *cap;
        const be_api *api;
        if (*be__api_slot() != NULL)
            return 0;
        mod = PyImport_ImportModule("breakeven._core");
        if (mod == NULL) {
            PyErr_Clear();
            return -1;
        }
        cap = PyObject_GetAttrString(mod, "_C_API");
        Py_DECREF(mod);
        if (cap == NULL) {
            PyErr_Clear();
            return -1;
        }
        api = (const be_api *)PyCapsule_GetPointer(cap, "breakeven._core._C_API");
        Py_DECREF(cap);  /* the table is static in breakeven._core */
        if (api == NULL) {
            PyErr_Clear();
            return -1;
        }
        if (api->version != BE_API_VERSION || api->size < (int)sizeof(be_api))
            return -1;
        *be__api_slot() = api;
        return 0;
    }

    static inline int be_available(void) {
        return *be__api_slot() != NULL;
    }

    static inline int be_begin_or(be_call *call, int kernel, int dtype,
                                  Py_ssize_t work, int fallback) {
        const be_api *api = *be__api_slot();
        if (api == NULL || kernel < 0) {
            call->kernel = -1;
            call->flags = 0;
            call->threads = fallback < 1 ? 1 : fallback;
            return call->threads;
        }
        return api->begin(call, kernel, dtype, work);
    }

    static inline int be_begin(be_call *call, int kernel, int dtype,
                               Py_ssize_t work) {
        return be_begin_or(call, kernel, dtype, work, 1);
    }

    static inline void be_end(be_call *call) {
        /* a serial call that held nothing and was not timed: nothing to do */
        if (call->kernel >= 0 && (call->flags != 0 || call->threads > 1))
            (*be__api_slot())->end(call);
    }
    #endif
    """
    int INT32 "BE_INT32"
    int INT64 "BE_INT64"
    int FLOAT32 "BE_FLOAT32"
    int FLOAT64 "BE_FLOAT64"
    int COMPLEX64 "BE_COMPLEX64"
    int COMPLEX128 "BE_COMPLEX128"

    ctypedef struct Call "be_call":
        int kernel
        int dtype
        int threads
        int flags
        Py_ssize_t work
        long long start

    ctypedef struct api_table "be_api":
        int version
        int size
        int (*begin)(Call *call, int kernel, int dtype, Py_ssize_t work) noexcept nogil
        void (*end)(Call *call) noexcept nogil
        int (*usable_cpus)() noexcept nogil

    # Look the core up (with the GIL, at import): 0, or -1 if breakeven
    # cannot be imported (no exception is left set).
    int import_breakeven "be_import"() noexcept
    # Whether import_breakeven() succeeded.
    bint available "be_available"() noexcept nogil
    # Threads for a call of ``work`` of kernel ``kernel`` (its slot) on
    # ``dtype``: 1 means run serially.  Cores granted are taken from the
    # budget until end(call).
    int begin "be_begin"(Call *call, int kernel, int dtype,
                         Py_ssize_t work) noexcept nogil
    # begin(), or ``fallback`` threads when breakeven is not available.
    int begin_or "be_begin_or"(Call *call, int kernel, int dtype, Py_ssize_t work,
                               int fallback) noexcept nogil
    # The call is over: cores back to the budget, its time to the core.
    void end "be_end"(Call *call) noexcept nogil
