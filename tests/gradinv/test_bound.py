"""The searches' default bound counts rounds, so one random_state gives one answer on any machine."""

import os
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from gradinv import bound, invert_layer
from gradinv.bound import SearchBound
from gradinv.cases import make_victim

# A client whose cell search finds its columns over tens of rounds (42 here) with idle rounds between
# them: a bound in seconds on a slower machine would stop it at another column.
CLIENT = dict(kind="cross_entropy", batch_size=30, width=150, random_state=0)

ATTACK = """
import os, sys, numpy as np
from gradinv import invert_layer
from gradinv.cases import make_victim
v = make_victim({kind!r}, batch_size={batch_size}, width={width}, random_state={random_state})
res = invert_layer(v.grad_W, v.grad_b, weight=v.layer.weight.detach(), bias=v.layer.bias.detach(),
                   solver="cells", random_state=0)
np.save(sys.argv[1], np.c_[np.asarray(res.inputs), res.exact])
"""


def _same_answer(a, b):
    """Both runs certify the same number of inputs and recover the same batch (to 1e-9, in any order):
    BLAS may round differently from one call to the next, so the searches' rounds need not be
    identical, but their answer is."""
    from gradinv.metrics import match_inputs

    assert int(np.sum(a.exact)) == int(np.sum(b.exact))
    _, _, err = match_inputs(np.asarray(a.inputs), np.asarray(b.inputs))
    assert np.max(err) <= 1e-9


def _attack(client):
    v = make_victim(client["kind"], batch_size=client["batch_size"], width=client["width"],
                    random_state=client["random_state"])
    return invert_layer(v.grad_W, v.grad_b, weight=v.layer.weight.detach(), bias=v.layer.bias.detach(),
                        solver="cells", random_state=0)


def test_stagnation_is_counted_in_rounds():
    b = SearchBound(min_idle_rounds=3, factor=2.0)
    for _ in range(2):
        b.round_done()
    b.found()  # found in round 2: a wait of 2 rounds
    assert b.patience == 4 and not b.expired()
    for _ in range(3):
        b.round_done()
    assert not b.expired()
    b.round_done()
    assert b.stagnated() and b.expired()
    assert SearchBound(max_time=0.0).expired()  # the cap in seconds still holds


def test_a_machine_a_thousand_times_slower_gives_the_same_answer(monkeypatch):
    """The clock the bound reads runs 1000× faster: a patience in seconds (60 s) would have ended
    this search after its first idle round; in rounds, the answer is the same."""
    normal = _attack(CLIENT)
    res_rounds = normal.pipeline.named_steps["search"].result_.n_rounds
    fast_clock = types.SimpleNamespace(perf_counter=lambda: 1000.0 * time.perf_counter())
    monkeypatch.setattr(bound, "time", fast_clock)
    slow = _attack(CLIENT)
    assert res_rounds > 10  # the case has the idle rounds that a bound in seconds would cut
    assert normal.exact.all()
    _same_answer(slow, normal)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_the_same_seed_gives_the_same_answer_under_load(tmp_path):
    """The attack runs twice in a child process on one CPU: alone, then sharing that CPU with a busy
    process (half its share); the recovered batches are identical."""
    cpu = min(os.sched_getaffinity(0))
    # MKL picks its kernels per process (CPU, alignment), so one call can round differently from one process
    # to the next: three runs of this client alone certified 30, 27 and 30 samples (37, 31, 44 rounds);
    # with MKL_CBWR=COMPATIBLE, 30 in 51 rounds each time.  The test then sees the load alone.
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_CBWR="COMPATIBLE")
    script = tmp_path / "attack.py"
    script.write_text(ATTACK.format(**CLIENT))

    def run(out):
        child = subprocess.Popen([sys.executable, str(script), str(out)], env=env)
        os.sched_setaffinity(child.pid, {cpu})
        assert child.wait(timeout=600) == 0
        return np.load(out)

    alone = run(tmp_path / "alone.npy")
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])]
    try:
        for p in burners:
            os.sched_setaffinity(p.pid, {cpu})
        loaded = run(tmp_path / "loaded.npy")
    finally:
        for p in burners:
            p.kill()
            p.wait()
    assert alone[:, -1].all() and loaded[:, -1].all()
    from gradinv.metrics import match_inputs

    assert np.max(match_inputs(alone[:, :-1], loaded[:, :-1])[2]) <= 1e-9
