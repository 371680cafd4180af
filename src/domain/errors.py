"""Domain errors: each names a business rule that refused a request."""


class DomainError(Exception):
    """Base of every refusal the domain can give; carries a human message."""

    message = "Request refused"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message


class OutOfStock(DomainError):
    """Fewer units are available than were asked for."""

    message = "Out of stock"


class LimitPerCustomerReached(DomainError):
    """The customer's claim on the product would pass its `max_per_customer`."""

    message = "Limit per customer reached"


class CustomerRequired(DomainError):
    """A product with a limit per customer is bought or held without a `customer_id`."""

    message = "customer_id is required: this product has a limit per customer"


class ProductNotFound(DomainError):
    """No live product has that id."""

    message = "Product not found"


class HoldNotFound(DomainError):
    """No hold has that id."""

    message = "Hold not found"


class OrderNotFound(DomainError):
    """No order has that id."""

    message = "Order not found"


class HoldNotActive(DomainError):
    """The hold can no longer become an order or be released."""


class HoldAlreadyUsed(HoldNotActive):
    """The hold already became an order."""

    message = "Hold already used"


class HoldReleased(HoldNotActive):
    """The hold was released by its owner."""

    message = "Hold already released"


class HoldExpired(HoldNotActive):
    """The hold outlived its TTL (swept or not)."""

    message = "Hold expired"


class HoldTooOld(DomainError):
    """The hold already expires at the latest moment a hold may live (STOCKADE_HOLD_MAX_SECONDS)."""

    message = "Hold cannot be extended further"


class OrderAlreadyProcessed(DomainError):
    """A processed order's goods are gone: it can no longer be cancelled."""

    message = "Order already processed"


class NoRefundRequired(DomainError):
    """Only a cancelled order whose payment was taken has a refund to record."""

    message = "No refund is required"


class StockAdjustmentRefused(DomainError):
    """A stock adjustment would take `available` below 0 or `stock` above 2^31-1."""

    BELOW_RESERVED = "Adjustment would take available stock below 0"
    ABOVE_MAXIMUM = "Adjustment would take stock above 2147483647"
    message = BELOW_RESERVED


class StockBelowReserved(DomainError):
    """An admin asked for less stock than is already promised to holds and pending orders."""

    message = "Stock cannot be set below the reserved quantity"


class ProductHasReservations(DomainError):
    """A product with active holds or pending orders cannot be deleted."""

    message = "Product has active holds or pending orders"


class PreconditionFailed(DomainError):
    """The product changed since the version the client named (If-Match)."""

    message = "Product has changed since it was read"


class IdempotencyKeyReused(DomainError):
    """The same idempotency key came with a different request body."""

    message = "Idempotency key was already used with a different request"


class IdempotencyKeyInFlight(DomainError):
    """The first request with this idempotency key has not finished yet."""

    message = "A request with this idempotency key is still in progress"
