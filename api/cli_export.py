"""`utfall export ...`: the ledger as CSV or beancount, for auditors.

    utfall export ledger --format csv|beancount [--as-of YYYY-MM-DD] [--output PATH]
    utfall export indigo --contract ID [--private] [--output PATH]

Without --output the export goes to standard output (UTF-8). With --output it is written to
PATH.tmp and renamed to PATH once complete, so a failed export never leaves a partial file
under the expected name; a summary line then goes to standard output.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from datetime import date


def _date(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a date (YYYY-MM-DD)") from None


def cmd_export_ledger(args, settings) -> int:
    from ledger import export
    from ledger.db import Database, make_engine
    db = Database(make_engine(settings.database_url))
    with db.reading() as s:
        if args.output is None:
            sys.stdout.flush()
            out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="") \
                if hasattr(sys.stdout, "buffer") else sys.stdout
            try:
                export.export_ledger(s, out, fmt=args.format, as_of=args.as_of)
                out.flush()
            except BrokenPipeError:  # the reader went away (`| head`): stop without a traceback
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 1
            finally:
                if out is not sys.stdout:
                    out.detach()  # leave sys.stdout's buffer open
            return 0
        tmp = f"{args.output}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8", newline="") as out:
                summary = export.export_ledger(s, out, fmt=args.format, as_of=args.as_of)
            os.replace(tmp, args.output)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    print(f"exported {summary.transactions} transactions ({summary.entries} entries) to {args.output}; "
          f"last: sequence {summary.last.sequence}, hash {summary.last.hash}")
    return 0


def cmd_export_indigo(args, settings) -> int:
    """The contract as an INDIGO 4.1.0 project with its organisations and fund (JSON).

    Public by default, as anyone may see it; --private includes what a fund manager marked
    private (whoever runs this can read the database anyway)."""
    import json
    from api.cli import _db, _pk
    from ledger.access import SYSTEM
    from ledger.publishing import indigo_export
    with _db(settings).reading() as s:
        doc = indigo_export.export_project(s, actor=SYSTEM if args.private else None,
                                           contract_id=_pk(args.contract, "OutcomeContract"), public=not args.private)
    text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    tmp = f"{args.output}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"exported {doc['project']['id']} ({'private' if args.private else 'public'}) with "
          f"{len(doc['organisations'])} organisations to {args.output}")
    return 0


def register(subparsers) -> None:
    """Add the `export` command group to the `utfall` parser's subparsers."""
    exp = subparsers.add_parser("export", help="export data for auditors").add_subparsers(
        dest="export_command", required=True)
    led = exp.add_parser("ledger", help="the journal as CSV (one row per entry) or a beancount file")
    led.add_argument("--format", required=True, choices=["csv", "beancount"])
    led.add_argument("--as-of", type=_date, metavar="YYYY-MM-DD",
                     help="only transactions posted (UTC) up to the end of this date")
    led.add_argument("--output", metavar="PATH", help="write to PATH instead of standard output")
    led.set_defaults(func=cmd_export_ledger)
    ind = exp.add_parser("indigo", help="a contract as an INDIGO 4.1.0 project (JSON), public unless --private")
    ind.add_argument("--contract", required=True, metavar="ID", help="the contract's ID (global or numeric)")
    ind.add_argument("--private", action="store_true", help="include what the fund manager marked private")
    ind.add_argument("--output", metavar="PATH", help="write to PATH instead of standard output")
    ind.set_defaults(func=cmd_export_indigo)
