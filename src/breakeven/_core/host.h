/* The host-wide core budget: one segment of shared memory per user and set
   of usable CPUs, which every process that dispatches maps (the file is
   made, checked and mapped by breakeven/_core/host.py; this header is its
   layout and everything done to it, with atomics, without the GIL).

   The segment holds the cores free on the host and one slot per process:
   its pid, its start time and the cores it holds.  A process takes cores
   from `free` with one compare-and-swap, then adds them to its slot; it
   gives them back in the other order.  A process killed between the two
   steps (a few instructions) loses its cores for good, never lends more
   than there are: the budget errs towards serial.  A dead process's cores
   come back by a sweep (be_host_sweep) that any process runs when the
   budget looks short: a slot whose pid is gone, a zombie, or another
   process's (its start time differs) is given back.

   Linux only (start times from /proc); elsewhere be_host_supported() is 0
   and each process keeps its own budget. */
#ifndef BREAKEVEN_HOST_H
#define BREAKEVEN_HOST_H
#include "runtime.h"

#define BE_HOST_MAGIC 0x5447444255424542LL /* "BEBUDGET", little-endian */
#define BE_HOST_VERSION 1
#define BE_HOST_SLOTS 256
#define BE_SLOT_CLAIMING (-2)
#define BE_SLOT_SWEEPING (-1)

typedef struct {
    int pid;             /* 0: free; BE_SLOT_CLAIMING / _SWEEPING: in change */
    int held;            /* cores the process holds now */
    long long start;     /* its start time, clock ticks after boot */
    long long calls;     /* its calls that took cores */
    long long short_;    /* its calls that found fewer cores free than wanted */
    long long waits;     /* its calls that waited for cores */
    long long wait_ns;   /* how long they waited */
    int peak;            /* the most cores it held at once */
    int lent;            /* cores its idle OpenMP team still spins on */
    long long busy_until;  /* ns (CLOCK_MONOTONIC): its last parallel call's
                              expected end */
    long long lent_until;  /* ns: when that team goes to sleep */
    int callers;         /* its calls in progress that want several threads */
    int pad0;
    long long pad[6];
} be_host_slot;          /* 128 bytes: two cache lines */

typedef struct {
    long long magic;     /* written last, when the rest is set */
    int version;
    int size;            /* of the segment, in bytes */
    int usable;          /* the CPUs the budget shares */
    int n_slots;
    int free;            /* cores free on the host (below 0: serial calls past
                            their threshold run beyond it) */
    int peak;            /* the most threads of parallel calls at once */
    long long last_sweep;  /* ns (CLOCK_MONOTONIC) of the last sweep */
    long long swept;     /* cores given back by sweeps */
    int running;         /* threads of parallel calls running now */
    int top;             /* slots in use lie below this index */
    long long pad[2];
    be_host_slot slots[BE_HOST_SLOTS];
} be_host;

static inline int be_host_size(void) { return (int)sizeof(be_host); }

/* this process's id, and the CPU given up to other threads for a moment */
#if defined(_WIN32)
static inline int be_getpid(void) { return (int)GetCurrentProcessId(); }
static inline void be_yield(void) { SwitchToThread(); }
#else
#include <sched.h>
#include <unistd.h>
static inline int be_getpid(void) { return (int)getpid(); }
static inline void be_yield(void) { sched_yield(); }
#endif

#if defined(__linux__)
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

static inline int be_host_supported(void) { return 1; }

/* The start time (field 22 of /proc/<pid>/stat) of a process and its state
   letter; -1 if unreadable.  Only open/read/close: safe in a fork handler. */
static long long be_proc_start(int pid, char *state) {
    char path[40] = "/proc/", digits[16], buf[1024], *p, *end;
    int n = 0, i, fd, field;
    long long v = 0;
    ssize_t got;
    do { digits[n++] = (char)('0' + pid % 10); pid /= 10; } while (pid > 0 && n < 15);
    for (i = 0; i < n; i++)
        path[6 + i] = digits[n - 1 - i];
    memcpy(path + 6 + n, "/stat", 6);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    got = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (got <= 0)
        return -1;
    buf[got] = 0;
    end = buf + got;
    p = NULL;  /* the command may hold ')': the last one ends it */
    for (i = 0; i < got; i++)
        if (buf[i] == ')')
            p = buf + i;
    if (p == NULL || p + 2 >= end)
        return -1;
    p += 2;                      /* field 3, the state */
    if (state != NULL)
        *state = *p;
    for (field = 3; field < 22 && p < end; p++)
        if (*p == ' ')
            field++;
    if (field != 22)
        return -1;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (*p++ - '0');
    return v;
}

