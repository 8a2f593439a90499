"""fork, many threads, garbage collection and interpreter exit."""

import gc
import multiprocessing as mp
import sys
import threading
from pathlib import Path

import pytest

import ml_dash_rs as ml_dash
from ml_dash_rs import Experiment

from conftest import doc, metric, quiet, run_script


def _child(exp, root, out):
    """In a fork()ed child: the parent's run refuses, a run of its own works."""
    results = []
    for call in (lambda: exp.metrics("train").log(x=-1),  # a cached builder
                 lambda: exp.metrics("other"),  # a new one
                 lambda: exp.log("from the child"),
                 lambda: exp.flush(),
                 lambda: exp.run.complete()):
        try:
            call()
            results.append("no error")
        except ml_dash.ForkedError as e:
            results.append("ForkedError" if isinstance(e, RuntimeError) else "not a RuntimeError")
    with Experiment(f"a/p/child-{mp.current_process().name}", dash_root=root, buffer_config=quiet()).run as own:
        for i in range(100):
            own.metrics("m").log(i=i)
    out.put(results)


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_fork_children_are_refused_and_the_parent_keeps_everything(workdir):
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    with Experiment("a/p/parent", buffer_config=quiet()).run as exp:
        train = exp.metrics("train")
        for i in range(1000):
            train.log(x=i)
        # Forked while the collector thread runs and points are in flight.
        kids = [ctx.Process(target=_child, args=(exp, str(workdir / ".dash"), out), name=f"k{n}") for n in range(2)]
        for k in kids:
            k.start()
        got = [out.get(timeout=60) for _ in kids]
        for k in kids:
            k.join(timeout=60)
            assert k.exitcode == 0
        for i in range(1000, 2000):
            train.log(x=i)
    assert got == [["ForkedError"] * 5] * 2
    assert [p["data"]["x"] for p in metric(".dash", "a/p/parent", "train")] == list(range(2000))
    assert doc(".dash", "a/p/parent", "experiment.json")["status"] == "COMPLETED"
    for n in range(2):
        assert len(metric(".dash", f"a/p/child-k{n}", "m")) == 100


def test_many_threads_keep_each_threads_order(workdir):
    threads, per = 8, 5000
    with Experiment("a/p/threads", buffer_config=quiet()).run as exp:
        start = threading.Barrier(threads)

        def work(t):
            m = exp.metrics("m")
            start.wait()
            for i in range(per):
                m.log(t=t, i=i)
            exp.logs.info("done", t=t)

        ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    pts = metric(".dash", "a/p/threads", "m")
    assert len(pts) == threads * per
    assert [p["index"] for p in pts] == list(range(threads * per))
    for t in range(threads):
        assert [p["data"]["i"] for p in pts if p["data"]["t"] == t] == list(range(per))


def test_flush_releases_the_gil(workdir):
    # A thread keeps running Python code while another waits in flush().
    with Experiment("a/p/gil", buffer_config=quiet()).run as exp:
        m = exp.metrics("m")
        for i in range(200_000):
            m.log(i=i)
        ticks = []
        done = threading.Event()

        def spin():
            while not done.is_set():
                ticks.append(1)

        spinner = threading.Thread(target=spin)
        spinner.start()
        exp.flush()
        done.set()
        spinner.join()
        assert ticks, "the other thread never ran while flush() waited"


def test_a_run_closed_by_garbage_collection_keeps_everything(workdir):
    exp = Experiment("a/p/gc", buffer_config=quiet())
    exp.run.start()
    for i in range(1000):
        exp.metrics("m").log(i=i)
    del exp
    gc.collect()
    assert len(metric(".dash", "a/p/gc", "m")) == 1000
    assert doc(".dash", "a/p/gc", "experiment.json")["status"] == "COMPLETED"


EXIT_SCRIPT = """
import sys, ml_dash_rs as ml_dash
exp = ml_dash.Experiment(sys.argv[1], buffer_config=ml_dash.BufferConfig(quiet=True))
exp.run.start()
for i in range(500):
    exp.metrics("m").log(i=i)
if sys.argv[2] == "raise":
    raise SystemError("the script dies")
"""


@pytest.mark.parametrize("how,status", [("exit", "COMPLETED"), ("raise", "FAILED")])
def test_runs_left_open_are_closed_at_exit(workdir, how, status):
    Path("s.py").write_text(EXIT_SCRIPT)
    p = run_script("s.py", f"a/p/exit-{how}", how, check=False)
    assert p.returncode == (0 if how == "exit" else 1), p.stderr
    assert len(metric(".dash", f"a/p/exit-{how}", "m")) == 500
    assert doc(".dash", f"a/p/exit-{how}", "experiment.json")["status"] == status
