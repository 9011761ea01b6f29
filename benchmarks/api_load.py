"""Issue 4's benchmark: this API against a bare FastAPI endpoint and `feast serve`, in one run.

    python benchmarks/api_load.py [--users 2000] [--duration 20] [--concurrency 8 64]
                                  [--workers 1] [--flat-calls 100000]

Builds the demo (own data dir and Feast project, in a temporary directory), starts
(a) ``churn serve``, (b) ``bare_api.py`` (constant JSON) under the same uvicorn
settings and (c) ``feast serve`` on the same feature repo (feature fetch only, no
model; ``--max-requests 0``, so gunicorn does not recycle its worker mid-run), and
loads each with wrk (or, without wrk, a Python load generator) with random
existing user ids. Then 100,000 calls one after another on one connection, to see
that latency stays flat. Everything listens on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from feature_repo.service_name import FEATURE_SERVICE

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

SEED = """
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
function init(args) math.randomseed(os.time() * 100 + id) end
"""
GET_SCRIPT = (
    SEED
    + """
request = function()
  return wrk.format("GET", string.format("/users/u%06d/churn-risk", math.random(0, {last})))
end
"""
)
FEAST_SCRIPT = (
    SEED
    + """
request = function()
  local body = string.format(
    '{"feature_service": "%s", "entities": {"user_id": ["u%06d"]}}', "{service}", math.random(0, {last}))
  return wrk.format("POST", "/get-online-features", {["Content-Type"] = "application/json"}, body)
end
"""
)


@dataclass
class Load:
    server: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    failed: int  # non-2xx responses and socket errors
    cpu_us: float = float("nan")  # the server's CPU time per answered request (all its processes)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes of process group ``pgid`` (Linux /proc).

    Steadier than req/s on a shared machine: a neighbour's load slows the clock, not the work.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == pgid:  # fields from the state on: state ppid pgrp … utime stime
            total += int(fields[11]) + int(fields[12])
    return total / tick


def wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    from core.readiness import NotReady, wait_until

    host, port, path = _split(url)

    def up() -> bool:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited:\n{log.read_text()[-3000:]}")
        conn = http.client.HTTPConnection(host, port, timeout=2)
        conn.request("GET", path)
        return conn.getresponse().status == 200

    try:
        wait_until(f"{url} to answer 200", up, timeout, interval=0.3, ignore=(OSError,))
    except NotReady as exc:
        raise SystemExit(f"{exc}:\n{log.read_text()[-3000:]}") from exc


def _split(url: str) -> tuple[str, int, str]:
    match = re.match(r"http://([^:/]+):(\d+)(/.*)?", url)
    assert match, url
    return match.group(1), int(match.group(2)), match.group(3) or "/"


def wrk(
    url: str, script: str, concurrency: int, duration: int, tmp: Path
) -> tuple[float, float, float, int]:
    """req/s, p50 ms, p99 ms and failed requests (non-2xx and socket errors) of one wrk run."""
    return wrk_figures(wrk_output(url, script, concurrency, duration, tmp))


def wrk_output(url: str, script: str, concurrency: int, duration: int, tmp: Path) -> str:
    """What wrk printed (with ``--latency``) for ``duration`` s of ``script`` at ``concurrency``;
    a script's own ``done()`` lines come at its end."""
    lua = tmp / f"load-{uuid.uuid4().hex[:6]}.lua"
    lua.write_text(script)
    threads = min(2, concurrency)
    return subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(lua), url],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout  # fmt: skip


