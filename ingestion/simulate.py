"""The simulated e-learning portal: who its users are and what each of them does on a day.

Each user carries a hidden daily engagement (AR(1) on a logit scale around a per-user
level, which drifts down for a share of users). Activity, payments, tickets and a daily
churn hazard all follow it; a churned user emits nothing afterwards. The hidden state is
returned only as the ground truth (evaluation, never features).

Scenario "concept" changes what behaviour means, not behaviour: from its day on, every
user's daily churn hazard is ``CONCEPT_HAZARD_FACTOR`` times what it was (a cheaper rival,
say), whatever they do. Nothing the features see causes it, so a model trained before
underestimates the risk of the same behaviour after (concept drift, invisible to PSI).

Scenario "purchases" is a course shop on the same hidden state: customers only buy courses
(a payment, then the enrolment), so about half of those who bought in the last two weeks buy
nothing in the next month, and how much a customer bought since their first day tells their
stable propensity, which keeps them, better than the last month alone.

Users are simulated in blocks (``Block``), each on its own random stream and with only its
own state, so a world is stepped one day at a time over all its blocks (``ingestion.generate``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal, get_args

import numpy as np

from core.contract import EVENT_TYPES, MAX_WATCH_MINUTES

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
TYPE_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}
# Scenario "concept": the daily churn hazard from the concept day on, times this: a typical
# user's 30-day chance of leaving goes from about 10 % to about 40 %, the 30-day label's rate
# from 0.09 to 0.19 (3,000 users, seed 5), while the features' PSI stays under 0.02.
CONCEPT_HAZARD_FACTOR = 5.0
Scenario = Literal["baseline", "drift", "purchases", "concept"]
SCENARIOS: tuple[str, ...] = get_args(Scenario)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def is_payment(code: np.ndarray) -> np.ndarray:
    return (code == TYPE_CODE["payment_success"]) | (code == TYPE_CODE["payment_failed"])


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
class World:
    """What a scenario decides: the share of users who signed up before the simulated range,
    how the hidden deviation moves (AR(1): ``fresh_sd`` on a user's first day, then
    ``persistence`` and ``step_sd``), what a user does on a day, from which day sign-ups are
    weaker (``cohort_day``, scenario drift) and from which day the same behaviour carries a
    higher churn hazard (``concept_day``, scenario concept)."""

    existing_share: float
    fresh_sd: float
    persistence: float
    step_sd: float
    events: Callable[[np.random.Generator, dict[str, np.ndarray], _Day, _Memory], EventChunk]
    cohort_day: int | None = None
    concept_day: int | None = None

    def hazard_factor(self, d: int) -> float:
        """What multiplies day ``d``'s churn hazard: 1 but after the concept day."""
        if self.concept_day is None or d < self.concept_day:
            return 1.0
        return CONCEPT_HAZARD_FACTOR


def scenario_world(scenario: Scenario, drift_day: int | None) -> World:
    """The portal (baseline, drift, concept), or the shop: an established customer base,
    mostly bought before the range, whose propensity drifts slowly (a half-life of about a
    month). ``drift_day`` is the day drift or concept starts (ignored by the others)."""
    if scenario == "purchases":
        return World(0.6, 0.5, 0.98, 0.1, _purchase_events)
    if scenario == "concept":  # the inputs' world is the baseline's: only the hazard moves
        return World(1 / 3, 0.7, 0.9, 0.3, partial(_learning_events, drift_day=None),
                     concept_day=drift_day)  # fmt: skip
    drift_day = drift_day if scenario == "drift" else None
    return World(1 / 3, 0.7, 0.9, 0.3, partial(_learning_events, drift_day=drift_day),
                 cohort_day=drift_day)  # fmt: skip


@dataclass(frozen=True)
class Contacts:
    """Outreach on one block: the block's user indices contacted on each day index, whose
    daily churn hazard is cut by ``effect`` for ``horizon_days`` from that night."""

    on_day: dict[int, np.ndarray]
    effect: float
    horizon_days: int


@dataclass(frozen=True)
class BlockDay:
    """One block's day: its events (``EventChunk``, user indices the block's own), the users
    alive that day with their engagement and hazard (the truth), and those outreach kept."""

    events: EventChunk
    alive: np.ndarray
    engagement: np.ndarray
    hazard: np.ndarray
    saved: np.ndarray


