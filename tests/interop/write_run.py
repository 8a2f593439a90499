#!/usr/bin/env python3
"""Write (or extend) a run with the ml-dash 0.11.0 Python SDK, local mode.

Usage: write_run.py DASH_ROOT PREFIX initial|extend|interleave|nonfinite-params

initial: the first half of the "Python writes, Rust appends" scenario
    params set twice (version 2), 2 logs, 5 "train" points (step 0..4),
    2 rows of track "robot/pose" at timestamps 1.0 and 2.0, then complete.
extend:  reopens the run after the Rust engine appended to it and adds
    1 "train" point (step 10) and 1 log, then complete.
interleave: while the Rust engine holds the run open (between two of its
    flushes): 2 "train" points (steps 3, 4), 1 log, 1 "robot/pose" row at 10.0.
nonfinite-params: params thr=NaN, cap=Infinity, floor=-Infinity, lr=0.1
    (the SDK stores the bare tokens in parameters.json), then complete.

Uses the SDK's default (buffered) mode, as a training script would. Prints
nothing on stdout but a final "ok"; the SDK's console lines go to stdout /
stderr before it.
"""
import os
import sys

os.environ["ML_DASH_NO_VERSION_CHECK"] = "1"

from ml_dash import Experiment  # noqa: E402


def initial(exp):
    exp.params.set(model={"lr": 0.001, "layers": {"hidden": 128}}, optimizer="adam", seed=42)
    exp.params.set(batch_size=32, tags=["py", "sdk"])
    exp.log("python started", level="info", metadata={"epoch": 0, "who": "python"})
    exp.logs.warn("python warns", memory_gb=1.5)
    train = exp.metrics("train")
    for step in range(5):
        train.log(loss=1.0 / (step + 1), step=step, _ts=1000.0 + step)
    pose = exp.tracks("robot/pose")
    pose.append(q=[0.0, 0.5], frame=0, _ts=1.0)
    pose.append(q=[1.0, 1.5], frame=1, _ts=2.0)


def extend(exp):
    exp.metrics("train").log(loss=0.01, step=10, _ts=2000.0)
    exp.log("python again", level="debug", metadata={"who": "python"})


def interleave(exp):
    train = exp.metrics("train")
    for step in (3, 4):
        train.log(loss=step / 10, step=step, _ts=3000.0 + step)
    exp.log("python in between", level="warn", metadata={"who": "python"})
    exp.tracks("robot/pose").append(frame=10, _ts=10.0)


def nonfinite_params(exp):
    exp.params.set(thr=float("nan"), cap=float("inf"), floor=float("-inf"), lr=0.1)


MODES = {
    "initial": initial,
    "extend": extend,
    "interleave": interleave,
    "nonfinite-params": nonfinite_params,
}


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in MODES:
        sys.exit(__doc__)
    root, prefix, mode = sys.argv[1:]
    # Only the first open describes the run; later opens leave readme/tags as they are.
    described = {"readme": "written by python", "tags": ["py"]} if mode == "initial" else {}
    with Experiment(prefix=prefix, dash_root=root, **described).run as exp:
        MODES[mode](exp)
    print("ok")


if __name__ == "__main__":
    main()
