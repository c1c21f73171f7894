"""The dispatch core's runtime header compiles and works in each branch of
atomics this machine's C compiler can build (src/breakeven/_core/runtime.h).

The installed core uses the branch its compiler picks; these tests compile a
small threaded program against the header with each branch forced, run it,
and check what the core relies on: atomic adds and compare-exchange under
contention, the spin lock, the running maximum, thread-locals that are per
thread, the exported thread limit, and a monotonic clock.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HEADER_DIR = Path(__file__).resolve().parents[1] / "src" / "breakeven" / "_core"
CC = os.environ.get("CC", "cc")

PROGRAM = r"""
#include <stdio.h>
#include "runtime.h"

#define THREADS 4
#define ROUNDS 100000

static int counter = 0, cas_counter = 0, guarded = 0, lock = 0, most = 0;
static long long wide = 0;
static int tl_seen[THREADS];

static void *work(void *arg) {
    int id = (int)(long)arg, i, old;
    be_tl_cap = id + 1;
    for (i = 0; i < ROUNDS; i++) {
        be_add_int(&counter, 1);
        be_add_ll(&wide, 3);
        old = be_ld_int(&cas_counter);
        while (!be_cas_int(&cas_counter, &old, old + 1)) { }
        be_lock(&lock);
        guarded += 1;  /* not atomic: the lock protects it */
        be_unlock(&lock);
        be_max_int(&most, id * ROUNDS + i);
    }
    tl_seen[id] = be_tl_cap;  /* still this thread's own */
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    long long t0 = be_now(), t1;
    int i, tls_ok = 1;
    void *slot = NULL;
    for (i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, work, (void *)(long)i);
    for (i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (i = 0; i < THREADS; i++)
        tls_ok &= tl_seen[i] == i + 1;
    breakeven_set_thread_limit(-5);
    t1 = be_now();
    printf("%d %d %d %lld %d %d %d %d %d\n", counter, cas_counter, guarded, wide,
           most, tls_ok, breakeven_get_thread_limit(), t1 >= t0,
           be_cas_ptr(&slot, NULL, &slot) && be_ld_acq_ptr(&slot) == &slot);
    return 0;
}
"""


def _run(tmp_path: Path, branch: str, std: str) -> list[int]:
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    exe = tmp_path / f"prog-{branch}"
    subprocess.run([CC, f"-std={std}", "-O2", "-Wall", "-Werror",
                    "-Wno-unused-function", "-Wno-unused-variable", "-pthread",
                    f"-DBE_ATOMICS={branch}", f"-I{HEADER_DIR}", str(src), "-o",
                    str(exe)], check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True)
    return [int(v) for v in out.stdout.split()]


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX threads program")
@pytest.mark.parametrize("branch, std", [("BE_ATOMICS_GNU", "gnu11"),
                                         ("BE_ATOMICS_C11", "c11")])
def test_runtime_header_branch(tmp_path, branch, std):
    if shutil.which(CC) is None:
        pytest.skip(f"Requires a C compiler ({CC}), as building breakeven does")
    n = 4 * 100000
    counter, cas_counter, guarded, wide, most, tls_ok, limit, monotonic, ptr = \
        _run(tmp_path, branch, std)
    assert (counter, cas_counter, guarded) == (n, n, n)
    assert wide == 3 * n
    assert most == 3 * 100000 + 99999
    assert tls_ok == 1
    assert limit == 0  # a negative limit is no limit
    assert monotonic == 1 and ptr == 1

