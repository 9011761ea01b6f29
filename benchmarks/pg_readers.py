"""Which PostgreSQL reader the ingest uses: ADBC against psycopg 3's ``COPY … TO STDOUT``.

    python benchmarks/pg_readers.py [--rows 2000000] [--chunk 100000]

Creates a database of its own on ``CHURN_TEST_POSTGRES_URL`` (default: the local server),
fills an events table in the server (``generate_series``), then reads it back, each
reader in a fresh process, in chunks as Arrow: seconds and the process's peak RSS. The
database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import psycopg

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/postgres"
QUERY = "SELECT event_id, user_id, event_time, event_type, course_id, watch_minutes, " \
        "quiz_score, amount FROM events"  # fmt: skip
FILL = """
CREATE TABLE events AS
SELECT 'e' || i AS event_id, 'u' || (i %% 100000) AS user_id,
       TIMESTAMPTZ '2026-01-01 00:00:00+00' + (i * INTERVAL '3 seconds') AS event_time,
       (ARRAY['login','video_watch','quiz_attempt'])[1 + i %% 3] AS event_type,
       CASE WHEN i %% 3 > 0 THEN 'k8s-' || (i %% 40) END AS course_id,
       CASE WHEN i %% 3 = 1 THEN (i %% 90)::double precision END AS watch_minutes,
       CASE WHEN i %% 3 = 2 THEN (i %% 100)::double precision END AS quiz_score,
       NULL::double precision AS amount
FROM generate_series(1, %s) AS i
"""


def read_adbc(url: str, chunk: int) -> int:
    import adbc_driver_postgresql.dbapi as adbc

    rows = 0
    with adbc.connect(url) as conn, conn.cursor() as cur:
        cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(16 << 20)})
        cur.execute(QUERY)
        for batch in cur.fetch_record_batch():
            rows += batch.num_rows
    return rows


class _CopyStream(io.RawIOBase):
    """A ``COPY … TO STDOUT`` as a file, for pyarrow's streaming CSV reader."""

    def __init__(self, copy) -> None:
        self._blocks = iter(copy)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._rest:
            try:
                self._rest = bytes(next(self._blocks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n], self._rest = self._rest[:n], self._rest[n:]
        return n


def read_copy(url: str, chunk: int) -> int:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    names = [c.strip() for c in QUERY.split("SELECT")[1].split("FROM")[0].split(",")]
    rows = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        sql = f"COPY ({QUERY}) TO STDOUT (FORMAT csv)"
        with cur.copy(sql) as copy:
            stream = io.BufferedReader(_CopyStream(copy), buffer_size=1 << 20)
            reader = pa_csv.open_csv(
                stream,
                read_options=pa_csv.ReadOptions(column_names=names, block_size=8 << 20),
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True
                ),
            )
            for batch in reader:
                rows += batch.num_rows
    return rows


def _child(reader: str, url: str, chunk: int) -> None:
    started = time.perf_counter()
    rows = {"adbc": read_adbc, "copy": read_copy}[reader](url, chunk)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"reader": reader, "rows": rows, "seconds": seconds, "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=["adbc", "copy"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args.child, args.url, args.chunk)
    admin = os.environ.get("CHURN_TEST_POSTGRES_URL", DEFAULT_URL)
    name = f"churn_pgbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(admin)._replace(path=f"/{name}").geturl()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            conn.execute(FILL, (args.rows,))
            print(f"… {args.rows:,} rows in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        results = []
        for _ in range(args.rounds):
            for reader in ("adbc", "copy"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", reader, "--url", url,
                     "--chunk", str(args.chunk)], capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                results.append(json.loads(out))
                print(f"… {results[-1]}", file=sys.stderr)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\n{args.rows:,} events, median of {args.rounds} rounds, each reader in a fresh process")
    for reader in ("adbc", "copy"):
        runs = sorted(results, key=lambda r: r["seconds"])
        runs = [r for r in runs if r["reader"] == reader]
        mid = runs[len(runs) // 2]
        print(f"{reader:<6} {mid['seconds']:7.2f} s  {args.rows / mid['seconds']:>12,.0f} rows/s"
              f"  peak {max(r['peak_mb'] for r in runs):6.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
