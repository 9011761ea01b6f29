"""A seeded demo world, simulated one day at a time over blocks of users.

Each day, every block (``ingestion.simulate.Block``) steps its own users, and their events
are merged into the day's, sorted by time, with event ids that go on from the previous
day's. Block 0 draws from ``default_rng(seed)``, the stream every world drew from before
there were blocks, so a world of up to one block (every size the demo, the tests and the
benchmarks use) is the world it always was, and the first block of a larger world is the
one-block world of its seed. Block b >= 1 draws from child b of ``SeedSequence(seed)`` (what
``SeedSequence.spawn`` hands out). User ids follow the blocks (``u000000`` onwards, wider
past a million users). Memory is the users' state and one day's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.contract import EVENT_TYPES
from ingestion.simulate import (
    CHANNELS,
    COUNTRIES,
    COURSES,
    NO_CHURN,
    SCENARIOS,
    TYPE_CODE,
    Block,
    BlockDay,
    Contacts,
    Scenario,
    is_payment,
    scenario_world,
    sigmoid,
)

# Users simulated per block: above every size the demo, tests and benchmarks use (100,000),
# so their worlds are one block; a block's transient draws stay a few hundred MB.
BLOCK_USERS = 250_000
USER_ID_WIDTH = 6
EVENT_ID_WIDTH = 9
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Outreach:
    """Outreach to simulate: each ``(user_id, date)`` of ``contacts`` (the contact arm of
    that night's list) cuts the user's daily churn hazard by ``effect`` for
    ``horizon_days`` from that night. Ids are the generator's own (``u000123``)."""

    contacts: pd.DataFrame
    effect: float
    horizon_days: int

    def starts(self, start: date, n_users: int) -> dict[int, np.ndarray]:
        """The user indices contacted on each simulated day index."""
        ids = self.contacts["user_id"].astype(str)
        if not ids.str.fullmatch(r"u\d+").all():
            raise ValueError("outreach contacts must be the generator's user ids (u000123)")
        index = ids.str[1:].astype(int).to_numpy()
        if len(index) and index.max() >= n_users:
            raise ValueError(f"outreach contacts name users beyond the {n_users:,} generated")
        day = np.array([(pd.Timestamp(d).date() - start).days for d in self.contacts["date"]])
        return {int(d): index[day == d] for d in np.unique(day)}

    def on_block(self, starts: dict[int, np.ndarray], first: int, n: int) -> Contacts:
        """The contacts of users ``first .. first+n-1`` (``starts``), as that block's indices."""
        on_day = {d: who[(who >= first) & (who < first + n)] - first for d, who in starts.items()}
        return Contacts(on_day, self.effect, self.horizon_days)


@dataclass(frozen=True)
class WorldDay:
    """Day ``day`` of a world: every user's events (sorted by time, Arrow-typed as the
    simulation makes them) and the truth rows of the users alive on it."""

    day: date
    events: pa.Table
    truth_daily: pa.Table


class DemoWorld:
    """A seeded world of ``n_users`` over ``days`` UTC days from ``start`` (default: ending
    yesterday), ready to be simulated once, a day at a time (``simulate``).

    One seed is one world: ``start`` only shifts its timestamps (nothing follows the
    calendar), so the demo trains on the same data whatever the date.
    Events fall in [start, start+days) 00:00 UTC. With ``scenario="drift"`` the world
    changes from ``drift_day`` (default two-thirds in): weaker sign-ups from a different
    channel mix, and half the watch time for everyone. With ``scenario="concept"`` the same
    behaviour carries a higher churn hazard from ``drift_day`` (default two-thirds in), while
    what users do, and so every feature's distribution, is the baseline's until churn
    differs. ``drift_day`` is ignored otherwise.
    ``scenario="purchases"`` is a course shop instead of a portal: enrolments and payments
    only, a slower hidden state, and about half the active customers buy nothing in a month.
    ``outreach`` cuts the churn hazard of the users it contacted; it draws no random number
    of its own, so the world is the same as without it until outreach first keeps someone.
    """

    def __init__(
        self,
        n_users: int = 2000,
        days: int = 120,
        seed: int = 42,
        start: date | None = None,
        scenario: Scenario = "baseline",
        drift_day: int | None = None,
        outreach: Outreach | None = None,
        block_users: int = BLOCK_USERS,
    ) -> None:
        drift_day = _checked_drift_day(n_users, days, scenario, drift_day, block_users)
        self.n_users, self.days, self.outreach = n_users, days, outreach
        self.start = start or datetime.now(UTC).date() - timedelta(days=days)
        first_day = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)
        start_us = int(first_day.timestamp()) * 10**6
        world = scenario_world(scenario, drift_day)
        self.offsets = list(range(0, n_users, block_users))
        sizes = [min(block_users, n_users - first) for first in self.offsets]
        starts = outreach.starts(self.start, n_users) if outreach else {}
        self.blocks = [
            Block(_block_rng(seed, b), n, days, start_us, world,
                  outreach.on_block(starts, first, n) if outreach else None)
            for b, (first, n) in enumerate(zip(self.offsets, sizes, strict=True))
        ]  # fmt: skip
        self.user_ids = _ids("u", 0, n_users, user_id_width(n_users))
        self.n_events = 0
        self._saves: list[tuple[np.ndarray, np.ndarray]] = []
        self._simulated = False

    def simulate(self, progress: Progress | None = None) -> Iterator[WorldDay]:
        """Each day in turn, every block's users in it; ``progress(day, days)`` after each.
        Once per world: the blocks' state is the last day's afterwards."""
        if self._simulated:
            raise RuntimeError("this world was simulated already: make a new DemoWorld")
        self._simulated = True
        for d in range(self.days):
            steps = [block.step(d) for block in self.blocks]
            yield WorldDay(self.start + timedelta(days=d), self._events(steps),
                           self._truth_daily(d, steps))  # fmt: skip
            saved = np.concatenate([s.saved + first for s, first in self._by_block(steps)])
            self._saves.append((saved, np.full(len(saved), d)))
            if progress is not None:
                progress(d + 1, self.days)

    def _by_block(self, steps: list[BlockDay]) -> zip[tuple[BlockDay, int]]:
        return zip(steps, self.offsets, strict=True)

    def _events(self, steps: list[BlockDay]) -> pa.Table:
        """The day's events of every block, by time; event ids go on from the last day's."""
        chunks = [(s.events[0] + first, *s.events[1:]) for s, first in self._by_block(steps)]
        columns = [np.concatenate(c) for c in zip(*chunks, strict=True)]
        order = np.argsort(columns[1], kind="stable")
        uid, times, code, course, value = (a[order] for a in columns)
        event_ids = _ids("e", self.n_events, len(times), EVENT_ID_WIDTH)
        self.n_events += len(times)
        ts = pa.timestamp("us", tz="UTC")
        return pa.table(
            {
                "event_id": event_ids,
                "user_id": self.user_ids.take(pa.array(uid)),
                "event_time": pa.array(times, ts),
                "event_type": pa.array(EVENT_TYPES, pa.large_string()).take(pa.array(code)),
                "course_id": pa.array(COURSES, pa.large_string()).take(
                    pa.array(course, mask=course < 0)
                ),
                "watch_minutes": np.where(code == TYPE_CODE["video_watch"], value, np.nan),
                "quiz_score": np.where(code == TYPE_CODE["quiz_attempt"], value, np.nan),
                "amount": np.where(is_payment(code), value, np.nan),
            }
        )

    def _truth_daily(self, d: int, steps: list[BlockDay]) -> pa.Table:
        """Who was alive on day ``d``, with their hidden engagement and churn hazard."""
        alive = np.concatenate([s.alive + first for s, first in self._by_block(steps)])
        day = (self.start - date(1970, 1, 1)).days + d
        return pa.table(
            {
                "user_id": self.user_ids.take(pa.array(alive)),
                "day": pa.array(np.full(len(alive), day, np.int32), pa.date32()),
                "engagement": np.concatenate([s.engagement for s in steps]),
                "hazard": np.concatenate([s.hazard for s in steps]),
            }
        )

    def _pop(self, key: str) -> np.ndarray:
        return np.concatenate([block.pop[key] for block in self.blocks])

    def users(self) -> pa.Table:
        """The users table (what the portal knows of them), in id order."""
        ts = pa.timestamp("us", tz="UTC")
        return pa.table(
            {
                "user_id": self.user_ids,
                "signup_time": pa.array(self._pop("signup_us"), ts),
                "plan": pa.array(np.where(self._pop("paid"), "paid", "free")),
                "country": pa.array(COUNTRIES).take(pa.array(self._pop("country"))),
                "acquisition_channel": pa.array(CHANNELS).take(pa.array(self._pop("channel"))),
            }
        )

    def truth_users(self) -> pa.Table:
        """Each user's hidden level, drift and churn time: complete once simulated."""
        churn_us = np.concatenate([block.churn_us for block in self.blocks])
        return pa.table(
            {
                "user_id": self.user_ids,
                "churn_time": pa.array(
                    churn_us, pa.timestamp("us", tz="UTC"), mask=churn_us == NO_CHURN
                ),
                "base_engagement": sigmoid(self._pop("base")),
                "drifting": self._pop("drifting"),
                "drift_per_day": self._pop("drift_rate"),
                "drift_cohort": self._pop("cohort"),
            }
        )

    def truth_saves(self) -> pd.DataFrame:
        """The days outreach kept a user (``GeneratedData.truth_saves``), once simulated."""
        who, when = (np.concatenate(c) for c in zip(*self._saves, strict=True))
        return pd.DataFrame(
            {"user_id": self.user_ids.take(pa.array(who, pa.int64())).to_pylist(),
             "day": [self.start + timedelta(days=int(d)) for d in when]}
        )  # fmt: skip


