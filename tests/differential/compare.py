#!/usr/bin/env python3
"""Compares two runs of `scenario.py`: the requests each sent and the store each wrote.

    python3 compare.py SDK_REQUESTS SDK_STORE OTHER_REQUESTS OTHER_STORE

The first pair is the reference (the Python SDK), the second the client under
test. A requests file is the JSON document `examples/record_server.rs` writes
(`-` for a local run: no server); a store is the run's DASH_ROOT. Standard
library only. Exit 0 when the two agree, 1 with every difference printed.

Both sides are first normalised: ids (server snowflakes, file ids, ObjectIds)
become `<id:int>` / `<id:str>` (the JSON type kept), wall-clock times
(a number from 1e9 on: the scenario's own timestamps are smaller) `<clock>`,
ISO-8601 times `<iso:N>` with N fraction digits and the zone (`<iso:6Z>`), the
server's host:port `<host>`. Then each entry of DELIBERATE is applied: a
difference the Rust crate makes on purpose, with its reason (README.md,
"Differences the differential test allows", lists the same). What differs
after that is a difference to fix.

Requests are compared per stream, in order (the order a server sees within a
stream is meaningful, across streams it is not): each experiment data
endpoint, the status updates, the experiment's creation; file uploads and
the folder nodes they make are compared as sets (the SDK uploads from a
thread pool). Headers compared: Authorization, the media type of
Content-Type, Content-Encoding; the HTTP client's own (User-Agent, Accept,
Connection, ...) are not. Stores are compared file by file (paths with ids
normalised): JSON and JSON-lines files parsed, other files by size and SHA-256;
the entries of `files/.files_metadata.json` by path and name (the SDK writes
them as its uploads finish).
"""

import hashlib
import json
import mimetypes
import os
import re
import sys

# ---------------------------------------------------------------------------
# Normalising ids, times and addresses
# ---------------------------------------------------------------------------

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.(\d+))?(Z|[+-]\d\d:\d\d)?$")
DIGITS = re.compile(r"^\d{15,20}$")
OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
HOST = re.compile(r"(127\.0\.0\.1|localhost):\d+")


def norm(v):
    """`v` with ids, clock times, ISO times and the server address replaced."""
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int) and v >= 10**15:
        return "<id:int>"
    if isinstance(v, (int, float)) and v >= 1e9:
        return "<clock>"
    if isinstance(v, str):
        if DIGITS.match(v) or OBJECT_ID.match(v):
            return "<id:str>"
        m = ISO.match(v)
        if m:
            # Python's isoformat() leaves out a zero fraction: count it as 6 digits.
            return "<iso:%d%s>" % (len(m.group(2) or "123456"), m.group(3) or "")
        return HOST.sub("<host>", v)
    return v


def norm_path(path):
    return "/".join("<id>" if DIGITS.match(s) or OBJECT_ID.match(s) else s for s in path.split("/"))


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------


def load_requests(path):
    if path == "-":
        return []
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    out = []
    for r in doc["requests"]:
        h = r.get("headers") or {}
        headers = {
            "authorization": h.get("authorization"),
            "content-type": (h.get("content-type") or "").split(";")[0].strip() or None,
            "content-encoding": h.get("content-encoding"),
            "idempotency-key": "<key>" if "idempotency-key" in h else None,
        }
        body = r.get("body")
        if isinstance(body, dict) and "multipart" in body:
            # Field order is the client's; a part is known by its name.
            body = {"multipart": {p["name"]: strip_part(p) for p in body["multipart"]}}
        out.append(
            {
                "method": r["method"],
                "path": norm_path(r["path"]),
                "query": norm(r.get("query")),
                "status": r.get("status"),
                "headers": {k: v for k, v in headers.items() if v is not None},
                "body": norm(body),
            }
        )
    return out


def strip_part(p):
    if p.get("filename") is None:
        # A form field: its text is enough; JSON text (metadata) compared parsed.
        value = p.get("value")
        if isinstance(value, str) and value[:1] in ("{", "["):
            try:
                value = {"json": json.loads(value)}
            except ValueError:
                pass
        return {"value": value}
    return {k: p.get(k) for k in ("filename", "contentType", "size", "sha256")}


