"""GraphQL over HTTP with a real server: requests per second and p50/p99 latency.

    python -m ops.bench.http [--quick] [--backend sqlite|postgresql|both] [--json PATH]

The server is `utfall serve` (uvicorn, one worker) in its own process on 127.0.0.1, with the
demo loaded; it reads one contract with 100 evidence items, their participants and documents,
for the same authenticated query, sent for a fixed time (10 s a run; 3 s with --quick).
On PostgreSQL the demo's tables are analysed once loaded, as autovacuum would have done in
service (it is off on this machine); SQLite is not, as the service never analyses it.

The reference, in the same run with the same load: strawberry serving the same response shape
from memory (ops/bench/strawberry_reference.py: the same fields and values, strawberry's ASGI
app with the same parser and validation caches, uvicorn with one worker — the service's process
model), so the ratio says what the database, authentication and the service's resolvers cost.
A bare Starlette endpoint returning the same bytes is printed beside it as the HTTP floor.

Load comes from `wrk` when it is installed (2 threads, 8 connections), else from a Python client
in its own process (keep-alive connections in threads): never from threads in the server's
process. Every server writes its log to a file, never to a pipe nobody reads (a full pipe blocks
the server). Server and load generator share this machine's 2 cores: figures say so, and the
ratio is the number to compare between runs.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

QUERY = """query($c: ID!) { contract(id: $c) { title status
  evidence(first: 100) { nodes { id metricCode status achievedOn submittedBy decidedBy
                                 participant { externalRef area } documents { sha256 filename } } } } }"""
BACKENDS = ("sqlite", "postgresql")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def _process(args: list[str], env: dict, port: int, log_path: Path, cwd: Path | str | None = None):
    # the server's log goes to a file: a pipe nobody reads fills up and then blocks the server
    with open(log_path, "ab") as server_log:
        proc = subprocess.Popen(args, env=env, stdout=server_log, stderr=subprocess.STDOUT, cwd=cwd)
        try:
            _wait(port)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


WRK = shutil.which("wrk")
WRK_SCRIPT = """wrk.method = "POST"
wrk.body = [==[%s]==]
%s
"""


def _wrk(url: str, body: bytes, headers: dict, seconds: float, connections: int, tmp: Path) -> dict:
    """Load from wrk (C, its own process): requests/s, p50 and p99 from its latency distribution."""
    script = tmp / "wrk-post.lua"
    header_lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    script.write_text(WRK_SCRIPT % (body.decode(), header_lines), encoding="utf-8")
    threads = min(2, connections)
    out = subprocess.run([WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr.strip()[-2000:]}")
    return parse_wrk(out.stdout)


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60_000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text) * 1000.0


def parse_wrk(text: str) -> dict:
    """The figures of one `wrk --latency` report."""
    rps = p50 = p99 = None
    requests = errors = 0
    failures = []
    for line in text.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            rps = float(words[1])
        elif len(words) == 2 and words[0] == "50.000%":
            p50 = _ms(words[1])
        elif len(words) == 2 and words[0] == "99.000%":
            p99 = _ms(words[1])
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            if words[0] == "50%":
                p50 = _ms(words[1])
            else:
                p99 = _ms(words[1])
        elif "requests in" in line:
            requests = int(words[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            errors += int(words[-1])
            failures.append(line.strip())
        elif line.strip().startswith("Socket errors:"):  # connect N, read N, write N, timeout N
            counts = [int(w.strip(",")) for w in words if w.strip(",").isdigit()]
            if sum(counts):
                errors += sum(counts)
                failures.append(line.strip())
    if rps is None or p50 is None or p99 is None:
        raise RuntimeError(f"could not read wrk's report: {text[-2000:]}")
    return {"requests": requests, "errors": errors, "failures": failures, "rps": rps, "p50_ms": p50, "p99_ms": p99,
            "generator": "wrk"}


def load(url: str, body: bytes, headers: dict, seconds: float, connections: int) -> dict:
    """Send `body` as fast as `connections` keep-alive connections allow for `seconds`."""
    import http.client
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    failures: list[str] = []

    def worker():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine = []
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                conn.request("POST", parts.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors[0] += 1
                    failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                continue
            mine.append(time.perf_counter() - t0)
            if response.status != 200 or b'"errors"' in data[:200]:
                with lock:
                    errors[0] += 1
                    failures.append(f"HTTP {response.status}: {data[:200]!r}")
        with lock:
            latencies.extend(mine)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    if not latencies:
        raise RuntimeError(f"no request completed: {failures[:3]}")
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"requests": len(latencies), "errors": errors[0], "failures": failures[:3], "rps": len(latencies) / elapsed,
            "p50_ms": pick(0.50), "p99_ms": pick(0.99)}


def _load_in_subprocess(url: str, body: bytes, headers: dict, seconds: float, connections: int) -> dict:
    """The load generator runs in its own process, so it does not share the server's interpreter."""
    spec = json.dumps({"url": url, "body": body.decode(), "headers": headers, "seconds": seconds,
                       "connections": connections})
    out = subprocess.run([sys.executable, "-m", "ops.bench.http", "--generator", spec], capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the load generator failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)