class Block:
    """A block of users, their attributes and what they carry from one day to the next.

    It draws from its own generator only, in the same order whatever the other blocks do:
    a block's users and events depend on its generator and its own contacts alone.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        n: int,
        days: int,
        start_us: int,
        world: World,
        contacts: Contacts | None = None,
    ) -> None:
        self.rng, self.world, self.start_us, self.contacts = rng, world, start_us, contacts
        self.pop = _draw_users(rng, n, days, start_us, world.cohort_day, world.existing_share)
        self.z = np.zeros(n)  # AR(1) deviation from the user's level, logit scale
        self.started = np.zeros(n, bool)
        self.churn_us = np.full(n, NO_CHURN)
        self.memory = _Memory.empty(n)
        self.helped_until = np.zeros(n, np.int64)  # outreach works on days before this one

    def step(self, d: int) -> BlockDay:
        """Simulate day ``d`` (from 0) for the users alive on it; a day's events are drawn
        before its churn, so a user who leaves that day was active until they left."""
        pop, rng = self.pop, self.rng
        day_us = self.start_us + d * DAY_US
        idx = np.flatnonzero((pop["signup_day"] <= d) & (self.churn_us == NO_CHURN))
        m = len(idx)
        x = self._engagement(d, day_us, idx)
        lo = np.maximum(day_us, pop["signup_us"][idx])
        is_signup = pop["signup_day"][idx] == d
        untreated = _churn_hazard(pop, d, idx, x, self.memory, self.world.hazard_factor(d))
        hazard = self._treated(d, idx, untreated)
        draw = rng.random(m)
        churned = draw < hazard
        saved = idx[~churned & (draw < untreated)] if self.contacts is not None else idx[:0]
        # Churn strictly after the day's window opens, so every kept event precedes it.
        churn_at = lo + 1 + (rng.random(m) * (day_us + DAY_US - lo - 1)).astype(np.int64)
        hi = np.where(churned, churn_at, day_us + DAY_US)
        self.churn_us[idx[churned]] = hi[churned]
        events = self.world.events(rng, pop, _Day(d, idx, x, lo, hi, is_signup), self.memory)
        return BlockDay(events, idx.astype(np.int32), sigmoid(x), hazard, saved)

    def _engagement(self, d: int, day_us: int, idx: np.ndarray) -> np.ndarray:
        """The hidden logit of day ``d`` for users ``idx``, moving their AR(1) deviation."""
        pop, world, m = self.pop, self.world, len(idx)
        fresh = ~self.started[idx]
        self.z[idx] = np.where(
            fresh,
            self.rng.normal(0, world.fresh_sd, m),
            world.persistence * self.z[idx] + self.rng.normal(0, world.step_sd, m),
        )
        self.started[idx] = True
        age = np.maximum(day_us - pop["signup_us"][idx], 0) / DAY_US
        decline = pop["drift_rate"][idx] * np.clip(d - pop["drift_start"][idx], 0, 60)
        # Logit engagement: level + new-user honeymoon (fades over ~2 weeks) - drift + AR noise.
        return pop["base"][idx] + 0.6 * np.exp(-age / 14) - decline + self.z[idx]

    def _treated(self, d: int, idx: np.ndarray, hazard: np.ndarray) -> np.ndarray:
        """The hazard after outreach: cut for the users contacted in the last horizon days.
        It draws no random number, so outreach changes nothing until it first keeps someone."""
        if self.contacts is None:
            return hazard
        contacted = self.contacts.on_day.get(d, np.empty(0, np.int64))
        horizon_end = d + self.contacts.horizon_days
        self.helped_until[contacted] = np.maximum(self.helped_until[contacted], horizon_end)
        return hazard * np.where(self.helped_until[idx] > d, 1 - self.contacts.effect, 1.0)


def _churn_hazard(
    pop: dict[str, np.ndarray],
    d: int,
    idx: np.ndarray,
    x: np.ndarray,
    memory: _Memory,
    factor: float = 1.0,
) -> np.ndarray:
    """Daily churn probability: low engagement, a failed payment (14 d) or a ticket (7 d)
    raise it; paying users stay longer; ``factor`` (``World.hazard_factor``) scales it for
    everyone alike. Multiplicative, capped so it stays a probability."""
    return np.minimum(
        0.0024
        * factor
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
    eng = sigmoid(x)
    # Steeper than engagement itself: disengaged users go quiet before they leave.
    active = day.is_signup | (rng.random(m) < sigmoid(1.6 * x + 0.1))
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
    buys = np.where(day.is_signup, rng.random(m) < 0.85, rng.random(m) < sigmoid(day.x + BUY_SHIFT))
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
    steps = np.array([TYPE_CODE[t] for t in PURCHASE_STEPS], np.int8)
    keep = np.concatenate([declined[pos], bought, bought])
    row = np.tile(np.arange(len(pos)), len(steps))[keep]
    code = np.repeat(steps, len(pos))[keep]
    on_course = code == TYPE_CODE["course_enroll"]  # payments carry no course, as on the portal
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
        np.array([TYPE_CODE[t] for t in counts], np.int8), [int(c.sum()) for c in counts.values()]
    )
    k = len(pos)
    times = lo[pos] + (rng.random(k) * (hi[pos] - lo[pos])).astype(np.int64)
    learning = np.isin(
        code, [TYPE_CODE[t] for t in ("video_watch", "quiz_attempt", "course_enroll")]
    )
    slot = rng.choice(3, k, p=[0.6, 0.3, 0.1])
    course = np.where(learning, pop["focus"][idx[pos], slot], -1).astype(np.int16)
    eng = sigmoid(x[pos])
    minutes = np.round(rng.gamma(1.5, (5 + 25 * eng) * watch_factor / 1.5), 1)
    score = np.round(100 * sigmoid(1.2 * x[pos] + 0.8 + rng.normal(0, 0.7, k)), 1)
    value = np.select(
        [code == TYPE_CODE["video_watch"], code == TYPE_CODE["quiz_attempt"], is_payment(code)],
        [np.minimum(minutes, MAX_WATCH_MINUTES), score, pop["price"][idx[pos]]],
        np.nan,
    )
    return idx[pos].astype(np.int32), times, code, course, value
