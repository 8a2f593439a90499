"""The SDK's exception classes (``ml_dash.exceptions``), and ``ForkedError``.

Where the SDK raises a built-in type for bad input (``ValueError``,
``TypeError``, ``RuntimeError``) this module raises the same one; its own
classes derive from the built-in a caller is likely to catch as well.
"""


class MlDashError(Exception):
    """Base class of every ml-dash error."""


class ConfigurationError(MlDashError, ValueError):
    """A bad argument or setting (a ``ValueError`` too)."""


class AuthenticationError(MlDashError):
    """Token missing, expired, or rejected by the server."""


class StorageError(MlDashError):
    """The local store could not be written; the data stays buffered and is retried."""


class ExperimentError(MlDashError, RuntimeError):
    """A lifecycle violation: the experiment is not open (a ``RuntimeError`` too)."""


class NetworkError(MlDashError):
    """The server could not be reached or refused a request."""


class ForkedError(MlDashError, RuntimeError):
    """A call in a fork()ed child into the run its parent opened.

    The run, its threads and its store stay the parent's and nothing is logged
    from the child; open a new experiment in the child to log there.
    """
