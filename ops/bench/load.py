"""Load under pressure: bursts of signed-in clients and slow bodies against a real server (issue 14).

    python -m ops.bench.load [--quick] [--backend sqlite|postgresql|both] [--json PATH]

Per backend: a fresh database with the demo loaded; `utfall serve` (uvicorn, one worker,
production settings) in its own process on 127.0.0.1, its JSON log written to a file; the load
generator is a second process (asyncio, one connection per request) so it shares nothing with
the server but the machine's 2 cores. Scenarios, each bounded in count and time:

* burst 50 / burst 200: that many signed-in clients send `{ viewer { role } }` at once, for a
  few rounds;
* slow bodies: 200 connections send their headers (with an Authorization header, half of them
  a valid token) and then trickle a promised 1 000-byte body one byte a second, while 8 normal
  clients send requests one after another. The slow ones must get 408 when the server's body
  timeout (10 s) passes; the normal ones must not wait on them.

Printed per scenario and backend: requests, 5xx, timeouts (no answer within 30 s), requests
logged by the server ÷ requests answered, p50/p99 latency, and slow bodies answered 408. The
run fails (exit 1) on any 5xx, timeout, unlogged request or slow body left unanswered.
Loopback only; every loop stops by itself.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ops.bench.http import _database, _free_port, _wait

BACKENDS = ("sqlite", "postgresql")
VIEWER = json.dumps({"query": "{ viewer { role } }"}).encode()
REQUEST_TIMEOUT = 30.0
SLOW_DECLARED = 1000


def _request(port: int, body: bytes, token: str | None, *, length: int | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n").encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed before an answer")
    status = int(status_line.split()[1])
    await reader.read()  # Connection: close: the rest of the answer, up to EOF
    return status


async def one(port: int, token: str) -> tuple[int, float]:
    """(status, seconds) of one request on a new connection; status 0 is a timeout or a broken connection."""
    started = time.perf_counter()
    writer = None
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_request(port, VIEWER, token))
            await writer.drain()
            status = await _read_answer(reader)
    except (TimeoutError, OSError, ConnectionError, ValueError, IndexError):
        status = 0
    finally:
        if writer is not None:
            writer.close()
    return status, time.perf_counter() - started


async def burst(port: int, token: str, clients: int, rounds: int) -> list[tuple[int, float]]:
    out = []
    for _ in range(rounds):
        out += await asyncio.gather(*(one(port, token) for _ in range(clients)))
    return out


async def slow_client(port: int, token: str, limit: float) -> int:
    """Headers, then one byte a second of a promised body; the status the server answered (0: none by `limit`)."""
    writer = None
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_request(port, b"{", token, length=SLOW_DECLARED))
            await writer.drain()

            async def trickle():
                for _ in range(SLOW_DECLARED):
                    await asyncio.sleep(1.0)
                    writer.write(b" ")
                    await writer.drain()

            trickling = asyncio.create_task(trickle())
            try:
                return await _read_answer(reader)
            finally:
                trickling.cancel()
    except (TimeoutError, OSError, ConnectionError, ValueError, IndexError):
        return 0
    finally:
        if writer is not None:
            writer.close()


async def slow_bodies(port: int, token: str, slow: int, normal: int, seconds: float) -> dict:
    slow_tasks = [asyncio.create_task(slow_client(port, token if i % 2 else "utf_not-a-valid-token", seconds + 15))
                  for i in range(slow)]
    await asyncio.sleep(0.5)  # every slow connection is open and waiting before the normal clients start
    stop = time.perf_counter() + seconds

    async def client() -> list[tuple[int, float]]:
        mine = []
        while time.perf_counter() < stop:
            mine.append(await one(port, token))
        return mine

    normal_results = [r for rs in await asyncio.gather(*(client() for _ in range(normal))) for r in rs]
    slow_statuses = await asyncio.gather(*slow_tasks)
    return {"normal": normal_results, "slow": slow_statuses}


def generate(spec: dict) -> dict:
    """The load generator's side (its own process): run one scenario, return raw figures."""
    port, token = spec["port"], spec["token"]
    if spec["scenario"] == "burst":
        results = asyncio.run(burst(port, token, spec["clients"], spec["rounds"]))
        return {"requests": results, "slow": []}
    out = asyncio.run(slow_bodies(port, token, spec["slow"], spec["normal"], spec["seconds"]))
    return {"requests": out["normal"], "slow": out["slow"]}


