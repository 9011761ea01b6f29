"""Where ``churn data ingest`` reads when given no files: ``CHURN_SOURCE``.

``postgresql://…`` is the portal's database (``ingestion.postgres_source``), ``dir:///…`` a
landing folder of export files (``ingestion.landing_source``). Both land in the same raw
tables (``ingestion.raw_store``), so nothing downstream knows which one ran.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from core.settings import Settings
from ingestion.ingest import SourceError
from ingestion.raw_store import Landed

SCHEMES = ("postgresql", "postgres", "dir")


def source_url(settings: Settings, url: str | None = None) -> str:
    """``url``, else CHURN_SOURCE; a SourceError saying what to set when neither."""
    url = url or (settings.source.get_secret_value() if settings.source else None)
    if not url:
        raise SourceError(
            "no source: set CHURN_SOURCE (postgresql://user@host:5432/db or dir:///landing) "
            "or give --users-file and --events-file"
        )
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise SourceError(
            f"CHURN_SOURCE must start with postgresql:// or dir://, got {scheme or url!r}"
        )
    return url


def ingest_from_source(
    settings: Settings,
    url: str | None = None,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    full: bool = False,
) -> Landed:
    """One ingest run from ``url`` (default CHURN_SOURCE): what it added to the raw tables.
    ``full`` (the database only) re-reads the whole source and takes its corrections."""
    url = source_url(settings, url)
    if url.startswith("dir://"):
        if full:
            raise SourceError("--full re-reads a database; a landing folder takes corrected "
                              "files as they come")  # fmt: skip
        from ingestion.landing_source import ingest_landing

        return ingest_landing(settings, Path(unquote(urlsplit(url).path)), now, progress)
    from ingestion.postgres_source import ingest_postgres

    return ingest_postgres(settings, url, now, progress, full=full)
