"""An ASGI factory for servers that start several worker processes themselves.

    uvicorn --factory api.asgi:create --workers 4 --host 0.0.0.0 --port 8000

Each worker builds its own app (engine, thread pool) from the environment, like `utfall serve`.
"""
from __future__ import annotations

from api.app import create_app
from api.logs import configure
from ledger.config import load


def create():
    """The app for one worker process, configured from the environment only."""
    configure()
    return create_app(load())
