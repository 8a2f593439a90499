"""``exp.run``: start / complete / fail / cancel, a context manager, a decorator."""

import functools


class RUN:
    """The lifecycle of one experiment.

    ``with exp.run as e:`` opens the run and completes it, or records FAILED
    when an exception (``KeyboardInterrupt`` included) leaves the block, and
    lets that exception go on. ``@exp.run`` on a function ``f(exp)`` runs it
    inside such a block.
    """

    __slots__ = ("_experiment", "prefix", "owner", "project", "name", "_folder_path")

    def __init__(self, experiment, prefix):
        self._experiment = experiment
        self.prefix = prefix
        self._folder_path = prefix
        parts = prefix.strip("/").split("/") if prefix else []
        self.owner = parts[0] if parts else None
        self.project = parts[1] if len(parts) > 1 else None
        self.name = parts[-1] if len(parts) > 2 else self.project

    def start(self):
        """Opens the run (RUNNING); returns the experiment."""
        return self._experiment._open()

    def complete(self):
        self._experiment._close("COMPLETED")

    def fail(self):
        self._experiment._close("FAILED")

    def cancel(self):
        self._experiment._close("CANCELLED")

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.complete()
            return False
        try:
            self.fail()
        except Exception as cleanup:  # the body's exception wins
            note = f"[ML-Dash] closing the experiment after {exc_type.__name__} also failed: {cleanup}"
            if hasattr(exc, "add_note"):
                exc.add_note(note)
        return False

    def __call__(self, func):
        """``@exp.run``: ``func(exp, *args, **kwargs)`` inside ``with exp.run``."""

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self as exp:
                return func(exp, *args, **kwargs)

        return wrapper
