"""Log levels and ``exp.logs``."""

from enum import Enum

from . import _core


class LogLevel(Enum):
    """The five levels the SDK knows."""

    INFO = "info"
    WARN = "warn"
    ERROR = "error"
    DEBUG = "debug"
    FATAL = "fatal"

    @classmethod
    def validate(cls, level):
        """``level`` lowercased, or ``ConfigurationError`` (a ``ValueError``) naming the five."""
        return _core.validate_level(level)


class LogBuilder:
    """``exp.logs.info("msg", **metadata)`` and the other four levels."""

    __slots__ = ("_run", "_metadata")

    def __init__(self, run, metadata=None):
        self._run = run
        self._metadata = metadata

    def _write(self, level, message, extra):
        meta = {**self._metadata, **extra} if self._metadata else extra
        self._run.log(message, level, meta or None)

    def info(self, message, **metadata):
        self._write("info", message, metadata)

    def warn(self, message, **metadata):
        self._write("warn", message, metadata)

    def error(self, message, **metadata):
        self._write("error", message, metadata)

    def debug(self, message, **metadata):
        self._write("debug", message, metadata)

    def fatal(self, message, **metadata):
        self._write("fatal", message, metadata)
