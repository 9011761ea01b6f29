"""`churn status`: judging a state (pure, at a pinned now), its exit codes, the screen and
the JSON, the nights' history read back, and a bare machine read without a traceback."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from rich.console import Console

from churn.status import (
    EXIT_CODES,
    LateDays,
    Layer,
    ModelState,
    NightState,
    Problem,
    RedisState,
    SourceState,
    Status,
    Step,
    gather_status,
    print_status,
    problems,
    status_json,
    verdict,
)
from core.history import append_record
from core.readiness import free_port
from monitor.drift import EXIT_CODES as DRIFT_EXIT_CODES

NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # 06:00 on the morning after the night of 1 March
DAY = date(2026, 3, 1)
TODAY = date(2026, 3, 2)


def layer(name: str, first: date | None = date(2026, 1, 1), last: date | None = DAY) -> Layer:
    days = (last - first).days + 1 if first and last else 0
    return Layer(name, first, last, days, days * 100 if days else None)


def healthy() -> Status:
    """Everything as after a good night: data through DAY, the batch as of TODAY."""
    return Status(
        checked_at=NOW,
        project="churn",
        layers=(
            layer("raw events"),
            layer("validated events"),
            layer("user_daily"),
            layer("features"),
            layer("batches", date(2026, 2, 1), TODAY),
        ),
        night=NightState(
            day=DAY,
            steps=(Step("validate", "done", "day 2026-03-01"), Step("batch", "done", "as of")),
            last_batch=TODAY,
        ),
        model=ModelState(
            "20260220T000000Z-abcdef12",
            datetime(2026, 2, 20, tzinfo=UTC),
            datetime(2026, 2, 20, 1, tzinfo=UTC),
        ),
        redis=RedisState("redis://:***@redis:6379/0", True, 5000, 1200, 5000),
        source=SourceState(),
        late=LateDays(),
    )


def without_data(status: Status) -> Status:
    empty = tuple(Layer(x.name) for x in status.layers)
    return replace(status, layers=empty, night=NightState())


def with_layer(status: Status, new: Layer) -> Status:
    return replace(status, layers=tuple(new if x.name == new.name else x for x in status.layers))


@pytest.fixture
def settings(make_settings):
    return make_settings(max_model_age_days=30)


def test_a_healthy_state_has_no_problem_and_exits_0(settings):
    found = problems(healthy(), NOW, settings)
    assert found == []
    assert verdict(found) == "ok"
    assert EXIT_CODES[verdict(found)] == 0


# Each fault alone, and what it must be judged: (severity, area, words of the message).
FAULTS = {
    "no data yet": (without_data, "error", "data", "no data yet: run `churn data ingest`"),
    "raw, not validated": (
        lambda s: with_layer(
            with_layer(with_layer(s, Layer("validated events")), Layer("user_daily")),
            Layer("features"),
        ),
        "error",
        "data",
        "run `churn data validate`",
    ),
    "features behind user_daily": (
        lambda s: with_layer(s, layer("features", last=DAY - timedelta(days=2))),
        "warn",
        "data",
        "churn features build --day 2026-03-01",
    ),
    "no production model": (
        lambda s: replace(s, model=ModelState()),
        "error",
        "model",
        "churn promote",
    ),
    "model past CHURN_MAX_MODEL_AGE_DAYS": (
        lambda s: replace(s, model=replace(s.model, created_at=NOW - timedelta(days=31))),
        "warn",
        "model",
        "31 days old",
    ),
    "registry unreadable": (
        lambda s: replace(s, model=ModelState(error="RegistryError: corrupt production.json")),
        "error",
        "model",
        "corrupt production.json",
    ),
    "redis unreachable": (
        lambda s: replace(s, redis=RedisState("redis://redis:6379/0", error="refused")),
        "error",
        "redis",
        "redis://redis:6379/0 is not reachable (refused)",
    ),
    "no key of the project, all keys counted": (
        lambda s: replace(s, redis=RedisState("redis://r/0", True, 40, 0, 40)),
        "error",
        "redis",
        "churn features materialize",
    ),
    "no key of the project in a sample": (
        lambda s: replace(s, redis=RedisState("redis://r/0", True, 2_000_000, 0, 10_000)),
        "warn",
        "redis",
        "among 10,000 sampled of 2,000,000",
    ),
    "no night has scored": (
        lambda s: replace(s, night=replace(s.night, last_batch=None)),
        "error",
        "night",
        "no night has scored yet",
    ),
    "the night stopped before its batch": (
        lambda s: replace(
            s, night=NightState(TODAY, (Step("features", "done"), Step("batch", "missing")), TODAY)
        ),
        "warn",
        "night",
        "stopped after features, or is still running",
    ),
    "the recorded night stopped": (
        lambda s: replace(
            s,
            night=replace(
                s.night, stopped={"step": "validate", "exit_code": "1", "day": "2026-03-01"}
            ),
        ),
        "error",
        "night",
        "stopped at validate (exit 1)",
    ),
    "CHURN_SOURCE never read": (
        lambda s: replace(s, source=SourceState("postgresql://portal@db:5432/portal (events)")),
        "warn",
        "source",
        "not been read yet",
    ),
    "CHURN_SOURCE read 40 h ago": (
        lambda s: replace(
            s, source=SourceState("dir:///landing", updated_at=NOW - timedelta(hours=40))
        ),
        "warn",
        "source",
        "last read 40 h ago (> 36 h)",
    ),
    "CHURN_SOURCE unusable": (
        lambda s: replace(s, source=SourceState(error="SourceError: CHURN_SOURCE must start with")),
        "error",
        "source",
        "must start with",
    ),
    "late days waiting past a night": (
        lambda s: replace(s, late=LateDays((date(2026, 2, 20), DAY), NOW - timedelta(hours=37))),
        "error",
        "late days",
        "2 day(s) with late events (2026-02-20 … 2026-03-01)",
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_is_named_with_its_severity(fault, settings):
    change, severity, area, words = FAULTS[fault]
    found = problems(change(healthy()), NOW, settings)
    assert [(p.severity, p.area) for p in found if p.area == area] == [(severity, area)]
    assert words in next(p.message for p in found if p.area == area)
    assert all("\n" not in p.message for p in found)  # one line each
    assert EXIT_CODES[verdict(found)] == {"warn": 30, "error": 40}[verdict(found)]


@pytest.mark.parametrize(
    ("hours", "wrong"),
    [(30, False), (36, False), (37, True), (80, True)],
)
def test_the_newest_batch_may_be_36_hours_old(hours, wrong, settings):
    now = datetime(2026, 3, 2, tzinfo=UTC) + timedelta(hours=hours)  # the batch as of 2 March
    found = problems(healthy(), now, settings)
    assert bool([p for p in found if p.area == "night"]) is wrong


def test_late_days_pending_since_a_few_hours_are_the_next_nights_work(settings):
    status = replace(healthy(), late=LateDays((DAY,), NOW - timedelta(hours=5)))
    assert problems(status, NOW, settings) == []


def test_errors_come_first_and_decide_the_exit_code(settings):
    status = replace(healthy(), model=ModelState(), source=SourceState("dir:///landing"))
    found = problems(status, NOW, settings)
    assert [p.severity for p in found] == ["error", "warn"]
    assert verdict(found) == "error"
    assert verdict([Problem("warn", "source", "x")]) == "warn"


def test_exit_codes_are_clear_of_the_other_commands():
    taken = {1, 2, 3, *DRIFT_EXIT_CODES.values()} - {0}
    assert EXIT_CODES["ok"] == 0
    assert {EXIT_CODES["warn"], EXIT_CODES["error"]}.isdisjoint(taken)
    assert len(set(EXIT_CODES.values())) == 3


def screen(status: Status, found: list[Problem]) -> str:
    console = Console(record=True, width=200)
    print_status(status, found, console)
    return console.export_text()


def test_the_screen_shows_each_part_and_says_all_well():
    text = screen(healthy(), [])
    for expected in (
        "features",
        "2026-01-01",
        "2026-03-01",
        "Last night: 2026-03-01",
        "20260220T000000Z-abcdef12, 10.2 days old",
        "5,000 keys in the database (every project); 1,200 of project churn (exactly)",
        "CHURN_SOURCE not set",
        "none pending",
        "all well",
        "exit 0 (ok)",
    ):
        assert expected in text, expected


def test_the_screen_of_a_bare_machine_says_what_to_run(settings):
    status = replace(without_data(healthy()), model=ModelState())
    found = problems(status, NOW, settings)
    text = screen(status, found)
    assert "Last night: none yet" in text
    assert "error data: no data yet: run `churn data ingest`" in text
    assert "exit 40 (error)" in text


def test_a_sampled_key_count_is_labelled_an_estimate():
    status = replace(healthy(), redis=RedisState("redis://r/0", True, 2_000_000, 41_000, 10_000))
    assert "41,000 of project churn (≈, from 10,000 keys sampled)" in screen(status, [])


def test_the_json_holds_the_verdict_the_problems_and_the_state(settings):
    status = replace(healthy(), model=ModelState())
    found = problems(status, NOW, settings)
    payload = status_json(status, found)
    assert json.loads(json.dumps(payload)) == payload
    assert payload["verdict"] == "error" and payload["exit_code"] == 40
    assert payload["problems"][0]["area"] == "model"
    assert payload["status"]["night"]["last_batch"] == "2026-03-02"
    assert payload["status"]["redis"]["exact"] is True


def test_the_last_night_is_read_from_the_nights_history(make_settings):
    """``churn nightly`` records each night's steps; status shows the newest one as run."""
    settings = make_settings()
    steps = [{"step": "validate", "exit_code": 0, "state": "done", "seconds": 3.2},
             {"step": "prepare", "exit_code": 1, "state": "failed", "seconds": 1.0},
             {"step": "features", "state": "not run"}]  # fmt: skip
    append_record(settings.nights_path, {"day": "2026-02-28", "exit_code": 0, "steps": []})
    append_record(settings.nights_path, {"day": "2026-03-01", "exit_code": 1,
                                         "stopped_at": "prepare", "steps": steps})  # fmt: skip
    night = gather_status(settings, NOW).night
    assert night.day == date(2026, 3, 1)
    assert [(s.name, s.state) for s in night.steps] == [
        ("validate", "done"), ("prepare", "failed"), ("features", "not run")]  # fmt: skip
    assert night.steps[1].detail == "exit 1, 1 s"
    assert night.stopped == {"step": "prepare", "exit_code": "1", "day": "2026-03-01"}
    found = problems(replace(healthy(), night=night), NOW, settings)
    assert any("stopped at prepare (exit 1)" in p.message for p in found)


