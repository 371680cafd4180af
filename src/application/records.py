"""Domain results and refusals as JSON-able records: what an Idempotency-Key stores.

A record is the domain answer itself (the order made, the hold placed, or the refusal),
never an HTTP response: a replay hands the same value back and the HTTP edge renders it
exactly as it rendered the first answer.
"""

from __future__ import annotations

import enum
import types
import typing
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from stockade.application.commands import OrderView, PendingOrder
from stockade.application.ports import Ref, field_names
from stockade.domain import errors
from stockade.domain.model import Hold, StockAdjustment

#: The results a keyed request can have, by the name a record gives them.
RESULT_TYPES: dict[str, type] = {cls.__name__: cls for cls in (OrderView, Hold, PendingOrder, StockAdjustment)}


def encode_result(result: Any) -> dict[str, Any]:
    return {"result": type(result).__name__, "value": _encode(result)}


def encode_refusal(refusal: errors.DomainError) -> dict[str, Any]:
    return {"refusal": type(refusal).__name__, "message": refusal.message}


def decode(record: dict[str, Any]) -> Any:
    """The result, or the refusal (a DomainError instance), that `record` holds."""
    if "refusal" in record:
        refusal = getattr(errors, record["refusal"], None)
        if not (isinstance(refusal, type) and issubclass(refusal, errors.DomainError)):
            raise ValueError(f"unknown refusal {record['refusal']!r} in an idempotency record")
        return refusal(record["message"])
    return _decode(RESULT_TYPES[record["result"]], record["value"])


#: Types a record holds as they are.
_AS_IS = frozenset({int, str, bool, type(None), Ref})


def _encode(value: Any) -> Any:
    kind = type(value)
    if kind in _AS_IS:
        return value  # a Ref, the storage fills it in
    names = field_names(kind)
    if names is not None:
        return {name: _encode(getattr(value, name)) for name in names}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _decode(kind: Any, raw: Any) -> Any:
    if raw is None:
        return None
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if attrs.has(kind):
        hints = typing.get_type_hints(kind)
        # A field added since the record was written takes its default.
        return kind(**{f.name: _decode(hints[f.name], raw[f.name]) for f in attrs.fields(kind) if f.name in raw})
    if kind is datetime:
        return datetime.fromisoformat(raw)
    if isinstance(kind, type) and issubclass(kind, (enum.Enum, Decimal)):
        return kind(raw)
    return raw
