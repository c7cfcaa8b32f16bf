"""Backoff for answers that mean "refused, nothing done, retry later".

HTTP 429 and 503 (honouring ``Retry-After``) and wire statuses ``0x04`` / ``0x07`` (honouring
the error frame's ``retry_after_sec``) are retried with exponential backoff and jitter, up to
``max_retries``. A connection that could not be opened is retried for every request; a timeout
or reset after sending (the request may have been applied) is retried only for requests whose
repetition has the same outcome.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries refused requests.

    Attributes:
        max_retries: retries after the first attempt (0 = never retry).
        initial_backoff: first wait in seconds when the server gives no ``Retry-After``;
            doubles per attempt, with ±25 % jitter.
        max_backoff: upper bound of any single wait, including a server's ``Retry-After``.
        max_elapsed: give up once this many seconds were spent waiting (None = no bound
            beyond ``max_retries``).
    """

    max_retries: int = 5
    initial_backoff: float = 0.05
    max_backoff: float = 10.0
    max_elapsed: Optional[float] = None

    @classmethod
    def none(cls) -> "RetryPolicy":
        """A policy that never retries."""
        return cls(max_retries=0)

    def wait(self, attempt: int, retry_after: Optional[float] = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if retry_after is not None and retry_after > 0:
            base = float(retry_after)
        else:
            exp = self.initial_backoff * (2 ** min(max(attempt - 1, 0), 16))
            base = exp * (0.75 + random.random() * 0.5)
        return min(base, self.max_backoff)
