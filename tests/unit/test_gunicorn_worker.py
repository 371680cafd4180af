"""The gunicorn worker class's own behaviour, apart from serving."""

from __future__ import annotations

import gc

from gunicorn.workers.ggevent import GeventWorker

from stockade.entrypoints.gunicorn_app import StockadeWorker


def test_a_worker_freezes_what_it_built_out_of_garbage_collection(monkeypatch) -> None:
    """The app and its services live as long as the worker: once built, the collector's
    generations no longer hold them, so its full collections stop walking them."""
    built: list[object] = []
    monkeypatch.setattr(GeventWorker, "load_wsgi", lambda self: built.append([{"app": n} for n in range(100)]))
    gc.unfreeze()
    try:
        StockadeWorker.load_wsgi(object.__new__(StockadeWorker))
        assert built, "the app was loaded"
        assert gc.get_freeze_count() > 0
        assert not any(obj is built[0] for obj in gc.get_objects())
    finally:
        gc.unfreeze()
