#!/usr/bin/env python3
"""Write (or extend) a run with the ml-dash 0.11.0 Python SDK, local mode.

Usage: write_run.py DASH_ROOT PREFIX initial|extend

initial: the first half of the "Python writes, Rust appends" scenario
    params set twice (version 2), 2 logs, 5 "train" points (step 0..4),
    2 rows of track "robot/pose" at timestamps 1.0 and 2.0, then complete.
extend:  reopens the run after the Rust engine appended to it and adds
    1 "train" point (step 10) and 1 log, then complete.

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


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("initial", "extend"):
        sys.exit(__doc__)
    root, prefix, mode = sys.argv[1:]
    with Experiment(prefix=prefix, dash_root=root, readme="written by python", tags=["py"]).run as exp:
        (initial if mode == "initial" else extend)(exp)
    print("ok")


if __name__ == "__main__":
    main()
