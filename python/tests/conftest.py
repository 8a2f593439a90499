"""Shared helpers: a store per test, readers for it, and running scripts.

Every test runs in its own temporary working directory (the default
``.dash`` lands there). Subprocesses get a clean environment (no inherited
``ML_DASH_*``) and ``ML_DASH_NO_VERSION_CHECK=1`` for the real SDK.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch):
    for k in list(os.environ):
        if k.startswith(("ML_DASH_", "DREAMLAKE_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("ML_DASH_NO_VERSION_CHECK", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def quiet():
    import ml_dash_rs

    return ml_dash_rs.BufferConfig(quiet=True, flush_interval=3600.0)


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def metric(root, prefix, name):
    return jsonl(Path(root) / prefix / "metrics" / str(name) / "data.jsonl")


def logs(root, prefix):
    return jsonl(Path(root) / prefix / "logs" / "logs.jsonl")


def doc(root, prefix, rel):
    with open(Path(root) / prefix / rel, encoding="utf-8") as f:
        return json.load(f)


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ML_DASH_", "DREAMLAKE_"))}
    env["ML_DASH_NO_VERSION_CHECK"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_script(*args, timeout=120, check=True, **kw):
    """``python args...`` in a fresh process; its CompletedProcess."""
    p = subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=kw.pop("env", None) or clean_env(),
        **kw,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p
