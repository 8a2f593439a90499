"""SIGTERM (on by default in the module) and ranks from torchrun's variables."""

import signal
import subprocess
import sys

import pytest

from conftest import clean_env, doc, logs, metric, run_script

CHILD = r"""
import sys
import ml_dash_rs as ml_dash

with ml_dash.Experiment("a/p/term", buffer_config=ml_dash.BufferConfig(quiet=True)).run as exp:
    train = exp.metrics("train")
    i = 0
    while True:
        for _ in range(1000):
            train.log(i=i)
            i += 1
        exp.flush()
        print("ACKED", i, flush=True)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the engine handles signals on Linux")
def test_sigterm_closes_the_run_cancelled_then_ends_python_by_the_signal(workdir):
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=clean_env())
    acked = 0
    for _ in range(3):
        acked = int(p.stdout.readline().split()[1])
    p.send_signal(signal.SIGTERM)
    p.stdout.read()
    assert p.wait(timeout=60) == -signal.SIGTERM
    points = metric(".dash", "a/p/term", "train")
    assert len(points) >= acked
    assert [q["data"]["i"] for q in points] == list(range(len(points)))
    assert doc(".dash", "a/p/term", "experiment.json")["status"] == "CANCELLED"
    assert logs(".dash", "a/p/term")[-1]["metadata"] == {"signal": "SIGTERM"}


RANKS = r"""
import ml_dash_rs as ml_dash

with ml_dash.Experiment("a/p/ddp").run as exp:
    exp.params.set(lr=0.1)
    for i in range(10):
        exp.metrics("train").log(i=i)
"""


def test_torchrun_ranks_other_than_0_record_nothing_by_default(workdir):
    for rank in range(2):
        env = clean_env() | {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        run_script("-c", RANKS, env=env)
    assert len(metric(".dash", "a/p/ddp", "train")) == 10
    for rank in (1,):
        env = clean_env() | {"RANK": str(rank), "WORLD_SIZE": "2", "ML_DASH_RANKS": "shared"}
        run_script("-c", RANKS, env=env)
    points = metric(".dash", "a/p/ddp", "train")
    assert [q["data"].get("rank") for q in points] == [None] * 10 + [1] * 10
