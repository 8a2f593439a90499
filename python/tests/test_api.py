"""Every call of the SDK's API, and every bad input with its exception."""

import json
import math
import os
from pathlib import Path

import pytest

import ml_dash_rs as ml_dash
from ml_dash_rs import BufferConfig, Experiment
from ml_dash_rs.buffer import BufferConfig as BufferConfigFromModule

from conftest import doc, logs, metric, quiet


def test_module_layout_mirrors_the_sdk():
    from ml_dash_rs import Experiment as E  # noqa: F401
    from ml_dash_rs.experiment import Experiment as E2
    from ml_dash_rs.log import LogLevel  # noqa: F401
    from ml_dash_rs.params import ParametersBuilder  # noqa: F401

    assert BufferConfigFromModule is BufferConfig and E2 is Experiment
    for name in ("MlDashError", "ConfigurationError", "StorageError", "NetworkError",
                 "AuthenticationError", "ExperimentError", "OperationMode", "ml_dash_experiment"):
        assert hasattr(ml_dash, name), name


def test_metrics_every_form(workdir):
    with Experiment("a/p/m", buffer_config=quiet()).run as exp:
        train = exp.metrics("train")
        assert exp.metrics("train") is train  # cached, as the SDK's
        assert train.log(loss=0.5, step=0) is train  # chaining
        train.log(loss=0.25, step=1, _ts=1_700_000_000.5)
        train.log(loss=0.125, step=2, _ts=-1)
        exp.metrics("eval", description="held out", tags=["v"], metadata={"unit": "nats"}).log(acc=0.9)
        exp.metrics.log(epoch=1)
        exp.metrics.log(epoch=2, train={"loss": 0.1}, eval={"acc": 0.95}, _ts=5.0)
        exp.metrics.log(epoch=3).flush()
    pts = metric(".dash", "a/p/m", "train")
    assert [p["index"] for p in pts] == [0, 1, 2, 3]
    assert [p["data"]["loss"] for p in pts] == [0.5, 0.25, 0.125, 0.1]
    assert pts[1]["data"]["_ts"] == 1_700_000_000.5 and pts[2]["data"]["_ts"] == 1_700_000_000.5
    assert pts[3]["data"] == {"epoch": 2, "loss": 0.1, "_ts": 5.0}
    ev = metric(".dash", "a/p/m", "eval")
    assert [p["data"].get("acc") for p in ev] == [0.9, 0.95]
    meta = doc(".dash", "a/p/m", "metrics/eval/metadata.json")
    assert (meta["description"], meta["tags"], meta["metadata"]) == ("held out", ["v"], {"unit": "nats"})
    unnamed = metric(".dash", "a/p/m", "None")
    assert [p["data"]["epoch"] for p in unnamed] == [1, 2, 3]


class Tensor0d:
    """Stands in for a 0-d torch tensor: only .item()."""

    def __init__(self, v):
        self.v = v

    def item(self):
        return self.v


def test_values_python_numpy_and_item(workdir):
    np = pytest.importorskip("numpy")
    with Experiment("a/p/v", buffer_config=quiet()).run as exp:
        exp.metrics("v").log(
            f=1.5, i=-3, big=2**63 + 1, b=True, s="text", n=None,
            nan=float("nan"), inf=float("inf"),
            f32=np.float32(0.25), i64=np.int64(7), b_=np.bool_(False), a0=np.array(2.5),
            t=Tensor0d(0.75), arr=np.array([1, 2, 3]), lst=[1, "a", None], obj={"k": [1.5, {"d": 1}]},
            tup=(1, 2),
        )
    (p,) = metric(".dash", "a/p/v", "v")
    d = p["data"]
    assert (d["f"], d["i"], d["big"], d["b"], d["s"], d["n"]) == (1.5, -3, 2**63 + 1, True, "text", None)
    assert math.isnan(d["nan"]) and d["inf"] == math.inf
    assert (d["f32"], d["i64"], d["b_"], d["a0"], d["t"]) == (0.25, 7, False, 2.5, 0.75)
    assert (d["arr"], d["lst"], d["obj"], d["tup"]) == ([1, 2, 3], [1, "a", None], {"k": [1.5, {"d": 1}]}, [1, 2])


