"""The cost of validating the hot path's body (POST /api/orders/purchase), in process.

    .venv/bin/python benchmarks/validation_cost.py

Prints microseconds per call, best of 5 rounds: the server's own body -> model step for a
valid and an invalid body; the same step with msgspec when it is installed (the faster
library, which names only the first invalid field, so the server cannot use it); and whole
requests through Falcon's test client on a SQLite file (a 422 that never reaches the
database, and a 201 purchase).
"""

import json
import tempfile
import timeit
from typing import Annotated, Any

import falcon.testing

from stockade.adapters.clock import FixedClock
from stockade.entrypoints.bootstrap import build_services
from stockade.entrypoints.http import create_app
from stockade.entrypoints.http.body import ValidationFailed, validated
from stockade.entrypoints.http.schemas import MAX_ID, buy_request
from stockade.entrypoints.settings import Settings

VALID = b'{"product_id": 1, "quantity": 2}'
INVALID = b'{"product_id": "1", "quantity": 0}'


def best_us(call: Any, number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


def refused(call: Any, exc: type[Exception]) -> Any:
    def run() -> None:
        try:
            call()
        except exc:
            pass

    return run


def main() -> None:
    model = buy_request(100)
    print(f"server, valid body:      {best_us(lambda: validated(model, VALID), 100_000):6.2f} us")
    invalid = refused(lambda: validated(model, INVALID), ValidationFailed)
    print(f"server, invalid body:    {best_us(invalid, 100_000):6.2f} us")
    try:
        import msgspec
    except ImportError:
        print("msgspec: not installed (pip install msgspec to compare)")
    else:

        class Buy(msgspec.Struct):
            product_id: Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
            quantity: Annotated[int, msgspec.Meta(ge=1, le=100)]

        decoder = msgspec.json.Decoder(Buy)
        print(f"msgspec, valid body:     {best_us(lambda: decoder.decode(VALID), 100_000):6.2f} us")
        invalid = refused(lambda: decoder.decode(INVALID), msgspec.ValidationError)
        print(f"msgspec, invalid body:   {best_us(invalid, 100_000):6.2f} us  (names only the first invalid field)")
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(database_url=f"sqlite:///{folder}/bench.db", order_processing_seconds=3600)
        with build_services(settings, clock=FixedClock()) as services:
            services.publisher.close()  # type: ignore[attr-defined]  # no background work during the run
            product = services.shop.create_product("P", "1.00", 10**9)
            client = falcon.testing.TestClient(create_app(services.shop))
            headers = {"Content-Type": "application/json"}
            sale = json.dumps({"product_id": product.id, "quantity": 1}).encode()
            for label, body in (("request, 422", INVALID), ("request, 201", sale)):
                cost = best_us(lambda: client.simulate_post("/api/orders/purchase", body=body, headers=headers), 2000)
                print(f"{label}:            {cost:6.1f} us")


if __name__ == "__main__":
    main()
