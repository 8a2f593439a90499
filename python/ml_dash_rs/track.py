"""``exp.tracks(topic).append(**fields, _ts=)``."""

from ._core import Track as TrackBuilder

__all__ = ["TrackBuilder", "TracksManager"]


class TracksManager:
    """``exp.tracks("robot/pose")``: one builder per topic."""

    __slots__ = ("_run", "_cache")

    def __init__(self, run):
        self._run = run
        self._cache = {}

    def __call__(self, topic):
        t = self._cache.get(topic)
        if t is None:
            t = self._cache.setdefault(topic, self._run.track(topic))
        return t

    def flush(self):
        """Kept for chaining, as in the SDK; ``exp.flush()`` stores."""
        return self
