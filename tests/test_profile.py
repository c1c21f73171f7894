"""Profiles: TOML round trip, every way a file can be wrong, concurrent
writers, and the embedded default."""

import dataclasses
import multiprocessing
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import truncated

import breakeven as be
from breakeven import _profile, testing
from breakeven._kernels.registry import BUILTINS
from breakeven._profile import (
    FORMAT_VERSION,
    Fingerprint,
    Profile,
    ProfileWarning,
    embedded_profile,
    load_profile,
)
from breakeven._profile.format import format_1_key, parse_hosts

HERE = Fingerprint("Test CPU", 2, "libgomp", "default", "openblas test", "0.1.0")
OTHER = Fingerprint("Other CPU", 64, "libgomp", "passive", "mkl", "0.1.0")


def make(fp=HERE, thr=32768):
    p = Profile(fp, {}, "2026-11-26T12:00:00+00:00", 3000.0)
    p.set_table("sum", "float64", ((0, 1), (thr, 2)), ((0, 1), (4 * thr, 2)),
                ((thr, 2, 1.5e-5), (4 * thr, 2, 5e-5)))
    p.set_table("exp", "float32", ((0, 1), (2048, 2), (1 << 20, 4)), ((0, 1),))
    return p


@pytest.fixture(autouse=True)
def fresh_warnings():
    testing.forget_warnings()
    yield
    testing.forget_warnings()


def test_round_trip(tmp_path):
    p = make()
    path = p.save(tmp_path / "profile.toml")
    q = load_profile(path, fingerprint=HERE)
    assert q.tables == p.tables
    assert q.times("sum", "float64") == ((32768, 2, 1.5e-5), (131072, 2, 5e-5))
    assert q.times("exp", "float32") == ()
    assert q.fingerprint == HERE and q.sleep_after_us == 3000.0
    assert q.calibrated_at == p.calibrated_at and q.source == str(path)
    assert q.threads_for("sum", "float64", 32767) == 1
    assert q.threads_for("sum", "float64", 32768) == 2
    assert q.threads_for("exp", "float32", 1 << 21) == 4
    assert q.threads_for("sum", "float64", 10**9, "cold") == 2
    assert q.threads_for("dot", "float64", 10**9) == 1  # not calibrated: serial
    assert not list(tmp_path.glob("*.tmp"))


def test_wake_up_penalties_round_trip_and_are_checked(tmp_path):
    p = make()
    p.wake = ((10_000.0, 2, 6e-5), (100_000.0, 2, 7e-3))
    path = p.save(tmp_path / "profile.toml")
    assert load_profile(path, fingerprint=HERE).wake == p.wake
    path.write_text(path.read_text().replace("[10000.0, 2,", "[10000.0, 1,"))
    with pytest.warns(ProfileWarning, match="wake"):
        q = load_profile(path, fingerprint=HERE)
    assert q.source == "embedded default"


def test_a_partial_calibration_keeps_the_other_tables(tmp_path):
    path = make().save(tmp_path / "profile.toml")
    again = Profile(HERE, {}, "2026-11-27T12:00:00+00:00", 2000.0)
    again.set_table("sum", "float64", ((0, 1), (999, 2)), ((0, 1),))
    again.save(path)
    q = load_profile(path, fingerprint=HERE)
    assert q.steps("sum", "float64") == ((0, 1), (999, 2))  # re-measured
    assert q.times("sum", "float64") == ()
    assert q.steps("exp", "float32") == make().steps("exp", "float32")  # kept
    assert q.calibrated_at == again.calibrated_at and q.sleep_after_us == 2000.0


def test_several_hosts_in_one_file(tmp_path):
    path = tmp_path / "profile.toml"
    make(HERE, 1000).save(path)
    make(OTHER, 5000).save(path)
    make(HERE, 2000).save(path)  # replaces HERE, keeps OTHER
    assert load_profile(path, fingerprint=HERE).threshold("sum", "float64") == 2000
    assert load_profile(path, fingerprint=OTHER).threshold("sum", "float64") == 5000
    assert path.read_text().count(".fingerprint]") == 2


