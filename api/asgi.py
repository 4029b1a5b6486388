"""An ASGI factory for servers that start several worker processes themselves.

    uvicorn --factory api.asgi:create --workers 4 --host 0.0.0.0 --port 8000

Each worker builds its own app (engine, thread pool) from the environment, like `utfall serve`.
On PostgreSQL the workers share one writer (ledger.shared_writer): the one holding the writer seat
makes every worker's mutations in its group commit's batches. UTFALL_SHARED_WRITER=0 gives each
worker its own writer (they then take turns through the writer lease).
"""
from __future__ import annotations

import os

from api.app import create_app
from api.logs import configure
from ledger.config import load


def create():
    """The app for one worker process, configured from the environment only."""
    configure()
    return create_app(load({"UTFALL_SHARED_WRITER": "1", **os.environ}))
