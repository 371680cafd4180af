"""The public HTTP API (Falcon, WSGI)."""

from stockade.entrypoints.http.app import create_app

__all__ = ["create_app"]