def test_missing_file_is_the_embedded_default_silently(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = load_profile(tmp_path / "nope.toml", fingerprint=HERE)
    assert p.source.startswith("embedded default")


def good_text():
    return _profile.dumps([make()])


# Each case: how to spoil the file, and a word the warning must contain.
FAULTS = {
    "empty": (lambda p: p.write_text(""), "format"),
    "truncated": (lambda p: p.write_text(truncated(good_text())), ""),
    "binary garbage": (lambda p: p.write_bytes(os.urandom(300) + b"\xff\xfe"), ""),
    "not toml": (lambda p: p.write_text("this is = = not toml ]]"), "TOML"),
    "wrong types": (lambda p: p.write_text(
        good_text().replace("usable_cpus = 2", 'usable_cpus = "two"')), "usable_cpus"),
    "negative work": (lambda p: p.write_text(
        good_text().replace("[32768, 2]", "[-5, 2]")), "negative"),
    "unsorted steps": (lambda p: p.write_text(
        good_text().replace("[[0, 1], [2048, 2], [1048576, 4]]",
                            "[[0, 1], [1048576, 2], [2048, 4]]")), "increasing"),
    "threads < 1": (lambda p: p.write_text(
        good_text().replace("[32768, 2]", "[32768, 0]")), "threads"),
    "not a kernel name": (lambda p: p.write_text(
        good_text().replace('.kernels."sum"', '.kernels."9 sum"')),
        "not a kernel name"),
    "future format": (lambda p: p.write_text(
        good_text().replace(f"format = {FORMAT_VERSION}", "format = 99")),
        "version 99"),
    "another host": (lambda p: make(OTHER).save(p), "no calibration for this host"),
    "a directory": (lambda p: p.mkdir(), "directory"),
    "unreadable": (lambda p: (p.write_text(good_text()), p.chmod(0)), "permission"),
    "bad times": (lambda p: p.write_text(
        good_text().replace("[32768, 2, 1.5e-05]", "[32768, 1, -1.0]")), "times"),
    "first step not at 0": (lambda p: p.write_text(
        good_text().replace("[[0, 1], [32768, 2]]", "[[5, 1], [32768, 2]]")), "work 0"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_gives_one_warning_and_the_default(tmp_path, fault, monkeypatch):
    spoil, word = FAULTS[fault]
    path = tmp_path / "profile.toml"
    spoil(path)
    if fault == "unreadable" and os.access(path, os.R_OK):
        # root reads any file: make this one refuse all the same
        real = Path.read_text

        def refuse(self, *a, **k):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, *a, **k)
        monkeypatch.setattr(Path, "read_text", refuse)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = load_profile(path, fingerprint=HERE)
        load_profile(path, fingerprint=HERE)  # the same problem again: silent
    ours = [w for w in caught if issubclass(w.category, ProfileWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    message = str(ours[0].message)
    assert str(path) in message and word in message
    assert p.source.startswith("embedded default")
    # dispatching from it works: a decision for every kernel
    for k in ("sum", "nearest"):
        assert p.threads_for(k, "float64", 10**6) >= 1


def test_save_keeps_an_unreadable_file_aside(tmp_path):
    path = tmp_path / "profile.toml"
    path.write_text("garbage = [")
    make().save(path)
    kept = list(tmp_path.glob("profile.toml.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_text() == "garbage = ["
    assert load_profile(path, fingerprint=HERE).source == str(path)


def _writer(path, fp_cpu, thr, rounds):
    fp = Fingerprint(fp_cpu, 2, "libgomp", "default", "openblas", "0.1.0")
    for i in range(rounds):
        make(fp, thr + i).save(path)


def test_concurrent_writers_leave_one_valid_file_with_both_hosts(tmp_path):
    path = tmp_path / "profile.toml"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, cpu, 1000, 30))
             for cpu in ("CPU A", "CPU B")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    hosts = parse_hosts(path.read_text(), path)
    assert len(hosts) == 2
    for cpu in ("CPU A", "CPU B"):
        fp = Fingerprint(cpu, 2, "libgomp", "default", "openblas", "0.1.0")
        assert load_profile(path, fingerprint=fp).threshold("sum", "float64") == 1029
    assert not list(tmp_path.glob(".*.tmp"))


def test_embedded_default_is_valid_and_traceable():
    p = embedded_profile(HERE)
    assert p.source.startswith("embedded default")
    data = Path(be.__file__).parent / "data"
    text = (data / "default_profile.toml").read_text()
    hosts = parse_hosts(text, "embedded")
    assert hosts, "the embedded default holds no reference host"
    for k in BUILTINS:  # every built-in has its default
        assert k in p.tables


def test_default_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BREAKEVEN_PROFILE", str(tmp_path / "x.toml"))
    assert _profile.default_profile_path() == tmp_path / "x.toml"
    monkeypatch.delenv("BREAKEVEN_PROFILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    expected = tmp_path / "cfg" / "breakeven" / "profile.toml"
    assert _profile.default_profile_path() == expected


@pytest.mark.openmp
def test_host_fingerprint_describes_this_host():
    fp = _profile.host_fingerprint()
    assert fp.usable_cpus >= 1 and fp.cpu and fp.breakeven
    from breakeven._core import runtimes
    from breakeven._core.openmp import OPENMP_RUNTIME

    # the runtime the kernels run on: as built, unless one is preloaded
    assert fp.openmp == runtimes.running().name
    if runtimes.global_runtime() is None:
        assert fp.openmp == OPENMP_RUNTIME
    assert fp.key == _profile.host_fingerprint().key


def test_set_table_validates():
    p = Profile(HERE)
    with pytest.raises(_profile.ProfileError):
        p.set_table("sum", "float64", ((0, 1), (10, 0)), ((0, 1),))
    with pytest.raises(_profile.ProfileError):
        p.set_table("sum", "float64", (), ((0, 1),))


# ---------------------------------------------------------------------------
# profiles that compose across libraries
# ---------------------------------------------------------------------------


@pytest.mark.openmp
def test_a_kernel_of_another_library_is_kept_not_fatal(tmp_path):
    """A profile naming a kernel this process has not registered is used,
    without a warning; the entry is kept when the file is written again,
    and a kernel registered later picks up its entry."""
    here = _profile.host_fingerprint()
    p = make(here)
    p.set_table("otherlib.relu", "float64", ((0, 1), (5000, 2)), ((0, 1),))
    path = p.save(tmp_path / "profile.toml")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProfileWarning)
        q = load_profile(path)
        assert q.source == str(path)
        assert q.steps("otherlib.relu", "float64") == ((0, 1), (5000, 2))
        testing.reset(q)
        testing.idle(-3600)
        assert be.decide("sum", 10**6).threads == min(2, be.usable_cpus())
    # a calibration of another kernel, saved over it, keeps the entry
    r = Profile(here, {}, "later", 3000.0)
    r.set_table("dot", "float64", ((0, 1), (7000, 2)), ((0, 1),))
    r.save(path)
    kept = load_profile(path)
    assert kept.steps("otherlib.relu", "float64") == ((0, 1), (5000, 2))
    assert kept.steps("dot", "float64") == ((0, 1), (7000, 2))
    # the library is imported: its kernel takes its entry at registration
    testing.reset(kept)
    testing.idle(-3600)
    try:
        be.register("otherlib.relu", lambda x: x, work=0,
                    sample=lambda w, d, rng: (np.ones(w, d),))
        d = be.decide("otherlib.relu", 10**6)
        assert d.threads == min(2, be.usable_cpus()), d
        assert "5000" in d.reason
    finally:
        be.KERNELS.pop("otherlib.relu", None)


def test_a_quick_calibration_does_not_replace_a_full_one(tmp_path):
    here = _profile.host_fingerprint()
    full = Profile(here, {}, "first", 3000.0)
    full.set_table("sum", "float64", ((0, 1), (30000, 2)), ((0, 1),), method="full")
    full.set_table("exp", "float64", ((0, 1), (3000, 2)), ((0, 1),), method="full")
    path = full.save(tmp_path / "profile.toml")
    quick = Profile(here, {}, "second", 3000.0)
    quick.set_table("sum", "float64", ((0, 1),), ((0, 1),), method="quick")
    quick.set_table("dot", "float64", ((0, 1), (9000, 2)), ((0, 1),),
                    method="quick")
    quick.save(path)
    assert quick.kept == [("sum", "float64")]
    p = load_profile(path)
    assert p.steps("sum", "float64") == ((0, 1), (30000, 2))
    assert p.method("sum", "float64") == "full"
    assert p.method("dot", "float64") == "quick"  # nothing to keep: saved
    quick.save(path, replace=True)
    assert quick.kept == []
    p = load_profile(path)
    assert p.steps("sum", "float64") == ((0, 1),)
    assert p.method("sum", "float64") == "quick"
    assert p.steps("exp", "float64") == ((0, 1), (3000, 2))  # never measured: kept
    with pytest.raises(_profile.ProfileError, match="method"):
        quick.set_table("sum", "float64", ((0, 1),), ((0, 1),), method="fast")


# ---------------------------------------------------------------------------
# a fingerprint that survives upgrades
# ---------------------------------------------------------------------------


def test_an_upgrade_of_the_libraries_leaves_the_calibration_stale_not_lost(tmp_path):
    here = _profile.host_fingerprint()
    older = dataclasses.replace(here, numpy="1.26.0", blas="openblas 0.3.20",
                                breakeven="0.0.9")
    assert older.key == here.key  # the same host
    path = make(older).save(tmp_path / "profile.toml")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProfileWarning)
        p = load_profile(path)
    assert p.source == str(path)  # used, not the embedded default
    assert p.threshold("sum", "float64") == 32768
    assert any(s.startswith("numpy 1.26.0 -> ") for s in p.stale)
    assert any(s.startswith("breakeven 0.0.9 -> ") for s in p.stale)
    r = subprocess.run([sys.executable, "-m", "breakeven", "show", "--profile",
                        str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    stale = [ln for ln in r.stdout.splitlines() if ln.startswith("stale:")]
    assert len(stale) == 1 and "numpy 1.26.0" in stale[0]
    assert "breakeven calibrate" in stale[0]
    # up to date: not stale
    make(here).save(path)
    assert load_profile(path).stale == []


@pytest.mark.parametrize("field,value", [("cpu", "Another CPU"), ("usable_cpus", 96),
                                         ("openmp", "another runtime"),
                                         ("wait_policy", "passive"),
                                         ("spin", "GOMP_SPINCOUNT=0")])
def test_another_host_is_not_this_one(tmp_path, field, value):
    here = _profile.host_fingerprint()
    other = dataclasses.replace(here, **{field: value})
    assert other.key != here.key
    path = make(other).save(tmp_path / "profile.toml")
    with pytest.warns(ProfileWarning, match="no calibration for this host"):
        p = load_profile(path)
    assert p.source == "embedded default"


def test_the_running_runtimes_spin_settings_are_in_the_fingerprint(monkeypatch):
    # its own variables count, another runtime's do not (KMP_BLOCKTIME says
    # nothing of libgomp's threads)
    from breakeven._core import runtimes

    own = runtimes.SPIN_VARIABLES.get(runtimes.running().name, ())
    every = {v for names in runtimes.SPIN_VARIABLES.values() for v in names}
    assert every - set(own)  # another runtime's variable is set too
    for v in sorted(every):
        monkeypatch.setenv(v, "1000")
    fp = _profile.host_fingerprint(refresh=True)
    try:
        assert fp.spin == (";".join(f"{v}=1000" for v in own) or "default")
        assert fp.openmp == runtimes.running().name
    finally:
        for v in every:
            monkeypatch.delenv(v)
        _profile.host_fingerprint(refresh=True)


FORMAT_1 = """format = 1

[hosts."{key}"]
calibrated_at = "2026-11-01T00:00:00+00:00"
sleep_after_us = 10000.0

[hosts."{key}".fingerprint]
cpu = "{cpu}"
usable_cpus = {cpus}
openmp = "{openmp}"
wait_policy = "{wait}"
blas = "openblas 0.3.0"
breakeven = "0.0.1"

[hosts."{key}".kernels."sum".float64]
hot = [[0, 1], [4242, 2]]
cold = [[0, 1]]
"""


def test_a_profile_of_the_previous_format_is_read_with_one_message(tmp_path):
    here = _profile.host_fingerprint()
    fp = {"cpu": here.cpu, "usable_cpus": here.usable_cpus, "openmp": here.openmp,
          "wait_policy": here.wait_policy, "blas": "openblas 0.3.0",
          "breakeven": "0.0.1"}
    text = FORMAT_1.format(key=format_1_key(fp), cpu=here.cpu,
                           cpus=here.usable_cpus, openmp=here.openmp,
                           wait=here.wait_policy)
    path = tmp_path / "profile.toml"
    path.write_text(text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = load_profile(path)
        load_profile(path)  # the same message is not repeated
    notes = [str(w.message) for w in caught if issubclass(w.category, ProfileWarning)]
    assert len(notes) == 1 and "format 1" in notes[0] and "ignoring" not in notes[0]
    assert p.source == str(path) and p.threshold("sum", "float64") == 4242
    assert "breakeven 0.0.1 -> " + here.breakeven in p.stale
    # the next save writes the current format, the entry kept
    q = Profile(here, {}, "now", 10000.0)
    q.set_table("dot", "float64", ((0, 1), (777, 2)), ((0, 1),))
    q.save(path)
    assert path.read_text().count(f"format = {FORMAT_VERSION}") == 1
    again = load_profile(path)
    assert again.threshold("sum", "float64") == 4242
    assert again.threshold("dot", "float64") == 777
    # a format-1 key that does not match its fingerprint is still refused
    path.write_text(text.replace(format_1_key(fp), "0123456789abcdef"))
    with pytest.warns(ProfileWarning, match="key does not match"):
        assert load_profile(path).source == "embedded default"