def test_a_bare_machine_is_read_without_a_traceback(make_settings):
    settings = make_settings(redis_url=f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    status = gather_status(settings, NOW)
    assert [x.days for x in status.layers] == [0, 0, 0, 0, 0]
    assert status.model.version is None and not status.redis.reachable
    assert "s3cret" not in status.redis.url + (status.redis.error or "")
    areas = [p.area for p in problems(status, NOW, settings)]
    assert areas == ["data", "night", "model", "redis"]


def test_a_damaged_registry_is_one_line_not_a_traceback(make_settings):
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    settings.models_dir.mkdir(parents=True)
    (settings.models_dir / "production.json").write_text("{not json")
    status = gather_status(settings, NOW)
    assert status.model.error.startswith("RegistryError: corrupt or unreadable registry file")
    model = [p for p in problems(status, NOW, settings) if p.area == "model"]
    assert model[0].severity == "error" and "\n" not in model[0].message


def test_a_partition_that_is_not_a_day_is_one_line_not_a_traceback(make_settings):
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    (settings.features_path / "date=not-a-day").mkdir(parents=True)
    status = gather_status(settings, NOW)
    assert status.layer("features").error.startswith("ValueError")
    data = [p for p in problems(status, NOW, settings) if p.area == "data"]
    assert data[0].message.startswith("cannot read features: ValueError")