def _checked_drift_day(
    n_users: int, days: int, scenario: str, drift_day: int | None, block_users: int
) -> int | None:
    """Fail fast on arguments no world has; the drift day the scenario uses (None: none)."""
    if n_users < 1 or days < 1 or block_users < 1:
        raise ValueError(
            f"need n_users, days and block_users >= 1, got {n_users=} {days=} {block_users=}"
        )
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    if scenario not in ("drift", "concept"):
        return None
    drift_day = days * 2 // 3 if drift_day is None else drift_day
    if not 0 <= drift_day < days:
        raise ValueError(f"drift_day must be in [0, {days}), got {drift_day}")
    return drift_day


def _block_rng(seed: int, block: int) -> np.random.Generator:
    """Block 0: the seed's own stream; block b: child b of the seed's SeedSequence."""
    if block == 0:
        return np.random.default_rng(seed)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(block,)))


def user_id_width(n_users: int) -> int:
    """Digits of the user ids (``u000123``): six, more past a million users, so that ids
    sort as the users' indices do."""
    return max(USER_ID_WIDTH, len(str(n_users - 1)))


def _ids(prefix: str, first: int, n: int, width: int) -> pa.Array:
    """``prefix`` + zero-padded first..first+n-1, built in Arrow (no Python strings)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(first, first + n)), pa.large_string()),
                          width, "0")  # fmt: skip
    text = pa.large_string()
    return pc.binary_join_element_wise(pa.scalar(prefix, text), digits, pa.scalar("", text))
