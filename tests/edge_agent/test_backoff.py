"""The shared reconnect policy: exponential backoff with full jitter."""

from __future__ import annotations

from edge_agent.backoff import Backoff


def test_backoff_grows_with_jitter_and_resets() -> None:
    """Delays stay within [cap/2, cap], the cap doubles up to max, and reset starts over."""
    backoff = Backoff(initial_s=1.0, max_s=8.0)
    caps = [1.0, 2.0, 4.0, 8.0, 8.0]
    for cap in caps:
        assert cap / 2 <= backoff.next_delay() <= cap
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_backoff_survives_a_night_of_failed_attempts() -> None:
    """Thousands of attempts stay at the cap (2 ** attempt would overflow a float)."""
    backoff = Backoff(initial_s=0.5, max_s=30.0)
    delays = [backoff.next_delay() for _ in range(5000)]
    assert 15.0 <= min(delays[-100:]) <= max(delays) <= 30.0
    zero = Backoff(0.0, 0.0)  # tests use it: every delay 0, forever
    assert {zero.next_delay() for _ in range(5000)} == {0.0}
