"""The wire shapes of the public API, declared once (pydantic): each request model validates a
body and hands its use case a typed command; each response model renders a body; both give
the OpenAPI document its schemas.

Every rule a JSON Schema validator can check is stated in the schema the model produces, and
the server checks it with the same regular expression or bound. Two rules cannot be stated
for a JSON *number* price (JSON Schema compares numbers in floating point, so `multipleOf:
0.01` refuses 19.99): at most two decimal places and no minus sign. The string form of a
price states both exactly; the number form's schema states its range, and its description
the rest.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from stockade.application.commands import (
    AdjustStock,
    HoldView,
    OrderFromHold,
    OrderView,
    PendingOrder,
    PlaceHold,
    Purchase,
    WebhookResult,
)
from stockade.domain.model import MAX_STOCK, Hold, LoggedEvent, Product, StockAdjustment, utc_timestamp

MAX_ID = 2**63 - 1
PRICE_LIMIT = Decimal(10) ** 13
PRICE_DIGITS = len(str(PRICE_LIMIT)) - 1  # below 10^13: at most 13 integer digits
TWO_PLACES = Decimal("0.01")


# ---------------------------------------------------------------- text


def _char_class(ranges: list[tuple[int, int]]) -> str:
    """A regex character class body that Python's re, Rust's regex and ECMA 262 read alike:
    BMP characters as \\uXXXX escapes, others as themselves."""

    def char(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


def _ranges(codes: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for code in codes:
        if out and out[-1][1] == code - 1:
            out[-1] = (out[-1][0], code)
        else:
            out.append((code, code))
    return out


#: Never in a name: control characters (Unicode Cc), bidirectional embeddings, overrides and
#: isolates. Lone surrogates (from "\ud800" escapes) are in no text at all; the schema cannot
#: say so, since no Unicode regex engine can name them, but no valid JSON text holds them.
_CONTROL = ((0x00, 0x1F), (0x7F, 0x9F), (0x202A, 0x202E), (0x2066, 0x2069))
_SURROGATE = re.compile("[\ud800-\udfff]")


def _is_space(char: str) -> bool:
    return char.isspace()


def _is_space_or_format(char: str) -> bool:
    """Shows nothing: whitespace, or a format character such as U+200B ZERO WIDTH SPACE."""
    return char.isspace() or unicodedata.category(char) == "Cf"


@cache
def _pattern(forbidden: tuple[tuple[int, int], ...], blank: Callable[[str], bool]) -> str:
    """None of `forbidden`, and at least one character that is not `blank`."""
    shows_nothing = _char_class(_ranges([c for c in range(sys.maxunicode + 1) if blank(chr(c))]))
    if not forbidden:
        return f"[^{shows_nothing}]"  # a JSON Schema pattern matches anywhere in the text
    never = _char_class(list(forbidden))
    return f"^[^{never}]*[^{never}{shows_nothing}][^{never}]*$"


_CONTROL_CHAR = re.compile(f"[{_char_class(list(_CONTROL))}]")


def _valid_unicode(value: str) -> str:
    if _SURROGATE.search(value):
        raise PydanticCustomError("text", "must be valid Unicode text (no lone surrogates)")
    return value


def _name_rules(value: str) -> str:
    if _CONTROL_CHAR.search(_valid_unicode(value)):
        raise PydanticCustomError("text", "must not contain control or bidirectional-override characters")
    if all(_is_space_or_format(c) for c in value):
        raise PydanticCustomError("text", "must not be blank")
    return value


def _key_rules(value: str) -> str:
    if all(_is_space(c) for c in _valid_unicode(value)):
        raise PydanticCustomError("text", "must not be blank")
    return value


class _TextSchema:
    """The JSON Schema of a text type. Its pattern is computed when the document is built,
    not at import: it takes a scan of every Unicode character."""

    def __init__(
        self, max_length: int, forbidden: tuple[tuple[int, int], ...], blank: Callable[[str], bool], description: str
    ) -> None:
        self.max_length = max_length
        self.forbidden = forbidden
        self.blank = blank
        self.description = description

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {
            "type": "string",
            "minLength": 1,
            "maxLength": self.max_length,
            "pattern": _pattern(self.forbidden, self.blank),
            "description": self.description,
        }


Name = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=255),
    AfterValidator(_name_rules),
    _TextSchema(
        255,
        _CONTROL,
        _is_space_or_format,
        "1..255 characters, not only whitespace and format characters (such as "
        "U+200B); no control or bidirectional-override characters",
    ),
]
#: Idempotency keys of payment providers are opaque: any text that is not blank.
ProviderKey = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=255),
    AfterValidator(_key_rules),
    _TextSchema(255, (), _is_space, "1..255 characters, not only whitespace"),
]


# ---------------------------------------------------------------- numbers

Id = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]
Stock = Annotated[int, Field(strict=True, ge=0, le=MAX_STOCK)]
MaxPerCustomer = Annotated[
    int, Field(strict=True, ge=1, le=MAX_STOCK, description="The most units one customer may claim; null: no limit")
]

#: A customer's id: 1..64 characters of A-Z a-z 0-9 . _ : @ - (contract section 8).
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
CustomerId = Annotated[
    str,
    Field(
        strict=True,
        pattern=CUSTOMER_ID.pattern,
        description="1..64 characters of A-Z a-z 0-9 . _ : @ -; compared exactly (case-sensitive)",
    ),
]


def _not_zero(value: int) -> int:
    if value == 0:
        raise PydanticCustomError("delta", "must not be 0")
    return value


Delta = Annotated[
    int,
    Field(
        strict=True,
        ge=-MAX_STOCK,
        le=MAX_STOCK,
        description=f"Units to add (positive) or take away (negative); not 0, at most {MAX_STOCK} either way",
        json_schema_extra={"not": {"const": 0}},
    ),
    AfterValidator(_not_zero),
]

#: A price as text: digits, an optional fraction whose places past the second are zeros.
PRICE_TEXT = re.compile(rf"^0*[0-9]{{1,{PRICE_DIGITS}}}(\.[0-9]{{1,2}}0*)?$")


def _price(value: Any) -> Decimal:
    if isinstance(value, str):
        if not PRICE_TEXT.fullmatch(value):
            raise PydanticCustomError(
                "price",
                f"must be a decimal number from 0 to below {PRICE_LIMIT} with at most two places, "
                'such as "19.99" (no sign, exponent or spaces)',
            )
        return Decimal(value).quantize(TWO_PLACES)
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise PydanticCustomError("price", 'must be a number or a numeric string, such as "19.99"')
    amount = Decimal(value)
    if not amount.is_finite():
        raise PydanticCustomError("price", "must be a finite number")
    if amount.is_signed():
        raise PydanticCustomError("price", "must not have a minus sign")
    if amount >= PRICE_LIMIT:
        raise PydanticCustomError("price", f"must be below {PRICE_LIMIT}")
    if amount != amount.quantize(TWO_PLACES):
        raise PydanticCustomError("price", "must have at most two decimal places")
    return amount.quantize(TWO_PLACES)


Price = Annotated[
    Decimal,
    PlainValidator(_price),
    WithJsonSchema(
        {
            "description": f"At least 0, below {PRICE_LIMIT}, at most two decimal places, no minus sign: a numeric "
            "string, or a JSON number (whose places and sign JSON Schema cannot check, the server does)",
            "anyOf": [
                {"type": "string", "pattern": PRICE_TEXT.pattern, "example": "19.99"},
                {"type": "number", "minimum": 0, "exclusiveMaximum": int(PRICE_LIMIT)},
            ],
        },
        mode="validation",
    ),
]


# ---------------------------------------------------------------- requests


#: The default of a field that may be left out; sent as null, it is refused like any non-value.
_NOT_GIVEN: Any = None


class RequestBody(BaseModel):
    """A JSON object body: unknown fields are ignored, integers must be JSON integers."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    #: read from exact decimals (the standard library's parser): a JSON number price must not
    #: pass through a float
    exact_numbers: ClassVar[bool] = False


