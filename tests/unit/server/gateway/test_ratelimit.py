"""The token bucket, with a fake clock."""

from __future__ import annotations

from sampan.server.gateway.ratelimit import RateLimiter, TokenBucket


def test_burst_then_refill() -> None:
    bucket = TokenBucket(rate=10, burst_seconds=2)  # 20 tokens
    assert all(bucket.take(0.0) for _ in range(20))
    assert not bucket.take(0.0)
    assert bucket.take(0.1)  # 0.1 s refills one token
    assert not bucket.take(0.1)
    assert sum(bucket.take(100.0) for _ in range(100)) == 20  # never more than the capacity


def test_modal_default_is_200_per_second_with_a_5_second_burst() -> None:
    bucket = TokenBucket()
    assert bucket.capacity == 1000
    assert sum(bucket.take(0.0) for _ in range(1200)) == 1000


def test_limiter_is_per_workspace_and_can_be_disabled() -> None:
    limiter = RateLimiter(rate=1, burst_seconds=1)
    assert limiter.allow("a", 0.0) and not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)
    off = RateLimiter(rate=0)
    assert all(off.allow("a", 0.0) for _ in range(10_000))


def test_clock_going_backwards_does_not_mint_tokens() -> None:
    bucket = TokenBucket(rate=1, burst_seconds=1)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
