"""Issue 27's benchmark: what the nightly estimate shows in three worlds, against what happened.

    OMP_NUM_THREADS=1 python benchmarks/three_worlds.py --users 2000 --days 180 \
        [--drift-day 120] [--worlds baseline,drift,concept] [--json out.json]
    python benchmarks/three_worlds.py --from-json a.json b.json [--json all.json]

Each world is generated with the same seed and size (the ``churn data generate`` stage's
``DemoWorld``, with the drift day set): ``baseline`` (no drift), ``drift`` (inputs change
from the drift day) and ``concept`` (the same behaviour carries ``CONCEPT_HAZARD_FACTOR``
times the churn hazard from the drift day, inputs unchanged). Then, in a data and artifacts
dir and a Feast project of its own:

1. validate, prepare ``user_daily`` up to the day before the training day, build the
   features, ``feast apply``; train as of the day before the drift day
   (``train_models(settings, now=...)``: the labels can only see the prepared days, so the
   drift day must leave max(window) + horizon days before the first label and validation,
   embargo and calibration days after the last fitted one: 120 of 180 does) and put the best
   model in production without the gate (``training.promote.force``: the gate's verdict is
   not what is measured);
2. prepare and build the rest of the history (the rows of day D are stamped D+1 00:00 UTC,
   so a night T still sees only what it would have seen);
3. each night T from ``--nights-before`` nights before the drift day to the end of the data:
   ``batch.job.score_population(settings, T)`` and ``monitor.estimate``'s report, written
   (its history is what ``low`` and ``alert`` count);
4. ``monitor.outcomes.realized_outcomes`` once: the nights whose horizon ended in the data.

Per world and night it prints and writes the estimated precision@K and PR-AUC (with the
5-95 % band) beside the realized ones, the estimate's status and exit code, and the realized
calibration error against ``CHURN_CALIBRATION_ERROR_ALERT``; then a summary (``summarise``):
how far the estimate was from realized, when (if ever) the estimate moved beyond the label
noise from the drift day on and when realized figures showed a change (and arrived), when the
calibration check fired; with the baseline in the run, the drifted worlds are also compared
night by night with it (``versus_baseline``: same seed, so the same world until the drift
day). The JSON goes to ``--json``, the tables to ``--markdown`` (default: the JSON's path
with ``.md``); ``--from-json`` redoes both from runs' JSON. The data dir, artifacts and Feast
project are removed.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

WORLDS = ("baseline", "drift", "concept")
BANDED = ("pr_auc", "pr_auc_skill", "roc_auc")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def midnight(day: date) -> datetime:
    from core.timeline import start_of

    return start_of(day)


def world_settings(scenario: str):  # -> tuple[Path, Settings]
    """A temporary data and artifacts dir and a Feast project of this run's own."""
    from core.settings import get_settings
    from feature_repo.redis_server import ensure_redis

    tmp = Path(tempfile.mkdtemp(prefix=f"bench3w-{scenario}-"))
    settings = get_settings(
        data_dir=tmp / "data",
        artifacts_dir=tmp / "artifacts",
        feast_project=f"bench3w_{uuid.uuid4().hex[:8]}",
    )
    return tmp, ensure_redis(settings)


