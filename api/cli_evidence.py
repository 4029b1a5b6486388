"""`utfall evidence import FILE --contract ID`: bulk evidence from CSV or JSON Lines files.

api/cli.py adds this group to its parser with `register(sub)`. The command runs as an
operator acting for the contract's provider: an Actor with role PROVIDER and the contract's
provider as its party, so exactly the provider's rules apply. `python -m api.cli_evidence
evidence import ...` runs the same command on its own.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from ledger.access import Actor
from ledger.config import ConfigError, load
from ledger.db import Database, make_engine
from ledger.errors import DomainError

EXIT_OK, EXIT_BAD_FILE, EXIT_USAGE = 0, 1, 2


def _contract_id(raw: str) -> int:
    if raw.isascii() and raw.isdigit():
        return int(raw)
    from api.graphql.base import from_global_id
    return from_global_id(raw, "OutcomeContract", field="contract")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _describe(bad) -> list[str]:
    return [f"line {bad.line}: {e.code}{' (' + '.'.join(e.field) + ')' if e.field else ''}: {e.message}"
            for e in bad.errors]


def _progress(file_size: int | None, quiet: bool):
    """A rich progress bar on stderr over the file's bytes; a no-op off a terminal or with --quiet."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
    console = Console(stderr=True)
    progress = Progress(TextColumn("importing"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[rows]} rows, {task.fields[bad]} bad"), TimeRemainingColumn(),
                        console=console, transient=True, disable=quiet or not console.is_terminal)
    task = progress.add_task("import", total=file_size, rows=0, bad=0)

    def update(bytes_read: int, rows: int, imported: int, rejected: int) -> None:
        progress.update(task, completed=bytes_read, rows=f"{rows:,}", bad=f"{rejected:,}")
    return progress, update


def cmd_evidence_import(args, settings) -> int:
    from ledger import evidence_import as imp
    from ledger.contracts import get_contract
    from ledger.models import utcnow
    from ledger.parties import clean_text

    if args.skip_bad and not args.rejects:
        _say("utfall: --skip-bad needs --rejects PATH: bad rows are never dropped unseen")
        return EXIT_USAGE
    path = Path(args.file)
    try:
        fmt = args.format or imp.detect_format(path.name)
        actor_name = clean_text(args.actor, "actor", max_len=150)
        contract_id = _contract_id(args.contract)
    except DomainError as err:
        _say(f"utfall: {err.code}: {err.message}")
        return EXIT_USAGE
    try:
        source = open(path, "rb")
    except OSError as exc:
        _say(f"utfall: cannot read {path}: {exc.strerror}")
        return EXIT_USAGE

    db = Database(make_engine(settings.database_url))
    rejects, keep_rejects = None, False
    try:
        with db.reading() as s:
            provider_id = get_contract(s, contract_id).provider_id
        actor = Actor(name=actor_name, role="PROVIDER", party_id=provider_id)
        if args.rejects:
            # written beside its destination and renamed at the end: never half a reject file
            fd, tmp = tempfile.mkstemp(prefix=".rejects-", dir=Path(args.rejects).resolve().parent)
            rejects = (open(fd, "w", encoding="utf-8", newline=""), tmp)
            writer = imp.RejectWriter(rejects[0], fmt)
        shown = 0

        def on_bad_row(bad) -> None:
            nonlocal shown
            if rejects is not None:
                writer(bad)
            if not args.skip_bad or shown < args.show:  # without --skip-bad, every bad row is printed
                for text in _describe(bad):
                    _say(text)
                shown += 1

        progress, update = _progress(os.fstat(source.fileno()).st_size, args.quiet)
        with progress, db.uow() as uow:
            result = imp.import_evidence(
                uow, actor=actor, contract_id=contract_id, source=source, file_name=path.name, format=fmt,
                today=utcnow().date(), skip_bad=args.skip_bad, on_bad_row=on_bad_row, on_progress=update,
                batch_size=args.batch_size)
            uow.commit()
        keep_rejects = True
    except imp.ImportRejected as err:
        keep_rejects = True
        r = err.result
        _say(f"utfall: {r.rejected:,} of {r.rows:,} rows are bad; nothing was imported"
             + (f" (bad rows in {args.rejects})" if args.rejects else "")
             + ". Fix them, or import the good rows with --skip-bad --rejects PATH.")
        return EXIT_BAD_FILE
    except DomainError as err:
        _say(f"utfall: {err.code}: {err.message}; nothing was imported")
        return EXIT_BAD_FILE
    finally:
        source.close()
        db.engine.dispose()
        _finish_rejects(rejects, args.rejects if keep_rejects else None)
    if args.skip_bad and result.rejected > args.show:
        _say(f"... {result.rejected - args.show:,} more bad rows in {args.rejects}")
    print(f"imported {result.imported:,} evidence rows ({result.documents:,} documents) from {path.name} "
          f"into contract {contract_id} as {actor.label}; sha256 {result.sha256}")
    if result.rejected:
        print(f"skipped {result.rejected:,} bad rows, written to {args.rejects}")
    return EXIT_OK


def _finish_rejects(rejects, destination: str | None) -> None:
    """Close the temporary reject file; move it into place, or remove it (None: the import
    failed as a whole, so its rows were never all checked)."""
    if rejects is None:
        return
    out, tmp = rejects
    out.close()
    if destination:
        os.replace(tmp, destination)
    else:
        os.unlink(tmp)


def register(subparsers) -> None:
    """Add the `evidence` command group to the `utfall` parser's subparsers."""
    from ledger.evidence_import import DEFAULT_BATCH
    group = subparsers.add_parser("evidence", help="outcome evidence").add_subparsers(
        dest="evidence_command", required=True)
    imp = group.add_parser(
        "import", help="import evidence from a CSV or JSON Lines file (schemas/evidence-import.schema.json)",
        description="Import every row of FILE into the contract as SUBMITTED evidence, in one transaction. "
                    "When any row is bad, every bad row is reported with its line number and nothing is imported, "
                    "unless --skip-bad is given: then the good rows are imported and the bad ones written to --rejects.")
    imp.add_argument("file", metavar="FILE", help="a .csv or .jsonl file")
    imp.add_argument("--contract", required=True, metavar="ID", help="the contract's ID (global or numeric)")
    imp.add_argument("--format", choices=("csv", "jsonl"), help="the file's format (default: by its extension)")
    imp.add_argument("--skip-bad", action="store_true", help="import the good rows even when some are bad")
    imp.add_argument("--rejects", metavar="PATH", help="write the bad rows, with line numbers and errors, to PATH")
    imp.add_argument("--actor", default="cli import", metavar="NAME",
                     help="who is importing, recorded as the submitter and in the audit trail")
    imp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    imp.add_argument("--show", type=int, default=20, metavar="N",
                     help="with --skip-bad, print the first N bad rows (all are in the reject file)")
    imp.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=argparse.SUPPRESS)
    imp.set_defaults(func=cmd_evidence_import, needs_secret=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="utfall")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args, load())
    except ConfigError as err:
        _say(f"utfall: {err}")
        return EXIT_USAGE
    except DomainError as err:
        _say(f"utfall: {err.code}: {err.message}")
        return EXIT_BAD_FILE


if __name__ == "__main__":
    sys.exit(main())