/* Whether the process of a slot (pid, start time) has ended. */
static int be_proc_gone(int pid, long long start) {
    char state = 0;
    long long now_start;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 1;
    now_start = be_proc_start(pid, &state);
    if (now_start < 0)
        return 0;  /* no /proc: kill() says it lives */
    return state == 'Z' || state == 'X' || now_start != start;
}

/* A slot for this process (pid, start): its index, or -1 if all are
   taken by living processes. */
static int be_host_claim(be_host *h, int pid, long long start) {
    int i, tries, zero;
    be_host_slot *s;
    for (tries = 0; tries < 2; tries++) {
        for (i = 0; i < h->n_slots && i < BE_HOST_SLOTS; i++) {
            s = &h->slots[i];
            zero = 0;
            if (be_ld_int(&s->pid) != 0 || !be_cas_int(&s->pid, &zero, BE_SLOT_CLAIMING))
                continue;
            be_st_int(&s->held, 0);
            be_st_int(&s->peak, 0);
            be_st_ll(&s->start, start);
            be_st_ll(&s->calls, 0);
            be_st_ll(&s->short_, 0);
            be_st_ll(&s->waits, 0);
            be_st_ll(&s->wait_ns, 0);
            be_st_ll(&s->busy_until, 0);
            be_st_int(&s->lent, 0);
            be_st_ll(&s->lent_until, 0);
            be_st_int(&s->callers, 0);
            be_st_rel_int(&s->pid, pid);
            be_max_int(&h->top, i + 1);
            return i;
        }
        /* all taken: free the slots of processes that have ended */
        for (i = 0; i < h->n_slots && i < BE_HOST_SLOTS; i++) {
            int p = be_ld_acq_int(&h->slots[i].pid);
            if (p > 0 && p != pid && be_proc_gone(p, be_ld_ll(&h->slots[i].start))
                    && be_cas_int(&h->slots[i].pid, &p, BE_SLOT_SWEEPING)) {
                int held = be_xchg_acq_int(&h->slots[i].held, 0)
                           + be_xchg_acq_int(&h->slots[i].lent, 0);
                if (held)
                    be_add_int(&h->free, held);
                be_st_rel_int(&h->slots[i].pid, 0);
            }
        }
    }
    return -1;
}

/* Give back the cores of processes that ended holding some: the number
   given back.  Runs at most once per `every` ns host-wide (when the budget
   looks short), so a dead process's cores come back within that time of
   being wanted; a slot of an ended process that held nothing stays until a
   claim needs it. */
static int be_host_sweep(be_host *h, int self_pid, long long now, long long every) {
    long long last = be_ld_ll(&h->last_sweep);
    int i, p, held, back = 0;
    be_host_slot *s;
    if (now - last < every)
        return 0;
    /* one sweeper at a time */
    if (!be_cas_ll(&h->last_sweep, &last, now))
        return 0;
    for (i = 0; i < be_ld_int(&h->top) && i < BE_HOST_SLOTS; i++) {
        s = &h->slots[i];
        p = be_ld_acq_int(&s->pid);
        if (p <= 0 || p == self_pid || be_ld_int(&s->held) == 0)
            continue;
        if (!be_proc_gone(p, be_ld_ll(&s->start)))
            continue;
        if (!be_cas_int(&s->pid, &p, BE_SLOT_SWEEPING))
            continue;
        held = be_xchg_acq_int(&s->held, 0) + be_xchg_acq_int(&s->lent, 0);
        if (held) {
            be_add_int(&h->free, held);
            be_add_ll(&h->swept, held);
            back += held;
        }
        be_st_rel_int(&s->pid, 0);
    }
    return back;
}

