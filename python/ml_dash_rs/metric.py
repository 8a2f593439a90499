"""``exp.metrics``: the manager and the per-stream builder are native."""

from ._core import MetricBuilder, MetricsManager

__all__ = ["MetricBuilder", "MetricsManager"]
