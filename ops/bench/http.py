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

Served mutations, in the same run and against the same servers: `depositCapital` (one ledger
posting each, through the group commit on PostgreSQL) as a fund manager, every request with an
idempotency key of its own, beside strawberry answering the same mutation from an in-memory
ledger (a key's result kept, a sequence and a SHA-256 chain: what the service does, without
the database, its durability, authentication, the audit trail or the use case's checks). After
each run the ledger must have grown by exactly the requests answered (and at most the
connections' requests still in flight when the load stopped): a key answered from its stored
result, or a mutation refused, would pass for speed.

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
# the idempotency key is made per request by the load generator (`KEY`, replaced in the body)
MUTATION = """mutation($input: DepositCapitalInput!) { depositCapital(input: $input) {
  transaction { sequence hash } userErrors { code field message } } }"""
KEY = "@KEY@"
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


# each request's body with `KEY` replaced by a key of its own: the run's nonce, wrk's thread, a counter
WRK_KEYED = """
local made = 0
function setup(thread)
  made = made + 1
  thread:set("id", made)
end
local prefix, counter = "", 0
function init(args)
  prefix = args[1] .. "-" .. id .. "-"
end
function request()
  counter = counter + 1
  local body = string.gsub(wrk.body, "%s", prefix .. counter)
  return wrk.format(nil, nil, nil, body)
end
"""


def _wrk(url: str, body: bytes, headers: dict, seconds: float, connections: int, tmp: Path,
         keyed: str | None = None) -> dict:
    """Load from wrk (C, its own process): requests/s, p50 and p99 from its latency distribution.
    With `keyed` (a nonce), every request carries a key of its own in place of `KEY`."""
    script = tmp / "wrk-post.lua"
    header_lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    text = WRK_SCRIPT % (body.decode(), header_lines)
    if keyed is not None:
        text += WRK_KEYED % KEY
    script.write_text(text, encoding="utf-8")
    threads = min(2, connections)
    out = subprocess.run([WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                          "-s", str(script), url, *(["--", keyed] if keyed is not None else [])],
                         capture_output=True, text=True, timeout=seconds + 60)
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


def load(url: str, body: bytes, headers: dict, seconds: float, connections: int, keyed: str | None = None) -> dict:
    """Send `body` as fast as `connections` keep-alive connections allow for `seconds`; with
    `keyed` (a nonce), each request with `KEY` replaced by a key of its own."""
    import http.client
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    failures: list[str] = []

    def worker(n: int):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine = []
        sent = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            sent += 1
            this = body if keyed is None else body.replace(KEY.encode(), f"{keyed}-{n}-{sent}".encode())
            try:
                conn.request("POST", parts.path, body=this, headers=headers)
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
            if response.status != 200 or b'"errors"' in data[:200] or (keyed is not None and _refused(data)):
                with lock:
                    errors[0] += 1
                    failures.append(f"HTTP {response.status}: {data[:200]!r}")
        with lock:
            latencies.extend(mine)
        conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
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


def _refused(data: bytes) -> bool:
    """Whether a mutation's answer is not a success: no payload, or userErrors in it."""
    try:
        payload = next(iter(json.loads(data)["data"].values()))
    except (ValueError, KeyError, TypeError, StopIteration, AttributeError):
        return True
    return not isinstance(payload, dict) or payload.get("userErrors") != []


def _load_in_subprocess(url: str, body: bytes, headers: dict, seconds: float, connections: int,
                        keyed: str | None = None) -> dict:
    """The load generator runs in its own process, so it does not share the server's interpreter."""
    spec = json.dumps({"url": url, "body": body.decode(), "headers": headers, "seconds": seconds,
                       "connections": connections, "keyed": keyed})
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
    from ledger.models import OutcomeContract, OutcomesFund
    with Database(engine).reading() as s:
        contract_id = s.execute(select(OutcomeContract.id).order_by(OutcomeContract.id)).scalars().first()
        fund_id = s.execute(select(OutcomesFund.id).order_by(OutcomesFund.id)).scalars().first()
    engine.dispose()
    auditor = next(t.token for t in tokens if t.role == "AUDITOR")
    manager = next(t.token for t in tokens if t.role == "FUND_MANAGER")
    return url, drop, auditor, contract_id, manager, fund_id


def _head(url: str) -> int:
    """The ledger's head sequence: how many transactions it holds."""
    from sqlalchemy import create_engine, text
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT sequence FROM ledger_head WHERE id = 1")).scalar_one()
    finally:
        engine.dispose()


def _settled_head(url: str, quiet: float = 0.3, timeout: float = 10.0) -> int:
    """The head once nothing has posted for `quiet` seconds: requests still in flight when the load
    stopped are answered (or not) by then."""
    deadline = time.monotonic() + timeout
    last = _head(url)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = _head(url)
        if now == last:
            return now
        last = now
    return last


def _generate(url: str, body: bytes, headers: dict, seconds: float, connections: int, tmp: Path,
              keyed: str | None = None, generator: str | None = None) -> dict:
    """One timed load: wrk when installed (or `generator` says "wrk"), else the Python client in its
    own process. With `keyed` (a nonce), each request carries an idempotency key of its own."""
    if (generator or ("wrk" if WRK else "python client")) == "wrk":
        return _wrk(url, body, headers, seconds, connections, tmp, keyed)
    return {**_load_in_subprocess(url, body, headers, seconds, connections, keyed), "generator": "python client"}


def run(quick: bool = False, backends=BACKENDS, log=lambda m: print(m, file=sys.stderr, flush=True), *,
        seconds: float | None = None, rounds: int = 3, generator: str | None = None) -> list[dict]:
    """Measure GraphQL over HTTP on each backend beside strawberry from memory (and bare Starlette):
    the contract query, then the `depositCapital` mutation."""
    from api.graphql.base import to_global_id
    seconds = seconds if seconds is not None else (3.0 if quick else 10.0)
    connections = 8
    out = []
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            url, drop, token, contract_id, manager, fund_id = _database(backend, tmp)
            try:
                body = json.dumps({"query": QUERY, "variables": {"c": to_global_id("OutcomeContract", contract_id)}}).encode()
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
                deposit = json.dumps({"query": MUTATION, "variables": {"input": {
                    "fundId": to_global_id("Fund", fund_id), "amount": {"amount": "1.00", "currency": "SEK"},
                    "effectiveDate": date.today().isoformat(), "reference": "bench", "idempotencyKey": KEY}}}).encode()
                manager_headers = {**headers, "Authorization": f"Bearer {manager}"}
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
                    payload.write_bytes(_post(targets["service"], body, headers))
                    # and one checked mutation: it posts, and its answer is the shape the reference answers in
                    answered = _post(targets["service"], deposit.replace(KEY.encode(), f"check-{os.getpid()}".encode()),
                                     manager_headers)
                    if _refused(answered):
                        raise RuntimeError(f"the bench's depositCapital was refused: {answered[:500]!r}")
                    with _process([sys.executable, "-m", "ops.bench.strawberry_reference", str(payload), str(straw_port)],
                                  env, straw_port, tmp / "strawberry.log"), \
                         _process([sys.executable, "-c", BARE_APP, str(payload), str(bare_port)], env, bare_port,
                                  tmp / "starlette.log"):
                        same = _same_response(targets["strawberry"], body, headers, payload.read_bytes())
                        same_mutation = _same_shape(json.loads(_post(
                            targets["strawberry"], deposit.replace(KEY.encode(), b"check"), manager_headers)),
                            json.loads(answered))
                        figures: dict[str, list[dict]] = {k: [] for k in targets}
                        for r in range(rounds):  # interleaved, odd rounds reversed
                            for name in targets if r % 2 == 0 else reversed(targets):
                                figures[name].append(_generate(targets[name], body, headers, seconds, connections, tmp,
                                                               generator=generator))
                        mutations: dict[str, list[dict]] = {"service": [], "strawberry": []}
                        for r in range(rounds):
                            for name in mutations if r % 2 == 0 else reversed(mutations):
                                before = _settled_head(url) if name == "service" else None
                                figure = _generate(targets[name], deposit, manager_headers, seconds, connections, tmp,
                                                   keyed=f"bench-{os.getpid()}-{name}-{r}", generator=generator)
                                if before is not None:
                                    figure["posted"] = _settled_head(url) - before
                                mutations[name].append(figure)
                generator_used = figures["service"][0]["generator"]
                references = {"strawberry": "strawberry from memory, same response",
                              "starlette": "bare Starlette, same JSON bytes"}
                for ref, label in references.items():
                    result = _result(f"GraphQL contract + 100 evidence, {connections} conns", backend,
                                     payload.stat().st_size, figures["service"], figures[ref], label,
                                     generator_used, seconds, rounds, extra_errors=sample["errors"],
                                     extra_failures=sample["failures"])
                    result["reference_same_response"] = same if ref == "strawberry" else True
                    out.append(result)
                    _log(log, backend, result)
                result = _result(f"GraphQL depositCapital (a posting each), {connections} conns", backend, len(answered),
                                 mutations["service"], mutations["strawberry"],
                                 "strawberry, in-memory ledger, same shape", generator_used, seconds, rounds)
                # every request answered posted once: no key answered from a stored result, no refusal
                unposted = [f for f in mutations["service"]
                            if not f["requests"] <= f["posted"] <= f["requests"] + connections]
                if unposted:
                    result["errors"] += len(unposted)
                    result["failures"] = [f"answered {f['requests']}, posted {f['posted']}" for f in unposted][:3]
                result["posted"] = [f["posted"] for f in mutations["service"]]
                result["answered"] = [f["requests"] for f in mutations["service"]]
                result["reference_same_response"] = same_mutation
                out.append(result)
                _log(log, backend, result)
            finally:
                drop()
    return out


def _result(operation: str, backend: str, size, runs: list[dict], refs: list[dict], label: str, generator: str,
            seconds: float, rounds: int, extra_errors: int = 0, extra_failures=()) -> dict:
    med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
    result = {
        "benchmark": "http", "operation": operation,
        "backend": backend, "size": size, "unit": "req/s", "higher_is_better": True,
        "median": med(runs, "rps"), "min": min(r["rps"] for r in runs), "max": max(r["rps"] for r in runs),
        "p50_ms": med(runs, "p50_ms"), "p99_ms": med(runs, "p99_ms"),
        "errors": sum(r["errors"] for r in runs) + extra_errors,
        "failures": ([f for r in runs for f in r["failures"]] + list(extra_failures))[:3],
        "reference": {"operation": label, "median": med(refs, "rps"), "min": min(x["rps"] for x in refs),
                      "max": max(x["rps"] for x in refs), "p50_ms": med(refs, "p50_ms"),
                      "p99_ms": med(refs, "p99_ms"), "errors": sum(x["errors"] for x in refs)},
        "generator": generator, "seconds": seconds, "rounds": rounds,
        "note": "server and load generator share the machine's 2 cores",
    }
    result["ratio"] = result["median"] / result["reference"]["median"]
    return result


def _log(log, backend: str, result: dict) -> None:
    ref = result["reference"]
    log(f"  {backend}: {result['operation']}: {result['median']:.0f} req/s (p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms) vs {ref['operation']} {ref['median']:.0f} req/s "
        f"({result['generator']}); errors {result['errors']} {result['failures']}")


def _post(url: str, body: bytes, headers: dict) -> bytes:
    import http.client
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    c = http.client.HTTPConnection(parts.hostname, parts.port)
    try:
        c.request("POST", parts.path, body=body, headers=headers)
        return c.getresponse().read()
    finally:
        c.close()


def _same_shape(a, b) -> bool:
    """Whether two JSON values have the same keys, nesting and kinds of value (not the same values)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same_shape(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_shape(x, y) for x, y in zip(a, b))
    return type(a) is type(b)


def _same_response(url: str, body: bytes, headers: dict, expected: bytes) -> bool:
    """Whether the reference answers with the same JSON as the service did (values and order)."""
    return json.loads(_post(url, body, headers)) == json.loads(expected)


def table(results) -> str:
    lines = [f"{'operation':<52} {'backend':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'reference':<40} "
             f"{'ref req/s':>9} {'ratio':>7}"]
    for r in results:
        lines.append(f"{r['operation']:<52} {r['backend']:<10} {r['median']:>8.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                     f"{r['reference']['operation']:<40} {r['reference']['median']:>9.0f} {r['ratio']:>7.2f}")
    for r in results:
        if "posted" in r:
            lines.append(f"{r['backend']}: depositCapital, answered / posted per run: "
                         + ", ".join(f"{a} / {p}" for a, p in zip(r["answered"], r["posted"]))
                         + (" (every answer posted once)" if not r["errors"] else f" — FAILED: {r['failures']}"))
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
        print(json.dumps(load(spec["url"], spec["body"].encode(), spec["headers"], spec["seconds"], spec["connections"],
                              spec.get("keyed"))))
        return 0
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    results = run(args.quick, backends)
    print(table(results), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