def build_and_train(settings, scenario: str, args: argparse.Namespace) -> dict:
    """Generate, validate, prepare up to the training day, features, apply, train, force."""
    from feature_repo.feast_cli import apply_definitions
    from ingestion.generate import DemoWorld, write_demo_world
    from ingestion.prepare import build_user_daily
    from ingestion.rolling_features import build_rolling_features
    from ingestion.validate import run_validation
    from training.promote import force, latest_candidate
    from training.train import train_models

    end = midnight(args.end_day)  # the world's last day is the day before
    start = args.end_day - timedelta(days=args.days)
    drift_date = start + timedelta(days=args.drift_day)
    trained_at = midnight(drift_date - timedelta(days=args.train_days_before))
    seconds: dict[str, float] = {}

    def timed(name, fn, *a, **kw):
        began = time.perf_counter()
        say(f"[{scenario}] … {name}")
        out = fn(*a, **kw)
        seconds[name] = round(time.perf_counter() - began, 1)
        return out

    # The generate stage's world, with the drift day set (the stage takes the default).
    world = DemoWorld(n_users=args.users, days=args.days, seed=settings.seed, start=start,
                      scenario=scenario, drift_day=args.drift_day)  # type: ignore[arg-type]  # fmt: skip
    written = timed("generate", write_demo_world, world, settings)
    report = timed("validate", run_validation, settings, now=end)
    if not report.passed:
        raise SystemExit(f"[{scenario}] validation failed: {report}")
    timed("prepare (to training day)", build_user_daily, settings, now=trained_at)
    timed("features (to training day)", build_rolling_features, settings)
    timed("apply", apply_definitions, settings)
    result = timed("train", train_models, settings, now=trained_at)
    version = latest_candidate(settings)
    force(settings, version, f"three_worlds: trained as of {trained_at.date()}", now=trained_at)
    timed("prepare (all)", build_user_daily, settings, now=end)
    timed("features (all)", build_rolling_features, settings)
    return {
        "events": written.events,
        "start": start.isoformat(),
        "last_day": (args.end_day - timedelta(days=1)).isoformat(),
        "drift_date": drift_date.isoformat(),
        "trained_as_of": trained_at.date().isoformat(),
        "model_version": version,
        "validation_pr_auc": result.metrics[result.best]["pr_auc"],
        # The calibration part's churn rate sets the calibrated level (the estimate's mean).
        "training_positive_rate": result.positive_rate,
        "setup_seconds": seconds,
    }


def run_nights(settings, scenario: str, first: date, last: date) -> tuple[list[dict], float]:
    """Batch and written estimate for each night T in [first, last]; one line per night."""
    from batch.job import score_population
    from monitor.estimate import EXIT_CODES, estimate_report, write_estimate_report

    lines = []
    began = time.perf_counter()
    nights = (last - first).days + 1
    for i in range(nights):
        night = first + timedelta(days=i)
        t0 = time.perf_counter()
        batch = score_population(settings, midnight(night))
        report = estimate_report(settings, night)
        write_estimate_report(report, settings)
        e = report.expected
        lines.append({
            "as_of": night.isoformat(),
            "scored": batch.scored,
            "judged": e.rows,
            "status": report.status,
            "exit_code": EXIT_CODES[report.status],
            "est_churn_rate": e.churn_rate,
            "est_precision_at_k": e.precision_at_k,
            **{f"est_{n}": getattr(e, n).mean for n in BANDED},
            **{f"est_{n}_lower": getattr(e, n).lower for n in BANDED},
            **{f"est_{n}_upper": getattr(e, n).upper for n in BANDED},
        })  # fmt: skip
        say(f"[{scenario}] night {i + 1}/{nights} {night}: {batch.scored} scored, estimate "
            f"{report.status} P@{e.k} {e.precision_at_k:.3f} PR-AUC {e.pr_auc.mean:.3f} "
            f"[{e.pr_auc.lower:.3f}, {e.pr_auc.upper:.3f}] ({time.perf_counter() - t0:.1f} s)")  # fmt: skip
    return lines, time.perf_counter() - began


def add_realized(settings, lines: list[dict]) -> dict:
    """``realized_outcomes`` once; each night's realized figures and calibration beside it."""
    from core.timeline import horizon_last_day
    from monitor.estimate import check_against_realized
    from monitor.outcomes import realized_outcomes

    report = realized_outcomes(settings)
    outcomes = {o.as_of.isoformat(): o for o in report.evaluated}
    checked = {c.as_of: c for c in check_against_realized(settings)}
    for line in lines:
        o, c = outcomes.get(line["as_of"]), checked.get(line["as_of"])
        # The night after the horizon's last day: the first whose outcomes can judge T.
        last = horizon_last_day(date.fromisoformat(line["as_of"]), settings.horizon_days)
        line["labels_arrive"] = (last + timedelta(days=1)).isoformat()
        if o is None or c is None:
            line["realized"] = False
            continue
        line |= {
            "realized": True,
            "real_base_rate": o.base_rate,
            "real_precision_at_k": o.precision_at_k,
            "real_pr_auc": o.pr_auc,
            "real_pr_auc_skill": o.pr_auc_skill,
            "real_roc_auc": o.roc_auc,
            "diff_precision_at_k": c.difference("precision_at_k"),
            "diff_pr_auc": c.difference("pr_auc"),
            "real_in_pr_auc_band": line["est_pr_auc_lower"] <= o.pr_auc <= line["est_pr_auc_upper"],
            "calibration_error": o.calibration_error,
            "top_bin_predicted": o.calibration_bins[-1]["mean_predicted"],
            "top_bin_observed": o.calibration_bins[-1]["observed_rate"],
            "miscalibrated": report.miscalibrated(o),
        }
    return {"calibration_alert": report.calibration_alert,
            "pending": len(report.pending), "skipped": len(report.skipped)}  # fmt: skip