def _in_generator(spec: dict) -> dict:
    done = subprocess.run([sys.executable, "-m", "ops.bench.load", "--generator", json.dumps(spec)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def _logged_requests(log_path: Path) -> list[dict]:
    lines = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "request":
            lines.append(entry)
    return lines


def _pick(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] * 1000 if sorted_values else 0.0


def scenarios(quick: bool) -> list[dict]:
    return [
        {"name": "burst of 50 signed-in clients", "scenario": "burst", "clients": 50, "rounds": 3 if quick else 10},
        {"name": "burst of 200 signed-in clients", "scenario": "burst", "clients": 200, "rounds": 2 if quick else 5},
        {"name": "8 clients beside 200 slow bodies", "scenario": "slow", "slow": 200, "normal": 8,
         "seconds": 12.0 if quick else 20.0},
    ]


def run(quick: bool = False, backends=BACKENDS, log=lambda m: print(m, file=sys.stderr), *,
        plan: list[dict] | None = None) -> list[dict]:
    """Every scenario on each backend; one result per scenario (and a p99 row) for ops.bench's table."""
    out = []
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            url, drop, token, *_ = _database(backend, Path(tmp))  # (the auditor's token)
            log_path = Path(tmp) / "server.log"
            port = _free_port()
            env = {**os.environ, "DATABASE_URL": url, "UTFALL_ENV": "production",
                   "UTFALL_SECRET": "bench-secret-0123456789"}
            try:
                with open(log_path, "wb") as server_log:
                    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
                                              env=env, stdout=server_log, stderr=subprocess.STDOUT)
                    try:
                        _wait(port)
                        for sc in plan or scenarios(quick):
                            before = len(_logged_requests(log_path))
                            started = time.perf_counter()
                            raw = _in_generator({**sc, "port": port, "token": token})
                            elapsed = time.perf_counter() - started
                            time.sleep(0.5)  # the server writes its last request lines
                            logged = _logged_requests(log_path)[before:]
                            out.append(_summarise(sc, backend, raw, logged, elapsed, log))
                    finally:
                        server.terminate()
                        try:
                            server.wait(15)
                        except subprocess.TimeoutExpired:
                            server.kill()
            finally:
                drop()
    return out


def _summarise(sc: dict, backend: str, raw: dict, logged: list[dict], elapsed: float, log) -> dict:
    statuses = [s for s, _ in raw["requests"]]
    latencies = sorted(t for s, t in raw["requests"] if s)
    slow = raw["slow"]
    # a slow client often sees a reset instead of its 408: the server closes a connection with the
    # client's trickled bytes unread, and TCP then discards the answer; the server's log has them all
    slow_408 = sum(1 for e in logged if int(e.get("status", 0)) == 408)
    answered = sum(1 for s in statuses if s) + slow_408
    result = {
        "benchmark": "load", "operation": f"load: {sc['name']}", "backend": backend, "size": len(statuses),
        "unit": "ms", "median": _pick(latencies, 0.50), "p50_ms": _pick(latencies, 0.50),
        "p99_ms": _pick(latencies, 0.99), "max_ms": _pick(latencies, 1.0),
        "requests": len(statuses), "ok": statuses.count(200),
        "server_errors": sum(1 for s in statuses if s >= 500) + sum(1 for s in slow if s >= 500),
        "timeouts": statuses.count(0), "other": sorted({s for s in statuses if s not in (0, 200)}),
        "slow_connections": len(slow), "slow_408": slow_408, "slow_408_seen_by_client": slow.count(408),
        "slow_unanswered": len(slow) - slow_408,
        "logged": len(logged), "answered": answered,
        "logged_5xx": sum(1 for e in logged if int(e.get("status", 0)) >= 500), "seconds": elapsed,
    }
    result["failed"] = bool(result["server_errors"] or result["timeouts"] or result["logged_5xx"]
                            or result["ok"] != result["requests"] or result["logged"] != result["answered"]
                            or result["slow_unanswered"])
    extra = f", slow bodies answered 408: {result['slow_408']}/{len(slow)}" if slow else ""
    log(f"  {backend:<10} {sc['name']:<34} {result['requests']:>5} requests: {result['server_errors']} 5xx, "
        f"{result['timeouts']} timeouts, logged {result['logged']}/{result['answered']}, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms{extra}{'  FAILED' if result['failed'] else ''}")
    return result


def table(results: list[dict]) -> str:
    head = (f"{'scenario':<36} {'backend':<10} {'requests':>8} {'5xx':>4} {'timeouts':>8} {'logged':>11} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'slow → 408':>11}")
    lines = [head, "-" * len(head)]
    for r in results:
        slow = f"{r['slow_408']}/{r['slow_connections']}" if r["slow_connections"] else ""
        lines.append(f"{r['operation'][6:]:<36} {r['backend']:<10} {r['requests']:>8} {r['server_errors']:>4} "
                     f"{r['timeouts']:>8} {str(r['logged']) + '/' + str(r['answered']):>11} {r['p50_ms']:>8.1f} "
                     f"{r['p99_ms']:>8.1f} {slow:>11}")
    lines.append("logged = request lines in the server's log ÷ requests answered; a slow body gets 408 after 10 s "
                 "(counted from the server's log: the client often sees a reset instead). "
                 "Server and load generator share the machine's 2 cores.")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench.load", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--json")
    p.add_argument("--generator", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.generator:
        print(json.dumps(generate(json.loads(args.generator))))
        return 0
    results = run(args.quick, BACKENDS if args.backend == "both" else (args.backend,))
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 1 if any(r["failed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
