#!/usr/bin/env python3
"""Read one experiment of an ml-dash 0.11.0 LOCAL store back through the Python SDK.

Usage: read_run.py DASH_ROOT PREFIX

Prints one strict JSON document on stdout (no bare NaN/Infinity: non-finite
floats are encoded as the strings "NaN", "Infinity" and "-Infinity", so the
Rust side can tell them apart from null):

    {
      "sdk_version": "0.11.0",
      "experiment": <experiment.json as json.load reads it>,
      "storage": {            # ml_dash.LocalStorage: read-only, no locks
        "params": {...flat...}, "params_nested": {...}, "params_doc": <parameters.json>,
        "metrics": {"<name>|None": {"summary", "stats", "metadata", "points"}},
        "tracks": {"<topic>": {"summary", "metadata", "entries", "count"}},
        "logs": [<logs.jsonl lines>], "log_sequence": "<.log_sequence text>" | null
      },
      "experiment_api": {     # ml_dash.Experiment(...).run, opened AFTER the storage read
        "params": {...}, "params_nested": {...},
        "metrics": {"<name>|None": {"stats", "points"}},
        "tracks": {"<topic>": {"entries", "count"}}
      }
    }

The SDK has no reader for local logs: logs/logs.jsonl is parsed line by line.
Opening through Experiment rewrites experiment.json ("updated_at"), which is why
the storage view (and experiment.json) is read first.
"""
import json
import math
import os
import sys

os.environ["ML_DASH_NO_VERSION_CHECK"] = "1"
os.environ["ML_DASH_BUFFER_ENABLED"] = "false"  # a read-only open buffers nothing

import ml_dash  # noqa: E402
from ml_dash import Experiment, LocalStorage  # noqa: E402
from ml_dash.params import ParametersBuilder  # noqa: E402


def clean(v):
    """Non-finite floats -> "NaN" / "Infinity" / "-Infinity" (strict JSON out)."""
    if isinstance(v, float) and not math.isfinite(v):
        if math.isnan(v):
            return "NaN"
        return "Infinity" if v > 0 else "-Infinity"
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return v


def load_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def all_points(read_page):
    """read(start_index, limit) is line based; page until a short page."""
    points, start, limit = [], 0, 1000
    while True:
        page = read_page(start, limit)
        points.extend(page["data"])
        if len(page["data"]) < limit:
            return points
        start += limit


def via_storage(root, prefix, exp_dir):
    st = LocalStorage(root)
    segs = prefix.split("/")
    o, p = segs[0], segs[1]  # ignored by every local method; the prefix is the path
    params = st.read_parameters(o, p, prefix) or {}
    metrics = {}
    for m in st.list_metrics(o, p, prefix):
        folder = "None" if m["name"] is None else str(m["name"])
        metrics[folder] = {
            "summary": m,
            "stats": st.get_metric_stats(o, p, prefix, folder),
            "metadata": load_json(os.path.join(exp_dir, "metrics", folder, "metadata.json")),
            "points": all_points(
                lambda s, n: st.read_metric_data(o, p, prefix, folder, start_index=s, limit=n)
            ),
        }
    tracks = {}
    for t in st.list_tracks(o, p, prefix):
        data = st.read_track_data(o, p, prefix, t["topic"], format="json")
        folder = t["topic"].replace("/", "_")
        tracks[t["topic"]] = {
            "summary": t,
            "metadata": load_json(os.path.join(exp_dir, "tracks", folder, "metadata.json")),
            "entries": data["entries"],
            "count": data["count"],
        }
    seq_path = os.path.join(exp_dir, "logs", ".log_sequence")
    log_sequence = None
    if os.path.exists(seq_path):
        with open(seq_path) as f:
            log_sequence = f.read()
    return {
        "params": params,
        "params_nested": ParametersBuilder.unflatten_dict(params),
        "params_doc": load_json(os.path.join(exp_dir, "parameters.json")),
        "metrics": metrics,
        "tracks": tracks,
        "logs": read_jsonl(os.path.join(exp_dir, "logs", "logs.jsonl")),
        "log_sequence": log_sequence,
    }


def via_experiment(root, prefix, topics):
    with Experiment(prefix=prefix, dash_root=root).run as exp:
        metrics = {}
        for m in exp.metrics("_").list_all():  # list_all() ignores the builder's name
            folder = "None" if m["name"] is None else str(m["name"])
            mb = exp.metrics(folder)  # the unnamed stream reads as metrics("None")
            metrics[folder] = {
                "stats": mb.stats(),
                "points": all_points(lambda s, n: mb.read(start_index=s, limit=n)),
            }
        tracks = {}
        for topic in topics:
            data = exp.tracks(topic).read(format="json")
            tracks[topic] = {"entries": data["entries"], "count": data["count"]}
        return {
            "params": exp.params.get(),
            "params_nested": exp.params.get(flatten=False),
            "metrics": metrics,
            "tracks": tracks,
        }


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    root, prefix = sys.argv[1], sys.argv[2]
    exp_dir = os.path.join(root, prefix.lstrip("/"))
    experiment = load_json(os.path.join(exp_dir, "experiment.json"))
    storage = via_storage(root, prefix, exp_dir)
    api = via_experiment(root, prefix, list(storage["tracks"]))
    out = {
        "sdk_version": ml_dash.__version__,
        "experiment": experiment,
        "storage": storage,
        "experiment_api": api,
    }
    print(json.dumps(clean(out), allow_nan=False))


if __name__ == "__main__":
    main()