def test_bad_values_and_names_raise_and_lose_nothing(workdir):
    with Experiment("a/p/bad", buffer_config=quiet()).run as exp:
        m = exp.metrics("m")
        m.log(ok=1)
        with pytest.raises(TypeError, match='"x".*object'):
            m.log(x=object())
        with pytest.raises(ValueError, match="does not fit in 64 bits"):
            m.log(x=2**64)
        with pytest.raises(ValueError, match="invalid name"):
            m.log(**{"": 1})
        with pytest.raises(ValueError, match="invalid name"):
            m.log(**{"k" * 300: 1})
        with pytest.raises(TypeError, match="keywords must be strings|field names must be str"):
            m.log(**{1: 2})
        with pytest.raises(TypeError, match="keyword arguments only"):
            m.log(0.5)
        with pytest.raises(ValueError, match="_ts"):
            m.log(x=1, _ts="soon")
        with pytest.raises(ValueError, match="invalid name"):
            exp.metrics("")
        with pytest.raises(ValueError):
            exp.tracks("")
        with pytest.raises(ml_dash.ConfigurationError, match="invalid log level"):
            exp.log("x", level="loud")
        with pytest.raises(ValueError, match="nests"):
            deep = [1]
            for _ in range(100):
                deep = [deep]
            m.log(deep=deep)
        m.log(ok=2)
    assert [p["data"]["ok"] for p in metric(".dash", "a/p/bad", "m")] == [1, 2]


def test_ts_minus_one_without_a_previous_timestamp(workdir):
    with Experiment("a/p/ts", buffer_config=quiet()).run as exp:
        with pytest.raises(ml_dash.ConfigurationError, match="_ts = -1"):
            exp.metrics("fresh").log(x=1, _ts=-1)
        exp.metrics("fresh").log(x=2, _ts=7.0)
        exp.metrics("fresh").log(x=3, _ts=-1)
    assert [(p["data"]["x"], p["data"]["_ts"]) for p in metric(".dash", "a/p/ts", "fresh")] == [(2, 7.0), (3, 7.0)]


def test_not_open_and_closed(workdir):
    exp = Experiment("a/p/closed", buffer_config=quiet())
    for touch in (lambda: exp.metrics("m"), lambda: exp.metrics.log(x=1), lambda: exp.log("x"),
                  lambda: exp.params, lambda: exp.logs, lambda: exp.files, lambda: exp.tracks("t")):
        with pytest.raises(RuntimeError, match="not started"):
            touch()
    with exp.run:
        m = exp.metrics("m")
        m.log(x=1)
    with pytest.raises(RuntimeError, match="not open"):
        m.log(x=2)
    with pytest.raises(RuntimeError):
        exp.metrics("m")
    assert doc(".dash", "a/p/closed", "experiment.json")["status"] == "COMPLETED"


def test_bad_prefix_and_settings(workdir):
    with pytest.raises(ValueError, match="prefix"):
        Experiment("no-slash").run.start()
    with pytest.raises(ValueError, match="prefix"):
        Experiment()
    with pytest.raises(ml_dash.ConfigurationError):
        Experiment("a/p/x", buffer_config=BufferConfig(flush_interval=0)).run.start()
    with pytest.raises(ValueError, match="backpressure"):
        Experiment("a/p/x", buffer_config=BufferConfig(backpressure="sometimes")).run.start()
    with pytest.raises(ValueError, match="flush_interval"):
        Experiment("a/p/x", buffer_config=BufferConfig(flush_interval=-1)).run.start()
    with pytest.raises(TypeError):
        Experiment("a/p/x", buffer_config={"quiet": True})


def test_buffer_config_fields_and_env(monkeypatch):
    c = BufferConfig()
    assert (c.flush_interval, c.log_batch_size, c.metric_batch_size, c.track_batch_size,
            c.file_upload_workers, c.buffer_enabled, c.max_retries, c.retry_base_delay,
            c.retry_max_delay) == (5.0, 100, 1000, 100, 4, True, 3, 1.0, 30.0)
    assert BufferConfig.from_env() == c
    monkeypatch.setenv("ML_DASH_FLUSH_INTERVAL", "0.5")
    monkeypatch.setenv("ML_DASH_METRIC_BATCH_SIZE", "10")
    monkeypatch.setenv("ML_DASH_BACKPRESSURE", "drop")
    e = BufferConfig.from_env()
    assert (e.flush_interval, e.metric_batch_size, e.backpressure) == (0.5, 10, "drop")
    monkeypatch.setenv("ML_DASH_METRIC_BATCH_SIZE", "lots")
    with pytest.raises(ml_dash.ConfigurationError, match="ML_DASH_METRIC_BATCH_SIZE"):
        BufferConfig.from_env()


