"""ml_dash_rs: the ML-Dash 0.11 Python API on the ml-dash Rust engine.

``import ml_dash_rs as ml_dash`` runs an SDK script unchanged: the same local
store and the same server requests, far cheaper per call, lossless
(see the README's Python section for what differs, and why).

    from ml_dash_rs import Experiment

    with Experiment("alice/mnist/run-1").run as exp:
        exp.params.set(lr=1e-3, model={"layers": 4})
        train = exp.metrics("train")
        for step in range(1000):
            train.log(loss=1 / (step + 1), step=step)
"""

from . import _core
from .buffer import BufferConfig
from .exceptions import (
    AuthenticationError,
    ConfigurationError,
    ExperimentError,
    ForkedError,
    MlDashError,
    NetworkError,
    StorageError,
)
from .experiment import Experiment, OperationMode, ml_dash_experiment
from .log import LogBuilder, LogLevel
from .metric import MetricBuilder, MetricsManager
from .params import ParametersBuilder
from .run import RUN

_core.register(MlDashError, ConfigurationError, StorageError, ForkedError)

__version__ = "0.1.0"
__all__ = [
    "AuthenticationError",
    "BufferConfig",
    "ConfigurationError",
    "Experiment",
    "ExperimentError",
    "ForkedError",
    "LogBuilder",
    "LogLevel",
    "MetricBuilder",
    "MetricsManager",
    "MlDashError",
    "NetworkError",
    "OperationMode",
    "ParametersBuilder",
    "RUN",
    "StorageError",
    "ml_dash_experiment",
]
