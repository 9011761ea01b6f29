"""Demo data: a simulated e-learning portal whose users churn for reasons the data can show.

Each user carries a hidden daily engagement (AR(1) on a logit scale around a per-user
level, which drifts down for a share of users). Activity, payments, tickets and a daily
churn hazard all follow it; a churned user emits nothing afterwards. The hidden state is
returned only in ``truth_users``/``truth_daily`` (evaluation, never features).

Scenario "purchases" is a course shop on the same hidden state: customers only buy courses
(a payment, then the enrolment), so about half of those who bought in the last two weeks buy
nothing in the next month, and how much a customer bought since their first day tells their
stable propensity, which keeps them, better than the last month alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.atomic import write_parquet
from core.contract import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    MAX_WATCH_MINUTES,
    USER_COLUMNS,
    to_contract_table,
)
from core.settings import Settings
from ingestion.raw_store import events_root, replace_all, users_path

DAY_US = 86_400_000_000
NO_CHURN = np.iinfo(np.int64).max
COUNTRIES = ("US", "IN", "GB", "DE", "BR", "CA", "FR", "NG")
COUNTRY_P = np.array([0.30, 0.20, 0.10, 0.10, 0.10, 0.07, 0.06, 0.07])
COUNTRY_EFFECT = np.array([0.0, -0.10, 0.05, 0.10, -0.10, 0.05, 0.0, -0.15])
CHANNELS = ("organic", "paid_search", "social", "referral", "partner")
CHANNEL_P = np.array([0.35, 0.25, 0.15, 0.15, 0.10])
CHANNEL_P_DRIFT = np.array([0.15, 0.20, 0.45, 0.05, 0.15])  # cheap social campaign
CHANNEL_EFFECT = np.array([0.20, 0.0, -0.35, 0.30, -0.10])
# Listed by popularity: users focus on a few, the first ones more often.
COURSES = (
    "python-101", "k8s-101", "docker-101", "aws-101", "linux-101", "git-101",
    "terraform-101", "sql-101", "k8s-201", "python-201", "aws-201", "docker-201",
    "terraform-201", "ansible-101", "gcp-101", "azure-101", "go-101", "linux-201",
    "security-101", "ci-cd-101", "k8s-301", "aws-301", "python-301", "rust-101",
    "helm-201", "prometheus-101", "kafka-201", "spark-201", "ml-ops-201", "terraform-301",
)  # fmt: skip
COURSE_POPULARITY = 1.0 / np.arange(1, len(COURSES) + 1) ** 0.8
PRICES = np.array([29.0, 49.0])
# The shop (scenario "purchases") sells each course at its level's list price.
COURSE_PRICES = np.array([{"1": 29.0, "2": 49.0, "3": 79.0}[c[-3]] for c in COURSES])
PURCHASE_STEPS = ("payment_failed", "payment_success", "course_enroll")
# A shop's customer buys on a day with probability sigmoid(hidden logit + this): about one
# course every two months for a typical customer, about one a week for the keenest.
BUY_SHIFT = -4.0
# Paid users are billed every this many simulated days from their signup day, so the world
# a seed draws never depends on where the calendar's month boundaries fall.
BILLING_CYCLE_DAYS = 30
_TYPE = {name: code for code, name in enumerate(EVENT_TYPES)}
Scenario = Literal["baseline", "drift", "purchases"]
SCENARIOS: tuple[str, ...] = get_args(Scenario)


@dataclass(frozen=True)
class GeneratedData:
    """Raw tables per the contract plus the hidden truth behind them.

    ``truth_saves`` (``user_id, day``): the days outreach kept a user who would have left
    that day without it; the user would have been active that day all the same (a day's
    events are drawn before its churn), and gone after it.
    """

    users: pd.DataFrame
    events: pd.DataFrame
    truth_users: pd.DataFrame
    truth_daily: pd.DataFrame
    truth_saves: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"user_id": [], "day": []}, dtype=object)
    )


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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _is_payment(code: np.ndarray) -> np.ndarray:
    return (code == _TYPE["payment_success"]) | (code == _TYPE["payment_failed"])


def _draw_users(
    rng: np.random.Generator,
    n: int,
    days: int,
    start_us: int,
    drift_day: int | None,
    existing_share: float,
) -> dict[str, np.ndarray]:
    """Static per-user attributes; ids are assigned in signup order like an auto-increment.

    ``existing_share`` of the users signed up in the year before the range, the others in it.
    """
    offset = np.where(
        rng.random(n) < existing_share, -rng.uniform(1, 365, n), rng.uniform(0, days, n)
    )
    signup_us = np.sort(start_us + (offset * DAY_US).astype(np.int64))
    signup_day = np.floor_divide(signup_us - start_us, DAY_US)
    existing = signup_day < 0
    cohort = np.zeros(n, bool) if drift_day is None else signup_day >= drift_day
    paid = rng.random(n) < np.where(cohort, 0.2, 0.3)
    country = rng.choice(len(COUNTRIES), n, p=COUNTRY_P)
    u = rng.random(n)  # same draw for both mixes, so a seed's drift run differs only by design
    channel = np.where(
        cohort,
        np.searchsorted(np.cumsum(CHANNEL_P_DRIFT)[:-1], u, side="right"),
        np.searchsorted(np.cumsum(CHANNEL_P)[:-1], u, side="right"),
    )
    base = (
        -0.8
        + 0.5 * paid
        + COUNTRY_EFFECT[country]
        + CHANNEL_EFFECT[channel]
        - 0.5 * cohort
        + 0.3 * existing  # survivors of the months before the simulated range
        + rng.normal(0, 0.8, n)
    )
    drifting = rng.random(n) < 0.25
    # Focus courses: weighted sampling without replacement via the Gumbel top-k trick.
    keys = np.log(COURSE_POPULARITY) + rng.gumbel(size=(n, len(COURSES)))
    return {
        "signup_us": signup_us,
        "signup_day": signup_day,
        "paid": paid,
        "country": country,
        "channel": channel,
        "cohort": cohort,
        "base": base,
        "drifting": drifting,
        "drift_rate": np.where(drifting, rng.uniform(0.02, 0.06, n), 0.0),
        # Pre-existing users start drifting inside the range, not before it (they'd be gone).
        "drift_start": np.maximum(signup_day, 0) + rng.uniform(7, 90, n),
        "billing_phase": np.mod(signup_day, BILLING_CYCLE_DAYS),
        "price": PRICES[(rng.random(n) < 0.3).astype(int)],
        "focus": np.argsort(-keys, axis=1)[:, :3].astype(np.int16),
    }


@dataclass
class _Memory:
    """What a user's past does to today: the last failed payment and ticket, a pending
    retry, and (a shop) the courses bought, one bit per course."""

    last_fail: np.ndarray
    last_ticket: np.ndarray
    retry_day: np.ndarray
    owned: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _Memory:
        never = np.full(n, -(10**6))
        return cls(never, never.copy(), np.full(n, -1), np.zeros(n, np.int64))


@dataclass(frozen=True)
class _Day:
    """One simulated day of the users alive on it: hidden logit ``x``, their [lo, hi) windows."""

    d: int
    idx: np.ndarray
    x: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    is_signup: np.ndarray


EventChunk = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class _World:
    """What a scenario decides: the share of users who signed up before the simulated range,
    how the hidden deviation moves (AR(1): ``fresh_sd`` on a user's first day, then
    ``persistence`` and ``step_sd``), and what a user does on a day."""

    existing_share: float
    fresh_sd: float
    persistence: float
    step_sd: float
    events: Callable[[np.random.Generator, dict[str, np.ndarray], _Day, _Memory], EventChunk]


def _world(scenario: Scenario, drift_day: int | None) -> _World:
    """The portal (baseline, drift), or the shop: an established customer base, mostly
    bought before the range, whose propensity drifts slowly (a half-life of about a month)."""
    if scenario == "purchases":
        return _World(0.6, 0.5, 0.98, 0.1, _purchase_events)
    return _World(1 / 3, 0.7, 0.9, 0.3, partial(_learning_events, drift_day=drift_day))


def generate_demo_data(
    n_users: int = 2000,
    days: int = 120,
    seed: int = 42,
    start: date | None = None,
    scenario: Scenario = "baseline",
    drift_day: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    outreach: Outreach | None = None,
) -> GeneratedData:
    """Simulate ``days`` UTC days from ``start`` (default: ending yesterday), seeded.

    One seed is one world: ``start`` only shifts its timestamps (nothing follows the
    calendar), so the demo trains on the same data whatever the date.
    Events fall in [start, start+days) 00:00 UTC. With ``scenario="drift"`` the world
    changes from ``drift_day`` (default two-thirds in): weaker sign-ups from a different
    channel mix, and half the watch time for everyone. ``drift_day`` is ignored otherwise.
    ``scenario="purchases"`` is a course shop instead of a portal: enrolments and payments
    only, a slower hidden state, and about half the active customers buy nothing in a month.
    ``outreach`` cuts the churn hazard of the users it contacted; it draws no random number
    of its own, so the world is the same as without it until outreach first keeps someone.
    """
    if n_users < 1 or days < 1:
        raise ValueError(f"need n_users >= 1 and days >= 1, got {n_users=} {days=}")
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    if scenario == "drift":
        drift_day = days * 2 // 3 if drift_day is None else drift_day
        if not 0 <= drift_day < days:
            raise ValueError(f"drift_day must be in [0, {days}), got {drift_day}")
    else:
        drift_day = None
    world = _world(scenario, drift_day)
    start = start or datetime.now(UTC).date() - timedelta(days=days)
    start_us = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()) * 10**6
    rng = np.random.default_rng(seed)
    pop = _draw_users(rng, n_users, days, start_us, drift_day, world.existing_share)
    z = np.zeros(n_users)  # AR(1) deviation from the user's level, logit scale
    started = np.zeros(n_users, bool)
    churn_us = np.full(n_users, NO_CHURN)
    memory = _Memory.empty(n_users)
    events: list[EventChunk] = []
    daily: list[tuple[np.ndarray, ...]] = []
    contacted_on = outreach.starts(start, n_users) if outreach else {}
    helped_until = np.zeros(n_users, np.int64)  # outreach works on days before this one
    saves: list[tuple[np.ndarray, np.ndarray]] = []
    for d in range(days):
        day_us = start_us + d * DAY_US
        idx = np.flatnonzero((pop["signup_day"] <= d) & (churn_us == NO_CHURN))
        m = len(idx)
        fresh = ~started[idx]
        z[idx] = np.where(
            fresh,
            rng.normal(0, world.fresh_sd, m),
            world.persistence * z[idx] + rng.normal(0, world.step_sd, m),
        )
        started[idx] = True
        age = np.maximum(day_us - pop["signup_us"][idx], 0) / DAY_US
        decline = pop["drift_rate"][idx] * np.clip(d - pop["drift_start"][idx], 0, 60)
        # Logit engagement: level + new-user honeymoon (fades over ~2 weeks) - drift + AR noise.
        x = pop["base"][idx] + 0.6 * np.exp(-age / 14) - decline + z[idx]
        lo = np.maximum(day_us, pop["signup_us"][idx])
        is_signup = pop["signup_day"][idx] == d
        hazard = _churn_hazard(pop, d, idx, x, memory)
        if outreach is not None:
            contacted = contacted_on.get(d, np.empty(0, np.int64))
            helped_until[contacted] = np.maximum(helped_until[contacted], d + outreach.horizon_days)
            untreated = hazard
            hazard = hazard * np.where(helped_until[idx] > d, 1 - outreach.effect, 1.0)
        draw = rng.random(m)
        churned = draw < hazard
        if outreach is not None:
            saved = ~churned & (draw < untreated)
            saves.append((idx[saved], np.full(int(saved.sum()), d)))
        # Churn strictly after the day's window opens, so every kept event precedes it.
        churn_at = lo + 1 + (rng.random(m) * (day_us + DAY_US - lo - 1)).astype(np.int64)
        hi = np.where(churned, churn_at, day_us + DAY_US)
        churn_us[idx[churned]] = hi[churned]
        events.append(world.events(rng, pop, _Day(d, idx, x, lo, hi, is_signup), memory))
        daily.append((idx.astype(np.int32), np.full(m, d, np.int32), _sigmoid(x), hazard))
        if progress is not None:
            progress(d + 1, days)
    data = _assemble(pop, start, churn_us, events, daily)
    if not saves:
        return data
    who, when = (np.concatenate(c) for c in zip(*saves, strict=True))
    truth_saves = pd.DataFrame(
        {"user_id": data.users["user_id"].to_numpy()[who],
         "day": [start + timedelta(days=int(d)) for d in when]}
    )  # fmt: skip
    return replace(data, truth_saves=truth_saves)


def _churn_hazard(
    pop: dict[str, np.ndarray], d: int, idx: np.ndarray, x: np.ndarray, memory: _Memory
) -> np.ndarray:
    """Daily churn probability: low engagement, a failed payment (14 d) or a ticket (7 d)
    raise it; paying users stay longer. Multiplicative, capped so it stays a probability."""
    return np.minimum(
        0.0024
        * np.exp(-1.3 * (x + 0.3))
        * np.where(pop["paid"][idx], 0.5, 1.0)
        * np.where(d - memory.last_fail[idx] <= 14, 3.0, 1.0)
        * np.where(d - memory.last_ticket[idx] <= 7, 1.5, 1.0),
        0.5,
    )


def _learning_events(
    rng: np.random.Generator,
    pop: dict[str, np.ndarray],
    day: _Day,
    memory: _Memory,
    drift_day: int | None,
) -> EventChunk:
    """A day on the portal: learning follows engagement, paid plans are billed every
    ``BILLING_CYCLE_DAYS`` (a failure is retried once, 3 days later), tickets follow trouble."""
    d, idx, x = day.d, day.idx, day.x
    m = len(idx)
    eng = _sigmoid(x)
    # Steeper than engagement itself: disengaged users go quiet before they leave.
    active = day.is_signup | (rng.random(m) < _sigmoid(1.6 * x + 0.1))
    logins = np.where(active, 1 + rng.poisson(1.5 * eng), 0)
    videos = np.where(active, rng.poisson(logins * (0.25 + 0.8 * eng)), 0)
    quizzes = np.where(active, rng.poisson(0.1 + 0.5 * eng), 0)
    enrolls = np.where(
        day.is_signup, rng.random(m) < 0.85, active & (rng.random(m) < 0.01 + 0.04 * eng)
    )
    billing_day = (pop["billing_phase"][idx] == d % BILLING_CYCLE_DAYS) & ~day.is_signup
    due = pop["paid"][idx] & (day.is_signup | billing_day | (memory.retry_day[idx] == d))
    failed = due & (rng.random(m) < 0.02 + 0.2 * (1 - eng) ** 2)
    memory.retry_day[idx[failed & (memory.retry_day[idx] != d)]] = d + 3  # one retry, then give up
    memory.last_fail[idx[failed]] = d
    tickets = rng.random(m) < 0.002 + 0.01 * (1 - eng) + 0.25 * (d - memory.last_fail[idx] <= 3)
    memory.last_ticket[idx[tickets]] = d
    counts = {
        "login": logins,
        "video_watch": videos,
        "quiz_attempt": quizzes,
        "course_enroll": enrolls,
        "payment_success": due & ~failed,
        "payment_failed": failed,
        "support_ticket": tickets,
    }
    watch_factor = 0.5 if drift_day is not None and d >= drift_day else 1.0
    return _emit_events(rng, pop, idx, counts, day.lo, day.hi, x, watch_factor)


def _purchase_events(
    rng: np.random.Generator, pop: dict[str, np.ndarray], day: _Day, memory: _Memory
) -> EventChunk:
    """A day in the shop: a purchase is a payment, then the enrolment in the course bought.

    Customers buy (at most once a day) at a rate set by their hidden propensity, and their
    first course on signup day. A card is declined at a fixed rate, whatever the customer;
    half of those retry at once and pay, the others buy nothing. A customer does not buy a
    course twice (unless they own them all). Amounts are the course's list price.
    """
    idx = day.idx
    m = len(idx)
    buys = np.where(
        day.is_signup, rng.random(m) < 0.85, rng.random(m) < _sigmoid(day.x + BUY_SHIFT)
    )
    declined = buys & (rng.random(m) < 0.06)
    pays = buys & (~declined | (rng.random(m) < 0.5))
    memory.last_fail[idx[declined]] = day.d
    pos = np.flatnonzero(buys)
    owner = idx[pos]
    course = _unowned_course(rng, memory.owned[owner])
    bought = pays[pos]
    memory.owned[owner[bought]] |= np.left_shift(1, course[bought].astype(np.int64))
    # Declined attempt, payment, enrolment: in that order inside the customer's window.
    lo, hi = day.lo[pos, None], day.hi[pos, None]
    times = lo + (np.sort(rng.random((len(pos), 3)), axis=1) * (hi - lo)).astype(np.int64)
    steps = np.array([_TYPE[t] for t in PURCHASE_STEPS], np.int8)
    keep = np.concatenate([declined[pos], bought, bought])
    row = np.tile(np.arange(len(pos)), len(steps))[keep]
    code = np.repeat(steps, len(pos))[keep]
    on_course = code == _TYPE["course_enroll"]  # payments carry no course, as on the portal
    return (
        owner[row].astype(np.int32),
        times.T.ravel()[keep],
        code,
        np.where(on_course, course[row], -1).astype(np.int16),
        np.where(on_course, np.nan, COURSE_PRICES[course[row]]),
    )


def _unowned_course(rng: np.random.Generator, owned: np.ndarray) -> np.ndarray:
    """One course per buyer by popularity among those they do not own yet (Gumbel-max)."""
    keys = np.log(COURSE_POPULARITY) + rng.gumbel(size=(len(owned), len(COURSES)))
    has = ((owned[:, None] >> np.arange(len(COURSES))) & 1).astype(bool)
    has &= ~has.all(axis=1, keepdims=True)
    return np.argmax(np.where(has, -np.inf, keys), axis=1)


def _emit_events(
    rng: np.random.Generator,
    pop: dict[str, np.ndarray],
    idx: np.ndarray,
    counts: dict[str, np.ndarray],
    lo: np.ndarray,
    hi: np.ndarray,
    x: np.ndarray,
    watch_factor: float,
) -> EventChunk:
    """One day's events as columns (user index, time µs, type code, course code, value).

    Times are uniform in each user's [lo, hi) window (signup and churn cut the day). Course
    code -1 means none; ``value`` is watch minutes, quiz score or amount by type, else NaN.
    """
    m = len(idx)
    pos = np.concatenate([np.repeat(np.arange(m), c) for c in counts.values()])
    code = np.repeat(
        np.array([_TYPE[t] for t in counts], np.int8), [int(c.sum()) for c in counts.values()]
    )
    k = len(pos)
    times = lo[pos] + (rng.random(k) * (hi[pos] - lo[pos])).astype(np.int64)
    learning = np.isin(code, [_TYPE[t] for t in ("video_watch", "quiz_attempt", "course_enroll")])
    slot = rng.choice(3, k, p=[0.6, 0.3, 0.1])
    course = np.where(learning, pop["focus"][idx[pos], slot], -1).astype(np.int16)
    eng = _sigmoid(x[pos])
    minutes = np.round(rng.gamma(1.5, (5 + 25 * eng) * watch_factor / 1.5), 1)
    score = np.round(100 * _sigmoid(1.2 * x[pos] + 0.8 + rng.normal(0, 0.7, k)), 1)
    value = np.select(
        [code == _TYPE["video_watch"], code == _TYPE["quiz_attempt"], _is_payment(code)],
        [np.minimum(minutes, MAX_WATCH_MINUTES), score, pop["price"][idx[pos]]],
        np.nan,
    )
    return idx[pos].astype(np.int32), times, code, course, value


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """``prefix`` + zero-padded 0..n-1, built in Arrow (millions of ids, no Python strings)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.large_string()), width, "0")
    text = pa.large_string()
    return pc.binary_join_element_wise(pa.scalar(prefix, text), digits, pa.scalar("", text))