def wrk_figures(out: str) -> tuple[float, float, float, int]:
    """req/s, p50 ms, p99 ms and failed requests from wrk's output."""
    rate = float(_found(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(_found(r"50%\s+([\d.]+\w+)", out).group(1))
    p99 = _ms(_found(r"99%\s+([\d.]+\w+)", out).group(1))
    failed = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed += sum(int(n) for n in errors.groups()) if errors else 0
    return rate, p50, p99, failed


def _found(pattern: str, text: str) -> re.Match[str]:
    """The first match of ``pattern`` in ``text``; ValueError naming it when wrk said no such line."""
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"no {pattern!r} in wrk's output:\n{text}")
    return match


def _ms(text: str) -> float:
    value, unit = _found(r"^([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def python_load(
    url: str,
    request: Callable[[], bytes],
    concurrency: int,
    duration: float,
    observe: Callable[[int, bool, bytes], None] | None = None,
    until: threading.Event | None = None,
) -> tuple[float, float, float, int]:
    """A keep-alive HTTP/1.1 load generator on asyncio streams, for machines without wrk.

    ``observe(status, retry_after, body)`` sees every answer as it arrives (per-status
    counts, the order of answers); ``until`` ends the load early once set. A connection the
    server drops counts as a failed request, and the client connects again.
    """
    host, port, _ = _split(url)
    latencies: list[float] = []
    failed = 0

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal failed
        started = time.perf_counter()
        writer.write(request())
        status = int((await reader.readline()).split()[1])
        length, retry_after = 0, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name = line.split(b":", 1)[0].lower()
            if name == b"content-length":
                length = int(line.split(b":")[1])
            retry_after |= name == b"retry-after"
        body = await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        failed += not 200 <= status < 300
        if observe is not None:
            observe(status, retry_after, body)

    async def client(stop: float) -> None:
        nonlocal failed
        while time.perf_counter() < stop and not (until and until.is_set()):
            try:
                reader, writer = await asyncio.open_connection(host, port)
                while time.perf_counter() < stop and not (until and until.is_set()):
                    await exchange(reader, writer)
                writer.close()
            except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
                failed += 1  # a dropped connection or a garbled answer
                await asyncio.sleep(0.01)

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(client(start + duration) for _ in range(concurrency)))
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3  # noqa: E731
    return len(latencies) / elapsed, p(0.5), p(0.99), failed


def http_get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


