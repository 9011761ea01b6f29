"""``churn outreach-demo``: the holdout experiment, run on a portal where outreach is simulated.

The demo world (``ingestion.generate``), ``nights`` lists a horizon apart, the last one a
horizon before the world ends. Each night the production model scores everyone (the
nightly batch), which splits the list into arms; then the world is generated again from
the same seed with the contact arm's churn hazard cut by ``effect`` for the horizon. Days
before a night are unchanged by its outreach, so every list stays the one the model made
on the world as it was. After the last horizon, ``monitor.uplift`` compares the arms, and
the generator's truth says what outreach really did to the contacted (``true_effect``):
the report's interval must cover it.

Lists a horizon apart fall in different assignment periods and their horizons do not
overlap, so each night is an experiment of its own. The model is trained once, on the
world before any outreach, and put in production without the gate: the experiment is
about the outreach, and a small world's gate verdict is not what it tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from rich.console import Console
from rich.table import Table

from churn.demo import NOTES, run_stage
from churn.progress import StageLog
from churn.stages import STAGES, StageInputs
from core import partitions
from core.settings import Settings
from core.sql_engine import connect
from core.timeline import day_of, start_of
from feature_repo.spec import ENTITY_KEY
from ingestion.generate import GeneratedData, Outreach, generate_demo_data, write_demo_data
from monitor.outcomes import daily_files_sql, realized_labels_sql
from monitor.uplift import UpliftReport, print_uplift, realized_uplift, write_uplift_report
from served.arms import CONTACT, read_assignments
from training.labels import LABEL
from training.outreach import contacts
from training.promote import force

REBUILD = ("validate", "prepare", "features")  # a regenerated world, through to its features


@dataclass(frozen=True)
class OutreachRun:
    nights: list[date]
    effect: float
    report: UpliftReport
    true_effect: dict[date, float]  # contact arm: realized churn rate - without outreach


def list_nights(now: datetime, nights: int, horizon_days: int) -> list[date]:
    """``nights`` list days a horizon apart, the last one's horizon ending the day before ``now``."""
    end = now.astimezone(UTC).date()
    return [end - timedelta(days=horizon_days * (nights - k)) for k in range(nights)]


def simulate_outreach(
    settings: Settings,
    users: int,
    days: int,
    nights: int,
    effect: float,
    log: StageLog,
    now: datetime | None = None,
    train: bool = True,
) -> OutreachRun:
    """Run the experiment (module docstring) on ``users`` over ``days`` ending before ``now``.

    ``train=False`` lists with the production model already in ``settings``' registry (a
    second run on the same world, with another effect).
    """
    now = now or datetime.now(UTC)
    horizon = settings.horizon_days
    list_days = list_nights(now, nights, horizon)
    first_day = now.astimezone(UTC).date() - timedelta(days=days)
    if list_days[0] - timedelta(days=max(settings.windows)) < first_day:
        raise ValueError(
            f"{days} days cannot hold {nights} lists a horizon ({horizon} days) apart after "
            f"full feature windows: give at least {nights * horizon + max(settings.windows)}"
        )
    inputs = StageInputs(settings, now, users=users, days=days)

    def world(outreach: Outreach | None) -> GeneratedData:
        with log.stage("generate", total=days) as progress:
            data = generate_demo_data(users, days, settings.seed, first_day, progress=progress,
                                      outreach=outreach)  # fmt: skip
            write_demo_data(data, settings)
        saved = len(data.truth_saves)
        log.note(f"{len(data.events):,} events" + (f", {saved:,} users kept" if outreach else ""))
        for name in REBUILD:
            log.note(NOTES[name](settings, {name: run_stage(STAGES[name], inputs, log)}))
        return data

    data = world(None)
    if train:
        run_stage(STAGES["apply"], inputs, log)
        log.note(f"project {settings.feast_project}")
        trained = run_stage(STAGES["train"], inputs, log)
        best = trained.versions[trained.best]
        force(settings, best, "outreach simulation: the model of the world before any outreach")
        log.note(f"{best} in production")
    for night in list_days:
        run_stage(STAGES["batch"], StageInputs.night(settings, day_of(start_of(night))), log)
        log.note(f"list of {night}")
        if effect > 0:  # the world since this night, with this run's contacts so far
            contacted = contacts(settings)
            contacted = contacted[contacted["date"].isin(list_days)]
            data = world(Outreach(contacted, effect, horizon))
    report = realized_uplift(settings)
    write_uplift_report(report, settings)
    truth = {night: true_effect(settings, data, night) for night in list_days}
    return OutreachRun(list_days, effect, report, truth)


def true_effect(settings: Settings, data: GeneratedData, night: date) -> float:
    """What outreach did to the churn rate of ``night``'s contact arm, by the generator's truth.

    A contacted user whom outreach kept on day s (``truth_saves``) would, without it, have
    left on day s: churned over the horizon unless active on a day in [night, s], the day
    of the churn included (its events are drawn before the churn). Everyone else's label is
    what it would have been. So the effect is the arm's realized rate minus that one.
    """
    listed = read_assignments(settings, night)
    if listed is None:
        raise ValueError(f"no outreach assignments for the night of {night}: its batch has not run")
    contact = listed.loc[listed["arm"] == CONTACT, [ENTITY_KEY]].reset_index(drop=True)
    horizon = settings.horizon_days
    end = night + timedelta(days=horizon)
    saves = data.truth_saves
    in_window = saves[(saves["day"] >= night) & (saves["day"] < end)]
    first_save = in_window.groupby("user_id", as_index=False)["day"].min()
    if first_save.empty:  # outreach kept nobody: every label is what it would have been
        return 0.0
    con = connect(settings)
    daily_glob = partitions.table_glob(settings.user_daily_path)
    daily = daily_files_sql(daily_glob)
    con.register("contact", contact)
    labelled = con.execute(realized_labels_sql("contact", daily_glob, night, horizon)).df()
    con.register("kept", first_save)
    active_until_kept = con.execute(f"""
        SELECT k.user_id, coalesce(sum(d.active), 0) AS active_days
        FROM kept k LEFT JOIN {daily} d
          ON d.user_id = k.user_id AND d.date >= DATE '{night}' AND d.date <= k.day
        GROUP BY k.user_id
    """).df()  # fmt: skip
    without = labelled.merge(active_until_kept, on=ENTITY_KEY, how="left")
    kept = without["active_days"].notna()
    counterfactual = labelled[LABEL].where(~kept, (without["active_days"] == 0).astype(int))
    return float(labelled[LABEL].mean() - counterfactual.mean())


def print_run(run: OutreachRun, console: Console) -> None:
    """The uplift report, then each night's estimate beside what outreach truly did."""
    print_uplift(run.report, console)
    table = Table("night", "contact − holdout", "95 % interval", "true effect", "covered",
                  title=f"Simulated outreach: hazard cut by {run.effect:.0%} for the horizon")  # fmt: skip
    measured = {n.as_of: n.overall.effect for n in run.report.evaluated}
    for night, truth in run.true_effect.items():
        found = measured.get(night)
        if found is None:
            table.add_row(str(night), "—", "—", f"{truth:+.3f}", "—")
            continue
        covered = found.low <= truth <= found.high
        table.add_row(str(night), f"{found.difference:+.3f}",
                      f"[{found.low:+.3f}, {found.high:+.3f}]", f"{truth:+.3f}",
                      "yes" if covered else "[red]no[/red]")  # fmt: skip
    console.print(table)
