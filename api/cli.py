"""The `utfall` command line: database, tokens, the server, the demo."""
from __future__ import annotations

import argparse
import sys

from ledger.access import SYSTEM
from ledger.config import ConfigError, load
from ledger.db import Database, make_engine
from ledger.errors import DomainError


ENVIRONMENT = """environment:
  DATABASE_URL   the database (default: sqlite:///utfall.db in the working directory)
  UTFALL_ENV     development or production (default production)
  UTFALL_SECRET  the key for hashing identity numbers; needed only by commands that may see one
                 (serve, demo, evidence import) unless UTFALL_ENV=development
  UTFALL_DOCUMENT_DIR        serve: where uploaded documents are stored (default: documents beside
                             the SQLite file, else in the working directory)
  UTFALL_DOCUMENT_MAX_BYTES  serve: the largest document upload (default 20 MiB)
  UTFALL_IMPORT_MAX_BYTES    serve: the largest evidence file imported over HTTP (default 512 MiB)"""


def redact_url(url: str) -> str:
    """A database URL fit to print: the password replaced by ***."""
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: print nothing of it
        return "(the configured database)"


def _db(settings) -> Database:
    return Database(make_engine(settings.database_url))


def cmd_db_upgrade(args, settings) -> int:
    from ledger import schema
    schema.upgrade(settings.database_url)
    print(f"database at head ({schema.head_revision()})")
    return 0


def _pk(raw: str, type_name: str) -> int:
    """A numeric key, or the key inside a global ID as the API shows it."""
    from api.graphql.base import from_global_id
    return int(raw) if raw.isdigit() else from_global_id(raw, type_name, field=type_name.lower())


def _party_id(raw: str | None) -> int | None:
    return None if raw is None else _pk(raw, "Party")


def cmd_token_create(args, settings) -> int:
    from ledger import tokens
    db = _db(settings)
    with db.uow() as uow:
        issued = tokens.create_token(uow, actor=SYSTEM, name=args.name, role=args.role, party_id=_party_id(args.party))
        uow.commit()
    print(f"token {issued.api_token.id} for {args.name} ({args.role}); it is shown only once:")
    print(issued.token)
    return 0


def cmd_serve(args, settings) -> int:
    import uvicorn
    from api.app import create_app, settle_heap
    from api.logs import configure
    configure()
    app = create_app(settings)
    settle_heap()
    # our own per-request line (with request id, status, duration) replaces uvicorn's access log
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


def cmd_ledger_verify(args, settings) -> int:
    from ledger import journal
    if (args.sequence is None) != (args.hash is None):
        print("utfall ledger verify: --sequence and --hash go together (a digest is both)", file=sys.stderr)
        return 2
    db = _db(settings)
    with db.reading() as s:
        d = journal.Digest(args.sequence, args.hash) if args.sequence is not None else None
        v = journal.verify(s, d)
    if v.ok:
        print(f"ok: {v.checked_transactions} transactions verified")
        return 0
    print(f"FAILED at sequence {v.first_invalid_sequence}: {v.reason} ({v.checked_transactions} verified before it)")
    return 1


def cmd_schema_export(args, settings) -> int:
    from pathlib import Path
    from strawberry.printer import print_schema
    from api.graphql.schema import schema
    sdl = print_schema(schema) + "\n"
    output = args.output
    if output is None:
        if not Path("schemas").is_dir():  # outside the repository: the SDL goes to standard output
            sys.stdout.write(sdl)
            return 0
        output = "schemas/schema.graphql"
    Path(output).write_text(sdl, encoding="utf-8")
    print(f"wrote {output}")
    return 0


def cmd_payout_recompute(args, settings) -> int:
    from ledger import calculations
    db = _db(settings)
    pk = _pk(args.payout, "Payout")
    with db.reading() as s:
        payout = calculations.get_payout(s, pk)
        r = calculations.recompute(s, payout)
    if r.matches:
        print(f"payout {pk}: recomputed from its recorded inputs, every figure matches (inputs {r.inputs_hash})")
        return 0
    print(f"payout {pk}: DIFFERS in {', '.join(r.differences)} (recomputed inputs {r.inputs_hash})")
    return 1


