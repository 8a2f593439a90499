"""``Experiment``: the SDK's entry point, on the engine."""

import atexit
import functools
import os
import sys
import threading
import warnings
import weakref
from enum import Enum

from . import _core
from .buffer import BufferConfig
from .exceptions import ExperimentError
from .files import FilesAccessor
from .log import LogBuilder, LogLevel
from .params import ParametersBuilder
from .run import RUN
from .track import TracksManager

__all__ = ["Experiment", "OperationMode", "ml_dash_experiment"]

_NOT_OPEN = (
    "Experiment not started. Use 'with experiment.run:' or call experiment.run.start() first.\n"
    "Example:\n"
    "  with exp.run:\n"
    "      exp.params.set(lr=0.001)"
)


class _NotOpen:
    """``exp.metrics`` / ``exp.tracks`` before the run opens and after it closes."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise ExperimentError(_NOT_OPEN)

    def __getattr__(self, name):
        raise ExperimentError(_NOT_OPEN)


class OperationMode(Enum):
    LOCAL = "local"
    REMOTE = "remote"
    HYBRID = "hybrid"


class Experiment:
    """An experiment ``owner/project/[folders/]name``, as in ``ml_dash`` 0.11.

    - ``dash_root`` (default ``".dash"``): the local store; ``None`` with a
      ``dash_url`` is remote-only.
    - ``dash_url``: the server; with the default ``dash_root`` the run is
      hybrid (server and a full local copy), as in the SDK. ``True`` takes
      ``ML_DASH_API_URL``.
    - ``buffer_config``: a ``BufferConfig`` (default: ``BufferConfig.from_env()``).
    - ``token``: the server token (default: ``ML_DASH_TOKEN``, the keyring,
      ``tokens.encrypted``, ``tokens.json``, as the engine finds it).
    """

    def __init__(
        self,
        prefix=None,
        *,
        readme=None,
        tags=None,
        metadata=None,
        dash_url=None,
        dash_root=".dash",
        buffer_config=None,
        token=None,
        remote=None,
        local_path=None,
        **_ignored,
    ):
        if remote is not None and dash_url is None:
            dash_url = remote
        if local_path is not None and dash_root == ".dash":
            dash_root = local_path
        prefix = prefix or os.environ.get("DASH_PREFIX") or os.environ.get("ML_DASH_PREFIX")
        if not prefix:
            raise ValueError(
                "Experiment needs a prefix \"owner/project/[folders/]name\": "
                "pass prefix= or set ML_DASH_PREFIX"
            )
        if dash_url is True:
            dash_url = os.environ.get("ML_DASH_API_URL", "")
        if buffer_config is not None and not isinstance(buffer_config, BufferConfig):
            raise TypeError("buffer_config must be an ml_dash_rs.BufferConfig")
        self.readme = readme
        self.tags = tags
        self.metadata = metadata
        self._dash_url = dash_url or None
        self._dash_root = os.fspath(dash_root) if dash_root is not None else None
        self._buffer_config = buffer_config
        self._token = token
        if self._dash_url and self._dash_root:
            self.mode = OperationMode.HYBRID
        elif self._dash_url:
            self.mode = OperationMode.REMOTE
        else:
            self.mode = OperationMode.LOCAL
            if self._dash_root is None:
                raise ValueError("dash_root=None needs a dash_url (remote-only); give one or a dash_root")
        self.run = RUN(self, prefix)
        self._run = None
        self.metrics = self.tracks = _NotOpen()
        self._params_set = {}

    # -- lifecycle ----------------------------------------------------------

    @property
    def _is_open(self):
        return self._run is not None and self._run.is_open

    def _open(self):
        if self._is_open:
            return self
        config = self._buffer_config or BufferConfig.from_env()
        self._run = _core.Run(
            self.run.prefix,
            dash_root=self._dash_root,
            dash_url=self._dash_url,
            token=self._token,
            readme=self.readme,
            tags=self.tags,
            metadata=self.metadata,
            buffer=config._fields(),
            # SIGTERM (scancel, preemption, torchrun, multiprocessing's
            # terminate) would end Python without atexit: the engine closes
            # the run first (CANCELLED), then the signal takes its course.
            # SIGINT stays Python's KeyboardInterrupt.
            handle_signals=os.environ.get("ML_DASH_HANDLE_SIGNALS", "term"),
        )
        # Plain attributes, not properties: `exp.metrics("train")` is the
        # SDK's per-step style, and an attribute load is the cheapest lookup.
        self.metrics = _core.MetricsManager(self._run)
        self.tracks = TracksManager(self._run)
        self._params_set = {}
        _open_runs.add(self)
        return self

    def _close(self, status="COMPLETED"):
        run = self._run
        if run is None or not (run.is_open or run.forked):
            return  # closing twice is a no-op; a fork's child gets ForkedError
        _open_runs.discard(self)
        self.metrics = self.tracks = _NotOpen()
        run.close(status)

    def _open_run(self):
        run = self._run
        if run is None:
            raise ExperimentError(_NOT_OPEN)
        return run

    # -- the SDK's accessors --------------------------------------------------

    @property
    def logs(self):
        return LogBuilder(self._open_run())

    @property
    def params(self):
        self._open_run()
        return ParametersBuilder(self)

    @property
    def files(self):
        return FilesAccessor(self._open_run())

    def log(self, message=None, level=None, metadata=None, **extra_metadata):
        """One log line (``level`` default ``"info"``); without a message, a ``LogBuilder``."""
        run = self._open_run()
        meta = {**metadata, **extra_metadata} if metadata else extra_metadata
        if message is None:
            warnings.warn(
                "exp.log() without a message is deprecated: use exp.logs.info('message')",
                DeprecationWarning,
                stacklevel=2,
            )
            return LogBuilder(run, meta or None)
        run.log(message, LogLevel.validate(level or "info"), meta or None)
        return None

    def flush(self):
        """Waits (GIL released) until everything logged so far is stored (and spooled)."""
        self._open_run().flush()

    # -- the SDK's properties ---------------------------------------------------

    @property
    def owner(self):
        return self.run.owner

    @property
    def project(self):
        return self.run.project

    @property
    def name(self):
        return self.run.name

    @property
    def dropped(self):
        """Records dropped under ``backpressure="drop"`` (0 under the default)."""
        return self._open_run().dropped

    def __repr__(self):
        state = "open" if self._is_open else "closed"
        return f"Experiment({self.run.prefix!r}, mode={self.mode.value}, {state})"


def ml_dash_experiment(prefix, **kwargs):
    """``@ml_dash_experiment(prefix=..)``: the function gets ``experiment=`` in a ``with`` block."""

    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **func_kwargs):
            with Experiment(prefix=prefix, **kwargs).run as experiment:
                func_kwargs["experiment"] = experiment
                return func(*args, **func_kwargs)

        return wrapper

    return decorator


# Runs still open when the interpreter exits are closed: COMPLETED, or FAILED
# when an uncaught exception is ending the program.
_open_runs = weakref.WeakSet()
_uncaught = threading.Event()
_previous_hook = sys.excepthook


def _excepthook(exc_type, exc, tb):
    _uncaught.set()
    _previous_hook(exc_type, exc, tb)


sys.excepthook = _excepthook


@atexit.register
def _close_open_runs():
    status = "FAILED" if _uncaught.is_set() else "COMPLETED"
    for exp in list(_open_runs):
        if exp._run is not None and exp._run.forked:
            continue  # a fork's child exiting: the run is the parent's
        try:
            exp._close(status)
        except Exception as e:  # at exit, say it and go on
            print(f"[ML-Dash] closing {exp.run.prefix} at exit failed: {e}", file=sys.stderr)
