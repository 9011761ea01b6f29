"""The newest night's outreach list, as the API answers it: ``listed``, and only then ``arm``.

A CRM that asks about one user must learn whether the retention team is to act on them at
all: "contact" beside a user on no list invites a call the experiment never asked for, and
the holdout measures outreach only while the team contacts listed users alone. So the API
answers from the list the batch wrote (``served.arms``), not from the arm's hash.

The request path pays one dict lookup per user: ``arms()`` is the newest night's
user id → arm, replaced whole (one assignment) when a newer list is read. ``watch`` looks
every ``outreach_reload_seconds``, in a thread: a listing of the nights and a stat, and
the file is read only when the newest one differs by path, mtime, size or inode
(``write_assignments`` renames a new file in). No outreach directory, or no night with a
list, means nobody is listed. A file that cannot be read keeps the previous list (logged
once) and is tried again at the next look.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from core.settings import Settings
from served.arms import Arm, arms_by_user, newest_assignments

log = logging.getLogger(__name__)

# What identifies one version of a night's file: it is replaced by rename, never rewritten.
FileKey = tuple[str, int, int, int]


def file_key(path: Path) -> FileKey:
    """``path``, its mtime (ns), size and inode: another key means another file."""
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino


class OutreachList:
    """The newest night's listed users and their arm; ``refresh`` from one thread at a time
    (the start-up, then ``watch``), read from any."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._arms: Mapping[str, Arm] = {}
        self._night: date | None = None
        self._seen: FileKey | None = None
        self._failed: FileKey | None = None
        self.checks = 0  # completed ``refresh`` calls: tests wait on it, not on a clock

    def arms(self) -> Mapping[str, Arm]:
        """User id → arm of everyone on the newest night's list (empty: nobody listed)."""
        return self._arms

    @property
    def night(self) -> date | None:
        """The night whose list is answered; None while nobody is listed."""
        return self._night

    def refresh(self) -> None:
        """Read the newest night's list if it is not the one held."""
        try:
            self._load_if_new()
        finally:
            self.checks += 1

    def _load_if_new(self) -> None:
        newest = newest_assignments(self._settings)
        if newest is None:
            if self._seen is not None:
                log.info("no outreach list under %s: nobody is listed",
                         self._settings.outreach_dir)  # fmt: skip
            self._arms, self._night, self._seen = {}, None, None
            return
        night, path = newest
        try:
            key = file_key(path)
        except FileNotFoundError:  # removed since the listing: the next look sees what is left
            return
        if key == self._seen:
            return
        try:
            arms = arms_by_user(path)
        except Exception as exc:  # a bad file must not stop the API: keep the list held
            if key != self._failed:
                log.error("cannot read the outreach list %s: %s: %s; keeping the night %s",
                          path, type(exc).__name__, exc, self._night)  # fmt: skip
            self._failed = key
            return
        self._arms, self._night, self._seen, self._failed = arms, night, key, None
        log.info("answering the outreach list of %s (%d users listed)", night, len(arms))

    async def look(self) -> None:
        """``refresh`` in a thread, off the event loop; a failure is logged, never raised."""
        try:
            await asyncio.to_thread(self.refresh)
        except Exception:  # a failing disk must not stop the API or end the watch
            log.exception("checking the outreach list under %s failed",
                          self._settings.outreach_dir)  # fmt: skip

    async def watch(self) -> None:
        """Follow the newest night's list until cancelled."""
        while True:
            await asyncio.sleep(self._settings.outreach_reload_seconds)
            await self.look()
