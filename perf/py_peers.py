#!/usr/bin/env python3
"""Python peers of the engine: end-to-end points/s and per-call latency.

Usage: py_peers.py [--quick] [--runs R] [--only NAME[,NAME..]] [--workdir DIR]

One thread, one scalar stream, local/offline back ends:

  mldash-py  ml-dash 0.11.0, local mode: Experiment(prefix, dash_root).run,
             exp.metrics("train").log(loss=x, step=i), the run completed at the end
  tbx        tensorboardX SummaryWriter.add_scalar("train/loss", x, i), closed at the end
  mlflow     mlflow.log_metric("loss", x, step=i) with a file store
             (MLFLOW_ALLOW_FILE_STORE=true), the run ended at the end

Two passes per peer, each into a fresh directory (os.sync() first):
  * end to end, R runs: wall time from opening the run to its completion
    (close/flush included, interpreter start and imports not), N points;
  * latency, 1 run: each call timed alone with perf_counter_ns (p50, p99, mean).

Prints one line per peer, then the versions:
  peer name=.. points=.. runs=.. points_per_sec=<median> all=<r1,r2,..> close_ms=<median>
       lat_points=.. p50_us=.. p99_us=.. mean_us=..
  versions python=.. ml-dash=.. tensorboardX=.. mlflow=..
The SDKs' own console output goes to /dev/null.
"""
import argparse
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from importlib import metadata

os.environ.setdefault("ML_DASH_NO_VERSION_CHECK", "1")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

# points for the end-to-end pass and for the latency pass: (full, quick)
SIZES = {
    "mldash-py": ((100_000, 20_000), (2_000, 1_000)),
    "tbx": ((20_000, 10_000), (1_000, 500)),
    "mlflow": ((20_000, 5_000), (200, 100)),
}


@contextlib.contextmanager
def quiet():
    """Send the SDKs' console output (progress bars, banners) to /dev/null."""
    with open(os.devnull, "w") as null:
        with contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
            yield


def mldash_py(root, n, timed):
    from ml_dash import Experiment

    lat = [] if timed else None
    t0 = time.perf_counter()
    with Experiment(prefix="perf/py/run", dash_root=root).run as exp:
        train = exp.metrics("train")
        if timed:
            clock = time.perf_counter_ns
            for i in range(n):
                a = clock()
                train.log(loss=1.0 / (i + 1), step=i)
                lat.append(clock() - a)
        else:
            for i in range(n):
                train.log(loss=1.0 / (i + 1), step=i)
        t1 = time.perf_counter()
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1, lat


def tbx(root, n, timed):
    from tensorboardX import SummaryWriter

    lat = [] if timed else None
    t0 = time.perf_counter()
    w = SummaryWriter(logdir=os.path.join(root, "tb"))
    if timed:
        clock = time.perf_counter_ns
        for i in range(n):
            a = clock()
            w.add_scalar("train/loss", 1.0 / (i + 1), i)
            lat.append(clock() - a)
    else:
        for i in range(n):
            w.add_scalar("train/loss", 1.0 / (i + 1), i)
    t1 = time.perf_counter()
    w.close()
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1, lat


def mlflow_file(root, n, timed):
    import mlflow

    mlflow.set_tracking_uri("file:" + os.path.join(root, "mlruns"))
    lat = [] if timed else None
    t0 = time.perf_counter()
    with mlflow.start_run():
        if timed:
            clock = time.perf_counter_ns
            for i in range(n):
                a = clock()
                mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
                lat.append(clock() - a)
        else:
            for i in range(n):
                mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
        t1 = time.perf_counter()
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1, lat


PEERS = {"mldash-py": mldash_py, "tbx": tbx, "mlflow": mlflow_file}
DISTS = {"mldash-py": "ml-dash", "tbx": "tensorboardX", "mlflow": "mlflow"}


def fresh(workdir):
    os.sync()
    return tempfile.mkdtemp(prefix="py-peers-", dir=workdir)


def pct(sorted_ns, q):
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def measure(name, n, n_lat, runs, workdir):
    fn = PEERS[name]
    # import (and any one-time set-up) outside the timings
    d = fresh(workdir)
    with quiet():
        fn(d, 10, False)
    shutil.rmtree(d, ignore_errors=True)
    rates, closes = [], []
    for _ in range(runs):
        d = fresh(workdir)
        with quiet():
            secs, close, _ = fn(d, n, False)
        shutil.rmtree(d, ignore_errors=True)
        rates.append(n / secs)
        closes.append(close)
    d = fresh(workdir)
    with quiet():
        _, _, lat = fn(d, n_lat, True)
    shutil.rmtree(d, ignore_errors=True)
    lat.sort()
    print(
        f"peer name={name} points={n} runs={runs} "
        f"points_per_sec={statistics.median(rates):.0f} "
        f"all={','.join(f'{r:.0f}' for r in rates)} "
        f"close_ms={statistics.median(closes) * 1e3:.1f} "
        f"lat_points={n_lat} p50_us={pct(lat, 0.5):.2f} p99_us={pct(lat, 0.99):.2f} "
        f"mean_us={sum(lat) / len(lat) / 1000.0:.2f}",
        flush=True,
    )


def version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one run")
    ap.add_argument("--runs", type=int, default=None, help="end-to-end runs per peer (3)")
    ap.add_argument("--only", default=",".join(PEERS), help="peers to run, comma-separated")
    ap.add_argument("--workdir", default=None, help="where the stores go (a tempdir)")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    names = [s for s in args.only.split(",") if s]
    for s in names:
        if s not in PEERS:
            sys.exit(f"unknown peer {s!r}; known: {', '.join(PEERS)}")
    workdir = args.workdir or tempfile.mkdtemp(prefix="py-peers-")
    os.makedirs(workdir, exist_ok=True)
    try:
        for name in names:
            (n, n_lat) = SIZES[name][1 if args.quick else 0]
            measure(name, n, n_lat, runs, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        "versions python=" + platform.python_version() + " "
        + " ".join(f"{DISTS[k]}={version(DISTS[k])}" for k in PEERS)
    )


if __name__ == "__main__":
    main()
