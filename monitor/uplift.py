"""``churn monitor uplift``: did contacting the high-risk list keep anyone?

Each night's list is split into a ``contact`` arm and a randomly drawn ``holdout`` arm
that nobody contacts (``served.arms``). Once a night's horizon has passed, every
listed user's realized label is known (training's label, as ``monitor.outcomes`` reads
it), and the arms' churn can be compared. The holdout is the counterfactual: it churns
as the contacted would have without the call, so contact − holdout is what the
outreach did, and the interval says whether the data can tell it from nothing yet.

Per night, per arm and per risk band: users, realized churn rate (Wilson 95 % interval),
the difference contact − holdout (Agresti-Caffo 95 % interval), the revenue it kept
(the difference × the contacted users' monthly revenue) and the contacts it took per
retained user. The all-bands difference weights the bands by their share of the list
(post-stratification), so a night whose arms drew a different risk mix is not misread.
Every run recomputes every night whose horizon has passed and appends what changed to
``monitoring/uplift/history.jsonl``; the newest night's report is written as JSON and PNG.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from core import partitions
from core.atomic import write_json
from core.history import append_record, read_records
from core.push import Sample
from core.settings import Settings
from core.sql_engine import connect
from core.tables import MissingInputError
from core.timeline import horizon_last_day, start_of
from monitor.charts import uplift_bars
from monitor.outcomes import realized_labels_sql
from served.arms import CONTACT, HOLDOUT, assignment_days, read_assignments
from training.labels import LABEL

Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval
BANDS = ("high", "medium", "low")
ALL_BANDS = "all"
# What the interval says of the difference contact - holdout.
KEEPS, LOSES, CANNOT_TELL, NO_HOLDOUT = (
    "contact churns less",
    "contact churns more",
    "cannot tell yet",
    "no holdout",
)


@dataclass(frozen=True)
class ArmRate:
    """One arm's realized churn: users, churned, the rate and its Wilson 95 % interval."""

    users: int
    churned: int
    rate: float
    low: float
    high: float


@dataclass(frozen=True)
class Effect:
    """Contact - holdout churn, its 95 % interval, and what it is worth.

    ``retained_revenue`` is monthly revenue kept: -difference × the contacted users'
    monthly revenue (negative when the contacted churn more). ``contacts_per_retained``
    is 1 / -difference, None unless outreach kept someone; its interval's upper end is
    None while the difference's interval reaches 0 (it could take any number).
    """

    difference: float
    low: float
    high: float
    verdict: str
    retained_users: float
    retained_revenue: float
    retained_revenue_low: float
    retained_revenue_high: float
    contacts_per_retained: float | None
    contacts_per_retained_low: float | None
    contacts_per_retained_high: float | None


@dataclass(frozen=True)
class Stratum:
    """The arms of one risk band (or of the whole list, band ``all``)."""

    band: str
    contact: ArmRate
    holdout: ArmRate
    contacted_revenue: float  # monthly revenue of the contacted users
    effect: Effect | None  # None when an arm is empty


@dataclass(frozen=True)
class NightUplift:
    """The experiment of one night's list, once its horizon has passed."""

    as_of: date
    horizon_days: int
    strata: list[Stratum]  # ``all`` first, then the bands present

    @property
    def overall(self) -> Stratum:
        return self.strata[0]

    def record(self) -> dict:
        return {"as_of": self.as_of.isoformat(), "horizon_days": self.horizon_days,
                "strata": [asdict(s) for s in self.strata]}  # fmt: skip


@dataclass(frozen=True)
class UpliftReport:
    evaluated: list[NightUplift]  # oldest first
    pending: list[tuple[date, date]]  # (night, the user_daily day its horizon needs)
    horizons_not_working: int
    not_working: bool  # horizons_not_working reached CHURN_UPLIFT_ALERT_HORIZONS
    history_path: Path

    @property
    def latest(self) -> NightUplift | None:
        return self.evaluated[-1] if self.evaluated else None


