"""serve.policy: capped, jittered exponential backoff; the window; the healthy reset."""

from __future__ import annotations

import random

from mmops.launch.profile import RestartPolicy
from mmops.serve.policy import Backoff


def test_backoff_is_capped_jittered_and_reset():
    b = Backoff(RestartPolicy(backoff_initial_s=1, backoff_max_s=8, jitter=0.25), random.Random(7))
    delays = [b.next_delay() for _ in range(6)]
    for d, base in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert base * 0.75 <= d <= base * 1.25
    assert len(set(delays)) == 6  # jittered, not lockstep
    b.reset()  # what a healthy period does
    assert 0.75 <= b.next_delay() <= 1.25


def test_failures_count_within_the_window_and_a_healthy_run_forgets_them():
    b = Backoff(RestartPolicy(max_attempts=3, window_s=100, healthy_reset_s=50, jitter=0))
    assert b.record_failure(0, 0) == 1
    assert b.record_failure(10, 0) == 2
    assert not b.exhausted
    assert b.record_failure(20, 0) == 3 and b.exhausted
    assert b.record_failure(115, 0) == 2  # the failures at 0 and 10 left the window
    assert b.record_failure(120, ready_for_s=60) == 1  # READY long enough: a fresh count
    assert b.next_delay() == 2.0  # level reset too
