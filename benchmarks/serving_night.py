"""Issue 15's benchmark: does the API keep serving while the night writes Redis?

    python benchmarks/serving_night.py [--users 100000] [--days 120] [--duration 60]
                                       [--concurrency 8] [--json PATH]

Builds a world of ``--users`` (the pipeline's stages, as ``bench_batch.py`` does: generate,
validate, features, apply, materialize, train, promote) in a temporary directory with a
Feast project and a redis-server of its own (a free port on 127.0.0.1, never the machine's
Redis), starts ``churn serve`` and loads ``GET /users/{id}/churn-risk`` (random existing
ids) at ``--concurrency`` in three scenarios:

a. materialize: wrk without, then wrk while ``churn features materialize`` (the view's TTL
   window) runs back to back for the whole run: non-2xx answers and p99, with and without;
b. promotion: wrk while ``churn promote --force`` switches production to the run's other
   model: failed requests, and which version the answers carry;
c. Redis restart: a Python load (per-answer status and order) while the redis-server is
   killed (SIGKILL), started again on the same port (empty: it saves nothing) and loaded
   again by ``churn features materialize``: answers by status (503 with and without
   Retry-After, never a 500), seconds from Redis answering PING to the API answering.

It stops by itself, removes its directory, its Feast project and its redis-server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from api_load import BIN, python_load, python_requests, wrk_figures, wrk_output

WORLD = ("generate", "validate", "prepare+features", "apply", "materialize", "train", "promote")

# wrk with per-status counts, 503s without Retry-After, and 200s by model version.
STATUS_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread); thread:set("id", #threads) end
function init(args)
  math.randomseed(os.time() * 100 + id)
  statuses, versions, bare503 = {}, {}, 0
end
request = function()
  return wrk.format("GET", string.format("/users/u%06d/churn-risk", math.random(0, {last})))
end
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 and headers["retry-after"] == nil and headers["Retry-After"] == nil then
    bare503 = bare503 + 1
  end
  if status == 200 then
    local version = string.match(body, '"model_version":"([^"]+)"')
    if version then versions[version] = (versions[version] or 0) + 1 end
  end
end
done = function(summary, latency, requests)
  local s, v, b = {}, {}, 0
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do s[code] = (s[code] or 0) + n end
    for version, n in pairs(t:get("versions")) do v[version] = (v[version] or 0) + n end
    b = b + t:get("bare503")
  end
  for code, n in pairs(s) do io.write(string.format("STATUS %d %d\\n", code, n)) end
  for version, n in pairs(v) do io.write(string.format("VERSION %s %d\\n", version, n)) end
  io.write(string.format("BARE503 %d\\n", b))
end
"""


def wrk_run(url: str, args: argparse.Namespace, tmp: Path) -> dict:
    """One wrk run of ``STATUS_SCRIPT``: req/s, p50, p99, failed, statuses, versions."""
    script = STATUS_SCRIPT.replace("{last}", str(args.users - 1))
    out = wrk_output(url, script, args.concurrency, args.duration, tmp)
    rate, p50, p99, failed = wrk_figures(out)
    return {
        "requests_per_s": rate, "p50_ms": p50, "p99_ms": p99, "failed": failed,
        "statuses": {int(c): int(n) for c, n in re.findall(r"^STATUS (\d+) (\d+)$", out, re.M)},
        "versions": dict((v, int(n)) for v, n in re.findall(r"^VERSION (\S+) (\d+)$", out, re.M)),
        "503_without_retry_after": int(re.search(r"^BARE503 (\d+)$", out, re.M).group(1)),
    }  # fmt: skip


def churn(env: dict, *command: str) -> tuple[float, int, str]:
    """Run a ``churn`` command: its seconds, exit code and the tail of its output."""
    started = time.perf_counter()
    proc = subprocess.run([str(BIN / "churn"), *command], env=env, capture_output=True, text=True)
    return time.perf_counter() - started, proc.returncode, (proc.stdout + proc.stderr)[-2000:]


def materialize_under_load(url: str, env: dict, args: argparse.Namespace, tmp: Path) -> dict:
    """wrk without, then with ``churn features materialize`` running back to back."""
    print(f"… a. wrk {args.duration} s without materialize", file=sys.stderr, flush=True)
    without = wrk_run(url, args, tmp)
    runs: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def back_to_back() -> None:
        while not stop.is_set():
            runs.append(churn(env, "features", "materialize"))

    print(f"… a. wrk {args.duration} s while materialize runs", file=sys.stderr, flush=True)
    writer = threading.Thread(target=back_to_back)
    writer.start()
    try:
        during = wrk_run(url, args, tmp)
    finally:
        stop.set()
        writer.join()
    failed = [tail for _, code, tail in runs if code != 0]
    if failed:
        raise SystemExit(f"churn features materialize failed:\n{failed[0]}")
    return {
        "without": without, "during": during, "p99_ratio": during["p99_ms"] / without["p99_ms"],
        "materialize_runs": len(runs), "materialize_s": [round(s, 1) for s, _, _ in runs],
    }  # fmt: skip