def wilson(churned: int, users: int) -> tuple[float, float]:
    """The Wilson 95 % interval of a rate: sound at 0, 1 and a few users, unlike rate ± 2 SE."""
    if users == 0:
        return math.nan, math.nan
    p = churned / users
    denominator = 1 + Z95**2 / users
    centre = (p + Z95**2 / (2 * users)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / users + Z95**2 / (4 * users**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def arm_rate(labels: pd.Series) -> ArmRate:
    """``labels``: one arm's realized labels (1 = churned)."""
    users, churned = len(labels), int(labels.sum())
    low, high = wilson(churned, users)
    return ArmRate(users, churned, churned / users if users else math.nan, low, high)


def adjusted_difference(contact: ArmRate, holdout: ArmRate) -> tuple[float, float]:
    """Agresti-Caffo: the difference of the rates with one churner and one stayer added to
    each arm, and its variance; its ± 1.96 SE interval holds its 95 % down to a few users."""
    p1 = (contact.churned + 1) / (contact.users + 2)
    p2 = (holdout.churned + 1) / (holdout.users + 2)
    variance = p1 * (1 - p1) / (contact.users + 2) + p2 * (1 - p2) / (holdout.users + 2)
    return p1 - p2, variance


def effect(
    difference: float, centre: float, variance: float, contacted: int, revenue: float
) -> Effect:
    """What a difference (raw estimate; interval ``centre`` ± 1.96 √``variance``) is worth."""
    half = Z95 * math.sqrt(variance)
    low, high = centre - half, centre + half
    verdict = KEEPS if high < 0 else LOSES if low > 0 else CANNOT_TELL
    return Effect(
        difference=difference,
        low=low,
        high=high,
        verdict=verdict,
        retained_users=-difference * contacted,
        retained_revenue=-difference * revenue,
        retained_revenue_low=-high * revenue,
        retained_revenue_high=-low * revenue,
        contacts_per_retained=1 / -difference if difference < 0 else None,
        contacts_per_retained_low=1 / -low if low < 0 else None,
        contacts_per_retained_high=1 / -high if high < 0 else None,
    )


def stratum(band: str, listed: pd.DataFrame) -> Stratum:
    """The arms of ``listed`` (``arm``, ``monthly_revenue``, ``churned``) compared."""
    contact = arm_rate(listed.loc[listed["arm"] == CONTACT, LABEL])
    holdout = arm_rate(listed.loc[listed["arm"] == HOLDOUT, LABEL])
    revenue = float(listed.loc[listed["arm"] == CONTACT, "monthly_revenue"].sum())
    found = None
    if contact.users and holdout.users:
        centre, variance = adjusted_difference(contact, holdout)
        found = effect(contact.rate - holdout.rate, centre, variance, contact.users, revenue)
    return Stratum(band, contact, holdout, revenue, found)


def pooled(bands: list[Stratum], listed: pd.DataFrame) -> Stratum:
    """The whole list: the bands' differences weighted by their share of the list.

    Only bands with both arms count (a band without holdout users says nothing about
    the contact arm's counterfactual); the arms' rates are the plain ones of the list.
    """
    whole = stratum(ALL_BANDS, listed)
    measured = [b for b in bands if b.effect is not None]
    if not measured:
        return whole
    sizes = np.array([b.contact.users + b.holdout.users for b in measured], dtype=float)
    weights = sizes / sizes.sum()
    difference = centre = variance = 0.0
    for weight, band in zip(weights, measured, strict=True):
        band_centre, band_variance = adjusted_difference(band.contact, band.holdout)
        difference += weight * (band.contact.rate - band.holdout.rate)
        centre += weight * band_centre
        variance += weight**2 * band_variance
    found = effect(difference, centre, variance, whole.contact.users, whole.contacted_revenue)
    return Stratum(ALL_BANDS, whole.contact, whole.holdout, whole.contacted_revenue, found)


def night_uplift(labelled: pd.DataFrame, as_of: date, horizon_days: int) -> NightUplift:
    """One night's experiment from its listed users and their realized labels."""
    bands = [stratum(b, labelled[labelled["risk_band"] == b]) for b in BANDS]
    bands = [b for b in bands if b.contact.users or b.holdout.users]
    return NightUplift(as_of, horizon_days, [pooled(bands, labelled), *bands])


def horizons_not_working(nights: list[NightUplift], horizon_days: int) -> int:
    """Consecutive horizons, newest first, in which the contacted churned no less than holdout.

    Nights a horizon apart or more, so each counts a different stretch of time: the lists
    of neighbouring nights share most of their users and their weeks. A night without a
    holdout is no evidence and ends the count.
    """
    count, before = 0, None
    for night in reversed(nights):
        if before is not None and night.as_of > before - timedelta(days=horizon_days):
            continue
        found = night.overall.effect
        if found is None or found.difference < 0:
            break
        count, before = count + 1, night.as_of
    return count


def realized_uplift(settings: Settings) -> UpliftReport:
    """Every night with arms whose horizon has passed, compared; what changed is appended
    to the history. Raises, naming what to run, before any list or ``user_daily`` exists."""
    nights = assignment_days(settings)
    if not nights:
        raise FileNotFoundError(
            f"no list with arms under {settings.outreach_dir}: run `churn batch score` first"
        )
    daily_days = partitions.partition_days(settings.user_daily_path)
    if not daily_days:
        raise MissingInputError(
            f"{settings.user_daily_path} has no days: run `churn data prepare` first"
        )
    path = settings.uplift_history_path
    recorded = {str(r["as_of"]): r for r in read_records(path)}
    con = connect(settings)
    daily_glob = partitions.table_glob(settings.user_daily_path)
    evaluated, pending = [], []
    for night in nights:
        complete_on = horizon_last_day(night, settings.horizon_days)
        if daily_days[-1] < complete_on:
            pending.append((night, complete_on))
            continue
        con.register("listed", read_assignments(settings, night))
        sql = realized_labels_sql("listed", daily_glob, night, settings.horizon_days)
        labelled = con.execute(sql).df()
        con.unregister("listed")
        evaluated.append(night_uplift(labelled, night, settings.horizon_days))
    for found in evaluated:
        if _text(recorded.get(found.as_of.isoformat())) != _text(found.record()):
            append_record(path, found.record())
    count = horizons_not_working(evaluated, settings.horizon_days)
    return UpliftReport(evaluated, pending, count, count >= settings.uplift_alert_horizons, path)


def _text(record: dict | None) -> str:
    """A record as JSON text: equal figures compare equal (NaN included)."""
    return json.dumps(record, sort_keys=True)


def write_uplift_report(report: UpliftReport, settings: Settings) -> Path | None:
    """The newest night's report as JSON and PNG; its path, or None before any horizon passed."""
    night = report.latest
    if night is None:
        return None
    out = settings.uplift_dir
    stem = f"as_of={night.as_of.isoformat()}"
    payload = night.record() | {
        "horizons_not_working": report.horizons_not_working,
        "not_working": report.not_working,
        "written_at": datetime.now(UTC).isoformat(),
    }
    path = write_json(payload, out / f"{stem}.json")
    uplift_bars(night.strata, out / f"{stem}.png",
                title=f"Outreach uplift of the list of {night.as_of} ({night.horizon_days}-day horizon)")  # fmt: skip
    return path


def uplift_samples(report: UpliftReport) -> list[Sample]:
    """Gauges of the newest evaluated night (none before any horizon has passed)."""
    night = report.latest
    if night is None:
        return []
    whole = night.overall
    samples = [
        Sample("churn_uplift_churn_rate", arm.rate, "Realized churn rate of each arm of the list",
               {"arm": name})
        for name, arm in ((CONTACT, whole.contact), (HOLDOUT, whole.holdout))
        if arm.users
    ]  # fmt: skip
    samples += [
        Sample("churn_uplift_users", arm.users, "Users in each arm of the list", {"arm": name})
        for name, arm in ((CONTACT, whole.contact), (HOLDOUT, whole.holdout))
    ]
    found = whole.effect
    if found is not None:
        samples += [
            Sample("churn_uplift_difference", found.difference,
                   "Churn rate contacted - holdout (band-weighted); negative: outreach keeps users"),
            Sample("churn_uplift_difference_lower", found.low, "Lower end of its 95 % interval"),
            Sample("churn_uplift_difference_upper", found.high, "Upper end of its 95 % interval"),
            Sample("churn_uplift_retained_revenue", found.retained_revenue,
                   "Monthly revenue outreach kept: -difference x the contacted users' revenue"),
        ]  # fmt: skip
        if found.contacts_per_retained is not None:
            samples.append(Sample("churn_uplift_contacts_per_retained_user",
                                  found.contacts_per_retained, "Contacts per user kept"))  # fmt: skip
    as_of = start_of(night.as_of).timestamp()
    samples += [
        Sample("churn_uplift_horizons_not_working", report.horizons_not_working,
               "Consecutive horizons in which the contacted churned no less than holdout"),
        Sample("churn_uplift_outreach_not_working", float(report.not_working),
               "1 when those horizons reached CHURN_UPLIFT_ALERT_HORIZONS"),
        Sample("churn_uplift_as_of_timestamp_seconds", as_of, "The night (T) these figures are of"),
    ]  # fmt: skip
    return samples


def print_uplift(report: UpliftReport, console: Console) -> None:
    """One row per arm and band of the newest night, then every night's difference."""
    night = report.latest
    if night is None:
        console.print("No list with arms has a complete horizon yet.")
    else:
        table = Table("band", "arm", "users", "churned", "churn rate (95 %)",
                      "contact − holdout (95 %)", "verdict", "revenue kept / month",
                      "contacts per user kept",
                      title=f"Outreach uplift of the list of {night.as_of}")  # fmt: skip
        for s in night.strata:
            for name, arm in ((CONTACT, s.contact), (HOLDOUT, s.holdout)):
                table.add_row(s.band if name == CONTACT else "", name, f"{arm.users:,}",
                              f"{arm.churned:,}", _rate(arm),
                              *(_effect_cells(s.effect) if name == CONTACT else ("",) * 4))  # fmt: skip
        console.print(table)
        history = Table("night", "contact", "holdout", "contact − holdout (95 %)", "verdict",
                        title="Every night with a complete horizon")  # fmt: skip
        for n in report.evaluated:
            cells = _effect_cells(n.overall.effect)
            history.add_row(str(n.as_of), _rate(n.overall.contact), _rate(n.overall.holdout),
                            cells[0], cells[1])  # fmt: skip
        console.print(history)
        if report.not_working:
            console.print(f"[red]outreach not working: the contacted churned no less than holdout "
                          f"in {report.horizons_not_working} consecutive horizons[/red]")  # fmt: skip
    for night_day, complete_on in report.pending:
        console.print(f"[dim]pending {night_day}: needs user_daily up to {complete_on}[/dim]")


def _rate(arm: ArmRate) -> str:
    if not arm.users:
        return "—"
    return f"{arm.rate:.3f} [{arm.low:.3f}, {arm.high:.3f}]"


def _effect_cells(found: Effect | None) -> tuple[str, str, str, str]:
    if found is None:
        return "—", NO_HOLDOUT, "—", "—"
    revenue = (f"{found.retained_revenue:,.0f} [{found.retained_revenue_low:,.0f}, "
               f"{found.retained_revenue_high:,.0f}]")  # fmt: skip
    per_user = "—"
    if found.contacts_per_retained is not None:
        high = found.contacts_per_retained_high
        per_user = (f"{found.contacts_per_retained:.1f} [{found.contacts_per_retained_low:.1f}, "
                    f"{'∞' if high is None else f'{high:.1f}'}]")  # fmt: skip
    return (
        f"{found.difference:+.3f} [{found.low:+.3f}, {found.high:+.3f}]",
        found.verdict,
        revenue,
        per_user,
    )
