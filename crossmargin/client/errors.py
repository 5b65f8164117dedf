"""What the client raises: one small tree under `CrossmarginError`, data in fields.

CrossmarginError
└── ClientError                 the API could not give the answer asked for
    ├── ApiError(status, code, detail, problem)   the API answered an RFC 9457 problem
    │   └── RateLimited(retry_after)              429 (or 503) still refused after the
    │                                             client's bounded retries
    ├── Unreachable             no HTTP answer: connection refused, DNS, timeout
    └── BadAnswer               an answer that is not the documented model

`str(exc)` is one line fit for a terminal: the problem's code and detail, or what went
wrong with the transport; never a library repr, and the server only as scheme://host:port.
"""

from __future__ import annotations

from api.models import Problem
from crossmargin.core.errors import CrossmarginError


class ClientError(CrossmarginError):
    """Root of the client's errors."""


class ApiError(ClientError):
    """The API refused or failed the request with a problem+json body. Branch on `code`
    (stable), show `detail` (a sentence)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.code}: {problem.detail} (HTTP {problem.status})")
        self.problem = problem
        self.status = problem.status
        self.code = problem.code
        self.detail = problem.detail
        self.title = problem.title
        self.type = problem.type


class RateLimited(ApiError):
    """429/503 still refused after the retries; `retry_after` is the server's last hint
    in seconds (None when it gave none)."""

    def __init__(self, problem: Problem, retry_after: float | None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after


class Unreachable(ClientError):
    """No HTTP answer from the server."""


class BadAnswer(ClientError):
    """An answer that does not parse as the documented model (another server, a proxy's
    error page, or a client older than the server)."""
