"""Evidence files over HTTP against the CLI: rows per second of `POST /contracts/{id}/evidence-imports`
and of `utfall evidence import`, the same file in the same run.

    python -m ops.bench.evidence_upload [--quick] [--backend sqlite|postgresql|both] [--rows N] [--runs N]
                                        [--json PATH]

A measurement, not a timed test: it prints figures and asserts only that every row was
imported. Per backend, the evidence import benchmark's world (ops/bench/evidence_import.py: a
freshly migrated database, an active contract with 20 000 participants, three metrics) and its
CSV file of 100 000 rows (`--quick`: 20 000; a quarter with a document).

Variants, interleaved round by round, each the median of `--runs` (at least 3), the evidence
deleted before each run:
- `HTTP upload`: the file POSTed with a provider's bearer token to the real service
  (`uvicorn --factory api.asgi:create`, one worker, in its own process on 127.0.0.1, its log
  going to a file) by a client in another process, which streams the file from disk and
  times from the first byte sent to the import report received (201, every row imported).
- `CLI import`: `utfall evidence import FILE --contract ID --quiet` as a process of its own,
  timed from start to exit (interpreter start-up included, as an operator waits for it).
- the reference `importer`: `ledger.evidence_import.import_evidence` in this process, from
  opening the file to the commit: what both of the above run.
ratio = HTTP ÷ CLI as times (above 1: HTTP is slower); the target is at most 1.5.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ledger import tokens
from ledger.access import SYSTEM
from ops.bench import evidence_import as bench_import
from ops.bench.http import _free_port, _process
from ops.bench.ledger import interleaved, summary

BACKENDS = ("sqlite", "postgresql")
FULL_ROWS, QUICK_ROWS = 100_000, 20_000
ROOT = Path(__file__).resolve().parents[2]
SECRET = "bench-upload-secret-0123456789"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def service(url: str, where: str, port: int):
    """The service in a process of its own, its log in a file under `where` (a pipe nobody
    reads would fill up and block it)."""
    env = {**os.environ, "DATABASE_URL": url, "UTFALL_ENV": "development", "UTFALL_SECRET": SECRET,
           "UTFALL_KEY_DIR": where,  # the development signing key, not in the working directory
           "UTFALL_DOCUMENT_DIR": os.path.join(where, "documents"), "UTFALL_IMPORT_MAX_BYTES": str(2**31)}
    with _process([sys.executable, "-m", "uvicorn", "--factory", "api.asgi:create", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning"],
                  env, port, Path(where) / "server.log", cwd=ROOT) as proc:
        yield proc


def client(args: str) -> int:
    """The HTTP client (a process of its own): POST the file, print seconds and the report."""
    import http.client
    a = json.loads(args)
    size = os.path.getsize(a["path"])
    conn = http.client.HTTPConnection("127.0.0.1", a["port"], timeout=600, blocksize=1 << 16)
    with open(a["path"], "rb") as body:
        t0 = time.perf_counter()
        conn.request("POST", f"/contracts/{a['contract']}/evidence-imports?fileName=evidence.csv", body=body,
                     headers={"Authorization": f"Bearer {a['token']}", "Content-Type": "text/csv",
                              "Content-Length": str(size)})
        response = conn.getresponse()
        data = response.read()
        seconds = time.perf_counter() - t0
    conn.close()
    print(json.dumps({"status": response.status, "seconds": seconds, "report": json.loads(data)}))
    return 0


def run_backend(name: str, n: int, runs: int, log=_stderr) -> list[dict]:
    today = datetime.now(timezone.utc).date()
    where = tempfile.mkdtemp(prefix="utfall_bench_upload_")
    try:
        with bench_import.backend_on(name) as b:
            world = bench_import.make_world(b.db, today)
            paths = bench_import.write_files(world, n, where)
            path = paths["csv"]
            with b.db.uow() as uow:
                token = tokens.create_token(uow, actor=SYSTEM, name="bench upload", role="PROVIDER",
                                            party_id=world.provider.party_id).token
                uow.commit()
            log(f"  {name}: {n:,} rows (CSV {os.path.getsize(path) / 2**20:.1f} MiB)")
            port = _free_port()
            cli_env = {**os.environ, "DATABASE_URL": b.url, "UTFALL_ENV": "development", "UTFALL_SECRET": SECRET,
                       "UTFALL_KEY_DIR": where}

            def check(imported: int, what: str) -> None:
                if imported != n:
                    raise RuntimeError(f"{name} {what}: imported {imported} of {n}")

            def http_upload() -> float:
                args = json.dumps({"port": port, "path": path, "contract": world.contract_id, "token": token})
                done = subprocess.run([sys.executable, "-m", "ops.bench.evidence_upload", "--client", args], cwd=ROOT,
                                      capture_output=True, text=True, check=True, timeout=900)
                answer = json.loads(done.stdout.strip().splitlines()[-1])
                if answer["status"] != 201:
                    raise RuntimeError(f"{name} HTTP: {answer['status']} {str(answer['report'])[:300]}")
                check(answer["report"]["imported"], "HTTP")
                return answer["seconds"]

            def cli_import() -> float:
                t0 = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "api.cli", "evidence", "import", path, "--contract",
                                       str(world.contract_id), "--quiet", "--actor", "bench cli"],
                                      cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=900)
                seconds = time.perf_counter() - t0
                if done.returncode != 0:
                    raise RuntimeError(f"{name} CLI: {done.stderr[-500:]}")
                check(int(done.stdout.split()[1].replace(",", "")), "CLI")
                return seconds

            def importer() -> float:
                t0 = time.perf_counter()
                r = bench_import.run_import(b.db, world, path, "csv")
                seconds = time.perf_counter() - t0
                check(r.imported, "importer")
                return seconds

            with service(b.url, where, port):
                # warm-up: the server's imports and caches, the page cache with the file and tables
                b.clean()
                http_upload()
                b.clean()
                variants = {"HTTP upload": http_upload, "CLI import": cli_import, "importer": importer}
                log(f"  {name}: {len(variants)} variants × {runs} runs")
                measured = interleaved(variants, runs, before=b.clean)
                b.clean()
            return [result(op, name, n, measured[op], measured["CLI import"], measured["importer"])
                    for op in ("HTTP upload", "CLI import")]
    finally:
        shutil.rmtree(where, ignore_errors=True)


def result(operation: str, backend: str, n: int, seconds: Sequence[float], cli: Sequence[float],
           importer: Sequence[float]) -> dict:
    fig, ref = summary(seconds), summary(cli)
    return {"benchmark": "evidence_upload", "operation": f"evidence file: {operation}", "backend": backend, "size": n,
            "unit": "s", "higher_is_better": False, **fig, "reference": {"operation": "CLI import", **ref},
            "ratio": fig["median"] / ref["median"], "rows_per_s": n / fig["median"],
            "importer": summary(importer), "ratio_to_importer": fig["median"] / summary(importer)["median"]}


def run(quick: bool = False, backends: Iterable[str] = BACKENDS, *, rows: int | None = None, runs: int = 3,
        log=_stderr) -> list[dict]:
    n = rows or (QUICK_ROWS if quick else FULL_ROWS)
    out: list[dict] = []
    for name in backends:
        log(f"evidence upload benchmark on {name}: {n:,} rows")
        out += run_backend(name, n, max(3, runs), log)  # BENCHMARKS.md: the median of at least 3
    return out


def table(results: Sequence[dict]) -> str:
    header = ("operation", "backend", "rows", "median", "min–max", "rows/s", "÷ CLI", "÷ importer")
    rows = [header]
    for r in results:
        rows.append((r["operation"], r["backend"], f"{r['size']:,}", f"{r['median']:.2f} s",
                     f"{r['min']:.2f}–{r['max']:.2f}", f"{r['rows_per_s']:,.0f}", f"{r['ratio']:.2f}×",
                     f"{r['ratio_to_importer']:.2f}×"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("÷ CLI: the median time ÷ `utfall evidence import`'s (a process, start-up included) in the same run; "
                 "target for HTTP: at most 1.5×. ÷ importer: ÷ import_evidence in-process (no start-up, no transfer).")
    lines.append(f"Server, client and database share this machine's cores ({os.cpu_count()}).")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench.evidence_upload", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows instead of {FULL_ROWS:,}")
    p.add_argument("--rows", type=int, help="rows in the file (default 100000, --quick 20000)")
    p.add_argument("--runs", type=int, default=3, help="measured runs per variant (at least 3)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--client", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        return client(args.client)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    t0 = time.perf_counter()
    results = run(args.quick, backends, rows=args.rows, runs=args.runs)
    print(table(results))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": "evidence_upload", "quick": args.quick,
                                               "results": results}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
