"""User-facing errors: one line that names the problem, shown by the CLI without a traceback."""
from __future__ import annotations

from pydantic import ValidationError


class BertCompressError(Exception):
    """A problem with the user's input (file, field, value); the CLI prints it and exits with code 2."""


def first_line(error: Exception) -> str:
    """An error's first non-empty line, at most 300 characters (its type name when it has no message)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def describe_validation_error(owner: str, error: ValidationError) -> str:
    """Turn a pydantic error into one line: `owner.field: message (got value)`."""
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "<root>"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        got = item.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        parts.append(f"{owner}.{field}: {message}{shown}")
    return "; ".join(parts)