@cache
def buy_request(max_quantity: int) -> type[RequestBody]:
    """The body of a purchase or a hold, for a service whose largest quantity is `max_quantity`."""

    class BuyRequest(RequestBody):
        product_id: Id
        quantity: Annotated[
            int,
            Field(strict=True, ge=1, le=max_quantity, description=f"Units; 1..{max_quantity} (STOCKADE_MAX_QUANTITY)"),
        ]

        customer_id: CustomerId = Field(
            default=_NOT_GIVEN, description="Who buys; required when the product has `max_per_customer`"
        )

        def purchase(self) -> Purchase:
            return Purchase(self.product_id, self.quantity, self.customer_id)

        def hold(self) -> PlaceHold:
            return PlaceHold(self.product_id, self.quantity, self.customer_id)

    return BuyRequest


@cache
def extend_hold_request(max_extend_seconds: int) -> type[RequestBody]:
    """The body of a hold extension, for a service whose hold TTL is `max_extend_seconds`."""

    class ExtendHoldRequest(RequestBody):
        extend_seconds: Annotated[
            int,
            Field(
                strict=True,
                ge=1,
                le=max_extend_seconds,
                description=f"Seconds to add to the expiry; 1..{max_extend_seconds} (STOCKADE_HOLD_TTL_SECONDS)",
            ),
        ]

    return ExtendHoldRequest


