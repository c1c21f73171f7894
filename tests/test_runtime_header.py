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



# The parts of the Windows SDK and C runtime that runtime.h and host.h use,
# declared as the SDK declares them (the Interlocked* names are macros for
# the compiler's intrinsics there too): enough for clang to check the
# Windows branches here, where no SDK is installed.  "mingw/intrin.h" is
# the MinGW build's (whose GNU atomics branch needs no intrinsic).
WINDOWS_STUBS = {
    "windows.h": """#pragma once
#include <intrin.h>
typedef union _LARGE_INTEGER { struct { unsigned long LowPart; long HighPart; } u;
                               long long QuadPart; } LARGE_INTEGER;
__declspec(dllimport) int __stdcall QueryPerformanceCounter(LARGE_INTEGER *);
__declspec(dllimport) int __stdcall QueryPerformanceFrequency(LARGE_INTEGER *);
__declspec(dllimport) unsigned long __stdcall GetCurrentProcessId(void);
__declspec(dllimport) int __stdcall SwitchToThread(void);
#define InterlockedExchangeAdd _InterlockedExchangeAdd
#define InterlockedExchangeAdd64 _InterlockedExchangeAdd64
#define InterlockedCompareExchange _InterlockedCompareExchange
#define InterlockedCompareExchange64 _InterlockedCompareExchange64
#define InterlockedCompareExchangePointer _InterlockedCompareExchangePointer
#define InterlockedExchange _InterlockedExchange
""",
    "time.h": "#pragma once\n#include <stddef.h>\n",
    "stdlib.h": """#pragma once
#include <stddef.h>
void *malloc(size_t); void free(void *); char *getenv(const char *);
void *_aligned_malloc(size_t, size_t); void _aligned_free(void *);
""",
    "malloc.h": "#pragma once\n#include <stdlib.h>\n",
    "string.h": ("#pragma once\n#include <stddef.h>\n"
                 "void *memset(void *, int, size_t);\n"),
    "setjmp.h": ("#pragma once\n"
                 "typedef struct { unsigned long long b[16]; } jmp_buf[1];\n"),
    "mingw/intrin.h": "#pragma once\n",
}

WINDOWS_PROGRAM = r"""
#include "runtime.h"
#include "host.h"
int main(void) {
    int x = 0, old = 0;
    long long y = 0;
    void *p = NULL;
    be_add_int(&x, 1);
    be_add_ll(&y, 2);
    be_cas_int(&x, &old, 3);
    be_cas_ptr(&p, NULL, &x);
    be_lock(&old);
    be_unlock(&old);
    be_tl_cap = 2;
    return be_now() > 0 && be_host_supported() == 0 && be_register_atfork(NULL) == 0;
}
"""


@pytest.mark.parametrize("target, flags", [
    # MSVC's own compiler: its atomics (Interlocked*), __declspec(thread)
    # and _mm_pause, as MSVC sees them (clang's own macros undefined)
    ("x86_64-pc-windows-msvc", ["-fms-extensions", "-U__clang__", "-U__GNUC__"]),
    # clang-cl: the MSVC atomics, clang's thread-locals
    ("x86_64-pc-windows-msvc", ["-fms-extensions"]),
    # MinGW (gcc for Windows): GNU atomics, the Windows clock, no fork
    ("x86_64-w64-windows-gnu", ["-Imingw"]),
], ids=["msvc", "clang-cl", "mingw"])
def test_the_windows_branches_compile(tmp_path, target, flags):
    """Compiled only (-fsyntax-only, warnings as errors), for Windows
    targets, with clang: the branches no Linux build takes."""
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("Requires clang (apt-get install clang, as .ci/run does)")
    for name, text in WINDOWS_STUBS.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "prog.c").write_text(WINDOWS_PROGRAM)
    run = subprocess.run([clang, f"--target={target}", "-nostdlibinc", "-fsyntax-only",
                          "-Wall", "-Werror", "-Wno-unused-function", *flags,
                          f"-I{tmp_path}", f"-I{HEADER_DIR}", "prog.c"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
