"""A real server for tests: uvicorn in a thread on 127.0.0.1 (a port of its own), and plain HTTP clients."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass


@contextmanager
def serving(app, **config):
    """Serve `app` with uvicorn on a free loopback port until the block ends; yields the port."""
    import uvicorn
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@dataclass
class Answer:
    status: int  # 0: no answer (a timeout or a broken connection)
    body: bytes
    seconds: float
    headers: dict


def post(port: int, document: str, token: str | None = None, variables: dict | None = None, *,
         timeout: float = 30.0, body: bytes | None = None, headers: dict | None = None) -> Answer:
    """One POST /graphql on a new connection."""
    payload = body if body is not None else json.dumps({"query": document, "variables": variables or {}}).encode()
    sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}),
            **(headers or {})}
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/graphql", body=payload, headers=sent)
        r = conn.getresponse()
        data = r.read()
        return Answer(r.status, data, time.perf_counter() - started, {k.lower(): v for k, v in r.getheaders()})
    except (OSError, http.client.HTTPException) as exc:
        return Answer(0, repr(exc).encode(), time.perf_counter() - started, {})
    finally:
        conn.close()


def at_once(n: int, fn) -> list:
    """Call fn(i) in n threads released together; the results in order."""
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results
