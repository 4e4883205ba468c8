"""Base class for method configs: immutable, validated at construction, serialisable to YAML/JSON."""
from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from bertcompress.core.errors import BertCompressError, describe_validation_error


class MethodConfig(BaseModel):
    """A compression method's settings. Subclasses set `method_name` and declare validated fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method_name: ClassVar[str] = ""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise BertCompressError(describe_validation_error(type(self).__name__, error)) from None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method_name, **self.model_dump(mode="json")}