class AdjustStockRequest(RequestBody):
    delta: Delta
    reason: Annotated[Name, Field(description="Why the stock changed; the rules of a product name")]

    def command(self, product_id: int) -> AdjustStock:
        return AdjustStock(product_id, self.delta, self.reason)


class OrderFromHoldRequest(RequestBody):
    hold_id: Id

    def command(self) -> OrderFromHold:
        return OrderFromHold(self.hold_id)


class ProductCreate(RequestBody):
    exact_numbers = True
    name: Name
    price: Price
    stock: Stock
    max_per_customer: MaxPerCustomer | None = None


_UPDATABLE = ("name", "price", "stock", "max_per_customer")


class ProductUpdate(RequestBody):
    """Any of name, price, stock, max_per_customer; stock below `reserved` is 409. A
    `max_per_customer` of null removes the limit; a lower one refuses only new claims."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": [f]} for f in _UPDATABLE]})
    exact_numbers = True
    name: Name = _NOT_GIVEN
    price: Price = _NOT_GIVEN
    stock: Stock = _NOT_GIVEN
    max_per_customer: MaxPerCustomer | None = None

    @model_validator(mode="after")
    def _names_a_field(self) -> ProductUpdate:
        if not self.model_fields_set:
            raise PydanticCustomError("body", f"must contain at least one of {', '.join(_UPDATABLE)}")
        return self


class PaymentNotificationBody(RequestBody):
    idempotency_key: ProviderKey
    order_id: Id
    status: Literal["success", "failure", "failed"] = Field(description="`failed` is accepted as `failure`")

    @property
    def result(self) -> str:
        return "failure" if self.status == "failed" else self.status


# ---------------------------------------------------------------- query strings


def _query_integer(value: Any) -> Any:
    """Query values are text; an integer is ASCII decimal digits and nothing else."""
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,19}", value):
            raise PydanticCustomError("query", "must be an integer written in decimal digits")
        return int(value)
    return value


#: Before the integer's own rules: text of ASCII digits becomes the integer.
FROM_QUERY_TEXT = BeforeValidator(_query_integer)


class Query(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class ProductListQuery(Query):
    limit: Annotated[int, Field(strict=True, ge=1, le=200, description="Page size"), FROM_QUERY_TEXT] = 50
    after_id: Annotated[
        int, Field(strict=True, ge=0, le=MAX_ID, description="Only products with a larger id"), FROM_QUERY_TEXT
    ] = 0


ORDER_STATUS = Literal["created", "pending", "paid", "processed", "cancelled"]
REFUND_STATUS = Literal["required", "refunded"]

PageSize = Annotated[int, Field(strict=True, ge=1, le=200, description="Page size"), FROM_QUERY_TEXT]
AfterId = Annotated[int, Field(strict=True, ge=0, le=MAX_ID, description="Only rows with a larger id"), FROM_QUERY_TEXT]


class OrderListQuery(Query):
    status: Literal["created", "pending", "paid", "processed", "cancelled"] = Field(
        default=_NOT_GIVEN, description="Only orders in this status"
    )
    product_id: Annotated[Id, Field(description="Only orders of this product"), FROM_QUERY_TEXT] = _NOT_GIVEN
    customer_id: Annotated[CustomerId, Field(description="Only orders of this customer")] = _NOT_GIVEN
    refund_status: REFUND_STATUS = Field(default=_NOT_GIVEN, description="Only orders with this refund status")
    limit: PageSize = 50
    after_id: AfterId = 0


class HoldListQuery(Query):
    status: Literal["active", "used", "released", "expired"] = Field(
        default=_NOT_GIVEN, description="Only holds in this status as it is now (`expired` as soon as the TTL passes)"
    )
    product_id: Annotated[Id, Field(description="Only holds of this product"), FROM_QUERY_TEXT] = _NOT_GIVEN
    customer_id: Annotated[CustomerId, Field(description="Only holds of this customer")] = _NOT_GIVEN
    limit: PageSize = 50
    after_id: AfterId = 0


class AdjustmentQuery(Query):
    limit: PageSize = 50
    before_id: Annotated[
        int, Field(strict=True, ge=1, le=MAX_ID, description="Only adjustments with a smaller id"), FROM_QUERY_TEXT
    ] = _NOT_GIVEN


class LogQuery(Query):
    event: Annotated[str, Field(min_length=1, max_length=64, description="Only events with this name")] = _NOT_GIVEN
    limit: Annotated[int, Field(strict=True, ge=1, le=1000, description="Page size"), FROM_QUERY_TEXT] = 100
    before_id: Annotated[
        int, Field(strict=True, ge=1, le=MAX_ID, description="Only events with a smaller id"), FROM_QUERY_TEXT
    ] = _NOT_GIVEN


# ---------------------------------------------------------------- responses


def amount(value: Decimal) -> str:
    return f"{value:.2f}"


Timestamp = Annotated[
    datetime,
    PlainSerializer(utc_timestamp, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$",
            "example": "2026-01-07T08:00:00.000000Z",
            "description": "UTC, microseconds, Z",
        }
    ),
]
Money = Annotated[
    Decimal,
    PlainSerializer(amount, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]+\.[0-9]{2}$",
            "example": "15000000.00",
            "description": "A decimal amount with exactly two places",
        }
    ),
]
Count = Annotated[int, Field(ge=0)]
Units = Annotated[int, Field(ge=1)]


class ResponseBody(BaseModel):
    """A response shape: exactly these fields, every one present (null where it has no value)."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


