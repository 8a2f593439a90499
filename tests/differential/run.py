#!/usr/bin/env python3
"""Runs `scenario.py` under one Python module, as `tests/differential.rs` runs the SDK.

    python3 run.py OUT_DIR PYTHON MODULE [--url URL | --local]

PYTHON runs `scenario.py MODULE OUT_DIR/store [URL]` in a fresh working
directory and HOME, with no inherited ML_DASH_* / DREAMLAKE_* variable, the
test token in its config folder (`tokens.json`, no keyring), no version check
and a one-hour flush interval (only the scenario's flush() and close send).
Without --url it starts the loopback record server (`$RECORD_SERVER`, default
`target/debug/examples/record_server`: `cargo build --example record_server`)
and writes what it received to OUT_DIR/requests.json. Then compare two runs:
`compare.py A/requests.json A/store B/requests.json B/store`.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOKEN = "test-token"  # tests/support/mod.rs TOKEN (the server takes any)


def scenario_env(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ML_DASH_", "DREAMLAKE_"))}
    config = os.path.join(home, ".dash")
    os.makedirs(config, exist_ok=True)
    with open(os.path.join(config, "tokens.json"), "w") as f:
        json.dump({"ml-dash-token": TOKEN}, f)
    env.update(
        HOME=home,
        ML_DASH_CONFIG_DIR=config,
        ML_DASH_NO_VERSION_CHECK="1",
        ML_DASH_FLUSH_INTERVAL="3600",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONIOENCODING="utf-8",
    )
    return env


def run_scenario(out_dir, python, module, url):
    store = os.path.join(os.path.abspath(out_dir), "store")
    if os.sep in python:  # it runs in another working directory
        python = os.path.abspath(python)
    args = [python, os.path.join(HERE, "scenario.py"), module, store] + ([url] if url else [])
    with tempfile.TemporaryDirectory() as home:
        p = subprocess.run(args, cwd=home, env=scenario_env(home), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.rstrip().endswith("ok"):
        sys.stderr.write("scenario.py under %s failed (%d):\n%s%s" % (module, p.returncode, p.stdout, p.stderr))
        sys.exit(1)


def main(argv):
    if len(argv) not in (4, 5, 6):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    out_dir, python, module = argv[1:4]
    os.makedirs(out_dir, exist_ok=True)
    if argv[4:] == ["--local"]:
        run_scenario(out_dir, python, module, None)
    elif argv[4:5] == ["--url"] and len(argv) == 6:
        run_scenario(out_dir, python, module, argv[5])
    elif len(argv) == 4:
        server = os.environ.get("RECORD_SERVER") or os.path.join(REPO, "target/debug/examples/record_server")
        requests = os.path.join(out_dir, "requests.json")
        srv = subprocess.Popen([server, "--out", requests], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        line = srv.stdout.readline().split()
        try:
            if line[:1] != ["URL"]:
                sys.exit("%s printed no URL line" % server)
            run_scenario(out_dir, python, module, line[1])
        finally:
            srv.stdin.close()  # the server writes the requests and exits
            if srv.wait() != 0:
                sys.exit("%s failed" % server)
    else:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
