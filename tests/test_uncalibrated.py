"""Kernels this host has not calibrated: their library's default for a
similar host, else the estimate from their own calls, refined as the calls
measure both choices.  Driven in simulated time through breakeven.grant (the
same begin/end a kernel's Cython code calls) and the test hooks."""

import dataclasses

import numpy as np
import pytest

import breakeven as be
from breakeven import testing
from breakeven._profile import Profile, host_fingerprint

N = 4  # simulated CPUs


def sample(work, dtype, rng):
    return (np.ones(int(work), dtype),)


@pytest.fixture
def kernel():
    """A kernel nobody calibrated and with no default."""
    k = be.register("zc.kernel", lambda x: x, work=0, sample=sample,
                    dtypes=("float64",))
    yield k
    be.KERNELS.pop("zc.kernel", None)


def empty_profile(**host) -> Profile:
    p = Profile(host_fingerprint(), {}, "now", None, "empty profile")
    p.team_hot = {N: 2e-6}
    for name, value in host.items():
        setattr(p, name, value)
    return p


@pytest.fixture
def host():
    """N simulated CPUs, the simulated clock, an empty profile (a team start
    of 2 us), calls in a loop."""
    with testing.simulated_cpus(N), testing.simulated_clock() as clock:
        testing.reset(empty_profile())
        testing.idle(-3600)
        yield clock
    testing.reset()


def call(clock, work, serial_ns_per_unit, parallel_ns_per_unit):
    """One call of ``zc.kernel``: as long as its choice takes."""
    with be.grant("zc.kernel", work) as g:
        per = serial_ns_per_unit if g.threads == 1 else parallel_ns_per_unit
        clock.advance(per * work * 1e-9)
    return g.threads


def test_a_kernel_nobody_calibrated_starts_serial_and_estimates(kernel, host):
    work = 1 << 16
    d = be.decide("zc.kernel", work)
    assert d.variant == "serial" and d.source == "estimate"
    assert "too few serial calls of this size timed" in d.reason
    assert call(host, work, 1.0, 0.3) == 1  # timed: the serial rate
    assert call(host, work, 1.0, 0.3) == 1
    # 65 us serially against 65 / (4 x 0.9) + 2 us: parallel, by the model
    d = be.decide("zc.kernel", work)
    assert d.threads == N and d.source == "estimate", d
    assert "estimated from its calls" in d.reason
    # a small call stays serial: the team's start costs more than its work
    assert be.decide("zc.kernel", 64).variant == "serial"


def test_what_the_calls_measure_decides(kernel, host):
    """A kernel that scales: learned parallel; one that does not (the model
    is wrong about it): learned serial."""
    work = 1 << 16
    for _ in range(6):
        call(host, work, 1.0, 0.3)
    d = be.decide("zc.kernel", work)
    assert (d.threads, d.source) == (N, "learned"), d
    assert be.stats()["zc.kernel", "float64"].source == "learned"
    testing.reset(empty_profile())
    testing.idle(-3600)
    # (each choice's first call after the other's is not measured: its data
    # is where the other left it in the caches)
    for _ in range(testing.EXPLORE_EVERY * (testing.EVIDENCE_MIN + 1)):
        call(host, work, 1.0, 1.2)  # parallel slower than serial
    d = be.decide("zc.kernel", work)
    assert (d.variant, d.source) == ("serial", "learned"), d
    assert "serial measured faster" in d.reason


def test_exploring_is_bounded(kernel, host):
    """The other choice is tried at most once in EXPLORE_EVERY calls, and
    never where the model puts it far behind."""
    for _ in range(2):
        call(host, 16, 1.0, 1.0)
    for _ in range(1000):  # 16 ns serially; parallel 2 us: never explored
        assert call(host, 16, 1.0, 1.0) == 1
    assert be.stats()["zc.kernel", "float64"].explored == 0
    # near the break-even point the model's other choice is within reach:
    # serial 8 us, parallel by the model 4.2 us; measured parallel slower
    work = 8192
    for _ in range(2):
        call(host, work, 1.0, 2.0)
    calls = 640
    before = be.stats()["zc.kernel", "float64"].explored
    for _ in range(calls):
        call(host, work, 1.0, 2.0)
    explored = be.stats()["zc.kernel", "float64"].explored - before
    assert 1 <= explored <= 2 * calls // testing.EXPLORE_EVERY + 2
    assert be.decide("zc.kernel", work).variant == "serial"


def test_lone_calls_of_an_estimated_kernel_pay_the_wake_up(kernel):
    with testing.simulated_cpus(N), testing.simulated_clock() as clock:
        testing.reset(empty_profile(sleep_after_us=10_000.0,
                                    wake=((10_000.0, N, 5e-3),)))
        testing.idle(-3600)
        work = 1 << 16
        for _ in range(6):
            call(clock, work, 1.0, 0.3)
        assert be.decide("zc.kernel", work, idle=0).threads == N
        # a lone call would wake the team (5 ms) for a 65 us call: serial
        d = be.decide("zc.kernel", work, idle=0.05)
        assert d.variant == "serial" and d.source == "estimate", d
        assert be.decide("zc.kernel", 1 << 26, idle=0.05).threads == N
    testing.reset()


