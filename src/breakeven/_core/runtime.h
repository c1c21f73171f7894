/* The dispatch core's runtime: atomics, the slot array, the thread limit
   threadpoolctl sets, the thread-local controls, the clock and the fork hook.
   Included once, by engine.pyx (breakeven._core.engine); its statics are the
   core's process state.  Everything the rule needs from the platform is here
   and only here.

   Atomics come in three branches, chosen by the compiler (or forced with
   -DBE_ATOMICS=BE_ATOMICS_GNU / BE_ATOMICS_C11 / BE_ATOMICS_MSVC, which is
   how tests/test_runtime_header.py compiles each branch it can):
   - GNU built-ins (__atomic_*): gcc, clang, Intel's icx;
   - MSVC's Interlocked* functions and volatile accesses (MSVC's default
     /volatile:ms gives them acquire/release order);
   - C11 <stdatomic.h>, on plain objects cast to their _Atomic type (the
     same size and representation on every ABI the package is built for).
   The state they act on is plain int / long long / pointers declared by
   Cython, so each operation is a typed function, not a generic macro. */
#ifndef BREAKEVEN_RUNTIME_H
#define BREAKEVEN_RUNTIME_H
#include <limits.h>
#include <stddef.h>
#include <time.h>

#define BE_ATOMICS_GNU 1
#define BE_ATOMICS_MSVC 2
#define BE_ATOMICS_C11 3
#ifndef BE_ATOMICS
#  if defined(__GNUC__) || defined(__clang__)
#    define BE_ATOMICS BE_ATOMICS_GNU
#  elif defined(_MSC_VER)
#    define BE_ATOMICS BE_ATOMICS_MSVC
#  else
#    define BE_ATOMICS BE_ATOMICS_C11
#  endif
#endif

#if defined(_WIN32)
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  include <windows.h>
#  include <intrin.h>
#else
#  include <pthread.h>
#endif

/* ---- atomics -------------------------------------------------------- */
#if BE_ATOMICS == BE_ATOMICS_GNU

