"""The error a route handler raises to answer with a Crisp error envelope."""

from __future__ import annotations


class ApiError(Exception):
    """Answer ``status`` with ``{"error": true, "reason": reason, "data": {}}``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def not_found() -> ApiError:
    """The website, conversation, message, profile or operator does not exist."""
    return ApiError(404, "not_found")


def invalid_data() -> ApiError:
    """The path parameter, query option or body is malformed or incomplete."""
    return ApiError(400, "invalid_data")


def conflict() -> ApiError:
    """The request would repeat what must stay unique (a message fingerprint within its
    conversation)."""
    return ApiError(409, "conflict")
