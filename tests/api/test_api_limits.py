"""The rate-limit rule for batches (api/security.py), on a fake clock: every batch the
config allows passes for a client that honours Retry-After, and over any run no
principal gets more accounts than its burst, its rate and one batch's debt allow."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from api.problems import ApiProblem
from api.security import Gate, Principal
from crossmargin.core.config import ApiConfig


def follow(gate: Gate, who: Principal, n: int, clock: list[float]) -> int:
    """A batch of n accounts asked as the API asks it (one token at the door, then the
    rest), retried after every Retry-After; the number of refusals before it passes."""
    for refusals in range(10):
        try:
            gate.admit(who)
            if n > 1:
                gate.admit(who, n, paid=1)
        except ApiProblem as exc:
            status, retry_after = exc.status, exc.headers["Retry-After"]
        else:
            return refusals
        assert status == 429
        clock[0] += int(retry_after)
    raise AssertionError("never admitted")


LIMITS = st.tuples(
    st.floats(0.1, 100.0), st.integers(1, 200), st.integers(1, 1000)
)  # rate, burst, max_batch


@given(LIMITS, st.lists(st.tuples(st.floats(0.0, 30.0), st.integers(1, 1000)), max_size=40))
@example((0.1, 5, 33), [(1.3, 33), (7.0, 33), (7.0, 33)])  # float drift: once a 3rd refusal
def test_batches_pass_and_rates_hold(limits: tuple[float, int, int], steps: Any) -> None:
    rate, burst, max_batch = limits
    api = ApiConfig(
        anonymous=True, anonymous_rate_per_s=rate, anonymous_burst=burst, max_batch=max_batch
    )
    clock = [0.0]
    gate = Gate(api, clock=lambda: clock[0])
    who = Principal("anonymous", "anon:192.0.2.1")
    served = 0
    largest = 0
    for pause, size in steps:
        n = min(size, max_batch)
        clock[0] += pause
        # every batch the config allows gets through, after at most two Retry-Afters
        assert follow(gate, who, n, clock) <= 2
        served += n
        largest = max(largest, n)
        # and over any run, no more accounts than the burst, the rate and one batch's debt
        assert served <= burst + rate * clock[0] + max(0, largest - burst) + 1e-6


def test_a_flood_after_a_big_batch_waits_for_the_debt() -> None:
    clock = [0.0]
    gate = Gate(ApiConfig(anonymous=True), clock=lambda: clock[0])  # rate 10, burst 20
    who = Principal("anonymous", "anon:192.0.2.1")
    gate.admit(who)
    gate.admit(who, 100, paid=1)  # a full batch passes on a full bucket...
    with pytest.raises(ApiProblem) as refused:
        gate.admit(who)  # ...and leaves 80 tokens of debt: 8.1 s until one token
    assert refused.value.headers["Retry-After"] == "9"
    clock[0] += 8.0
    with pytest.raises(ApiProblem):
        gate.admit(who)
    clock[0] += 0.2
    gate.admit(who)
    other = Principal("anonymous", "anon:192.0.2.2")  # another address: its own bucket
    gate.admit(other)
