"""``rate_limit``: Go's rate.NewLimiter(rate.Every(interval), burst), as exporter-toolkit applies it."""

from __future__ import annotations

from ..clock import Clock

__all__ = ["RateLimiter"]


class RateLimiter:
    """A token bucket: ``burst`` requests at once, then one more every ``interval`` seconds. As in Go, a
    burst of 0 refuses everything and a negative interval never limits. One bucket for all clients."""

    def __init__(self, interval: float, burst: int, clock: Clock) -> None:
        self._rate = None if interval < 0 else 1.0 / interval
        self._burst = burst
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock.monotonic()

    def allow(self) -> bool:
        if self._rate is None:
            return True
        now = self._clock.monotonic()
        self._tokens = min(float(self._burst), self._tokens + max(0.0, now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
