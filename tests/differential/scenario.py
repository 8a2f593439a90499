"""One realistic ML-Dash SDK 0.11 run, for the differential test.

    python scenario.py MODULE DASH_ROOT [DASH_URL]

MODULE is imported in place of `ml_dash` (`ml_dash`, or another module with
the same API); with DASH_URL the run is hybrid (the server and DASH_ROOT),
without it local. `examples/sdk_scenario.rs` makes the same calls through the
Rust crate; `compare.py` compares what two runs sent and stored. Explicit
timestamps are below 1e9 so that the comparison can tell them from the clock's.
Run it with ML_DASH_FLUSH_INTERVAL=3600: only `flush()` and the close send.
"""

import importlib
import os
import sys
import tempfile

PREFIX = "alice/vision/sweeps/lr-3e-4/run-7"


def main():
    ml_dash = importlib.import_module(sys.argv[1])
    where = {"dash_root": sys.argv[2]}
    if len(sys.argv) > 3:
        where["dash_url"] = sys.argv[3]
    exp = ml_dash.Experiment(
        prefix=PREFIX,
        readme="ResNet-18 on CIFAR-10, lr sweep",
        tags=["resnet", "sweep"],
        metadata={"gpu": "A100", "workers": 8},
        **where,
    )
    with exp.run as e:
        e.params.set(
            model={"arch": "resnet18", "lr": 3e-4, "widths": [64, 128]},
            optimizer="adamw",
            flags={"amp": True, "resume": None},
            seed=7,
        )
        e.params.set(model={"lr": 1e-4}, epochs=2)

        train = e.metrics("train")
        train.log(loss=0.9, step=0)
        train.log(loss=0.7, step=1, _ts=1000.25)
        train.log(loss=0.6, step=2, _ts=-1)
        evals = e.metrics(
            "eval", description="held-out split", tags=["eval"], metadata={"split": "val"}
        )
        evals.log(acc=0.5, epoch=0, _ts=1001.5)
        e.metrics.log(epoch=1, train={"loss": 0.5}, eval={"acc": 0.61})
        e.metrics.log(epoch=2, _ts=1002.0, train={"loss": 0.45})

        e.log("epoch 1 done", level="info", metadata={"epoch": 1, "lr": [3e-4, 1e-4]})
        e.logs.info("checkpoint saved: époque 1 ✓")
        e.logs.warn("GPU memory high", used_gb=10.5)
        e.logs.error("NaN gradient", step=17)
        e.log("plain message")
        e.logs.debug("batch shapes", shapes=[[32, 3], [32]])

        # The loop: more points than a metric batch, more logs than a log
        # batch, more rows than a track batch.
        for step in range(3, 1203):
            train.log(loss=1.0 / step, step=step)
            if step % 8 == 0:
                e.logs.info("step %d" % step, step=step)
            if step % 10 == 0:
                e.tracks("imu").append(acc=[step, -step], _ts=10.0 + step)
        pose = e.tracks("robot/pose")
        pose.append(q=[0.1, 0.2], frame=0, _ts=1.0)
        pose.append(q=[0.3, 0.4], cam={"pos": [1, 2], "fov": 60}, frame=1, _ts=2.0)
        pose.append(speed=0.5, _ts=-1)  # the same row: merged
        evals.log(acc=0.58, epoch=1, _ts=-1)  # the track row's time
        pose.append(q=[0.5, 0.6], frame=2)
        e.flush()

        cfg = e.files("configs")
        cfg.save_json({"lr": 3e-4, "widths": [64, 128]}, to="config.json")
        cfg.save_text("lr sweep, run 7: α = 3e-4\n", to="notes.txt")
        e.files("blobs").save_blob(bytes(range(256)) * 4, to="weights.bin")
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "model.pt")
            with open(src, "wb") as f:
                f.write(b"not really a checkpoint\n" * 100)
            e.files("models").upload(
                src, to="best.pt", description="best so far", tags=["ckpt"], metadata={"epoch": 2}
            )
            e.flush()
        train.log(loss=0.4, step=1203, phase="final", finite=True, note=None)
    print("ok")


if __name__ == "__main__":
    main()
