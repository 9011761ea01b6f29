"""What every ``churn`` command starts with: the root app and its logging, the settings, the
console, and the guard that turns an error a user can fix into one line."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from core.redaction import RedactingFormatter, redact
from core.settings import Settings, get_settings

# No local variables in a traceback: a URL in one may carry its password.
app = typer.Typer(
    help="Churn prediction on a Feast feature store.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

console = Console()


@app.callback()
def configure_logging(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Decisions (promotion, gates) are logged to stderr, as well as printed; with every
    password in a line shown as ***."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    for noisy in ("feast", "ibis", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load_settings() -> Settings:
    """The settings, or exit 2 with the bad variable named (a password shown as ***)."""
    try:
        return get_settings()
    except Exception as exc:  # pydantic's message (or check_variables') names the variable
        # On stderr: `eval "$(churn env)"` must not run the message as a command.
        message = f"[red]Bad configuration:[/red] {redact(str(exc))}"
        Console(stderr=True).print(message, soft_wrap=True)
        raise typer.Exit(2) from exc


def online_settings(settings: Settings | None = None) -> Settings:
    """Settings whose ``redis_url`` is the online store, found as every command finds it
    (``feature_repo.redis_server.online_store``) and said in one line; exported, so the
    processes this one starts (the API's workers, the night's steps) use the same one."""
    from feature_repo.redis_server import online_store

    given = settings or load_settings()
    found = online_store(given, say=lambda line: console.print(line, style="dim", soft_wrap=True))
    if found.redis_url != given.redis_url:
        os.environ["CHURN_REDIS_URL"] = found.redis_url
    return found


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix (missing input, bad file or value, no Redis, a full disk)
    into one line, unwrapped (a log line a grep finds whole).

    ``IngestError`` is a ``ValueError``; so are the generator's argument errors.
    """
    from feature_repo.feast_cli import FeastCommandError
    from feature_repo.redis_server import RedisUnavailableError
    from ingestion.ingest import SourceError
    from ingestion.raw_store import IngestRunning
    from served.registry import RegistryError

    try:
        yield
    except (
        OSError,  # a missing file, a full disk, a read-only dir: strerror and the path
        ValueError,
        RedisUnavailableError,
        FeastCommandError,
        RegistryError,
        SourceError,
        IngestRunning,
    ) as exc:
        console.print(f"[red]{type(exc).__name__}:[/red] {redact(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc
