#!/usr/bin/env python3
"""Log nested objects and lists with the ml-dash 0.11.0 Python SDK, local mode.

Usage: write_values.py DASH_ROOT PREFIX

The same calls as `nested_values_are_stored_as_the_sdk_stores_them` in
tests/interop.rs makes with the engine: metric points, track rows and log
metadata holding objects, lists of numbers, strings and mixed values, an
empty object, a dotted key that an object's key collides with, and two rows
of one timestamp merged. Prints "ok" last.
"""
import os
import sys

os.environ["ML_DASH_NO_VERSION_CHECK"] = "1"

from ml_dash import Experiment  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    root, prefix = sys.argv[1:]
    with Experiment(prefix=prefix, dash_root=root).run as exp:
        train = exp.metrics("train")
        train.log(
            loss=0.5,
            opt={"lr": 1e-05, "betas": [0.9, 0.999], "deep": {"x": 1, "y": None, "z": {}}, "e": []},
            names=["a", "b"],
            ints=[1, 2, 3],
            mixed=[1, "a", None, True, [1, 2], {"k": 1}],
            big=2**64 - 1,
            _ts=100.0,
        )
        train.log(empty={}, _ts=101.0)
        train.log(**{"a.b": 1, "a": {"b": 2, "é": "ü"}}, _ts=102.0)
        pose = exp.tracks("robot/pose")
        pose.append(q=[0.1, 0.2], cam={"pos": [1, 2, 3], "rot": {"w": 1.0}, "e": {}}, names=["x"], _ts=1.0)
        pose.append(mixed=[1, "a", None, {"k": [1]}], nested={"a": {"b": {"c": 3}}}, _ts=2.0)
        pose.append(empty={}, _ts=3.0)
        pose.append(cam={"pos": [9]}, _ts=4.0)
        pose.append(cam={"rot": {"w": 2}}, x=1, _ts=4.0)
        pose.append(**{"a.b": 1}, a={"b": 2, "": 3}, _ts=5.0)
        exp.log("nested", metadata={"a": {"b": [1, 2]}, "l": ["x"], "e": {}})
    print("ok")


if __name__ == "__main__":
    main()
