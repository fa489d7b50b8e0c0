"""The one back-off policy of the node side: the HTTP retry, the daemon's services, relay sync and
tunnel restarts all wait by it."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

_system_random = random.SystemRandom()


@dataclass(frozen=True)
class Backoff:
    """Exponential delays with full jitter: ``random(0, min(max_s, base_s * 2**(failures-1)))``.

    Full jitter spreads the retries of many nodes that failed together over the whole window, so
    they do not come back in step. A server's ``Retry-After`` is honoured as a floor: the delay is
    at least that hint (itself capped at ``max_retry_after_s``, so a bogus hint cannot park a loop
    for days).
    """

    base_s: float = 1.0
    max_s: float = 60.0
    #: The longest a server's Retry-After is obeyed (a bigger one is taken as this).
    max_retry_after_s: float = 900.0
    #: A number in [0, 1): the jitter's source (seedable in tests).
    rand: Callable[[], float] = field(default=_system_random.random, compare=False)

    def delay_s(self, failures: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after ``failures`` consecutive failures (1 = the first)."""
        ceiling = min(self.max_s, self.base_s * 2.0 ** max(0, min(failures - 1, 62)))
        jittered = self.rand() * ceiling
        if retry_after_s is None:
            return jittered
        return max(jittered, min(retry_after_s, self.max_retry_after_s))