def _assemble(
    pop: dict[str, np.ndarray],
    start: date,
    churn_us: np.ndarray,
    event_chunks: list[tuple[np.ndarray, ...]],
    daily_chunks: list[tuple[np.ndarray, ...]],
) -> GeneratedData:
    """Columnar arrays → contract-typed frames; strings stay Arrow-backed to save memory."""
    n = len(pop["signup_us"])
    user_ids = _ids("u", n, width=6)
    uid, times, code, course, value = (np.concatenate(c) for c in zip(*event_chunks, strict=True))
    order = np.argsort(times, kind="stable")
    uid, times, code, course, value = (a[order] for a in (uid, times, code, course, value))
    event_ids = _ids("e", len(times), width=9)
    ts = pa.timestamp("us", tz="UTC")
    events = pa.table(
        {
            "event_id": event_ids,
            "user_id": user_ids.take(pa.array(uid)),
            "event_time": pa.array(times, ts),
            "event_type": pa.array(EVENT_TYPES, pa.large_string()).take(pa.array(code)),
            "course_id": pa.array(COURSES, pa.large_string()).take(
                pa.array(course, mask=course < 0)
            ),
            "watch_minutes": np.where(code == _TYPE["video_watch"], value, np.nan),
            "quiz_score": np.where(code == _TYPE["quiz_attempt"], value, np.nan),
            "amount": np.where(_is_payment(code), value, np.nan),
        }
    )
    users = pa.table(
        {
            "user_id": user_ids,
            "signup_time": pa.array(pop["signup_us"], ts),
            "plan": pa.array(np.where(pop["paid"], "paid", "free")),
            "country": pa.array(COUNTRIES).take(pa.array(pop["country"])),
            "acquisition_channel": pa.array(CHANNELS).take(pa.array(pop["channel"])),
        }
    )
    truth_users = pa.table(
        {
            "user_id": user_ids,
            "churn_time": pa.array(churn_us, ts, mask=churn_us == NO_CHURN),
            "base_engagement": _sigmoid(pop["base"]),
            "drifting": pop["drifting"],
            "drift_per_day": pop["drift_rate"],
            "drift_cohort": pop["cohort"],
        }
    )
    d_uid, d_day, eng, hazard = (np.concatenate(c) for c in zip(*daily_chunks, strict=True))
    start_days = (start - date(1970, 1, 1)).days
    truth_daily = pa.table(
        {
            "user_id": user_ids.take(pa.array(d_uid)),
            "day": pa.array(d_day + start_days, pa.date32()),
            "engagement": eng,
            "hazard": hazard,
        }
    )
    return GeneratedData(
        users=_to_pandas(users),
        events=_to_pandas(events),
        truth_users=_to_pandas(truth_users),
        truth_daily=_to_pandas(truth_daily),
    )


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Strings as ``string[pyarrow]`` and dates as Arrow dates: no Python object per cell."""
    mapping = {
        pa.string(): pd.StringDtype("pyarrow"),
        pa.large_string(): pd.StringDtype("pyarrow"),
        pa.date32(): pd.ArrowDtype(pa.date32()),
    }
    return table.to_pandas(types_mapper=mapping.get)


def write_demo_data(data: GeneratedData, settings: Settings) -> dict[str, Path]:
    """Raw users and events become this world's (``ingestion.raw_store``); the ground truth
    is written atomically beside them. Returns {name: path}."""
    users = to_contract_table(data.users, USER_COLUMNS)
    replace_all(settings, users, [to_contract_table(data.events, EVENT_COLUMNS)])
    return {
        "users": users_path(settings),
        "events": events_root(settings),
        "truth_users": write_parquet(data.truth_users, settings.ground_truth_dir / "users.parquet"),
        "truth_daily": write_parquet(data.truth_daily, settings.ground_truth_dir / "daily.parquet"),
    }
