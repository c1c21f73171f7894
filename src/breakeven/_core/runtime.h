/* The dispatch core's runtime: atomics, the slot array, the thread limit
   threadpoolctl sets, the thread-local controls, the clock and the fork hook.
   Included once, by engine.pyx (breakeven._core.engine); its statics are the
   core's process state.  Everything the rule needs from the platform is here
   and only here. */
#ifndef BREAKEVEN_RUNTIME_H
#define BREAKEVEN_RUNTIME_H
#include <limits.h>
#include <time.h>
#if !defined(_WIN32)
#include <pthread.h>
#endif

#define BE_LD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define BE_ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define BE_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define BE_LD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define BE_ST_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static inline int be_cas_int(int *p, int *expected, int desired) {
    return __atomic_compare_exchange_n(p, expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}
static inline int be_cas_ptr(void **p, void *expected, void *desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline int be_trylock(int *lock) {
    return __atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE) == 0;
}
static inline void be_lock(int *lock) {
    while (!be_trylock(lock)) {
        while (__atomic_load_n(lock, __ATOMIC_RELAXED)) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
}
static inline void be_unlock(int *lock) {
    __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
}
static inline void be_max_int(int *p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v > old && !__atomic_compare_exchange_n(p, &old, v, 1,
            __ATOMIC_RELAXED, __ATOMIC_RELAXED)) { }
}

/* the slots (breakeven._core.engine.Slot pointers), grown with the GIL held */
static void **be_slots = NULL;
static int be_n_slots = 0;
static inline void **be_slots_load(void) {
    return __atomic_load_n(&be_slots, __ATOMIC_ACQUIRE);
}
static inline void be_slots_store(void **v) {
    __atomic_store_n(&be_slots, v, __ATOMIC_RELEASE);
}
static inline void *be_load_ptr(void **p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* The process-wide thread limit that threadpoolctl sets through
   breakeven's controller (breakeven/_threadpool.py), which finds this
   module by these two exported symbols; 0 = no limit. */
#if defined(_WIN32)
#define BE_EXPORT __declspec(dllexport)
#else
#define BE_EXPORT __attribute__((visibility("default")))
#endif
static int be_pool_limit = 0;
BE_EXPORT int breakeven_get_thread_limit(void) {
    return __atomic_load_n(&be_pool_limit, __ATOMIC_RELAXED);
}
BE_EXPORT void breakeven_set_thread_limit(int n) {
    __atomic_store_n(&be_pool_limit, n > 0 ? n : 0, __ATOMIC_RELAXED);
}

/* threads() and section() of the calling thread */
static __thread int be_tl_exact = 0;    /* threads(n, exact=True): n */
static __thread int be_tl_cap = 0;      /* threads(n): n; 0 = none */
static __thread int be_tl_section = 0;  /* cores of an open section */

/* The clock: CLOCK_MONOTONIC in nanoseconds, or the simulated one. */
static int be_sim_clock = 0;
static long long be_sim_now = 0;
static inline long long be_now(void) {
    struct timespec ts;
    if (__atomic_load_n(&be_sim_clock, __ATOMIC_RELAXED))
        return __atomic_load_n(&be_sim_now, __ATOMIC_RELAXED);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* fork: the child of a process that ran OpenMP regions stays serial */
static int be_omp_started = 0;
static int be_forked = 0;
static void (*be_on_fork_child)(void) = NULL;
static void be_fork_child(void) {
    if (__atomic_load_n(&be_omp_started, __ATOMIC_RELAXED))
        be_forked = 1;
    be_tl_section = 0;
    if (be_on_fork_child != NULL)
        be_on_fork_child();
}
static int be_register_atfork(void (*child)(void)) {
    be_on_fork_child = child;
#if !defined(_WIN32)
    return pthread_atfork(NULL, NULL, be_fork_child);
#else
    return 0;
#endif
}

#endif /* BREAKEVEN_RUNTIME_H */