HOLD_STATUS = Literal["active", "used", "released", "expired"]


class ProductBody(ResponseBody):
    id: Id
    name: str
    price: Money
    stock: Count = Field(description="Units on hand, not yet sold")
    reserved: Count = Field(description="Units of active holds and pending orders")
    available: Count = Field(description="stock - reserved")
    available_stock: Count = Field(description="The same as `available`, under the name the flash-sale clients read")
    max_per_customer: MaxPerCustomer | None
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, p: Product) -> ProductBody:
        return cls.model_construct(
            id=p.id,
            name=p.name,
            price=p.price,
            stock=p.stock,
            reserved=p.reserved,
            available=p.available,
            available_stock=p.available,
            max_per_customer=p.max_per_customer,
            created_at=p.created_at,
            updated_at=p.updated_at,
        )


class ProductEnvelope(ResponseBody):
    data: ProductBody

    @classmethod
    def of(cls, p: Product) -> ProductEnvelope:
        return cls.model_construct(data=ProductBody.of(p))


class NextAfter(ResponseBody):
    next_after_id: Id | None = Field(description="`after_id` of the next page; null at the end")


class PageById(ResponseBody):
    """One page of a listing ordered by id; a subclass names its rows' model in `data` and `row`."""

    data: list[Any]
    meta: NextAfter
    #: renders one row of the page: a callable, row -> its body model
    row: ClassVar[Any]

    @classmethod
    def of(cls, page: list[Any], next_after_id: int | None) -> Self:
        return cls.model_construct(
            data=[cls.row(r) for r in page], meta=NextAfter.model_construct(next_after_id=next_after_id)
        )


