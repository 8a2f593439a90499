"""The ML-Dash quickstart in Python, on the Rust engine: a short training run into ./.dash.

    pip install ./python
    python examples/quickstart.py

An ml_dash 0.11 script runs unchanged with ``import ml_dash_rs as ml_dash``.
"""

import ml_dash_rs as ml_dash

with ml_dash.Experiment(
    "alice/mnist/quickstart-py",
    readme="Quickstart: a tiny training loop",
    tags=["quickstart", "python"],
).run as exp:
    exp.params.set(model={"lr": 1e-3, "layers": [64, 64]}, optimizer="adam", epochs=3)
    exp.log("Training started")
    train = exp.metrics("train")
    for epoch in range(3):
        for i in range(100):
            step = epoch * 100 + i  # a global step, counting on across epochs
            train.log(loss=1.0 / (1.0 + step), epoch=epoch, step=step)
        exp.metrics("eval").log(accuracy=0.8 + 0.05 * epoch, epoch=epoch)
        exp.tracks("robot/pose").append(q=[0.1, 0.2, 0.3], v={"x": epoch}, _ts=float(epoch))
        exp.logs.info("epoch done", epoch=epoch)
    exp.files("configs").save_json({"lr": 1e-3, "layers": [64, 64]}, to="config.json")

print("stored the run in .dash/alice/mnist/quickstart-py")
