"""Remote and local mode against the project's loopback server: ml_dash_rs
sends the requests the SDK sends and stores what it stores.

The differential harness of the Rust crate (``tests/differential``): the same
``scenario.py`` runs under ``ml_dash`` 0.11 and under ``ml_dash_rs`` against
its own ``record_server`` each; ``compare.py`` compares requests (per stream,
in order) and stores after normalising ids and clocks, allowing only the
differences its ``DELIBERATE`` table lists (mirrored in the README).
``record_server`` is built by ``cargo test`` (or ``cargo build --example
record_server``; ``RECORD_SERVER`` names another path).
"""

import os
import subprocess
import sys

import pytest

from conftest import REPO

pytest.importorskip("ml_dash")
DIFF = REPO / "tests" / "differential"
SERVER = os.environ.get("RECORD_SERVER", str(REPO / "target" / "debug" / "examples" / "record_server"))


def run(out, module, local):
    args = [sys.executable, str(DIFF / "run.py"), str(out), sys.executable, module] + (["--local"] if local else [])
    p = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "RECORD_SERVER": SERVER}, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("local", [False, True], ids=["hybrid", "local"])
def test_the_same_requests_and_store_as_the_sdk(tmp_path, local):
    if not local and not os.path.exists(SERVER):
        pytest.fail(f"no record server at {SERVER}: run `cargo build --example record_server` first")
    sdk, ours = tmp_path / "sdk", tmp_path / "rs"
    run(sdk, "ml_dash", local)
    run(ours, "ml_dash_rs", local)
    req = (lambda d: "-") if local else (lambda d: str(d / "requests.json"))
    p = subprocess.run(
        [sys.executable, str(DIFF / "compare.py"), req(sdk), str(sdk / "store"), req(ours), str(ours / "store")],
        capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
