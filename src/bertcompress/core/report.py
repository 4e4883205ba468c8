"""What a compression step reports back."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class StepReport:
    """`compress` fills method, config, seconds and the byte counts; a handler returns `StepReport()` with
    only what is its own: modules changed, notes, metrics."""

    method: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    modules_changed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