def cmd_demo(args, settings) -> int:
    import time
    from ledger import demo, schema
    from ledger.models import utcnow
    schema.upgrade(settings.database_url)
    started = time.perf_counter()
    issued = demo.load(_db(settings), today=utcnow().date(), secret=settings.secret)
    print(f"demo fund ready in {time.perf_counter() - started:.1f} s ({redact_url(settings.database_url)})")
    print("Tokens, one per role (put one in GraphiQL's headers as {\"Authorization\": \"Bearer <token>\"}):")
    for t in issued:
        print(f"  {t.role:<13} {t.name:<24} {t.party or '':<28} {t.token}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="utfall", description="Utfall: outcomes contracts and their ledger.")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="the database").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="create or migrate the database named by DATABASE_URL").set_defaults(func=cmd_db_upgrade)

    tok = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command", required=True)
    create = tok.add_parser("create", help="create a bearer token; prints it alone on the last line")
    create.add_argument("--role", required=True,
                        choices=["ADMIN", "FUND_MANAGER", "MUNICIPALITY", "PROVIDER", "VERIFIER", "AUDITOR", "INVESTOR"])
    create.add_argument("--name", required=True)
    create.add_argument("--party", help="the party's ID (global or numeric) for party-bound roles")
    create.set_defaults(func=cmd_token_create)

    serve = sub.add_parser("serve", help="serve GraphQL at /graphql",
                           description="Serve GraphQL at /graphql (GraphiQL in a browser in development), "
                                       "the public results page at /results, health at /healthz and /readyz.")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve, needs_secret=True)

    sub.add_parser("demo", help="load a realistic demo fund and print a token per role",
                   description="Migrate the database, load the demo outcomes fund once (three municipalities, "
                               "providers of each ownership form, contracts, participants, evidence, payouts) "
                               "and print a new token for each role.").set_defaults(func=cmd_demo, needs_secret=True)

    sch = sub.add_parser("schema", help="the GraphQL schema").add_subparsers(dest="schema_command", required=True)
    exp = sch.add_parser("export", help="write the SDL (schemas/schema.graphql)")
    exp.add_argument("--output", help="where to write (default: schemas/schema.graphql in a checkout, "
                                      "otherwise standard output)")
    exp.set_defaults(func=cmd_schema_export, needs_settings=False)

    pay = sub.add_parser("payout", help="payouts").add_subparsers(dest="payout_command", required=True)
    rec = pay.add_parser("recompute", help="recompute a payout from its recorded inputs and compare")
    rec.add_argument("payout", help="the payout's ID (global or numeric)")
    rec.set_defaults(func=cmd_payout_recompute)

    led = sub.add_parser("ledger", help="the ledger").add_subparsers(dest="ledger_command", required=True)
    ver = led.add_parser("verify", help="recompute the hash chain and balances of the database")
    ver.add_argument("--sequence", type=int, help="a digest's sequence to prove")
    ver.add_argument("--hash", help="a digest's hash to prove")
    ver.set_defaults(func=cmd_ledger_verify)

    from api.cli_proofs import register as register_proofs
    register_proofs(sub, led)
    from api.cli_contracts import register as register_contracts
    from api.cli_evidence import register as register_evidence
    from api.cli_export import register as register_export
    from api.cli_investments import register as register_investments
    from api.cli_report import register as register_report
    register_evidence(sub)
    register_export(sub)
    register_report(sub)
    register_investments(sub)
    register_contracts(sub)
    _with_environment(p)
    return p


def _with_environment(parser: argparse.ArgumentParser) -> None:
    """Every command's --help ends with the environment variables it reads."""
    parser.epilog = ENVIRONMENT
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _with_environment(child)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sqlalchemy.exc import DBAPIError, OperationalError
    settings = None
    try:
        if getattr(args, "needs_settings", True):
            settings = load(require_secret=getattr(args, "needs_secret", False))
        return args.func(args, settings)
    except ConfigError as err:
        print(f"utfall: {err}", file=sys.stderr)
        return 2
    except DomainError as err:
        print(f"utfall: {err.code}: {err.message}", file=sys.stderr)
        return 1
    except (OperationalError, DBAPIError) as err:
        # an unreachable or refusing database is foreseeable: say so without a traceback
        where = redact_url(settings.database_url) if settings else "the database"
        reason = str(getattr(err, "orig", err)).strip().splitlines()[0] if str(getattr(err, "orig", err)).strip() else type(err).__name__
        print(f"utfall: cannot use {where}: {reason}", file=sys.stderr)
        return 1
    except OSError as err:  # a file that cannot be read or written
        print(f"utfall: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
