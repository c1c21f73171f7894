"""The dispatch core: every per-call decision, and all per-process dispatch state.

One rule decides how many threads a call gets (:func:`_choose`, rule.pxi).
It runs for the built-in drop-ins, for kernels of other libraries through
the public Cython API (``breakeven/dispatch.pxd``), for ``@breakeven.kernel``
callables, for :func:`breakeven.decide`, and, as a dry run, for
:func:`breakeven.explain`.  For a call of kernel ``k`` (a slot) on dtype
``d`` with work ``w``:

1. in a forked child, a kernel whose OpenMP team ran regions in the parent
   on a runtime whose pool does not survive ``fork`` (libgomp's) runs
   serially;
2. ``threads(n, exact=True)`` in force on the calling thread: ``n``;
3. otherwise the step table: a kernel with no table for ``d`` runs serially
   (or, with no table but an estimate, as estimate.pxi says); below the
   fast path's bound (the hot threshold / CHECK_BELOW), serially (no clock
   read); past it, the hot table, or, for a lone call (no call past a
   threshold within the team's calibrated sleep time, and no section
   open), the cold table of the longest measured idle time not longer than
   this one's; a call in a loop that finds only part of the team awake
   asks the cold table whether waking the rest pays; each as the calls
   checked it (the online check, feedback.pxi: a size where the calls
   settled the other choice confidently gets it, and a call that finds the
   team idle pays the wake-up the calls measured, where the table assumed
   less);
4. capped by ``threads(n)``; a kernel backed off for contention gets its
   reduced count (or, when a probe is due, its full count);
5. clamped by the usable CPUs, ``omp_get_max_threads()`` and a limit set
   through threadpoolctl; serial inside an OpenMP region;
6. at most its fair share of the usable CPUs among the calls in progress
   that want several (outside sections);
7. within an open ``section()``, at most its cores; else taken from the
   core budget, the process's or the host's (fewer if fewer are free);
   fewer than 2: waited for, if the first call in flight should end soon
   enough that waiting beats running serially (budget.pxi), else serial;
   and a call past its threshold that runs serially
   still takes the core it runs on from the budget, even if none is free
   (the count goes below zero: no parallel call starts beside it).

The choice (steps 1-5, and 6-7 as a dry run sees them) has no side effect;
what it implies for a real call (its share and cores taken atomically, the
BLAS cap, the clocks, the estimate's exploration) is applied after it, in
one place (:func:`_commit`, calls.pxi).

The extension is one module, in parts by concern: ``runtime.h`` (atomics,
thread-locals, the clock, fork), ``state.pxi`` (constants, tables, process
state), ``blas.pxi``, ``budget.pxi`` (the process's budget or the
host's, laid out in ``host.h``; waiting for cores), ``rule.pxi``, ``estimate.pxi``,
``feedback.pxi`` (end, the contention check, learning), ``calls.pxi``
(begin, commit, the C API), and the Python side: ``tables.pxi`` (slots,
tables, profile hooks), ``hooks.pxi`` (process state, test hooks, stats),
``controls.pxi`` (dry runs, Grant, ``threads()``, ``section()``).

``end()`` returns the cores, records the time, teaches the online check
(per size, the mean and variance of each choice's time; per idle time, the
team's wake-up), and feeds the contention check: a parallel call more
than SLOW times slower than the best seen for its thread count and size
(its wake-up left out) counts as contended; BACKOFF_AFTER such calls in a
row (or two SEVERE ones) halve the kernel's threads; a probe at the full
count runs once the backed-off calls have taken PROBE_RATIO times the last
slow call's time, and lifts the back-off if it runs at normal speed.

Concurrency: the core budget and the counters are updated with atomic
instructions, a kernel's contention state under a spin lock that a caller
finding it taken simply skips (a lost observation only delays a back-off by
one call), and the tables are written with the GIL held while calls may read
them (a call racing a reconfiguration may see a mix of old and new steps;
every index is bounded, so the worst it gets is an odd thread count, and
every kernel is correct for any thread count).
"""
from cpython.pycapsule cimport PyCapsule_New
from libc.math cimport INFINITY, sqrt
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from breakeven cimport dispatch
from breakeven._core.omp cimport omp_get_max_threads, omp_in_parallel

import numpy as np

from breakeven._cpu import usable_cpus as _count_usable_cpus

cdef extern from "runtime.h":
    int ld_int "be_ld_int"(int *p) noexcept nogil
    long long ld_ll "be_ld_ll"(long long *p) noexcept nogil
    void st_int "be_st_int"(int *p, int v) noexcept nogil
    void st_ll "be_st_ll"(long long *p, long long v) noexcept nogil
    int add_int "be_add_int"(int *p, int v) noexcept nogil
    long long add_ll "be_add_ll"(long long *p, long long v) noexcept nogil
    int ld_acq_int "be_ld_acq_int"(int *p) noexcept nogil
    void st_rel_int "be_st_rel_int"(int *p, int v) noexcept nogil
    bint cas_int "be_cas_int"(int *p, int *expected, int desired) noexcept nogil
    bint cas_ptr "be_cas_ptr"(void **p, void *expected, void *desired) noexcept nogil
    bint trylock "be_trylock"(int *lock) noexcept nogil
    void lock "be_lock"(int *lock) noexcept nogil
    void unlock "be_unlock"(int *lock) noexcept nogil
    void max_int "be_max_int"(int *p, int v) noexcept nogil
    void **slots_load "be_slots_load"() noexcept nogil
    void slots_store "be_slots_store"(void **v) noexcept nogil
    void *load_ptr "be_ld_acq_ptr"(void **p) noexcept nogil
    void **_slots "be_slots"
    int _n_slots "be_n_slots"
    int pool_limit "breakeven_get_thread_limit"() noexcept nogil
    void set_pool_limit "breakeven_set_thread_limit"(int n) noexcept nogil
    int tl_exact "be_tl_exact"
    int tl_cap "be_tl_cap"
    int tl_section "be_tl_section"
    int sim_clock "be_sim_clock"
    long long sim_now "be_sim_now"
    long long now "be_now"() noexcept nogil
    int forked_child "be_forked"
    int env_false "be_env_false"(const char *name) noexcept nogil
    int register_atfork "be_register_atfork"(void (*child)() noexcept nogil) noexcept


include "state.pxi"
include "blas.pxi"
include "budget.pxi"
include "rule.pxi"
include "estimate.pxi"
include "feedback.pxi"
include "calls.pxi"
include "tables.pxi"
include "hooks.pxi"
include "controls.pxi"
