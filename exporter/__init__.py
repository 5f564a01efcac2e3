"""apistatus-exporter: probes third-party APIs and explains their answers in Prometheus metrics."""

__version__ = "0.1.0"
__all__ = ["__version__"]