def test_logs_every_form(workdir):
    with Experiment("a/p/logs", buffer_config=quiet()).run as exp:
        exp.log("plain")
        exp.log("warned", level="WARN", metadata={"gpu": 0}, extra=1)
        exp.logs.info("i", epoch=1)
        exp.logs.warn("w")
        exp.logs.error("e", code=500)
        exp.logs.debug("d")
        exp.logs.fatal("f")
        with pytest.warns(DeprecationWarning, match="logs.info"):
            exp.log(metadata={"who": "fluent"}).info("fluent")
    got = [(l["sequenceNumber"], l["level"], l["message"], l.get("metadata")) for l in logs(".dash", "a/p/logs")]
    assert got == [
        (0, "info", "plain", None), (1, "warn", "warned", {"gpu": 0, "extra": 1}),
        (2, "info", "i", {"epoch": 1}), (3, "warn", "w", None), (4, "error", "e", {"code": 500}),
        (5, "debug", "d", None), (6, "fatal", "f", None), (7, "info", "fluent", {"who": "fluent"}),
    ]


def test_tracks(workdir):
    with Experiment("a/p/tr", buffer_config=quiet()).run as exp:
        pose = exp.tracks("robot/pose")
        assert exp.tracks("robot/pose") is pose
        pose.append(q=[0.0, 0.5], cam={"pos": [1, 2], "on": True}, _ts=1.0)
        pose.append(q=[1.0, 1.5], _ts=2.0)
    rows = [json.loads(l) for l in open(".dash/a/p/tr/tracks/robot_pose/data.jsonl")]
    assert rows == [{"timestamp": 1.0, "q": [0.0, 0.5], "cam.pos": [1, 2], "cam.on": True},
                    {"timestamp": 2.0, "q": [1.0, 1.5]}]


def test_params_versions_and_get(workdir):
    class Args:
        lr = 0.1
        depth = 3

        def method(self):
            pass

    with Experiment("a/p/params", buffer_config=quiet()).run as exp:
        exp.params.set(model={"lr": 1e-3, "layers": {"hidden": 128}}, optimizer="adam")
        exp.params.set(epochs=3)
        exp.params.log(args=Args)
        assert exp.params.get() == {"model.lr": 1e-3, "model.layers.hidden": 128, "optimizer": "adam",
                                    "epochs": 3, "args.lr": 0.1, "args.depth": 3}
        assert exp.params.get(flatten=False)["model"] == {"lr": 1e-3, "layers": {"hidden": 128}}
    d = doc(".dash", "a/p/params", "parameters.json")
    assert d["version"] == 3


def test_files_every_call(workdir):
    np = pytest.importorskip("numpy")
    Path("weights.bin").write_bytes(b"\x00\x01" * 1000)
    with Experiment("a/p/files", buffer_config=quiet()).run as exp:
        j = exp.files("configs").save_json({"lr": 0.1}, to="config.json")
        assert (j["path"], j["filename"], j["contentType"]) == ("/configs", "config.json", "application/json")
        t = exp.files("notes").save_text("hello", to="a.txt")
        assert t["sizeBytes"] == 5
        b = exp.files.save_blob(b"\x00\xff", to="raw.bin")
        assert b["path"] == "/" and b["sizeBytes"] == 2
        img = exp.files("images").save_image(np.zeros((4, 6, 3), dtype=np.uint8), to="black.png")
        assert img["contentType"] == "image/png"
        gray = exp.files("images").save_image(np.full((2, 2), 7, dtype=np.uint8), to="gray.png")
        assert gray["sizeBytes"] > 0
        up = exp.files("models").upload("weights.bin", to="best.pt", description="best", tags=["x"],
                                         metadata={"epoch": 3})
        assert (up["filename"], up["description"], up["tags"], up["metadata"]) == ("best.pt", "best", ["x"], {"epoch": 3})
        # An upload is hashed by an upload thread as it is copied: its
        # checksum is known after a flush (a deliberate difference).
        assert up["checksum"] is None and up["sizeBytes"] == 2000
        exp.flush()
        (listed,) = exp.files("models").list()
        assert listed["checksum"] == __import__("hashlib").sha256(b"\x00\x01" * 1000).hexdigest()
        assert exp.files("configs/config.json").exists()
        assert not exp.files("configs/nope.json").exists()
        assert json.loads(exp.files("configs/config.json").read_text()) == {"lr": 0.1}
        assert sorted(f["filename"] for f in exp.files("images").list()) == ["black.png", "gray.png"]
        assert [f["filename"] for f in exp.files("images").list("b*.png")] == ["black.png"]
        out = exp.files("models/best.pt").download(to="copy.pt")
        assert Path(out).read_bytes() == b"\x00\x01" * 1000
        got = exp.files("images").download("*.png", to="imgs")
        assert sorted(os.path.basename(p) for p in got) == ["black.png", "gray.png"]
        gone = exp.files("notes/a.txt").delete()
        assert gone["deletedAt"]
        assert not exp.files("notes/a.txt").exists()
        with pytest.raises(FileNotFoundError):
            exp.files("notes/zzz.txt").read_text()
        with pytest.raises(ValueError, match="uint8"):
            exp.files("images").save_image(np.zeros((2, 2), dtype=np.float32), to="f.png")
        with pytest.raises(ValueError, match="H×W"):
            exp.files("images").save_image(np.zeros((2, 2, 2), dtype=np.uint8), to="f.png")
        with pytest.raises(TypeError):
            exp.files("images").save_image([[0]], to="f.png")
        with pytest.raises(ValueError):
            exp.files("models").upload("does-not-exist.bin")
    assert Path("weights.bin").read_bytes() == b"\x00\x01" * 1000  # never touched