class ProductPage(PageById):
    data: list[ProductBody] = Field(description="Ordered by id")
    row = ProductBody.of


class ProductSummary(ResponseBody):
    """The product as it is now (after the sale, for a purchase)."""

    id: Id
    name: str
    price: Money
    stock: Count


class OrderBody(ResponseBody):
    id: Id
    product_id: Id
    hold_id: Id | None
    customer_id: str | None = Field(description="The customer who bought (from the hold for an order from a hold)")
    quantity: Units
    total_price: Money
    status: ORDER_STATUS
    refund_status: REFUND_STATUS | None = Field(
        description="`required`: the order was cancelled after its payment was taken, and the money must be "
        "given back; `refunded`: it was; null: no refund is owed"
    )
    created_at: Timestamp
    updated_at: Timestamp
    product: ProductSummary

    @classmethod
    def of(cls, view: OrderView) -> OrderBody:
        o, p = view.order, view.product
        return cls.model_construct(
            id=o.id,
            product_id=o.product_id,
            hold_id=o.hold_id,
            customer_id=o.customer_id,
            quantity=o.quantity,
            total_price=o.total_price,
            status=o.status.value,
            refund_status=o.refund_status.value if o.refund_status else None,
            created_at=o.created_at,
            updated_at=o.updated_at,
            product=ProductSummary.model_construct(id=p.id, name=p.name, price=p.price, stock=p.stock),
        )


class OrderEnvelope(ResponseBody):
    data: OrderBody

    @classmethod
    def of(cls, view: OrderView) -> OrderEnvelope:
        return cls.model_construct(data=OrderBody.of(view))


class OrderPage(PageById):
    data: list[OrderBody] = Field(description="Ordered by id")
    row = OrderBody.of


_HOLD_CUSTOMER = Field(description="The customer the units are held for; null: none named")


class AdjustmentBody(ResponseBody):
    id: Id
    product_id: Id
    delta: int = Field(description="The change of stock; a `PUT` that set the stock shows its difference")
    reason: str = Field(description="Given with the adjustment; `set` for a `PUT` of the stock")
    stock_after: Count
    created_at: Timestamp

    @classmethod
    def of(cls, a: StockAdjustment) -> AdjustmentBody:
        return cls.model_construct(
            id=a.id,
            product_id=a.product_id,
            delta=a.delta,
            reason=a.reason,
            stock_after=a.stock_after,
            created_at=a.created_at,
        )


class AdjustmentEnvelope(ResponseBody):
    data: AdjustmentBody

    @classmethod
    def of(cls, a: StockAdjustment) -> AdjustmentEnvelope:
        return cls.model_construct(data=AdjustmentBody.of(a))


class NewHold(ResponseBody):
    hold_id: Id
    expires_at: Timestamp
    product_id: Id
    quantity: Units
    status: Literal["active"]
    customer_id: str | None = _HOLD_CUSTOMER
    created_at: Timestamp

    @classmethod
    def of(cls, h: Hold) -> NewHold:
        return cls.model_construct(
            hold_id=h.id,
            expires_at=h.expires_at,
            product_id=h.product_id,
            quantity=h.quantity,
            status=h.status.value,
            customer_id=h.customer_id,
            created_at=h.created_at,
        )


