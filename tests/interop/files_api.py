#!/usr/bin/env python3
"""The SDK 0.11.0's files API on a run whose files this engine saved,
uploaded (renamed) and deleted; then the SDK saves and deletes files of its
own for the engine to read.

Usage: files_api.py DASH_ROOT PREFIX OUT_DIR

Unbuffered (ML_DASH_BUFFER_ENABLED=false), so the SDK's saves and deletes are
in the store when it returns. Prints one JSON document: {"list": [...],
"exists": {...}, "read_text": ..., "download": <sha256 of the copy>,
"glob": [...], "saved": <the dict the SDK's save returned>}.
"""
import hashlib
import json
import os
import sys

os.environ["ML_DASH_NO_VERSION_CHECK"] = "1"
os.environ["ML_DASH_BUFFER_ENABLED"] = "false"

from ml_dash import Experiment  # noqa: E402

root, prefix, out_dir = sys.argv[1:]
out = {}
with Experiment(prefix=prefix, dash_root=root).run as exp:
    out["list"] = exp.files().list()
    out["exists"] = {
        p: exp.files(p).exists()
        for p in ("configs/config.json", "ckpt/best.pt", "notes/gone.txt")
    }
    out["read_text"] = exp.files("configs/config.json").read_text()
    copy = exp.files("ckpt/best.pt").download(to=os.path.join(out_dir, "best.pt"))
    with open(copy, "rb") as fh:
        out["download"] = hashlib.sha256(fh.read()).hexdigest()
    out["glob"] = sorted(f["filename"] for f in exp.files("notes").list("*.txt"))
    out["saved"] = exp.files("py").save_text("from python\n", to="p.txt")
    exp.files("py").save_text("short-lived", to="gone.txt")
    exp.files("py/gone.txt").delete()
print(json.dumps(out))