SUSTAINED = 3  # nights in a row a change must last to count (CHURN_ESTIMATE_ALERT_NIGHTS' default)


def first_sustained(items: list, beyond) -> object | None:
    """The first of ``SUSTAINED`` consecutive ``items`` (nights, oldest first) for which
    ``beyond`` holds, all on the same side (its sign); None when no run is that long."""
    run: list = []
    for item in items:
        side = beyond(item)
        run = [*run, item] if side and (not run or beyond(run[-1]) == side) else [item] * bool(side)
        if len(run) == SUSTAINED:
            return run[0]
    return None


def _side(difference: float, noise: float) -> int:
    """+1 or -1 when ``difference`` is beyond ``noise``, else 0."""
    return 0 if abs(difference) <= noise else (1 if difference > 0 else -1)


def _max_abs(values: list[float]) -> float | None:
    return max((abs(v) for v in values), default=None)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(lines: list[dict], drift_date: str, k: int) -> dict:
    """The figures issue 27 asks of each world (module docstring).

    The reference is what the model promised before the drift day: the mean estimated
    PR-AUC of the nights before it, and half its 5-95 % band (the label noise of a night). The
    estimate "moves" on the first of ``SUSTAINED`` nights in a row from the drift day on that
    are further from it than that, on the same side; realized figures "show it" on the first
    such run of nights with labels (every scored night's horizon reaches past the drift day),
    known a horizon later (``labels_arrive``).
    """
    pre = [x for x in lines if x["as_of"] < drift_date]
    post = [x for x in lines if x["as_of"] >= drift_date]
    real = [x for x in lines if x["realized"]]
    widths = [x["est_pr_auc_upper"] - x["est_pr_auc_lower"] for x in lines]
    out: dict = {
        "nights": len(lines),
        "nights_with_labels": len(real),
        "max_abs_diff_precision_at_k": _max_abs([x["diff_precision_at_k"] for x in real]),
        "max_abs_diff_pr_auc": _max_abs([x["diff_pr_auc"] for x in real]),
        "mean_diff_precision_at_k": _mean([x["diff_precision_at_k"] for x in real]),
        "mean_diff_pr_auc": _mean([x["diff_pr_auc"] for x in real]),
        "mean_est_churn_rate": _mean([x["est_churn_rate"] for x in real]),
        "mean_real_base_rate": _mean([x["real_base_rate"] for x in real]),
        "realized_pr_auc_in_band": sum(x["real_in_pr_auc_band"] for x in real),
        "mean_pr_auc_band_width": _mean(widths),
        "statuses": {s: sum(x["status"] == s for x in lines) for s in ("ok", "low", "alert")},
        "nights_miscalibrated": sum(bool(x.get("miscalibrated")) for x in real),
        "max_calibration_error": max((x["calibration_error"] for x in real), default=None),
    }
    if real:  # what label noise alone allows at the top K: the sd of a share of K users
        p = _mean([x["est_precision_at_k"] for x in real])
        out["precision_at_k_label_noise_sd"] = math.sqrt(p * (1 - p) / k)
    fired = next((x for x in real if x.get("miscalibrated")), None)
    out["calibration_fires_for_night"] = fired and fired["as_of"]
    out["calibration_fires_on"] = fired and fired["labels_arrive"]  # when its labels arrived
    if not pre:
        return out
    ref = {n: _mean([x[f"est_{n}"] for x in pre]) for n in ("precision_at_k", "pr_auc")}
    half = _mean([(x["est_pr_auc_upper"] - x["est_pr_auc_lower"]) / 2 for x in pre])
    changes = [x["est_pr_auc"] - ref["pr_auc"] for x in post]
    out |= {
        "pre_drift_est_pr_auc": ref["pr_auc"],
        "pre_drift_est_precision_at_k": ref["precision_at_k"],
        "pre_drift_pr_auc_half_band": half,
        "post_max_abs_change_est_pr_auc": _max_abs(changes),
        "post_nights_est_pr_auc_beyond_half_band": sum(abs(c) > half for c in changes),
        "post_max_abs_change_est_precision_at_k": _max_abs(
            [x["est_precision_at_k"] - ref["precision_at_k"] for x in post]
        ),
    }
    # The expected churn rate has no band (a mean of p): it moves when it is further from the
    # pre-drift one than twice the sd of a night's realized rate, the least labels could show.
    rate = _mean([x["est_churn_rate"] for x in pre])
    judged = _mean([x["judged"] for x in pre])
    rate_sd = math.sqrt(rate * (1 - rate) / judged)
    rate_moved = first_sustained(post, lambda x: _side(x["est_churn_rate"] - rate, 2 * rate_sd))
    out |= {
        "pre_drift_est_churn_rate": rate,
        "churn_rate_2sd": 2 * rate_sd,
        "post_max_abs_change_est_churn_rate": _max_abs([x["est_churn_rate"] - rate for x in post]),
        "estimate_churn_rate_moves_on": rate_moved and rate_moved["as_of"],
        "estimate_churn_rate_moves_by": rate_moved and rate_moved["est_churn_rate"] - rate,
    }
    moved = first_sustained(post, lambda x: _side(x["est_pr_auc"] - ref["pr_auc"], half))
    flagged = next((x for x in post if x["status"] != "ok"), None)
    shown = first_sustained(real, lambda x: _side(x["real_pr_auc"] - ref["pr_auc"], half))
    out |= {
        "estimate_moves_on": moved and moved["as_of"],
        "estimate_moves_by": moved and moved["est_pr_auc"] - ref["pr_auc"],
        "estimate_not_ok_on": flagged and flagged["as_of"],
        "realized_pr_auc_beyond_half_band_nights": sum(
            abs(x["real_pr_auc"] - ref["pr_auc"]) > half for x in real
        ),
        "realized_moves_for_night": shown and shown["as_of"],
        "realized_moves_by": shown and shown["real_pr_auc"] - ref["pr_auc"],
        "realized_shows_it_on": shown and shown["labels_arrive"],
    }
    if moved and shown:
        out["estimate_days_earlier"] = (
            date.fromisoformat(shown["labels_arrive"]) - date.fromisoformat(moved["as_of"])
        ).days
    return out