/* A process leaving: what it holds goes back, and its slot is free. */
static void be_host_release(be_host *h, int i, int pid) {
    be_host_slot *s;
    int held;
    if (i < 0 || i >= BE_HOST_SLOTS)
        return;
    s = &h->slots[i];
    if (be_ld_acq_int(&s->pid) != pid || !be_cas_int(&s->pid, &pid, BE_SLOT_SWEEPING))
        return;
    held = be_xchg_acq_int(&s->held, 0) + be_xchg_acq_int(&s->lent, 0);
    if (held)
        be_add_int(&h->free, held);
    be_st_rel_int(&s->pid, 0);
}

/* How many processes other than slot `self` use cores now: calls running
   on them, or a team spinning on them (lent, until it sleeps). */
static int be_host_active(be_host *h, int self, long long now) {
    int i, n = 0, top = be_ld_int(&h->top);
    be_host_slot *s;
    for (i = 0; i < top && i < BE_HOST_SLOTS; i++) {
        s = &h->slots[i];
        if (i == self || be_ld_int(&s->pid) <= 0)
            continue;
        if (be_ld_int(&s->held) > 0
                || (be_ld_int(&s->lent) > 0 && be_ld_ll(&s->lent_until) > now))
            n++;
    }
    return n;
}

/* The cores of other processes' teams that have gone to sleep, back in the
   budget: how many came back. */
static int be_host_reclaim(be_host *h, int self_pid, long long now) {
    int i, lent, back = 0, top = be_ld_int(&h->top);
    be_host_slot *s;
    for (i = 0; i < top && i < BE_HOST_SLOTS; i++) {
        s = &h->slots[i];
        lent = be_ld_int(&s->lent);
        if (lent <= 0 || be_ld_ll(&s->lent_until) > now
                || be_ld_acq_int(&s->pid) == self_pid)
            continue;
        if (be_cas_int(&s->lent, &lent, 0)) {
            be_add_int(&h->free, lent);
            back += lent;
        }
    }
    return back;
}

#else  /* no shared budget: each process keeps its own */

static inline int be_host_supported(void) { return 0; }
static long long be_proc_start(int pid, char *state) { (void)pid; (void)state; return -1; }
static int be_proc_gone(int pid, long long start) { (void)pid; (void)start; return 0; }
static int be_host_claim(be_host *h, int pid, long long start) {
    (void)h; (void)pid; (void)start; return -1;
}
static int be_host_sweep(be_host *h, int self_pid, long long now, long long every) {
    (void)h; (void)self_pid; (void)now; (void)every; return 0;
}
static void be_host_release(be_host *h, int i, int pid) { (void)h; (void)i; (void)pid; }
static int be_host_reclaim(be_host *h, int self_pid, long long now) {
    (void)h; (void)self_pid; (void)now; return 0;
}
static int be_host_active(be_host *h, int self, long long now) {
    (void)h; (void)self; (void)now; return 0;
}

#endif

/* A new segment's header: every core free, no process. */
static void be_host_init(be_host *h, int usable) {
    memset(h, 0, sizeof(*h));
    h->version = BE_HOST_VERSION;
    h->size = (int)sizeof(be_host);
    h->usable = usable;
    h->n_slots = BE_HOST_SLOTS;
    h->free = usable;
    h->last_sweep = -(1LL << 62);
    be_st_rel_ll(&h->magic, BE_HOST_MAGIC);
}

/* What is wrong with a mapped segment for `usable` CPUs (NULL: nothing). */
static const char *be_host_check(be_host *h, long long size, int usable) {
    int f;
    if (size != (long long)sizeof(be_host))
        return "its size is not a budget's";
    if (be_ld_acq_ll(&h->magic) != BE_HOST_MAGIC)
        return "it does not start with the budget's mark";
    if (h->version != BE_HOST_VERSION || h->size != (int)sizeof(be_host))
        return "it is of another version of breakeven";
    if (h->n_slots != BE_HOST_SLOTS)
        return "its slot count is not this version's";
    if (h->usable != usable)
        return "it shares another number of CPUs";
    f = be_ld_int(&h->free);
    if (f > usable || f < -(1 << 24))
        return "its count of free cores is out of range";
    return NULL;
}

#endif /* BREAKEVEN_HOST_H */
