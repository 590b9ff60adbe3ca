"""Reconnect delays and request budgets: exponential backoff with jitter, and a rate limiter.

Both take the clock and sleep as parameters so tests run them on a fake clock.
"""
from __future__ import annotations

import asyncio
import collections
import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Backoff:
    """Full-jitter exponential backoff: the n-th delay is uniform in [0, min(cap, base * 2**n)].

    Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads reconnects of
    many clients after an outage instead of having them retry in lockstep. ``reset()`` after a
    connection has worked again.
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class RateLimitExhausted(RuntimeError):
    """The request budget of a window is used up for longer than the caller is willing to wait."""


class RateLimiter:
    """At most ``limit`` acquisitions per ``window`` seconds, for each (limit, window) pair.

    Sliding windows over the times of past acquisitions, e.g. Alpha Vantage's free tier:
    ``RateLimiter([(5, 60), (25, 86_400)])``. ``acquire()`` waits until every window has room;
    with ``max_wait`` it raises RateLimitExhausted instead of waiting longer than that.
    """

    def __init__(self, limits: list[tuple[int, float]], clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep):
        if not limits or any(limit < 1 or window <= 0 for limit, window in limits):
            raise ValueError(f"limits must be (count >= 1, seconds > 0) pairs, got {limits!r}")
        self._limits = sorted(limits, key=lambda pair: pair[1])
        self._longest = self._limits[-1][1]
        self._clock, self._sleep = clock, sleep
        self._history: collections.deque[float] = collections.deque()

    def wait_time(self) -> float:
        """Seconds until the next acquisition is allowed (0 if now)."""
        now = self._clock()
        while self._history and self._history[0] <= now - self._longest:
            self._history.popleft()
        wait = 0.0
        for limit, window in self._limits:
            recent = [t for t in self._history if t > now - window]
            if len(recent) >= limit:
                wait = max(wait, recent[-limit] + window - now)
        return wait

    async def acquire(self, max_wait: float | None = None,
                      on_wait: Callable[[float], None] | None = None) -> None:
        """Wait for room in every window; ``on_wait(seconds)`` is told of each wait (metrics)."""
        while (wait := self.wait_time()) > 0:
            if max_wait is not None and wait > max_wait:
                raise RateLimitExhausted(f"request budget used up for the next {wait:.0f} s")
            if on_wait is not None:
                on_wait(wait)
            await self._sleep(wait)
        self._history.append(self._clock())