def http_post(path: str, body: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def python_requests(server: str, last: int, rng: random.Random) -> Callable[[], bytes]:
    """Request bytes with a random existing user id, for ``python_load``."""
    if server == "feast":

        def request() -> bytes:
            entities = {"user_id": [f"u{rng.randint(0, last):06d}"]}
            body = json.dumps({"feature_service": FEATURE_SERVICE, "entities": entities})
            return http_post("/get-online-features", body)

        return request
    return lambda: http_get(f"/users/u{rng.randint(0, last):06d}/churn-risk")


def flat_latency(url: str, users: int, calls: int, blocks: int = 10) -> list[tuple[float, float]]:
    """Median and p99 (ms) of each tenth of ``calls`` sequential requests on one connection."""
    host, port, _ = _split(url)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    rng = random.Random(0)
    timings: list[float] = []
    for i in range(calls):
        started = time.perf_counter()
        conn.request("GET", f"/users/u{rng.randrange(users):06d}/churn-risk")
        response = conn.getresponse()
        response.read()
        timings.append(time.perf_counter() - started)
        if response.status != 200:
            raise SystemExit(f"call {i} answered {response.status}")
        if (i + 1) % (calls // blocks) == 0:
            print(f"  … {i + 1:,} calls", file=sys.stderr, flush=True)
    size = calls // blocks
    out = []
    for b in range(blocks):
        block = sorted(timings[b * size : (b + 1) * size])
        out.append((statistics.median(block) * 1e3, block[int(0.99 * len(block))] * 1e3))
    return out


def main() -> None:
    args = _arguments()
    from runner import bench_settings

    from feature_repo.config import feast_environment
    from feature_repo.store import open_store

    tmp, settings = bench_settings("bench-api-")
    env = os.environ | feast_environment(settings)  # `feast serve` reads the yaml's too
    env.pop("CHURN_API_TOKEN", None)
    servers: list[subprocess.Popen] = []
    try:
        print(f"… churn demo --users {args.users}", file=sys.stderr, flush=True)
        demo = subprocess.run(
            [BIN / "churn", "demo", "--users", str(args.users)], env=env, capture_output=True,
            text=True,
        )  # fmt: skip
        if demo.returncode != 0:
            raise SystemExit(f"churn demo failed:\n{demo.stdout[-3000:]}{demo.stderr[-3000:]}")
        ports = _start_servers(args, settings, env, tmp, servers)
        pids = {name: server.pid for name, server in zip(ports, servers, strict=True)}
        results = [
            load
            for _ in range(args.rounds)
            for concurrency in args.concurrency
            for load in _load_each(ports, pids, concurrency, args, tmp)
        ]
        print(f"… {args.flat_calls:,} sequential calls to the API", file=sys.stderr, flush=True)
        flat = flat_latency(f"http://127.0.0.1:{ports['api']}", args.users, args.flat_calls)
    finally:
        _stop(servers)
        try:
            open_store(settings).teardown()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    report(results, flat, args, _generator(args))
    if args.json:
        args.json.write_text(json.dumps({
            "load": [r.__dict__ for r in results], "flat": flat, "generator": _generator(args),
            "workers": args.workers, "users": args.users, "duration": args.duration,
        }, indent=2))  # fmt: skip


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=20, help="Seconds per load run.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--workers", type=int, default=1, help="Workers of each server.")
    parser.add_argument("--flat-calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1, help="Load runs per server; medians.")
    parser.add_argument(
        "--before",
        type=Path,
        help="Another checkout of this repo (e.g. a `git worktree` of an older commit): its "
        "API also serves the same data, as `before`, so a change is measured in one run.",
    )
    parser.add_argument("--python-load", action="store_true", help="Use the Python generator.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    return parser.parse_args()


def _generator(args: argparse.Namespace) -> str:
    if shutil.which("wrk") is not None and not args.python_load:
        return "wrk"
    return "python (asyncio, keep-alive)"


def _start_servers(
    args: argparse.Namespace, settings, env: dict, tmp: Path, servers: list[subprocess.Popen]
) -> dict[str, int]:
    """Start every server (appended to ``servers``, for the caller to stop) until it answers."""
    from core.readiness import free_port
    from feature_repo.config import REPO_DIR

    w = str(args.workers)
    commands: dict[str, tuple[Sequence[str | Path], Path | None, dict]] = {
        "bare": (
            [sys.executable, "-m", "uvicorn", "bare_api:app", "--app-dir", str(HERE),
             "--log-level", "warning"], None, env,
        ),
        # This checkout's code even when the virtualenv's editable install is another's
        # (a worktree sharing the main checkout's .venv).
        "api": ([BIN / "churn", "serve"], None, env | {"PYTHONPATH": _with_path(HERE.parent)}),
        "feast": (
            [BIN / "feast", "serve", "--no-access-log", "--max-requests", "0"],
            REPO_DIR, env,
        ),
    }  # fmt: skip
    if args.before:
        # The older tree's own `churn serve`: its code, this checkout's interpreter and data.
        serve = [sys.executable, "-c", "from churn.cli import app; app()", "serve"]
        before_env = env | {"PYTHONPATH": str(args.before.resolve())}
        commands["before"] = (serve, args.before, before_env)
    probes = {"api": "/ready", "before": "/ready", "feast": "/health"}
    ports = {name: free_port() for name in commands}
    for name, (command, cwd, server_env) in commands.items():
        log = tmp / f"{name}.log"
        servers.append(
            subprocess.Popen(
                [str(c) for c in command] + ["--port", str(ports[name]), "--workers", w],
                cwd=cwd, env=server_env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )  # fmt: skip
        probe = probes.get(name, "/users/u000000/churn-risk")
        wait_until_up(f"http://127.0.0.1:{ports[name]}{probe}", servers[-1], log)
        print(f"… {name} up on port {ports[name]}", file=sys.stderr, flush=True)
    return ports


def _with_path(root: Path) -> str:
    """``PYTHONPATH`` with ``root`` first."""
    return os.pathsep.join(filter(None, (str(root), os.environ.get("PYTHONPATH"))))


def _load_each(
    ports: dict[str, int],
    pids: dict[str, int],
    concurrency: int,
    args: argparse.Namespace,
    tmp: Path,
) -> list[Load]:
    """One load run of each server at ``concurrency``, one after another, with the server's
    CPU time per request (its processes form a group led by ``pids[name]``)."""
    last = args.users - 1
    results = []
    for name, port in ports.items():
        url = f"http://127.0.0.1:{port}"
        print(f"… {name} at concurrency {concurrency}, {args.duration} s", file=sys.stderr,
              flush=True)  # fmt: skip
        cpu_before = group_cpu_seconds(pids[name])
        if _generator(args) == "wrk":
            script = (FEAST_SCRIPT if name == "feast" else GET_SCRIPT).replace("{last}", str(last))
            figures = wrk(url, script.replace("{service}", FEATURE_SERVICE), concurrency,
                          args.duration, tmp)  # fmt: skip
        else:
            request = python_requests(name, last, random.Random(concurrency))
            figures = python_load(url, request, concurrency, args.duration)
        cpu = group_cpu_seconds(pids[name]) - cpu_before
        answered = figures[0] * args.duration
        results.append(Load(name, concurrency, *figures, cpu_us=cpu / answered * 1e6))
    return results


def _stop(servers: list[subprocess.Popen]) -> None:
    for server in servers:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
    for server in servers:
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def report(results: list[Load], flat: list[tuple[float, float]], args, generator: str) -> None:
    rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    print(f"\n{args.users:,} users, {args.workers} worker(s) per server, {args.duration} s per run, "
          f"load from {generator}{rounds}")  # fmt: skip
    print(f"{'server':<8}{'conc.':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}"
          f"{'CPU µs/req':>12}")  # fmt: skip
    by: dict[tuple[int, str], Load] = {}
    for key in dict.fromkeys((r.concurrency, r.server) for r in results):
        runs = [r for r in results if (r.concurrency, r.server) == key]
        median = {
            f: statistics.median(getattr(r, f) for r in runs)
            for f in ("requests_per_s", "p50_ms", "p99_ms", "cpu_us")
        }
        by[key] = r = Load(key[1], key[0], failed=sum(r.failed for r in runs), **median)
        print(f"{r.server:<8}{r.concurrency:>6}{r.requests_per_s:>10,.0f}{r.p50_ms:>9.2f}"
              f"{r.p99_ms:>9.2f}{r.failed:>8}{r.cpu_us:>12.0f}")  # fmt: skip
    for concurrency in args.concurrency:
        rate = {name: load.requests_per_s for (c, name), load in by.items() if c == concurrency}
        line = (f"concurrency {concurrency}: api/bare {rate['api'] / rate['bare']:.2f}, "
                f"api/feast serve {rate['api'] / rate['feast']:.1f}×")  # fmt: skip
        if "before" in rate:
            cpu = {name: load.cpu_us for (c, name), load in by.items() if c == concurrency}
            line += (f"; before/bare {rate['before'] / rate['bare']:.2f}; "
                     f"CPU per request api/before {cpu['api'] / cpu['before']:.2f}")  # fmt: skip
        print(line)
    medians = [m for m, _ in flat]
    print(f"\n{args.flat_calls:,} sequential calls, per tenth: median ms "
          + " ".join(f"{m:.3f}" for m in medians))  # fmt: skip
    print("p99 ms " + " ".join(f"{p:.3f}" for _, p in flat))
    print(f"last tenth / first tenth median: {medians[-1] / medians[0]:.2f}")


if __name__ == "__main__":
    main()