def versus_baseline(lines: list[dict], baseline: list[dict], drift_date: str) -> dict:
    """The same nights of the baseline world (same seed and size, no drift) as the
    counterfactual: the first night from which the estimate, and the realized figures, differ
    from the baseline's by more than the label noise (half the PR-AUC band; twice the sd of a
    night's churn rate) for ``SUSTAINED`` nights in a row, and when those realized figures
    arrived."""
    base = {x["as_of"]: x for x in baseline}
    pairs = [(x, base[x["as_of"]]) for x in lines if x["as_of"] in base]
    out: dict = {}
    for name, real_name in (("churn_rate", "base_rate"), ("pr_auc", "pr_auc")):
        est = [
            (x, x[f"est_{name}"] - b[f"est_{name}"]) for x, b in pairs if x["as_of"] >= drift_date
        ]
        real = [(x, x[f"real_{real_name}"] - b[f"real_{real_name}"])
                for x, b in pairs if x["realized"] and b["realized"]]  # fmt: skip

        def noise(x: dict, name: str = name) -> float:
            if name == "pr_auc":
                return (x["est_pr_auc_upper"] - x["est_pr_auc_lower"]) / 2
            p = x["est_churn_rate"]
            return 2 * math.sqrt(p * (1 - p) / x["judged"])

        moved = first_sustained(est, lambda pair: _side(pair[1], noise(pair[0])))
        shown = first_sustained(real, lambda pair: _side(pair[1], noise(pair[0])))
        out |= {
            f"{name}_est_max_abs_diff_vs_baseline": _max_abs([d for _, d in est]),
            f"{name}_real_max_abs_diff_vs_baseline": _max_abs([d for _, d in real]),
            f"{name}_estimate_moves_on": moved and moved[0]["as_of"],
            f"{name}_estimate_moves_by": moved and moved[1],
            f"{name}_realized_moves_for_night": shown and shown[0]["as_of"],
            f"{name}_realized_moves_by": shown and shown[1],
            f"{name}_realized_shows_it_on": shown and shown[0]["labels_arrive"],
        }
        if moved and shown:
            out[f"{name}_estimate_days_earlier"] = (
                date.fromisoformat(shown[0]["labels_arrive"])
                - date.fromisoformat(moved[0]["as_of"])
            ).days
    return out


