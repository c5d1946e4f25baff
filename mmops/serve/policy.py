"""Restart policy: capped, jittered exponential backoff; give up after N failures in a window.

Configured by the profile's ``restart:`` section (``launch.profile.RestartPolicy``); this class
holds the counters. A healthy period (READY for ``healthy_reset_s``) forgets past failures and
the backoff level, as supervisord's ``startsecs`` and systemd's ``StartLimitIntervalSec`` do.
"""

from __future__ import annotations

import random
from collections import deque

from mmops.launch.profile import RestartPolicy


class Backoff:
    """Failure bookkeeping for one supervised server."""

    def __init__(self, policy: RestartPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self._failures: deque[float] = deque()
        self._level = 0

    def reset(self) -> None:
        """A healthy period, or a restart a person asked for: start counting afresh."""
        self._failures.clear()
        self._level = 0

    def record_failure(self, now: float, ready_for_s: float) -> int:
        """Count a failure at ``now`` (monotonic); returns the failures within the window."""
        if ready_for_s >= self.policy.healthy_reset_s:
            self.reset()
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.policy.window_s:
            self._failures.popleft()
        return len(self._failures)

    @property
    def exhausted(self) -> bool:
        return len(self._failures) >= self.policy.max_attempts

    def next_delay(self) -> float:
        """Capped exponential backoff with +/- jitter."""
        r = self.policy
        base = min(r.backoff_max_s, r.backoff_initial_s * (2**self._level))
        self._level += 1
        spread = base * r.jitter
        return max(
            0.0, min(r.backoff_max_s * (1 + r.jitter), base + self.rng.uniform(-spread, spread))
        )
