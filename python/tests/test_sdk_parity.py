"""The same script through ``ml_dash`` 0.11 and ``ml_dash_rs``: equal stores.

Both stores are read back through the real SDK (``tests/interop/read_run.py``:
``LocalStorage`` and ``Experiment`` APIs), so this also shows that the SDK
reads an ``ml_dash_rs`` store whole. Ids and wall-clock times are normalised;
everything else (values, indices, params versions, logs, tracks, files and
checksums) must be equal.
"""

import json
import re
from pathlib import Path

import pytest

from conftest import REPO, HERE, run_script

pytest.importorskip("ml_dash")

PREFIX = "alice/parity/run-1"
# Wall-clock and id fields: present in both, values differ by nature.
VOLATILE = {"createdAt", "updatedAt", "uploadedAt", "created_at", "updated_at", "started_at",
            "ended_at", "heartbeat_at", "pid", "host", "firstDataAt", "lastDataAt", "id"}
# Deliberate: the engine records the run's status and times, and its writer's
# liveness marker, in experiment.json (the SDK's local mode does not), for
# `ml-dash list` and crashed-run detection.
EXTRA = {"experiment": {"status", "started_at", "ended_at", "pid", "host", "heartbeat_at"}}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT")


def normalise(v, key=None):
    if isinstance(v, dict):
        return {k: normalise(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [normalise(x) for x in v]
    if key in VOLATILE or (key == "timestamp" and isinstance(v, str) and ISO.match(v)):
        return "<t>" if v is not None else None
    return v


def store(tmp_path, module):
    work = tmp_path / module
    work.mkdir()
    run_script(HERE / "scenario_local.py", module, work / ".dash", cwd=work)
    return work / ".dash"


def files_of(root):
    meta = json.loads((root / PREFIX / "files" / ".files_metadata.json").read_text())
    out = []
    for f in meta["files"]:
        content = (root / PREFIX / "files" / f["path"].strip("/") / f["id"] / f["filename"]).read_bytes()
        out.append((normalise(f), content))
    return sorted(out, key=lambda x: (x[0]["path"], x[0]["filename"]))


def test_the_same_script_gives_equal_stores(tmp_path):
    sdk, ours = store(tmp_path, "ml_dash"), store(tmp_path, "ml_dash_rs")
    read = REPO / "tests" / "interop" / "read_run.py"
    a = json.loads(run_script(read, sdk, PREFIX).stdout)
    b = json.loads(run_script(read, ours, PREFIX).stdout)
    a, b = normalise(a), normalise(b)
    for part in ("experiment", "storage", "experiment_api"):
        for key in a[part]:
            assert b[part][key] == a[part][key], f"{part}.{key} differs"
        assert set(b[part]) - set(a[part]) == EXTRA.get(part, set()), part
    # A sanity floor: the comparison saw the data.
    assert len(a["storage"]["metrics"]["train"]["points"]) == 52
    assert a["storage"]["params_doc"]["version"] == 2
    assert files_of(sdk) == files_of(ours)