def test_a_loop_of_estimated_calls_wakes_the_team_once(kernel):
    """Each call of a loop is serial for a lone call's wake-up, but the
    next one comes within the sleep time: it wakes the team, and the rest
    of the loop runs in parallel."""
    with testing.simulated_cpus(N), testing.simulated_clock() as clock:
        testing.reset(empty_profile(sleep_after_us=10_000.0,
                                    wake=((10_000.0, N, 5e-3),)))
        testing.idle(3600)
        work = 1 << 16
        for _ in range(6):  # lone calls (65 us): serial, the rate measured
            clock.advance(1.0)
            assert call(clock, work, 1.0, 0.3) == 1
        assert be.decide("zc.kernel", work, idle=0).threads == N
        clock.advance(1.0)  # then a loop
        got = [call(clock, work, 1.0, 0.3) for _ in range(20)]
        assert got[0] == 1, got  # lone: waking (5 ms) costs more than it saves
        assert got[1:] == [N] * 19, got
    testing.reset()


# ---------------------------------------------------------------------------
# a library's own default
# ---------------------------------------------------------------------------


def library_default(tmp_path, threshold, fingerprint):
    p = Profile(fingerprint, {}, "then", 10_000.0)
    p.set_table("lib.kernel", "float64", ((0, 1), (threshold, 2)), ((0, 1),))
    return p.save(tmp_path / "lib-defaults.toml")


@pytest.mark.openmp
def test_a_library_default_for_a_similar_host_is_used(tmp_path):
    here = host_fingerprint()
    # the library's reference host: the same kind of host, other libraries
    ref = dataclasses.replace(here, blas="another BLAS", numpy="0.0")
    path = library_default(tmp_path, 7777, ref)
    try:
        be.register("lib.kernel", lambda x: x, work=0, sample=sample,
                    dtypes=("float64",), defaults=str(path))  # a str will do
        testing.reset(Profile(here, {}, "now", 10_000.0, "host profile"))
        testing.idle(-3600)
        d = be.decide("lib.kernel", 10**6)
        assert d.source == "default" and str(path) in d.reason, d
        assert d.threads == min(2, be.usable_cpus())
        assert be.decide("lib.kernel", 7000).variant == "serial"
        # this host's calibration comes first
        mine = Profile(here, {}, "now", 10_000.0, "host profile")
        mine.set_table("lib.kernel", "float64", ((0, 1), (123, 2)), ((0, 1),))
        testing.reset(mine)
        testing.idle(-3600)
        d = be.decide("lib.kernel", 7000)
        assert d.source == "calibrated" and "123" in d.reason, d
    finally:
        be.KERNELS.pop("lib.kernel", None)


def test_a_default_of_another_kind_of_host_is_a_last_resort(tmp_path):
    """A default holding only another CPU count's entry: used (the first of
    the reference hosts), since it beats no table at all; a broken file is
    warned about once and the estimate decides."""
    here = host_fingerprint()
    other = dataclasses.replace(here, cpu="Another CPU",
                                usable_cpus=here.usable_cpus + 6)
    path = library_default(tmp_path, 5555, other)
    bad = tmp_path / "broken.toml"
    bad.write_text("not = = toml")
    try:
        be.register("lib.kernel", lambda x: x, work=0, sample=sample,
                    dtypes=("float64",), defaults=path)
        testing.reset(Profile(here, {}, "now", 10_000.0, "host profile"))
        assert be.decide("lib.kernel", 10**6, idle=0).source == "default"
        with pytest.warns(be.ProfileWarning, match="broken.toml"):
            be.register("lib.other", lambda x: x, work=0, sample=sample,
                        dtypes=("float64",), defaults=bad)
            testing.reset(Profile(here, {}, "now", 10_000.0, "host profile"))
            d = be.decide("lib.other", 10**6, idle=0)
        assert d.source == "estimate"
    finally:
        be.KERNELS.pop("lib.kernel", None)
        be.KERNELS.pop("lib.other", None)


@pytest.mark.openmp
def test_the_built_ins_fall_back_to_the_embedded_default(tmp_path):
    """A host calibrated for some kernels only: the others take breakeven's
    embedded default, not the estimate."""
    here = host_fingerprint()
    mine = Profile(here, {}, "now", 10_000.0, "host profile")
    mine.set_table("sum", "float64", ((0, 1), (424242, 2)), ((0, 1),))
    testing.reset(mine)
    testing.idle(-3600)
    assert be.decide("sum", 10**7).source == "calibrated"
    d = be.decide("exp", 10**7)
    assert d.source == "default" and "embedded default" in d.reason, d


def test_what_was_learnt_can_be_kept_never_over_a_calibration(kernel, host, tmp_path):
    work = 1 << 16
    for _ in range(6):
        call(host, work, 1.0, 0.3)
    for _ in range(6):
        call(host, 64, 1.0, 5.0)  # small: serial measured faster
    path = tmp_path / "profile.toml"
    p = be.save_learned(path)
    saved = be.load_profile(path)
    assert saved.method("zc.kernel", "float64") == "learned"
    assert saved.threads_for("zc.kernel", "float64", work) == N
    assert saved.threads_for("zc.kernel", "float64", 64) == 1
    # a calibrated entry in the file is kept
    cal = Profile(host_fingerprint(), {}, "now", None)
    cal.set_table("zc.kernel", "float64", ((0, 1), (999, 2)), ((0, 1),),
                  method="full")
    cal.save(path)
    p = be.save_learned(path)
    assert p.kept == [("zc.kernel", "float64")]
    assert be.load_profile(path).steps("zc.kernel", "float64") == ((0, 1), (999, 2))
