#!/usr/bin/env python3
"""Read the metric stream "train" and the logs of one experiment of a local
store through the ml-dash 0.11.0 SDK (LocalStorage), whole, and print a
summary as one JSON line: how many points, whether their indices are
0..n-1 exactly once, whether each writer's points ("w", "i") are in order,
points per writer, the SDK's stats, and the log sequence numbers' check.

Usage: sdk_read.py DASH_ROOT PREFIX
"""
import json
import os
import sys

os.environ["ML_DASH_NO_VERSION_CHECK"] = "1"

from ml_dash import LocalStorage  # noqa: E402


def main():
    root, prefix = sys.argv[1], sys.argv[2]
    st = LocalStorage(root)
    o, p = prefix.split("/")[:2]
    page = st.read_metric_data(o, p, prefix, "train", start_index=0, limit=10**12)
    pts = page["data"]
    per, in_order = {}, True
    for x in pts:
        w, i = x["data"]["w"], x["data"]["i"]
        if per.get(w, 0) != i:
            in_order = False
        per[w] = i + 1
    n = len(pts)
    indices = sorted(x["index"] for x in pts) == list(range(n))
    with open(os.path.join(root, prefix, "logs", "logs.jsonl")) as f:
        seqs = sorted(json.loads(line)["sequenceNumber"] for line in f if line.strip())
    print(json.dumps({
        "points": n,
        "indices": indices,
        "in_order": in_order,
        "per_writer": {str(k): v for k, v in sorted(per.items())},
        "stats": st.get_metric_stats(o, p, prefix, "train"),
        "logs": len(seqs),
        "log_sequence": seqs == list(range(len(seqs))),
    }))


if __name__ == "__main__":
    main()
