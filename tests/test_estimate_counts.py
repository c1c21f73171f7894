"""The estimate's thread counts on simulated many-core hosts: a kernel
nobody calibrated, called over a wide range of sizes, chooses among the
calibration's thread counts from its own calls and the team's start per
count, in simulated time (every call lasts what the host's cost model says
for the threads it was granted), and after a warm-up it is close to the
model's best count at every size: not 1 thread or all of them."""

import math
import random

import numpy as np
import pytest

import breakeven as be
from breakeven import testing
from breakeven._cpu import thread_candidates
from breakeven._profile import Profile, host_fingerprint

# sizes 2^8 .. 2^26 (one per log2 size, as the core learns them: the
# simulated caches make the best count jump within an octave, and a jump
# of the rate within a log2 size looks like contention); calls in runs of
# RUN of one size
WORKS = [1 << e for e in range(8, 27)]
RUN = 10
WARM_UP = 40  # runs per size


def sample(work, dtype, rng):
    return (np.ones(int(work), dtype),)


@pytest.fixture
def kernel():
    k = be.register("counts.kernel", lambda x: x, work=0, sample=sample,
                    dtypes=("float64",))
    yield k
    be.KERNELS.pop("counts.kernel", None)


def host_profile(host) -> Profile:
    """No table, nothing learnt: only the team's start per thread count, as
    a calibration of the host's team measures it."""
    p = Profile(host_fingerprint(), {}, "now", None, "empty profile")
    p.team_hot = {t: host.fork_join(t)
                  for t in thread_candidates(host.cpus, host.topology())[1:]}
    return p


def warm_up(host, model, clock, seed=0):
    """WARM_UP runs of RUN calls at each size, the runs in a random order."""
    order = [w for w in WORKS for _ in range(WARM_UP)]
    random.Random(seed).shuffle(order)
    for w in order:
        for _ in range(RUN):
            with be.grant("counts.kernel", w) as g:
                clock.advance(host.time(model, w, g.threads))


def ratios(host, model, rule) -> list[float]:
    """Per size: the rule's time over the model's best count's."""
    return [host.time(model, w, rule(w)) / host.best(model, w)[1] for w in WORKS]


def geomean(v) -> float:
    return math.exp(sum(math.log(x) for x in v) / len(v))


@pytest.mark.parametrize("name", ["workstation-64", "server-192"])
@pytest.mark.parametrize("model", ["sum", "exp", "cumsum"])
def test_the_estimate_chooses_a_count_near_the_best(kernel, name, model):
    host, km = testing.HOSTS[name], testing.KERNEL_MODELS[model]
    with testing.simulated_cpus(host.cpus), testing.simulated_clock() as clock:
        testing.reset(host_profile(host))
        testing.idle(-3600)
        warm_up(host, km, clock)

        def dispatched(w):
            return be.decide("counts.kernel", w, idle=0).threads

        got = ratios(host, km, dispatched)
        counts = {dispatched(w) for w in WORKS}
    testing.reset()
    # what all or nothing would cost: the better of serial and every CPU
    on_off = ratios(host, km, lambda w: min(
        (1, host.cpus), key=lambda t: host.time(km, w, t)))
    worst = max(range(len(WORKS)), key=got.__getitem__)
    assert max(got) <= 1.3, (WORKS[worst], got[worst], dispatched)
    assert geomean(got) <= 1.10
    # counts between 1 and all were chosen, where all or nothing falls short
    assert len(counts - {1, host.cpus}) >= 2, counts
    assert max(on_off) > 1.3 or geomean(on_off) > 1.10