BARE_APP = """
import sys
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
import uvicorn
payload = open(sys.argv[1], "rb").read()
async def endpoint(request):
    await request.body()
    return Response(payload, media_type="application/json")
uvicorn.run(Starlette(routes=[Route("/graphql", endpoint, methods=["POST"])]), host="127.0.0.1",
            port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def _database(backend: str, tmp: Path):
    """A migrated database with the demo loaded: (url, cleanup)."""
    from ledger import demo, schema
    from ledger.db import Database, make_engine
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'http-bench.db'}"
        drop = lambda: None  # noqa: E731
    else:
        import psycopg
        # UTFALL_BENCH_DB: the database's name prefix (helpers sharing a server keep to their own names)
        name = f"{os.environ.get('UTFALL_BENCH_DB', 'utfall_bench_http')}_{os.getpid()}"
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

        def drop():
            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    schema.upgrade(url)
    engine = make_engine(url)
    tokens = demo.load(Database(engine), today=date.today(), secret=b"bench-secret-0123456789")
    if backend == "postgresql":
        # autovacuum is off on this machine, so nothing would ever analyse the demo's tables: without
        # statistics the planner takes each freshly loaded table for empty, reads a contract's evidence
        # page through its (contract, status) index with a sort of all the contract's rows, and the
        # statements prepared on the server's connections keep that plan (~1/3 of the database's CPU a
        # request). A database in service is analysed by autovacuum; SQLite is not analysed, as the
        # service never runs ANALYZE there.
        import psycopg
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    from sqlalchemy import select
    from ledger.models import OutcomeContract
    with Database(engine).reading() as s:
        contract_id = s.execute(select(OutcomeContract.id).order_by(OutcomeContract.id)).scalars().first()
    engine.dispose()
    auditor = next(t.token for t in tokens if t.role == "AUDITOR")
    return url, drop, auditor, contract_id


def _generate(url: str, body: bytes, headers: dict, seconds: float, connections: int, tmp: Path) -> dict:
    """One timed load: wrk when installed, else the Python client in its own process."""
    if WRK:
        return _wrk(url, body, headers, seconds, connections, tmp)
    return {**_load_in_subprocess(url, body, headers, seconds, connections), "generator": "python client"}


def run(quick: bool = False, backends=BACKENDS, log=lambda m: print(m, file=sys.stderr, flush=True)) -> list[dict]:
    """Measure GraphQL over HTTP on each backend beside strawberry from memory (and bare Starlette)."""
    from api.graphql.base import to_global_id
    seconds, rounds, connections = (3.0, 3, 8) if quick else (10.0, 3, 8)
    out = []
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            url, drop, token, contract_id = _database(backend, tmp)
            try:
                body = json.dumps({"query": QUERY, "variables": {"c": to_global_id("OutcomeContract", contract_id)}}).encode()
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
                port, straw_port, bare_port = _free_port(), _free_port(), _free_port()
                env = {**os.environ, "DATABASE_URL": url, "UTFALL_ENV": "production",
                       "UTFALL_SECRET": "bench-secret-0123456789"}
                targets = {"service": f"http://127.0.0.1:{port}/graphql",
                           "strawberry": f"http://127.0.0.1:{straw_port}/graphql",
                           "starlette": f"http://127.0.0.1:{bare_port}/graphql"}
                with _process([sys.executable, "-m", "api.cli", "serve", "--port", str(port)], env, port,
                              tmp / "service.log"):
                    # one checked request: a 200 with data and no errors (wrk only counts statuses)
                    sample = _load_in_subprocess(targets["service"], body, headers, 1.0, 1)
                    payload = tmp / "payload.json"
                    import http.client
                    c = http.client.HTTPConnection("127.0.0.1", port)
                    c.request("POST", "/graphql", body=body, headers=headers)
                    payload.write_bytes(c.getresponse().read())
                    c.close()
                    with _process([sys.executable, "-m", "ops.bench.strawberry_reference", str(payload), str(straw_port)],
                                  env, straw_port, tmp / "strawberry.log"), \
                         _process([sys.executable, "-c", BARE_APP, str(payload), str(bare_port)], env, bare_port,
                                  tmp / "starlette.log"):
                        same = _same_response(targets["strawberry"], body, headers, payload.read_bytes())
                        figures: dict[str, list[dict]] = {k: [] for k in targets}
                        for r in range(rounds):  # interleaved, odd rounds reversed
                            for name in targets if r % 2 == 0 else reversed(targets):
                                figures[name].append(_generate(targets[name], body, headers, seconds, connections, tmp))
                med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
                runs = figures["service"]
                generator = runs[0]["generator"]
                references = {"strawberry": "strawberry from memory, same response",
                              "starlette": "bare Starlette, same JSON bytes"}
                for ref, label in references.items():
                    refs = figures[ref]
                    result = {
                        "benchmark": "http", "operation": f"GraphQL contract + 100 evidence, {connections} conns",
                        "backend": backend, "size": payload.stat().st_size, "unit": "req/s", "higher_is_better": True,
                        "median": med(runs, "rps"), "min": min(r["rps"] for r in runs), "max": max(r["rps"] for r in runs),
                        "p50_ms": med(runs, "p50_ms"), "p99_ms": med(runs, "p99_ms"),
                        "errors": sum(r["errors"] for r in runs) + sample["errors"],
                        "failures": [f for r in runs for f in r["failures"]][:3],
                        "reference": {"operation": label, "median": med(refs, "rps"), "min": min(x["rps"] for x in refs),
                                      "max": max(x["rps"] for x in refs), "p50_ms": med(refs, "p50_ms"),
                                      "p99_ms": med(refs, "p99_ms"), "errors": sum(x["errors"] for x in refs)},
                        "generator": generator, "seconds": seconds, "rounds": rounds,
                        "reference_same_response": same if ref == "strawberry" else True,
                        "note": "server and load generator share the machine's 2 cores",
                    }
                    result["ratio"] = result["median"] / result["reference"]["median"]
                    log(f"  {backend}: {result['median']:.0f} req/s (p50 {result['p50_ms']:.1f} ms, "
                        f"p99 {result['p99_ms']:.1f} ms) vs {label} {result['reference']['median']:.0f} req/s "
                        f"({generator}); errors {result['errors']} {result['failures']}")
                    out.append(result)
            finally:
                drop()
    return out


def _same_response(url: str, body: bytes, headers: dict, expected: bytes) -> bool:
    """Whether the reference answers with the same JSON as the service did (values and order)."""
    import http.client
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    c = http.client.HTTPConnection(parts.hostname, parts.port)
    try:
        c.request("POST", parts.path, body=body, headers=headers)
        return json.loads(c.getresponse().read()) == json.loads(expected)
    finally:
        c.close()


def table(results) -> str:
    lines = [f"{'operation':<44} {'backend':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'reference':<40} "
             f"{'ref req/s':>9} {'ratio':>7}"]
    for r in results:
        lines.append(f"{r['operation']:<44} {r['backend']:<10} {r['median']:>8.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                     f"{r['reference']['operation']:<40} {r['reference']['median']:>9.0f} {r['ratio']:>7.2f}")
    generators = sorted({r.get("generator", "?") for r in results})
    lines.append(f"Load from {', '.join(generators)} (its own process, loopback); it shares the machine's 2 cores "
                 "with the server.")
    if any(not r.get("reference_same_response", True) for r in results):
        lines.append("WARNING: the strawberry reference's response differs from the service's.")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench.http", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--json")
    p.add_argument("--generator", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.generator:
        spec = json.loads(args.generator)
        print(json.dumps(load(spec["url"], spec["body"].encode(), spec["headers"], spec["seconds"], spec["connections"])))
        return 0
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    results = run(args.quick, backends)
    print(table(results), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