def promotion_under_load(
    url: str, env: dict, settings, args: argparse.Namespace, tmp: Path
) -> dict:
    """wrk while ``churn promote --force`` switches production to the run's other model."""
    from online_api.server import get_json
    from served import registry

    before = registry.production(settings.models_dir)
    target = next(v["version"] for v in registry.list_versions(settings.models_dir)
                  if v["version"] != before)  # fmt: skip
    promoted: list[tuple[float, int, str]] = []

    def promote() -> None:
        time.sleep(args.duration / 3)
        promoted.append(churn(env, "promote", "--force", "--version", target, "--reason", "bench"))

    print(f"… b. wrk {args.duration} s, promotion of {target} after {args.duration / 3:.0f} s",
          file=sys.stderr, flush=True)  # fmt: skip
    switcher = threading.Thread(target=promote)
    switcher.start()
    try:
        load = wrk_run(url, args, tmp)
    finally:
        switcher.join()
    if promoted[0][1] != 0:
        raise SystemExit(f"churn promote failed:\n{promoted[0][2]}")
    _, after = get_json(f"{url}/users/u000000/churn-risk")
    return {"load": load, "before": before, "target": target,
            "served_after": after.get("model_version")}  # fmt: skip


def restart_under_load(url: str, env: dict, settings, args: argparse.Namespace, tmp: Path) -> dict:
    """A Python load while the redis-server is killed, started again and re-materialized."""
    from feature_repo.redis_server import kill_redis_server, start_redis_server

    answers: list[tuple[float, int, bool]] = []  # (when, status, with Retry-After), in order
    until = threading.Event()
    request = python_requests("api", args.users - 1, random.Random(15))
    figures: list[tuple[float, float, float, int]] = []

    def observe(status: int, retry_after: bool, _: bytes) -> None:
        answers.append((time.perf_counter(), status, retry_after))

    def load() -> None:
        figures.append(python_load(url, request, args.concurrency, 3600, observe, until))

    port = int(settings.redis_url.rsplit(":", 1)[1].split("/")[0])
    loader = threading.Thread(target=load)
    loader.start()
    try:
        print("… c. Python load; redis-server killed, started again, materialized",
              file=sys.stderr, flush=True)  # fmt: skip
        time.sleep(args.restart_after)
        killed = time.perf_counter()
        kill_redis_server(tmp / "redis")
        time.sleep(args.down_seconds)
        start_redis_server(port, tmp / "redis", persist=False)
        answering = time.perf_counter()  # PING answered (polled every 0.1 s)
        seconds, code, tail = churn(env, "features", "materialize")
        loaded = time.perf_counter()
        time.sleep(args.restart_after)
    finally:
        until.set()
        loader.join()
    if code != 0:
        raise SystemExit(f"churn features materialize failed after the restart:\n{tail}")
    return restart_figures(answers, figures[0][3], killed, answering, loaded) | {
        "materialize_s": round(seconds, 1)
    }


def restart_figures(
    answers: list[tuple[float, int, bool]], failed: int, killed: float, answering: float,
    loaded: float,
) -> dict:  # fmt: skip
    """Counts by status and the recovery: from PING answered to the first answer that read
    Redis (not a 503), and to the first 200; answers not 200 once materialize ended."""
    statuses = Counter(status for _, status, _ in answers)
    after = [(t, s) for t, s, _ in answers if t >= answering]
    first_read = next((t for t, s in after if s != 503), None)
    first_200 = next((t for t, s in after if s == 200), None)
    return {
        "answers": len(answers), "statuses": dict(sorted(statuses.items())),
        "503_without_retry_after": sum(s == 503 and not r for _, s, r in answers),
        "server_errors_not_503": sum(s >= 500 and s != 503 for _, s, _ in answers),
        "dropped_connections": failed - sum(not 200 <= s < 300 for _, s, _ in answers),
        "down_s": answering - killed,
        "ping_to_first_read_s": None if first_read is None else first_read - answering,
        "ping_to_first_200_s": None if first_200 is None else first_200 - answering,
        "not_200_after_materialize": sum(s != 200 for t, s, _ in answers if t >= loaded),
    }  # fmt: skip


