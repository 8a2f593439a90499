#!/usr/bin/env python3
"""List the files of one experiment of a LOCAL store through the Python SDK
0.11.0 and read each one back (the SDK verifies its sha256 on read).

Usage: read_files.py DASH_ROOT PREFIX

Prints one JSON document: {"files": [{"meta": <list_files entry>,
"sha256": <hex of the bytes read>, "size": <bytes read>}]}.
"""
import hashlib
import json
import os
import sys
import tempfile

os.environ["ML_DASH_NO_VERSION_CHECK"] = "1"

from ml_dash import LocalStorage  # noqa: E402

root, prefix = sys.argv[1], sys.argv[2]
owner, project = prefix.split("/")[0], prefix.split("/")[1]
st = LocalStorage(root)
out = []
with tempfile.TemporaryDirectory() as td:
    for meta in st.list_files(owner, project, prefix):
        dest = st.read_file(owner, project, prefix, meta["id"], dest_path=os.path.join(td, meta["id"]))
        with open(dest, "rb") as fh:
            data = fh.read()
        out.append({"meta": meta, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
print(json.dumps({"files": out}))
