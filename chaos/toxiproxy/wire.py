"""The API's wire format: error values with upstream's messages and status codes, and Go-like JSON decoding.

Upstream decodes request bodies with Go's `encoding/json` into typed structs, so a wrong JSON type
is a 400 whose message names the Go struct field, `null` leaves a field at its current value, and
unknown keys are ignored. These helpers reproduce that behaviour for the fields the API reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

HTTP_BAD_REQUEST: Final = 400
HTTP_NOT_FOUND: Final = 404
HTTP_CONFLICT: Final = 409
HTTP_INTERNAL_ERROR: Final = 500


class ApiError(Exception):
    """An error answered as `{"error": message, "status": status}` with that HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        """Keep the client-facing message and the HTTP status."""
        super().__init__(message)
        self.message = message
        self.status = status

    def wrapped(self, detail: str) -> ApiError:
        """The same error with `: detail` appended, as upstream's `joinError` builds it."""
        return ApiError(f"{self.message}: {detail}", self.status)

    def to_json(self) -> dict[str, object]:
        """The error object in upstream's key order."""
        return {"error": self.message, "status": self.status}


BAD_REQUEST_BODY: Final = ApiError("bad request body", HTTP_BAD_REQUEST)
MISSING_FIELD: Final = ApiError("missing required field", HTTP_BAD_REQUEST)
PROXY_NOT_FOUND: Final = ApiError("proxy not found", HTTP_NOT_FOUND)
PROXY_ALREADY_EXISTS: Final = ApiError("proxy already exists", HTTP_CONFLICT)
INVALID_STREAM: Final = ApiError("stream was invalid, can be either upstream or downstream", HTTP_BAD_REQUEST)
INVALID_TOXIC_TYPE: Final = ApiError("invalid toxic type", HTTP_BAD_REQUEST)
TOXIC_ALREADY_EXISTS: Final = ApiError("toxic already exists", HTTP_CONFLICT)
TOXIC_NOT_FOUND: Final = ApiError("toxic not found", HTTP_NOT_FOUND)


def decode_body(body: bytes) -> object:
    """The first JSON value of a request body, trailing bytes ignored as Go's `json.Decoder` does."""
    text = body.decode("utf-8", errors="replace").lstrip()
    if not text:
        raise BAD_REQUEST_BODY.wrapped("EOF")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            raise BAD_REQUEST_BODY.wrapped("unexpected EOF") from None
        char = text[exc.pos]
        raise BAD_REQUEST_BODY.wrapped(f"invalid character {char!r} looking for beginning of value") from None
    return value


def json_kind(value: object) -> str:
    """How Go's decoder names a JSON value's type in an unmarshal error."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


def unmarshal_error(value: object, struct: str, field: str, go_type: str) -> ApiError:
    """The 400 Go answers when `value` cannot be stored in the struct field."""
    kind = json_kind(value)
    if isinstance(value, float) and go_type in {"int", "int64"}:
        kind = f"number {value!r}"
    return BAD_REQUEST_BODY.wrapped(
        f"json: cannot unmarshal {kind} into Go struct field {struct}.{field} of type {go_type}"
    )


def expect_object(value: object, go_type: str) -> Mapping[str, object]:
    """`value` as a JSON object, or the 400 Go answers when decoding something else into a struct."""
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    raise BAD_REQUEST_BODY.wrapped(f"json: cannot unmarshal {json_kind(value)} into Go value of type {go_type}")


def read_str(data: Mapping[str, object], key: str, current: str, struct: str) -> str:
    """A string field: the decoded value, or `current` when absent or null."""
    value = data.get(key)
    if value is None:
        return current
    if not isinstance(value, str):
        raise unmarshal_error(value, struct, key, "string")
    return value


def read_bool(data: Mapping[str, object], key: str, current: bool, struct: str) -> bool:
    """A boolean field: the decoded value, or `current` when absent or null."""
    value = data.get(key)
    if value is None:
        return current
    if not isinstance(value, bool):
        raise unmarshal_error(value, struct, key, "bool")
    return value


def read_float(data: Mapping[str, object], key: str, current: float, struct: str) -> float:
    """A float32 field (toxicity): any JSON number, or `current` when absent or null."""
    value = data.get(key)
    if value is None:
        return current
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise unmarshal_error(value, struct, key, "float32")
    return float(value)


def read_int(data: Mapping[str, object], key: str, current: int, struct: str, go_type: str = "int64") -> int:
    """An integer field: a JSON integer within int64, or `current` when absent or null."""
    value = data.get(key)
    if value is None:
        return current
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise unmarshal_error(value, struct, key, go_type)
    return value


def go_float(value: float) -> float | int:
    """A float as Go's encoder prints a float32: integral values without a fraction (`1`, not `1.0`)."""
    return int(value) if value.is_integer() else value