static inline int be_ld_int(int *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline long long be_ld_ll(long long *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void be_st_int(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void be_st_ll(long long *p, long long v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline int be_add_int(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline long long be_add_ll(long long *p, long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
static inline int be_ld_acq_int(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void be_st_rel_int(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void *be_ld_acq_ptr(void **p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void be_st_rel_ptr(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
/* *p == *expected: *p = desired, true; else *expected = *p, false */
static inline int be_cas_int(int *p, int *expected, int desired) {
    return __atomic_compare_exchange_n(p, expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}
static inline int be_cas_ptr(void **p, void *expected, void *desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline int be_xchg_acq_int(int *p, int v) {
    return __atomic_exchange_n(p, v, __ATOMIC_ACQUIRE);
}
static inline int be_cas_ll(long long *p, long long *expected, long long desired) {
    return __atomic_compare_exchange_n(p, expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}
static inline long long be_ld_acq_ll(long long *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void be_st_rel_ll(long long *p, long long v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

#elif BE_ATOMICS == BE_ATOMICS_MSVC

static inline int be_ld_int(int *p) { return *(volatile long *)p; }
static inline long long be_ld_ll(long long *p) { return *(volatile long long *)p; }
static inline void be_st_int(int *p, int v) { *(volatile long *)p = v; }
static inline void be_st_ll(long long *p, long long v) { *(volatile long long *)p = v; }
static inline int be_add_int(int *p, int v) {
    return (int)InterlockedExchangeAdd((volatile long *)p, (long)v);
}
static inline long long be_add_ll(long long *p, long long v) {
    return InterlockedExchangeAdd64((volatile long long *)p, v);
}
static inline int be_ld_acq_int(int *p) { return *(volatile long *)p; }
static inline void be_st_rel_int(int *p, int v) { *(volatile long *)p = v; }
static inline void *be_ld_acq_ptr(void **p) { return *(void *volatile *)p; }
static inline void be_st_rel_ptr(void **p, void *v) { *(void *volatile *)p = v; }
static inline int be_cas_int(int *p, int *expected, int desired) {
    long old = InterlockedCompareExchange((volatile long *)p, desired, *expected);
    if (old == *expected)
        return 1;
    *expected = (int)old;
    return 0;
}
static inline int be_cas_ptr(void **p, void *expected, void *desired) {
    return InterlockedCompareExchangePointer((void *volatile *)p, desired,
                                             expected) == expected;
}
static inline int be_xchg_acq_int(int *p, int v) {
    return (int)InterlockedExchange((volatile long *)p, (long)v);
}
static inline int be_cas_ll(long long *p, long long *expected, long long desired) {
    long long old = InterlockedCompareExchange64((volatile long long *)p, desired, *expected);
    if (old == *expected)
        return 1;
    *expected = old;
    return 0;
}
static inline long long be_ld_acq_ll(long long *p) { return *(volatile long long *)p; }
static inline void be_st_rel_ll(long long *p, long long v) { *(volatile long long *)p = v; }

#else /* C11 */

#include <stdatomic.h>
#define BE_A(T, p) ((_Atomic T *)(p))
static inline int be_ld_int(int *p) {
    return atomic_load_explicit(BE_A(int, p), memory_order_relaxed);
}
static inline long long be_ld_ll(long long *p) {
    return atomic_load_explicit(BE_A(long long, p), memory_order_relaxed);
}
static inline void be_st_int(int *p, int v) {
    atomic_store_explicit(BE_A(int, p), v, memory_order_relaxed);
}
static inline void be_st_ll(long long *p, long long v) {
    atomic_store_explicit(BE_A(long long, p), v, memory_order_relaxed);
}
static inline int be_add_int(int *p, int v) {
    return atomic_fetch_add_explicit(BE_A(int, p), v, memory_order_relaxed);
}
static inline long long be_add_ll(long long *p, long long v) {
    return atomic_fetch_add_explicit(BE_A(long long, p), v, memory_order_relaxed);
}
static inline int be_ld_acq_int(int *p) {
    return atomic_load_explicit(BE_A(int, p), memory_order_acquire);
}
static inline void be_st_rel_int(int *p, int v) {
    atomic_store_explicit(BE_A(int, p), v, memory_order_release);
}
static inline void *be_ld_acq_ptr(void **p) {
    return atomic_load_explicit(BE_A(void *, p), memory_order_acquire);
}
static inline void be_st_rel_ptr(void **p, void *v) {
    atomic_store_explicit(BE_A(void *, p), v, memory_order_release);
}
static inline int be_cas_int(int *p, int *expected, int desired) {
    return atomic_compare_exchange_strong_explicit(
        BE_A(int, p), expected, desired, memory_order_acq_rel, memory_order_relaxed);
}
static inline int be_cas_ptr(void **p, void *expected, void *desired) {
    return atomic_compare_exchange_strong_explicit(
        BE_A(void *, p), &expected, desired, memory_order_acq_rel,
        memory_order_acquire);
}
static inline int be_xchg_acq_int(int *p, int v) {
    return atomic_exchange_explicit(BE_A(int, p), v, memory_order_acquire);
}
static inline int be_cas_ll(long long *p, long long *expected, long long desired) {
    return atomic_compare_exchange_strong_explicit(
        BE_A(long long, p), expected, desired, memory_order_acq_rel, memory_order_relaxed);
}
static inline long long be_ld_acq_ll(long long *p) {
    return atomic_load_explicit(BE_A(long long, p), memory_order_acquire);
}
static inline void be_st_rel_ll(long long *p, long long v) {
    atomic_store_explicit(BE_A(long long, p), v, memory_order_release);
}

#endif

/* a spin-wait hint to the CPU */
static inline void be_pause(void) {
#if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    _mm_pause();
#elif (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    __builtin_ia32_pause();
#endif
}

/* ---- built on the atomics ------------------------------------------- */
static inline int be_trylock(int *lock) { return be_xchg_acq_int(lock, 1) == 0; }
static inline void be_lock(int *lock) {
    while (!be_trylock(lock)) {
        while (be_ld_int(lock))
            be_pause();
    }
}
static inline void be_unlock(int *lock) { be_st_rel_int(lock, 0); }
static inline void be_max_int(int *p, int v) {
    int old = be_ld_int(p);
    while (v > old && !be_cas_int(p, &old, v)) { }
}

/* the slots (breakeven._core.engine Slot pointers), grown with the GIL held */
static void **be_slots = NULL;
static int be_n_slots = 0;
static inline void **be_slots_load(void) { return (void **)be_ld_acq_ptr((void **)&be_slots); }
static inline void be_slots_store(void **v) { be_st_rel_ptr((void **)&be_slots, v); }

/* The process-wide thread limit that threadpoolctl sets through
   breakeven's controller (breakeven/_interop/threadpool.py), which finds
   this module by these two exported symbols; 0 = no limit. */
#if defined(_WIN32)
#define BE_EXPORT __declspec(dllexport)
#else
#define BE_EXPORT __attribute__((visibility("default")))
#endif
static int be_pool_limit = 0;
BE_EXPORT int breakeven_get_thread_limit(void) { return be_ld_int(&be_pool_limit); }
BE_EXPORT void breakeven_set_thread_limit(int n) { be_st_int(&be_pool_limit, n > 0 ? n : 0); }

/* ---- thread-locals: threads() and section() of the calling thread ---- */
#if defined(_MSC_VER) && !defined(__clang__)
#define BE_THREAD_LOCAL __declspec(thread)
#elif defined(__GNUC__) || defined(__clang__)
#define BE_THREAD_LOCAL __thread
#else
#define BE_THREAD_LOCAL _Thread_local
#endif
static BE_THREAD_LOCAL int be_tl_exact = 0;    /* threads(n, exact=True): n */
static BE_THREAD_LOCAL int be_tl_cap = 0;      /* threads(n): n; 0 = none */
static BE_THREAD_LOCAL int be_tl_section = 0;  /* cores of an open section */

/* ---- the clock: monotonic, in nanoseconds, or the simulated one ------ */
static int be_sim_clock = 0;
static long long be_sim_now = 0;
static inline long long be_monotonic_ns(void) {
#if defined(_WIN32)
    static LARGE_INTEGER freq;
    LARGE_INTEGER t;
    if (freq.QuadPart == 0)
        QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&t);
    return (long long)((double)t.QuadPart * 1e9 / (double)freq.QuadPart);
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
#endif
}
static inline long long be_now(void) {
    if (be_ld_int(&be_sim_clock))
        return be_ld_ll(&be_sim_now);
    return be_monotonic_ns();
}

/* ---- fork: the child's handler (the core's) says which of its OpenMP
   teams cannot run there; be_forked is set when one cannot */
static int be_forked = 0;
static void (*be_on_fork_child)(void) = NULL;
static void be_fork_child(void) {
    be_tl_section = 0;
    if (be_on_fork_child != NULL)
        be_on_fork_child();
}
/* Whether the environment variable is set to false, as LLVM's and Intel's
   OpenMP runtimes read a boolean setting ("0", "false", "no", "off",
   ".false.", or any word starting with f or n).  getenv: no lock, no
   allocation (used in the fork child's handler). */
#include <stdlib.h>
static int be_env_false(const char *name) {
    const char *v = getenv(name);
    char c;
    if (v == NULL)
        return 0;
    while (*v == ' ' || *v == '.')
        v++;
    c = *v;
    if (c == '0' || c == 'f' || c == 'F' || c == 'n' || c == 'N')
        return 1;
    return (c == 'o' || c == 'O') && (v[1] == 'f' || v[1] == 'F');
}
static int be_register_atfork(void (*child)(void)) {
    be_on_fork_child = child;
#if !defined(_WIN32)
    return pthread_atfork(NULL, NULL, be_fork_child);
#else
    return 0;  /* no fork on Windows */
#endif
}

/* zero a record (the core's Entry and Choice) */
#include <string.h>
#define be_zero(p) memset((p), 0, sizeof(*(p)))

#endif /* BREAKEVEN_RUNTIME_H */
