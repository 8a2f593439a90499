"""``BufferConfig``: the SDK's buffering settings, and the engine's own."""

from . import _core

_SDK_FIELDS = (
    "flush_interval",
    "log_batch_size",
    "metric_batch_size",
    "track_batch_size",
    "file_upload_workers",
    "buffer_enabled",
    "max_retries",
    "retry_base_delay",
    "retry_max_delay",
)
_ENGINE_FIELDS = (
    "ring_capacity",
    "memory_budget",
    "max_record_bytes",
    "backpressure",
    "sync_on_flush",
    "quiet",
)


class BufferConfig:
    """Buffer settings of a run, with the SDK's names and defaults.

    The SDK's nine fields mean what they mean there (``flush_interval`` in
    seconds, batch sizes, upload workers, retries). The engine adds six:
    ``ring_capacity`` (bytes of a thread's first ring, 256 KiB),
    ``memory_budget`` (bytes all rings may hold, 64 MiB), ``max_record_bytes``
    (largest record, 1 MiB), ``backpressure`` (``"block"``, lossless, or
    ``"drop"``: lossy, counted in ``exp.dropped``), ``sync_on_flush`` (fsync at each flush) and ``quiet``
    (no console report). A field left out takes its default; a bad value is a
    ``ValueError`` (or ``ConfigurationError``) when the run opens.
    ``BufferConfig.from_env()`` applies every ``ML_DASH_*`` variable.
    """

    __slots__ = _SDK_FIELDS + _ENGINE_FIELDS

    def __init__(
        self,
        flush_interval=5.0,
        log_batch_size=100,
        metric_batch_size=1000,
        track_batch_size=100,
        file_upload_workers=4,
        buffer_enabled=True,
        max_retries=3,
        retry_base_delay=1.0,
        retry_max_delay=30.0,
        *,
        ring_capacity=256 << 10,
        memory_budget=64 << 20,
        max_record_bytes=1 << 20,
        backpressure="block",
        sync_on_flush=False,
        quiet=False,
    ):
        self.flush_interval = flush_interval
        self.log_batch_size = log_batch_size
        self.metric_batch_size = metric_batch_size
        self.track_batch_size = track_batch_size
        self.file_upload_workers = file_upload_workers
        self.buffer_enabled = buffer_enabled
        self.max_retries = max_retries
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.ring_capacity = ring_capacity
        self.memory_budget = memory_budget
        self.max_record_bytes = max_record_bytes
        self.backpressure = backpressure
        self.sync_on_flush = sync_on_flush
        self.quiet = quiet

    @classmethod
    def from_env(cls):
        """The defaults with every ``ML_DASH_*`` variable applied (the engine reads them)."""
        return cls(**_core.buffer_config_from_env())

    def _fields(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self):
        inner = ", ".join(f"{k}={v!r}" for k, v in self._fields().items())
        return f"BufferConfig({inner})"

    def __eq__(self, other):
        return isinstance(other, BufferConfig) and self._fields() == other._fields()
