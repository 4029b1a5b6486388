"""Bringing a database to the newest schema with Alembic, and asking whether it is there."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import migrations


def alembic_config(url: str | None = None, connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str | None = None, connection=None) -> None:
    """Run every pending migration."""
    command.upgrade(alembic_config(url, connection), "heads")


def head_revision() -> str:
    """The newest revision; several branches' heads joined by commas while they are unmerged."""
    return ",".join(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def current_revision(connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(sorted(heads)) or None