def compare_to_baseline(out: dict) -> None:
    """Each drifted world's summary gains ``versus_baseline`` when the run has the baseline."""
    baseline = next((w for w in out["worlds"] if w["scenario"] == "baseline"), None)
    for world in out["worlds"]:
        if baseline is not None and world is not baseline:
            world["summary"]["versus_baseline"] = versus_baseline(
                world["nights"], baseline["nights"], world["drift_date"]
            )


def run_world(scenario: str, args: argparse.Namespace) -> dict:
    from feature_repo.store import open_store

    began = time.perf_counter()
    tmp, settings = world_settings(scenario)
    say(f"[{scenario}] data in {tmp}, Feast project {settings.feast_project}")
    try:
        setup = build_and_train(settings, scenario, args)
        drift = date.fromisoformat(setup["drift_date"])
        first = drift - timedelta(days=args.nights_before)
        last = args.end_day  # T = the night after the last day sees every day
        lines, nights_s = run_nights(settings, scenario, first, last)
        say(f"[{scenario}] … outcomes")
        outcomes = add_realized(settings, lines)
    finally:
        try:
            open_store(settings).teardown()
        except Exception as exc:  # the figures outlive a failed clean-up
            say(f"[{scenario}] teardown of {settings.feast_project} failed: {exc}")
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    summary = summarise(lines, setup["drift_date"], settings.top_k)
    return {
        "scenario": scenario, **setup, **outcomes,
        "feast_project": settings.feast_project, "horizon_days": settings.horizon_days,
        "top_k": settings.top_k, "floor": settings.realized_pr_auc_skill_floor,
        "estimate_draws": settings.estimate_draws, "nights_seconds": round(nights_s, 1),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "nights": lines, "summary": summary,
    }  # fmt: skip