def main() -> None:
    args = _arguments()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `make bench-serving` installs it (as root)")
    from runner import bench_settings, run_stages

    from core.readiness import free_port
    from feature_repo.redis_server import ping
    from feature_repo.store import open_store
    from online_api import server

    tmp, settings = bench_settings("bench-serving-", redis_port=free_port())
    if args.world:  # a world bench_night.py kept: its data, registry and models
        kept = json.loads(args.world.read_text())["env"]
        settings = settings.model_copy(update={
            "data_dir": Path(kept["CHURN_DATA_DIR"]),
            "artifacts_dir": Path(kept["CHURN_ARTIFACTS_DIR"]),
            "feast_project": kept["CHURN_FEAST_PROJECT"]})  # fmt: skip
    env = os.environ | settings.as_env() | {"OMP_NUM_THREADS": "1"}
    api = None
    try:
        run_stages(("materialize",) if args.world else WORLD, settings, args.users, args.days)
        port = free_port()
        api = server.start(settings, port, tmp / "api.log")
        url = f"http://127.0.0.1:{port}"
        server.wait_ready(url, api, tmp / "api.log")
        results = {
            "materialize": materialize_under_load(url, env, args, tmp),
            "promotion": promotion_under_load(url, env, settings, args, tmp),
            "restart": restart_under_load(url, env, settings, args, tmp),  # last: empties Redis
        }
    finally:
        if api is not None:
            server.stop(api)
        try:
            if ping(settings.redis_url) and not args.world:  # teardown drops the registry
                open_store(settings).teardown()
        finally:
            _shutdown(settings.redis_url)
            shutil.rmtree(tmp, ignore_errors=True)
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results | {"users": args.users, "days": args.days,
            "duration": args.duration, "concurrency": args.concurrency}, indent=2))  # fmt: skip


def _shutdown(url: str) -> None:
    import redis

    with contextlib.suppress(redis.RedisError):
        redis.Redis.from_url(url).shutdown(nosave=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000, help="Users of the world.")
    parser.add_argument("--days", type=int, default=120, help="Days of history.")
    parser.add_argument("--duration", type=int, default=60, help="Seconds per wrk run.")
    parser.add_argument("--concurrency", type=int, default=8, help="Open connections.")
    parser.add_argument("--restart-after", type=float, default=5.0,
                        help="Seconds of load before the kill and after the reload.")  # fmt: skip
    parser.add_argument("--down-seconds", type=float, default=3.0, help="Redis down this long.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    parser.add_argument("--world", type=Path,
                        help="Serve the world bench_night.py --keep saved (its state file) "
                        "instead of building one; its online store is this run's own Redis.")  # fmt: skip
    return parser.parse_args()


def report(results: dict, args: argparse.Namespace) -> None:
    """The three scenarios' figures, one block each."""
    m, p, r = results["materialize"], results["promotion"], results["restart"]
    print(f"\n{args.users:,} users, c={args.concurrency}, {args.duration} s per wrk run")
    print(f"{'a. materialize':<24}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for name in ("without", "during"):
        w = m[name]
        print(f"{'   ' + name:<24}{w['requests_per_s']:>9,.0f}{w['p50_ms']:>9.2f}"
              f"{w['p99_ms']:>9.2f}{w['failed']:>9}")  # fmt: skip
    print(f"   p99 during / without: {m['p99_ratio']:.2f} (target ≤ 3); materialize ran "
          f"{m['materialize_runs']}× back to back: {m['materialize_s']} s")  # fmt: skip
    load = p["load"]
    print(f"b. promotion {p['before']} → {p['target']}: {load['failed']} failed of "
          f"{sum(load['statuses'].values()):,}; p99 {load['p99_ms']:.2f} ms; 200s by version "
          f"{load['versions']}; served after: {p['served_after']}")  # fmt: skip
    first_read, first_200 = r["ping_to_first_read_s"], r["ping_to_first_200_s"]
    print(f"c. Redis restart (down {r['down_s']:.1f} s, re-materialize {r['materialize_s']} s): "
          f"answers by status {r['statuses']}; 503 without Retry-After "
          f"{r['503_without_retry_after']}; other 5xx {r['server_errors_not_503']}; dropped "
          f"connections {r['dropped_connections']}")  # fmt: skip
    print(f"   PING → first answer from Redis {_s(first_read)} (target ≤ 1 s), → first 200 "
          f"{_s(first_200)}; not 200 after the re-materialize: "
          f"{r['not_200_after_materialize']}")  # fmt: skip


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.3f} s"


if __name__ == "__main__":
    main()