class HoldBody(ResponseBody):
    hold_id: Id
    product_id: Id
    quantity: Units
    status: HOLD_STATUS = Field(description="`expired` as soon as the TTL passes, swept or not")
    expires_at: Timestamp
    order_id: Id | None
    customer_id: str | None = _HOLD_CUSTOMER
    created_at: Timestamp

    @classmethod
    def of(cls, view: HoldView) -> HoldBody:
        h = view.hold
        return cls.model_construct(
            hold_id=h.id,
            product_id=h.product_id,
            quantity=h.quantity,
            status=view.status_now,
            expires_at=h.expires_at,
            order_id=h.order_id,
            customer_id=h.customer_id,
            created_at=h.created_at,
        )


class HoldPage(PageById):
    data: list[HoldBody] = Field(description="Ordered by id")
    row = HoldBody.of


class PendingOrderBody(ResponseBody):
    order_id: Id
    status: Literal["pending"]
    total_price: Money
    hold_id: Id
    product_id: Id
    quantity: Units

    @classmethod
    def of(cls, result: PendingOrder) -> PendingOrderBody:
        o = result.order
        return cls.model_construct(
            order_id=o.id,
            status=o.status.value,
            total_price=o.total_price,
            hold_id=o.hold_id,
            product_id=o.product_id,
            quantity=o.quantity,
        )


class PaymentResultBody(ResponseBody):
    order_id: Id
    status: Literal[ORDER_STATUS, "deferred"] = Field(
        description="The order's status after this delivery, or `deferred`"
    )
    idempotency_key: str
    outcome: Literal["applied", "deferred", "ignored"]

    @classmethod
    def of(cls, result: WebhookResult) -> PaymentResultBody:
        return cls.model_construct(
            order_id=result.order_id,
            status=result.status,
            idempotency_key=result.idempotency_key,
            outcome=result.outcome.value,
        )


class LoggedEventBody(ResponseBody):
    id: Id
    event: str
    data: dict[str, Any]
    created_at: Timestamp


class NextBefore(ResponseBody):
    next_before_id: Id | None = Field(description="`before_id` of the next page; null at the end")


class LogPage(ResponseBody):
    data: list[LoggedEventBody] = Field(description="Newest first")
    meta: NextBefore

    @classmethod
    def of(cls, events: list[LoggedEvent], next_before_id: int | None) -> LogPage:
        return cls.model_construct(
            data=[
                LoggedEventBody.model_construct(id=e.id, event=e.event, data=e.data, created_at=e.created_at)
                for e in events
            ],
            meta=NextBefore.model_construct(next_before_id=next_before_id),
        )


class AdjustmentPage(ResponseBody):
    data: list[AdjustmentBody] = Field(description="Newest first")
    meta: NextBefore

    @classmethod
    def of(cls, page: list[StockAdjustment], next_before_id: int | None) -> AdjustmentPage:
        return cls.model_construct(
            data=[AdjustmentBody.of(a) for a in page], meta=NextBefore.model_construct(next_before_id=next_before_id)
        )


class Health(ResponseBody):
    status: Literal["ok"]


class Ready(ResponseBody):
    status: Literal["ok"]
    checks: dict[str, str]


class NotReady(ResponseBody):
    message: str
    checks: dict[str, str] = Field(description="Component -> `ok` or why it failed")


class ErrorBody(ResponseBody):
    """Every refusal: what went wrong and what to do; 422 adds each invalid field's reasons."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=False)
    message: str
    errors: dict[str, list[str]] | None = Field(default=None, description="Field -> reasons (422 only)")


#: Every request and response shape, as the OpenAPI document names them.
REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    AdjustStockRequest,
    OrderFromHoldRequest,
    ProductCreate,
    ProductUpdate,
    PaymentNotificationBody,
)
RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    ErrorBody,
    ProductEnvelope,
    ProductPage,
    OrderEnvelope,
    OrderPage,
    NewHold,
    HoldBody,
    HoldPage,
    PendingOrderBody,
    PaymentResultBody,
    AdjustmentEnvelope,
    AdjustmentPage,
    LogPage,
    Health,
    Ready,
    NotReady,
)