def _f(value, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return str(value)


def markdown(out: dict) -> str:
    """Per world: the nights' table, then its summary."""
    text = [f"# Estimate against realized, three worlds ({out['users']:,} users × "
            f"{out['days']} days, drift day {out['drift_day']}, seed {out['seed']})\n",
            f"Command: `{out['command']}`; wall time {out['wall_seconds']:.0f} s.\n"]  # fmt: skip
    for w in out["worlds"]:
        k, alert = w["top_k"], w["calibration_alert"]
        text.append(f"## {w['scenario']}\n\nDrift date {w['drift_date']}; model "
                    f"{w['model_version']} trained as of {w['trained_as_of']} (validation "
                    f"PR-AUC {w['validation_pr_auc']:.3f}); horizon {w['horizon_days']} d, "
                    f"K {k}, skill floor {w['floor']}, ECE alert {alert}; "
                    f"{w['wall_seconds']:.0f} s.\n")  # fmt: skip
        text.append(
            f"| night T | status (exit) | est P@{k} | real P@{k} | diff | est PR-AUC "
            "[5 %, 95 %] | real PR-AUC | diff | ECE | ECE > alert | labels on |"
        )
        text.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for x in w["nights"]:
            band = (f"{x['est_pr_auc']:.3f} [{x['est_pr_auc_lower']:.3f}, "
                    f"{x['est_pr_auc_upper']:.3f}]")  # fmt: skip
            text.append(
                f"| {x['as_of']} | {x['status']} ({x['exit_code']}) | "
                f"{_f(x['est_precision_at_k'])} | {_f(x.get('real_precision_at_k'))} | "
                f"{_f(x.get('diff_precision_at_k'), sign=True)} | {band} | "
                f"{_f(x.get('real_pr_auc'))} | {_f(x.get('diff_pr_auc'), sign=True)} | "
                f"{_f(x.get('calibration_error'))} | {_f(x.get('miscalibrated'))} | "
                f"{x['labels_arrive']} |"
            )
        text.append("\nSummary:\n")
        for key, value in w["summary"].items():
            if isinstance(value, dict) and key == "versus_baseline":
                text.append("- against the baseline world, night by night:")
                text += [f"  - {name}: {_f(v, 4)}" for name, v in value.items()]
            else:
                text.append(f"- {key}: {_f(value, 4)}")
        text.append("")
    return "\n".join(text) + "\n"


def report_from(args: argparse.Namespace) -> None:
    """The summaries and tables of runs already made, their worlds in one report."""
    runs = [json.loads(path.read_text()) for path in args.from_json]
    out = runs[0] | {"worlds": [w for run in runs for w in run["worlds"]],
                     "command": " ; ".join(run["command"] for run in runs),
                     "wall_seconds": sum(run["wall_seconds"] for run in runs)}  # fmt: skip
    for world in out["worlds"]:
        world["summary"] = summarise(world["nights"], world["drift_date"], world["top_k"])
    compare_to_baseline(out)
    write_outputs(out, args)


def write_outputs(out: dict, args: argparse.Namespace) -> None:
    """Print the tables; write the JSON (``--json``) and the tables (``--markdown``)."""
    table = markdown(out)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    target = args.markdown or (args.json.with_suffix(".md") if args.json else None)
    if target:
        target.write_text(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--users", type=int, default=2000, help="users per world")
    parser.add_argument("--days", type=int, default=180, help="days per world")
    # Training as of the day before needs max(window) + horizon days before its first label
    # and validation, embargo (a horizon) and calibration days after its last fitted one.
    parser.add_argument("--drift-day", type=int, default=120,
                        help="day (from the first) drift or concept starts; at least about "
                        "110 with the default windows and horizon, so training has days to fit")  # fmt: skip
    parser.add_argument("--end-day", type=date.fromisoformat, default=date(2026, 6, 1),
                        help="the day after the worlds' last day (fixed: same worlds each run)")  # fmt: skip
    parser.add_argument("--train-days-before", type=int, default=1,
                        help="train as of this many days before the drift day")  # fmt: skip
    parser.add_argument("--nights-before", type=int, default=7,
                        help="first scored night: this many nights before the drift day")  # fmt: skip
    parser.add_argument("--worlds", default=",".join(WORLDS), help="comma list of worlds")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--markdown", type=Path, help="the tables (default: --json's .md)")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs (debugging)")
    parser.add_argument("--from-json", type=Path, nargs="+",
                        help="no run: summarise and tabulate these runs' JSON (worlds merged)")  # fmt: skip
    args = parser.parse_args()
    if args.from_json:
        return report_from(args)
    worlds = [w.strip() for w in args.worlds.split(",") if w.strip()]
    if unknown := set(worlds) - set(WORLDS):
        parser.error(f"unknown worlds {sorted(unknown)}: choose from {', '.join(WORLDS)}")
    if not (args.drift_day - args.nights_before > 0 and args.drift_day < args.days):
        parser.error("need 0 < drift day - nights before and drift day < days")

    from core.settings import get_settings

    began = time.perf_counter()
    out = {"users": args.users, "days": args.days, "drift_day": args.drift_day,
           "seed": get_settings().seed, "command": " ".join(sys.argv), "worlds": []}  # fmt: skip
    for scenario in worlds:
        out["worlds"].append(run_world(scenario, args))
        out["wall_seconds"] = time.perf_counter() - began
        if args.json:  # after each world: a late failure keeps the ones measured
            args.json.write_text(json.dumps(out, indent=1, default=str))
    out["wall_seconds"] = time.perf_counter() - began
    compare_to_baseline(out)
    write_outputs(out, args)


if __name__ == "__main__":
    main()
