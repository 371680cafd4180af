"""`stockade check`: reconcile product counters against the holds and orders tables."""

from __future__ import annotations

from stockade.application.commands import CheckReport, Drift
from stockade.application.services import Deps


def check_invariants(deps: Deps) -> CheckReport:
    """Every product whose stock, reserved or available breaks the model, whose `reserved`
    differs from its active holds plus pending orders, or one of whose customers' claims
    differs from that customer's active holds plus claiming orders."""
    with deps.read() as uow:
        rows = uow.products.audit()
        claim_drifts = uow.claims.audit()
    drifts = []
    for product, expected in rows:
        problems = []
        if product.stock < 0:
            problems.append("stock is negative")
        if product.reserved < 0:
            problems.append("reserved is negative")
        if product.stock < product.reserved:
            problems.append("available is negative")
        if product.reserved != expected:
            problems.append(f"reserved {product.reserved} but active holds and pending orders hold {expected}")
        problems += [
            f"customer {c.customer_id!r} claims {c.claimed} but their active holds and orders hold {c.expected}"
            for c in claim_drifts
            if c.product_id == product.id
        ]
        if problems:
            drifts.append(Drift(product.id, product.name, product.stock, product.reserved, expected, tuple(problems)))
    return CheckReport(len(rows), tuple(drifts), deps.clock.now())
