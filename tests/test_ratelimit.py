"""The shared rate limiter and the duration parser, purely, on a fake clock."""

from __future__ import annotations

import pytest

from crawler.ratelimit import RateLimiter, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("172.799999ms", 0.172799999),
        ("1h2m3s", 3723.0),
        ("-1", None),
        ("soon", None),
        ("", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    """Go-style durations, as in x-ratelimit-reset-requests."""
    result = parse_duration(text)
    assert result == seconds if seconds is None else result == pytest.approx(seconds)


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


async def test_a_rate_cap_spaces_requests() -> None:
    """120 requests per minute: one every half second."""
    time = FakeTime()
    limiter = RateLimiter(120, clock=time.clock, sleep=time.sleep)
    for _ in range(3):
        await limiter.acquire()
    assert time.sleeps == [0.5, 0.5]
    assert limiter.waits == 2


async def test_concurrent_workers_queue_for_slots() -> None:
    """Workers asking at the same instant get successive slots, not the same one."""
    time = FakeTime()
    limiter = RateLimiter(60, clock=time.clock, sleep=time.sleep)
    waits = []

    async def ask() -> None:
        before = time.now
        await limiter.acquire()
        waits.append(time.now - before)

    for _ in range(3):
        await ask()
    assert waits == [0, 1.0, 1.0]


async def test_no_requests_left_pauses_everyone_until_the_reset() -> None:
    """remaining 0 with a reset pauses the next request for that long; Azure's -1 does not."""
    time = FakeTime()
    limiter = RateLimiter(clock=time.clock, sleep=time.sleep)
    limiter.observe({"x-ratelimit-remaining-requests": "-1", "x-ratelimit-reset-requests": "1s"})
    await limiter.acquire()
    limiter.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "250ms"})
    await limiter.acquire()
    assert time.sleeps == [0.25]


@pytest.mark.parametrize(
    ("remaining", "reset", "sleeps"),
    [("10", "18s", [0.2, 0.2]), ("50", "10s", []), ("10", "18s", [])],
    ids=["low: refill rate", "plenty left", "no limit header"],
)
async def test_requests_are_spaced_at_the_refill_rate_when_few_are_left(
    remaining: str, reset: str, sleeps: list[float], request: pytest.FixtureRequest
) -> None:
    """Limit 100, 10 left, full again in 18 s: 90 refill in 18 s, one every 0.2 s.

    With half the budget left, or no limit to measure against, requests are not spaced.
    """
    time = FakeTime()
    limiter = RateLimiter(clock=time.clock, sleep=time.sleep)
    headers = {"x-ratelimit-remaining-requests": remaining, "x-ratelimit-reset-requests": reset}
    if "no limit" not in request.node.name:
        headers["x-ratelimit-limit-requests"] = "100"
    limiter.observe(headers)
    for _ in range(3):
        await limiter.acquire()
    assert [s for s in time.sleeps if s > 0.001] == sleeps


async def test_a_pause_stops_workers_already_waiting_for_a_slot() -> None:
    """A 429 arriving while a worker waits for its slot holds that worker too."""
    time = FakeTime()
    limiter = RateLimiter(60, clock=time.clock, sleep=time.sleep)
    await limiter.acquire()
    original_sleep = time.sleep

    async def sleep_then_429(seconds: float) -> None:
        await original_sleep(seconds)
        if len(time.sleeps) == 1:
            limiter.pause(5.0)  # told while this worker slept

    limiter._sleep = sleep_then_429
    await limiter.acquire()
    assert time.sleeps == [1.0, 5.0]


async def test_a_pause_is_capped() -> None:
    """A reset a day away does not put the run to sleep for a day."""
    time = FakeTime()
    limiter = RateLimiter(clock=time.clock, sleep=time.sleep, max_pause=120)
    limiter.observe(
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "23h59m0s"}
    )
    await limiter.acquire()
    assert time.sleeps == [120.0]


async def test_spacing_is_capped() -> None:
    """Limit 4, 1 left, full again in an hour would space requests 20 minutes apart."""
    time = FakeTime()
    limiter = RateLimiter(clock=time.clock, sleep=time.sleep, max_spacing=10)
    limiter.observe(
        {
            "x-ratelimit-limit-requests": "4",
            "x-ratelimit-remaining-requests": "1",
            "x-ratelimit-reset-requests": "1h",
        }
    )
    for _ in range(3):
        await limiter.acquire()
    assert [s for s in time.sleeps if s > 0.001] == [10.0, 10.0]


async def test_a_pause_is_never_shortened() -> None:
    """A later, shorter pause does not cut an earlier, longer one."""
    time = FakeTime()
    limiter = RateLimiter(clock=time.clock, sleep=time.sleep)
    limiter.pause(2.0)
    limiter.pause(0.5)
    await limiter.acquire()
    assert time.sleeps == [2.0]
