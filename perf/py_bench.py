"""Per-call cost of logging from Python: ml_dash_rs beside ml_dash 0.11 and the PyO3 floor.

    python perf/py_bench.py [--quick]

Cases (each in the same process, one after another, alternating rounds):
- ``rs cached``: ``train = exp.metrics("train")`` once, then ``train.log(loss=x, step=i)``
- ``rs seed``: ``exp.metrics("train").log(loss=x, step=i)`` (the SDK's README style)
- ``sdk cached`` / ``sdk seed``: the same through ``ml_dash`` 0.11, local mode
- ``floor named``: a PyO3 method ``log(*, loss, step)`` doing nothing
- ``floor kwargs``: a PyO3 method ``log(**fields)`` doing nothing
- ``loop``: the empty loop (``for i in r: pass``), the harness's own cost

A sample is the mean per call of a batch of 100 calls (``perf_counter_ns``
around the batch: a single call is shorter than the clock's overhead);
p50 / p99 are over the batches. Then: 4 Python threads logging at once
(calls/s in total), and end-to-end points/s from one thread into the local
store, close included.
"""

import os
import statistics
import sys
import tempfile
import threading
import time

os.environ["ML_DASH_NO_VERSION_CHECK"] = "1"

import ml_dash_rs  # noqa: E402
from ml_dash_rs import _core  # noqa: E402

try:
    import ml_dash  # noqa: E402
except ImportError:
    ml_dash = None

QUICK = "--quick" in sys.argv
BATCH = 100
BATCHES = 300 if QUICK else 3000
ROUNDS = 1 if QUICK else 3


def batches(call):
    """Per-call ns of each of BATCHES batches of BATCH calls of call(x, i)."""
    out = []
    clock = time.perf_counter_ns
    r = range(BATCH)
    for b in range(BATCHES):
        t0 = clock()
        for i in r:
            call(0.5, i)
        out.append((clock() - t0) / BATCH)
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def cases(root):
    rs_cfg = ml_dash_rs.BufferConfig(quiet=True)
    rs = ml_dash_rs.Experiment("bench/py/rs", dash_root=root, buffer_config=rs_cfg).run.start()
    rs_train = rs.metrics("train")
    floor = _core.Floor()
    c = {
        "rs cached": lambda x, i: rs_train.log(loss=x, step=i),
        "rs seed": lambda x, i: rs.metrics("train").log(loss=x, step=i),
        "floor named": lambda x, i: floor.log(loss=x, step=i),
        "floor kwargs": lambda x, i: floor.log_kwargs(loss=x, step=i),
        "loop": lambda x, i: None,
    }
    closers = [rs.run.complete]
    if ml_dash is not None:
        sdk = ml_dash.Experiment("bench/py/sdk", dash_root=root + "-sdk").run.start()
        sdk_train = sdk.metrics("train")
        c["sdk cached"] = lambda x, i: sdk_train.log(loss=x, step=i)
        c["sdk seed"] = lambda x, i: sdk.metrics("train").log(loss=x, step=i)
        closers.append(sdk.run.complete)
    return c, closers


def threads(root, n=4, per=200_000 if not QUICK else 20_000):
    exp = ml_dash_rs.Experiment("bench/py/threads", dash_root=root,
                                buffer_config=ml_dash_rs.BufferConfig(quiet=True)).run.start()
    go = threading.Barrier(n + 1)

    def work():
        m = exp.metrics("train")
        go.wait()
        for i in range(per):
            m.log(loss=0.5, step=i)

    ts = [threading.Thread(target=work) for _ in range(n)]
    for t in ts:
        t.start()
    go.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    exp.run.complete()
    return n * per / dt


def end_to_end(root, n=2_000_000 if not QUICK else 200_000):
    t0 = time.perf_counter()
    exp = ml_dash_rs.Experiment("bench/py/e2e", dash_root=root,
                                buffer_config=ml_dash_rs.BufferConfig(quiet=True)).run.start()
    m = exp.metrics("train")
    for i in range(n):
        m.log(loss=0.5, step=i)
    exp.run.complete()
    return n / (time.perf_counter() - t0)


def main():
    root = tempfile.mkdtemp(prefix="py-bench-")
    c, closers = cases(os.path.join(root, "store"))
    samples = {k: [] for k in c}
    for _ in range(ROUNDS):
        for name, call in c.items():
            samples[name] += batches(call)
    for close in closers:
        close()
    print(f"python {sys.version.split()[0]}, {BATCHES * ROUNDS} batches of {BATCH} calls per case")
    print(f"{'case':<14}{'p50 ns':>9}{'p99 ns':>9}{'mean ns':>9}")
    for name, xs in samples.items():
        print(f"{name:<14}{pct(xs, 50):>9.0f}{pct(xs, 99):>9.0f}{statistics.fmean(xs):>9.0f}")
    if "sdk cached" in samples:
        ratio = pct(samples["sdk cached"], 50) / pct(samples["rs cached"], 50)
        print(f"sdk cached / rs cached (p50): {ratio:.1f}x")
    print(f"4 threads: {threads(os.path.join(root, 't')) / 1e6:.2f} M calls/s in total")
    print(f"end to end, one thread, close included: {end_to_end(os.path.join(root, 'e')) / 1e6:.2f} M points/s")


if __name__ == "__main__":
    main()
