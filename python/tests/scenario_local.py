"""One training-script scenario, run under ``ml_dash`` (the SDK) or ``ml_dash_rs``.

Usage: scenario_local.py MODULE DASH_ROOT

Every call the SDK's users write, with explicit ``_ts`` where the SDK allows
one, so two runs can be compared after normalising ids and wall-clock times.
"""

import importlib
import os
import sys

os.environ["ML_DASH_NO_VERSION_CHECK"] = "1"

module, root = sys.argv[1], sys.argv[2]
ml_dash = importlib.import_module(module)

with open("weights.bin", "wb") as f:
    f.write(bytes(range(256)) * 64)

with ml_dash.Experiment("alice/parity/run-1", dash_root=root, readme="parity run", tags=["a", "b"]).run as exp:
    exp.params.set(model={"lr": 0.001, "layers": {"hidden": 128}}, optimizer="adam", seed=42)
    exp.params.set(epochs=3, tags=["x", "y"])
    exp.log("started", level="info", metadata={"epoch": 0})
    exp.logs.warn("memory low", free_gb=1.5)
    exp.logs.error("oops", code=500)
    train = exp.metrics("train")
    for step in range(50):
        train.log(loss=1.0 / (step + 1), acc=step / 50, step=step, _ts=1000.0 + step)
    train.log(loss=0.01, note="same time", _ts=-1)
    exp.metrics("eval", description="held out", tags=["v"], metadata={"unit": "nats"}).log(
        loss=0.5, _ts=2000.0
    )
    exp.metrics.log(epoch=1, train={"loss": 0.02}, eval={"loss": 0.4}, _ts=3000.0)
    exp.metrics.log(epoch=2, _ts=3001.0)
    exp.metrics("nested").log(opt={"lr": 1e-3, "betas": [0.9, 0.999]}, q=[1, 2, 3], flag=True, name="x", _ts=4000.0)
    pose = exp.tracks("robot/pose")
    pose.append(q=[0.0, 0.5], cam={"pos": [1, 2]}, _ts=1.0)
    pose.append(q=[1.0, 1.5], frame=1, _ts=2.0)
    exp.files("configs").save_json({"lr": 0.001, "layers": [1, 2]}, to="config.json")
    exp.files("notes").save_text("hello parity\n", to="readme.txt")
    exp.files("blobs").save_blob(b"\x00\x01\x02\xff", to="raw.bin")
    exp.files("models").upload("weights.bin", to="best.pt", description="best", tags=["m"], metadata={"epoch": 3})
    exp.flush()
print("ok")
