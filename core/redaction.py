"""Passwords out of what a person sees: ``churn env``, log lines, error messages.

One function, ``redact``, for every place a URL or a connection string may be shown: a
URL's password (``scheme://user:PASSWORD@host``) and any ``password=…`` pair (a query
parameter, a libpq DSN key, Feast's Redis connection string) become ``***``. The rest
stays readable (user, host, port, database), since that is what an operator checks.
"""

from __future__ import annotations

import logging
import re

HIDDEN = "***"

# The netloc as urllib.parse splits it (it ends at the first / ? #), so the password hidden
# is the one the client reads; quotes and spaces end it too, for a URL inside a message.
_URL = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<netloc>[^/?#\s'\"]*)")
# password=… in a query (&), a DSN (spaces, quoted values), a connection string (commas);
# sslpassword and PGPASSWORD too.
_PAIR = re.compile(
    r"(?P<key>\b[A-Za-z_]*password\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^\s&,;'\"]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every password in it shown as ``***``.

    ``postgresql://root:s3cret@db:5432/portal`` → ``postgresql://root:***@db:5432/portal``;
    ``host=db password=s3cret`` → ``host=db password=***``. A URL without a password (or
    with an empty one, ``redis://:@redis:6379/0``) is left as it is.
    """
    return _PAIR.sub(rf"\g<key>{HIDDEN}", _URL.sub(_hide_userinfo_password, text))


def _hide_userinfo_password(match: re.Match[str]) -> str:
    userinfo, at, host = match["netloc"].rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or not password:
        return match[0]
    return f"{match['scheme']}{user}:{HIDDEN}@{host}"


class RedactingFormatter(logging.Formatter):
    """Log lines with their passwords hidden: a library may log a URL it was given."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
