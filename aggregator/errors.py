"""Exceptions raised by the aggregator.

AggregatorError
├── InvalidInput          (ValueError: shapes, ranges, a non-PSD correlation matrix)
└── CapacityNotMonotone   (free margin rose with borrowing: METHOD.md §8 refuses to answer)
"""


class AggregatorError(Exception):
    """Base of every error the risk math raises on purpose."""


class InvalidInput(AggregatorError, ValueError):
    """Inputs that violate the contract (caller or config bug); never retried."""


class CapacityNotMonotone(AggregatorError):
    """Free margin increased with the borrowed amount, so bisection cannot be trusted.

    `borrow_usd` and `free_margin` hold the sampled points (sorted by amount) that
    showed the increase, for the operator to inspect.
    """

    def __init__(self, borrow_usd: tuple[float, ...], free_margin: tuple[float, ...]) -> None:
        super().__init__(
            "free margin is not non-increasing in the borrowed amount "
            f"(sampled {len(borrow_usd)} points); refusing to report a capacity"
        )
        self.borrow_usd = borrow_usd
        self.free_margin = free_margin
