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