def stream(r):
    """The stream a request belongs to, and whether its order is meaningful."""
    body = r["body"] if isinstance(r["body"], dict) else {}
    if "multipart" in body:
        return "file uploads", False
    if r["path"].endswith("/nodes") and body.get("type") == "FOLDER" and "experimentId" in body:
        return "file folder nodes", False
    if r["path"].endswith("/nodes") or r["path"] == "/graphql":
        return "experiment creation", True
    return "%s %s" % (r["method"], r["path"]), True


def by_stream(reqs):
    groups = {}
    for r in reqs:
        name, ordered = stream(r)
        groups.setdefault(name, (ordered, []))[1].append(r)
    return {
        name: rs if ordered else sorted(rs, key=lambda r: json.dumps(r, sort_keys=True))
        for name, (ordered, rs) in sorted(groups.items())
    }


# ---------------------------------------------------------------------------
# Stores
# ---------------------------------------------------------------------------


def load_store(root):
    """{relative path with ids normalised: parsed content} for every file under root."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            rel = norm_path(os.path.relpath(full, root).replace(os.sep, "/"))
            with open(full, "rb") as f:
                data = f.read()
            content = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            try:
                if name.endswith(".json"):
                    content = norm(json.loads(data))
                elif name.endswith(".jsonl"):
                    content = [norm(json.loads(line)) for line in data.splitlines() if line.strip()]
            except ValueError as e:
                content = {"unparsable": str(e)}
            if name == ".files_metadata.json" and isinstance(content, dict):
                # In the order uploads finished (the SDK's own order varies).
                files = content.get("files") or []
                content["files"] = sorted(files, key=lambda f: (f.get("path"), f.get("filename")))
            while rel in out:
                rel += "+"
            out[rel] = content
    return out


def files_metadata(store):
    for path, doc in store.items():
        if path.endswith("files/.files_metadata.json") and isinstance(doc, dict):
            yield from doc.get("files") or []


# ---------------------------------------------------------------------------
# Deliberate differences: (name, reason, transform(requests, store)). A
# transform edits a side's normalised requests and store in place so that the
# difference disappears; it is applied to both sides (it changes nothing on the
# side without the difference, so a client compared with itself passes).
# README.md lists the same entries.
# ---------------------------------------------------------------------------


ITEMS = ("dataPoints", "logs", "entries")  # the items of a data request


def one_request_per_stream(reqs, store):
    # The requests of a stream whose other fields are the same become one,
    # with their items in order: how a stream is cut into requests differs.
    def rest(r, key):
        return dict(r, body={k: v for k, v in r["body"].items() if k != key})

    out, last = [], {}
    for r in reqs:
        key = next((k for k in ITEMS if isinstance(r["body"], dict) and k in r["body"]), None)
        if key:
            name = stream(r)[0]
            prev = last.get(name)
            if prev is not None and rest(out[prev], key) == rest(r, key):
                out[prev]["body"][key] = out[prev]["body"][key] + r["body"][key]
                continue
            last[name] = len(out)
        out.append(r)
    reqs[:] = out


def drop_graphql_lookups(reqs, store):
    reqs[:] = [r for r in reqs if not (r["path"] == "/graphql" and "GetProject(" not in r["body"]["query"])]


def drop_idempotency_keys(reqs, store):
    for r in reqs:
        r["headers"].pop("idempotency-key", None)


def one_folder_node_per_folder(reqs, store):
    seen, kept = [], []
    for r in reqs:
        if stream(r)[0] == "file folder nodes":
            if r in seen:
                continue
            seen.append(r)
        kept.append(r)
    reqs[:] = kept


def run_status_in_experiment_json(reqs, store):
    for path, doc in store.items():
        if path.endswith("/experiment.json") and isinstance(doc, dict):
            for k in ("status", "started_at", "ended_at", "pid", "host", "heartbeat_at"):
                doc.pop(k, None)


def no_block_summaries(reqs, store):
    for path in [p for p in store if p.endswith("/.data.summary")]:
        del store[path]


def builtin_content_types(reqs, store):
    # A type for a name that only the machine's mime.types knows becomes the
    # one Python's built-in table gives (application/octet-stream when none),
    # the type a fixed table gives on every machine.
    builtin = mimetypes.MimeTypes(filenames=())

    def fixed(name, ct):
        machine = mimetypes.guess_type(name)[0]
        own = builtin.guess_type(name)[0] or "application/octet-stream"
        return own if ct == machine and machine != own else ct

    for f in files_metadata(store):
        f["contentType"] = fixed(f.get("filename", ""), f.get("contentType"))
    for r in reqs:
        part = r["body"].get("multipart", {}).get("file") if isinstance(r["body"], dict) else None
        if part:
            part["contentType"] = fixed(part["filename"], part["contentType"])


DELIBERATE = [
    (
        "requests per stream",
        "a request carries what the collector gathered, up to 1000 items or 1 MB (logs "
        "too, which the SDK sends log_batch_size = 100 at a time): the items of a stream and "
        "their order are the same, not where the requests cut them",
        one_request_per_stream,
    ),
    (
        "no GraphQL look-ups before file uploads",
        "the ids the SDK asks for before each upload (project, experiment path) come from the "
        "experiment's creation; only the project look-up at creation is sent",
        drop_graphql_lookups,
    ),
    (
        "Idempotency-Key on every data request",
        "a batch retried after a timeout or a restart (from the spool) is applied once",
        drop_idempotency_keys,
    ),
    (
        "one folder node per file folder",
        "the SDK asks for a file's folder node once per file (the server answers the same node); "
        "the crate asks once per folder",
        one_folder_node_per_folder,
    ),
    (
        "status, started_at, ended_at, pid, host, heartbeat_at in experiment.json",
        "the local store records the run's status and times, and the writer's liveness marker "
        "that `ml-dash list` reads (README, improvements over the Python store)",
        run_status_in_experiment_json,
    ),
    (
        "block summaries beside metric data",
        "the engine keeps `.data.summary` beside a stream's data.jsonl as it writes it "
        "(a cache of per-block extremes that `ml-dash plot` and `serve` read; the SDK "
        "never reads it)",
        no_block_summaries,
    ),
    (
        "content types from a fixed table",
        "Python's mimetypes also reads the machine's /etc/mime.types (`.pt` can become "
        "application/vnd.snesdev-page-table); the crate's table is the same on every machine",
        builtin_content_types,
    ),
    (
        "compact JSON in the store",
        "the crate writes `{\"a\":1}`, the SDK `{\"a\": 1}`; both parse the same (stores are "
        "compared parsed)",
        None,
    ),
    (
        "one clock reading per metrics.log fan-out",
        "log_groups takes the time once for all its points, the SDK per stream (clock times "
        "are compared as <clock>)",
        None,
    ),
]


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------


def diff(a, b, where, out):
    """Appends one line per difference between `a` (SDK) and `b` (other) to `out`."""
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b) and set(a) == set(b):
            out.append("%s: key order: sdk %s, other %s" % (where, list(a), list(b)))
        for k in a:
            if k not in b:
                out.append("%s.%s: only in sdk: %s" % (where, k, short(a[k])))
            else:
                diff(a[k], b[k], "%s.%s" % (where, k), out)
        for k in b:
            if k not in a:
                out.append("%s.%s: only in other: %s" % (where, k, short(b[k])))
    elif isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, "%s[%d]" % (where, i), out)
        if len(a) != len(b):
            out.append("%s: %d items in sdk, %d in other; the extra: %s" % (
                where, len(a), len(b), short(a[len(b):] or b[len(a):])))
    elif a != b or type(a) is not type(b):
        out.append("%s: sdk %s, other %s" % (where, short(a), short(b)))


def short(v):
    s = json.dumps(v, sort_keys=False)
    return s if len(s) <= 300 else s[:300] + "..."


def compare(sdk_req, sdk_store, other_req, other_store):
    """The list of differences left after the deliberate ones."""
    sides = [
        (load_requests(sdk_req), load_store(sdk_store)),
        (load_requests(other_req), load_store(other_store)),
    ]
    for _, _, transform in DELIBERATE:
        if transform:
            for reqs, store in sides:
                transform(reqs, store)
    out = []
    (a_req, a_store), (b_req, b_store) = sides
    diff(by_stream(a_req), by_stream(b_req), "requests", out)
    diff(dict(sorted(a_store.items())), dict(sorted(b_store.items())), "store", out)
    return out


def main(argv):
    if len(argv) != 5:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    out = compare(*argv[1:])
    print("deliberate differences allowed:")
    for name, reason, _ in DELIBERATE:
        print("  - %s: %s" % (name, reason))
    if out:
        print("%d difference(s) (sdk = %s, other = %s):" % (len(out), argv[1], argv[3]))
        for line in out:
            print("  " + line)
        return 1
    print("the same requests and stores")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