def test_pil_image_if_available(workdir):
    Image = pytest.importorskip("PIL.Image")
    with Experiment("a/p/pil", buffer_config=quiet()).run as exp:
        info = exp.files("i").save_image(Image.new("RGB", (3, 2), (255, 0, 0)), to="red.png")
        assert info["contentType"] == "image/png"


def test_lifecycle_forms(workdir):
    exp = Experiment("a/p/life1", buffer_config=quiet())
    assert exp.run.start() is exp
    exp.run.fail()
    assert doc(".dash", "a/p/life1", "experiment.json")["status"] == "FAILED"
    exp = Experiment("a/p/life2", buffer_config=quiet())
    exp.run.start()
    exp.run.cancel()
    assert doc(".dash", "a/p/life2", "experiment.json")["status"] == "CANCELLED"

    exp = Experiment("a/p/life3", buffer_config=quiet())

    @exp.run
    def train(e, steps):
        e.metrics("m").log(steps=steps)
        return "done"

    assert train(5) == "done"
    assert doc(".dash", "a/p/life3", "experiment.json")["status"] == "COMPLETED"

    @ml_dash.ml_dash_experiment(prefix="a/p/life4", buffer_config=quiet())
    def train2(experiment=None):
        experiment.log("in")

    train2()
    assert doc(".dash", "a/p/life4", "experiment.json")["status"] == "COMPLETED"
    with pytest.raises(ZeroDivisionError):
        with Experiment("a/p/life5", buffer_config=quiet()).run as e:
            e.log("before")
            1 / 0
    assert doc(".dash", "a/p/life5", "experiment.json")["status"] == "FAILED"
    assert [l["message"] for l in logs(".dash", "a/p/life5")] == ["before"]


def test_keyboard_interrupt_inside_with_records_failed(workdir):
    with pytest.raises(KeyboardInterrupt):
        with Experiment("a/p/kbd", buffer_config=quiet()).run as e:
            for i in range(1000):
                e.metrics("m").log(i=i)
            raise KeyboardInterrupt
    assert doc(".dash", "a/p/kbd", "experiment.json")["status"] == "FAILED"
    assert len(metric(".dash", "a/p/kbd", "m")) == 1000


def test_flush_makes_data_visible(workdir):
    with Experiment("a/p/flush", buffer_config=quiet()).run as exp:
        m = exp.metrics("m")
        for i in range(10):
            m.log(i=i)
        exp.flush()
        assert len(metric(".dash", "a/p/flush", "m")) == 10


def test_dash_root_and_modes(workdir):
    e = Experiment("a/p/modes", dash_root="elsewhere")
    assert e.mode is ml_dash.OperationMode.LOCAL
    with e.run:
        e.log("x")
    assert Path("elsewhere/a/p/modes/experiment.json").exists()
    assert Experiment("a/p/h", dash_url="http://127.0.0.1:9").mode is ml_dash.OperationMode.HYBRID
    assert Experiment("a/p/r", dash_url="http://127.0.0.1:9", dash_root=None).mode is ml_dash.OperationMode.REMOTE
    with pytest.raises(ValueError, match="dash_url"):
        Experiment("a/p/none", dash_root=None)


def test_remote_refuses_non_finite_as_the_sdk(workdir, monkeypatch):
    # No server listens on port 9: the run's set-up stays spooled and close
    # gives up at once (ML_DASH_CLOSE_TIMEOUT=0); the points are refused first.
    monkeypatch.setenv("ML_DASH_CLOSE_TIMEOUT", "0")
    cfg = BufferConfig(quiet=True, flush_interval=3600.0)
    exp = Experiment("a/p/nan", dash_url="http://127.0.0.1:9", buffer_config=cfg)
    with exp.run:
        with pytest.raises(ValueError, match="non-finite"):
            exp.metrics("m").log(loss=float("nan"))
        with pytest.raises(ValueError, match="non-finite"):
            exp.metrics("m").log(loss=[1.0, float("inf")])
        exp.run.cancel()
