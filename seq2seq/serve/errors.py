"""An HTTP error with the JSON body every 4xx/5xx answer of the server carries."""

from __future__ import annotations

from typing import Any


class HTTPError(Exception):
    """Raised by request handling; the app turns it into `{"error": {"code", "message", "limit"?}}`."""

    def __init__(
        self, status: int, message: str, limit: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.limit = status, message, limit
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.status, "message": self.message}
        if self.limit is not None:
            error["limit"] = self.limit
        return {"error": error}
