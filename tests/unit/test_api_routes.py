"""The API's routes and scoring service on an in-memory feature source and a real model.

Every status the API answers, without Redis or Feast: the source below is what
``OnlineFeatures`` is to the service (``FeatureSource``), and the model is a small
sklearn model promoted in a registry of the test's own, loaded by the real holder.
The same paths on real Redis and Feast are in tests/integration/test_api.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.types import Send

from feature_repo.spec import DAYS_SINCE_FIRST_ACTIVITY
from online_api.app import ChurnApi, create_app
from online_api.metrics import ApiMetrics
from online_api.model_holder import ModelHolder
from online_api.online_features import FeatureRow, Plan
from online_api.outreach_list import OutreachList
from online_api.schemas import ChurnRisk
from online_api.service import READINESS_ID, ScoringService
from served import registry
from served.arms import CONTACT, HOLDOUT, write_assignments
from tests.unit.synthetic import NAMES

VERSION = "20260101T000000Z-unittest"
TTL = timedelta(days=3)
BASE = {"active_days_7d": 3, "logins_7d": 5, "plan": "free", "watch_minutes_7d": 80.0,
        "quiz_score_mean_7d": 0.7, "logins_trend_7d_30d": 1.1, "tenure_days": 200,
        "country": "de", "acquisition_channel": "ads", DAYS_SINCE_FIRST_ACTIVITY: 200}  # fmt: skip


class InMemoryFeatures:
    """A FeatureSource over a dict of rows by user id. ``down`` fails every read as a
    dead Redis does; ``lookups`` records the ids of each read of users."""

    def __init__(self, rows: dict[str, FeatureRow]) -> None:
        self.rows = rows
        self.down = False
        self.lookups: list[list[str]] = []
        self.planned: list[tuple[str, list[str], tuple[str, ...]]] = []

    def plan(self, feature_service: str, refs: list[str], also: Sequence[str] = ()) -> Plan:
        self.planned.append((feature_service, list(refs), tuple(also)))
        return Plan((), TTL)

    async def fetch(self, user_ids: list[str], plan: Plan) -> list[FeatureRow | None]:
        await asyncio.sleep(0)  # a real read yields to the loop: concurrent requests queue
        if self.down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")
        if user_ids != [READINESS_ID]:  # the warm-up's and the readiness probe's reads
            self.lookups.append(list(user_ids))
        return [self.rows.get(user_id) for user_id in user_ids]

    async def aclose(self) -> None:
        pass


def _row(days_since_last_activity: int, age: timedelta = timedelta(hours=2)) -> FeatureRow:
    values = BASE | {"days_since_last_activity": days_since_last_activity}
    return FeatureRow(values, datetime.now(UTC) - age)


@pytest.fixture
def world(make_settings, trained):
    """Settings with a promoted logistic model, the model, and a source of four users."""
    settings = make_settings(api_batch_max=3)
    model, metadata = trained["logistic"]
    metadata = metadata | {"version": VERSION, "feature_service": "churn_model_v1"}
    registry.save_model(settings.models_dir, VERSION, model, metadata)
    registry.set_production(settings.models_dir, VERSION, "unit test")
    lookback = settings.active_lookback_days
    source = InMemoryFeatures({
        "active": _row(2),
        "edge": _row(lookback - 1),
        "lapsed": _row(lookback),
        "stale": _row(1, age=TTL + timedelta(days=2)),
    })  # fmt: skip
    return settings, model, source


@pytest.fixture
def client(world) -> Iterator[tuple[TestClient, InMemoryFeatures, ApiMetrics]]:
    settings, _, source = world
    metrics = ApiMetrics()
    with TestClient(create_app(settings, online=source, metrics=metrics)) as client:
        yield client, source, metrics


def _count(metrics: ApiMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(f"churn_api_{name}_total", labels) or 0.0


def test_users_in_the_population_are_scored_and_the_others_answered_lapsed(world, client):
    _, model, _ = world
    client, source, metrics = client
    bodies = {u: client.get(f"/users/{u}/churn-risk") for u in ("active", "edge", "lapsed")}
    assert {u: r.status_code for u, r in bodies.items()} == dict.fromkeys(bodies, 200)
    answers = {u: ChurnRisk.model_validate(r.json()) for u, r in bodies.items()}
    for user in ("active", "edge"):
        want = model.predict_proba(pd.DataFrame([source.rows[user].values], columns=NAMES))
        assert answers[user].status == "scored"
        assert answers[user].churn_risk == pytest.approx(want[0, 1], abs=1e-9)
        assert answers[user].risk_band in ("low", "medium", "high")
        assert answers[user].model_version == VERSION
    for answer in answers.values():  # no night's list yet: nobody listed, no arm
        assert (answer.listed, answer.arm) == (False, None)
    lapsed = answers["lapsed"]
    assert lapsed.status == "lapsed"
    assert (lapsed.churn_risk, lapsed.risk_band, lapsed.top_factors) == (None, None, None)
    assert (
        lapsed.days_since_last_activity == source.rows["lapsed"].values["days_since_last_activity"]
    )
    assert _count(metrics, "answers", status="scored") == 2
    assert _count(metrics, "answers", status="lapsed") == 1
    # The population rule's features are planned beside the model's own.
    assert source.planned[0][2] == ("user_activity:days_since_last_activity",
                                    f"user_activity:{DAYS_SINCE_FIRST_ACTIVITY}")  # fmt: skip


def test_an_unknown_user_is_a_404_that_names_the_user(client):
    client, _, metrics = client
    response = client.get("/users/nobody-here/churn-risk")
    assert response.status_code == 404
    assert "nobody-here" in response.json()["detail"]
    assert _count(metrics, "errors", kind="not_found") == 1


def test_features_older_than_the_ttl_are_a_404_that_says_so(client):
    client, _, metrics = client
    response = client.get("/users/stale/churn-risk")
    assert response.status_code == 404
    assert "within the TTL" in response.json()["detail"]
    item = client.post("/churn-risk:batch", json={"user_ids": ["stale"]}).json()["results"][0]
    assert (item["result"], item["error"]) == (None, "stale_features")
    assert _count(metrics, "errors", kind="stale_features") == 2


@pytest.mark.parametrize("user_id", ["bad id!", "x" * 65, "ü", "semi;colon"])
def test_a_malformed_id_is_a_422(client, user_id):
    client, source, _ = client
    assert client.get(f"/users/{user_id}/churn-risk").status_code == 422
    assert source.lookups == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"user_ids": []}', 422),
        (b'{"user_ids": "active"}', 422),
        (b'{"ids": ["active"]}', 422),
        (b'{"user_ids": ["active"', 422),  # a JSON syntax error
        (b"\xff\xfe", 422),
        (b'{"user_ids": ["\xff"]}', 400),  # not UTF-8: FastAPI's own 400 (documented)
    ],
)
def test_a_malformed_batch_body_is_a_422_or_when_not_utf8_a_400(client, body, status):
    client, _, _ = client
    response = client.post(
        "/churn-risk:batch", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert "detail" in response.json()


def test_a_batch_over_the_limit_is_a_413_naming_the_limit(client):
    client, source, metrics = client
    response = client.post("/churn-risk:batch", json={"user_ids": ["active"] * 4})
    assert response.status_code == 413
    assert "at most 3" in response.json()["detail"]
    assert _count(metrics, "errors", kind="batch_too_large") == 1
    assert source.lookups == []


def test_the_batch_answers_each_id_as_the_single_endpoint_in_one_read(client):
    client, source, _ = client
    ids = ["lapsed", "nobody-here", "active"]
    items = client.post("/churn-risk:batch", json={"user_ids": ids}).json()["results"]
    assert source.lookups == [ids]
    assert [item["user_id"] for item in items] == ids
    assert items[1] == {"user_id": "nobody-here", "result": None, "error": "not_found",
                        "detail": "user nobody-here has no features in the online store"}  # fmt: skip
    for item in (items[0], items[2]):
        single = client.get(f"/users/{item['user_id']}/churn-risk").json()
        assert {k: v for k, v in item["result"].items() if k != "served_at"} == {
            k: v for k, v in single.items() if k != "served_at"
        }


def test_no_production_model_is_a_503_that_says_to_promote(make_settings):
    source = InMemoryFeatures({"active": _row(2)})
    metrics = ApiMetrics()
    with TestClient(create_app(make_settings(), online=source, metrics=metrics)) as client:
        for method, path in [("get", "/users/active/churn-risk"), ("get", "/model"),
                             ("get", "/ready")]:  # fmt: skip
            response = client.request(method, path)
            assert response.status_code == 503, path
            assert "churn promote" in response.json()["detail"]
        batch = client.post("/churn-risk:batch", json={"user_ids": ["active"]})
        assert batch.status_code == 503
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 200
    assert _count(metrics, "errors", kind="no_model") == 4
    assert source.lookups == []


def test_a_store_down_is_a_503_to_retry_and_the_service_recovers(client):
    client, source, metrics = client
    source.down = True
    for response in (
        client.get("/users/active/churn-risk"),
        client.post("/churn-risk:batch", json={"user_ids": ["active"]}),
        client.get("/ready"),
    ):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.json() == {"detail": "online store unavailable"}
    assert _count(metrics, "errors", kind="store_unavailable") == 3
    assert metrics.ready._value.get() == 0.0
    source.down = False
    assert client.get("/users/active/churn-risk").status_code == 200
    assert client.get("/ready").json() == {"status": "ready", "model_version": VERSION}
    assert metrics.ready._value.get() == 1.0


def test_the_same_features_give_the_same_answer_whatever_the_user_id(client):
    """Behavioural: the id only finds the row; nothing about it reaches the risk."""
    client, source, _ = client
    for twin in ("u000001", "zz-9", "A.b:c_d"):
        source.rows[twin] = source.rows["active"]
    answers = [client.get(f"/users/{user_id}/churn-risk").json()
               for user_id in ("active", "u000001", "zz-9", "A.b:c_d")]  # fmt: skip
    for answer in answers:
        del answer["user_id"], answer["served_at"]
    assert answers[0]["status"] == "scored"
    assert answers[1:] == [answers[0]] * 3
    batch = client.post("/churn-risk:batch", json={"user_ids": ["zz-9", "active"]}).json()
    risks = [item["result"]["churn_risk"] for item in batch["results"]]
    assert risks == [answers[0]["churn_risk"]] * 2


# Ids at each edge of the rule: the longest, every allowed character, one too long, a
# trailing newline (which a ``$`` anchor in Python's ``re`` would let through), a space, a
# non-ASCII letter, an encoded slash.
EDGE_IDS = ["x" * 64, "Az09_.:-", "x" * 65, "active%0A", "act ive", "é", "a%2Fb"]


def _through_fastapi(app: ChurnApi) -> ChurnApi:
    """``app`` with every request through FastAPI's stack, the single-user route's too."""
    app.single_user.takes = lambda scope: None  # type: ignore[method-assign]
    return app


@pytest.mark.parametrize("token", [None, "s3cret-token"])
def test_the_fast_path_answers_every_id_as_the_fastapi_route_does(world, token):
    """The same statuses, headers and bodies for ids at the rule's edges, users of every
    outcome, and (with a token) each way of getting the token wrong."""
    settings, _, source = world
    settings = settings.model_copy(update={"api_token": SecretStr(token) if token else None})
    right = {"Authorization": f"bEaReR  {token} "} if token else {}
    wrong = [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {token}"}]
    metrics, taken = ApiMetrics(), []
    app = create_app(settings, online=source, metrics=metrics)
    answer = app.single_user.answer

    async def counted(user_id: str, send: Send) -> None:
        taken.append(user_id)
        await answer(user_id, send)

    app.single_user.answer = counted  # type: ignore[method-assign]
    with (
        TestClient(app) as fast,
        TestClient(
            _through_fastapi(create_app(settings, online=source, metrics=ApiMetrics()))
        ) as own,
    ):
        cases = [
            (user_id, right) for user_id in [*EDGE_IDS, "active", "lapsed", "stale", "unknown"]
        ]
        cases += [("active", headers) for headers in wrong] if token else []
        statuses = []
        for user_id, headers in cases:
            got, expected = (
                c.get(f"/users/{user_id}/churn-risk", headers=headers) for c in (fast, own)
            )
            assert got.status_code == expected.status_code, (user_id, headers)
            assert _without_clock(got) == _without_clock(expected), (user_id, headers)
            statuses.append(got.status_code)
        source.down = True  # the 503 with its Retry-After
        down = [c.get("/users/active/churn-risk", headers=right) for c in (fast, own)]
        assert _without_clock(down[0]) == _without_clock(down[1])
        assert down[0].status_code == 503 and down[0].headers["Retry-After"] == "1"
    unauthorized = [401] * len(wrong) if token else []
    assert statuses == [404, 404, 422, 422, 422, 422, 404, 200, 200, 404, 404, *unauthorized]
    # The fast path took the valid ids of authorized requests, and counted them as the
    # request metrics count the route's.
    assert taken == ["x" * 64, "Az09_.:-", "active", "lapsed", "stale", "unknown", "active"]
    assert _count(metrics, "requests", route="/users/{user_id}/churn-risk", status="404") == 4


def _without_clock(response) -> tuple[dict, dict]:
    """A response's headers and JSON body without the answer's clock (``served_at``), and
    checked for a length that is the body's."""
    assert int(response.headers["content-length"]) == len(response.content)
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    body = response.json()
    body.pop("served_at", None)
    return headers, body


def test_the_bearer_token_guards_scoring_and_the_model_but_not_the_probes(world):
    settings, _, source = world
    guarded = settings.model_copy(update={"api_token": SecretStr("s3cret-token")})
    metrics = ApiMetrics()
    right = {"Authorization": "Bearer s3cret-token"}
    with TestClient(create_app(guarded, online=source, metrics=metrics)) as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "s3cret-token"}):
            response = client.get("/users/active/churn-risk", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["WWW-Authenticate"] == "Bearer"
        assert client.post("/churn-risk:batch", json={"user_ids": ["active"]}).status_code == 401
        assert client.get("/model").status_code == 401
        assert client.get("/users/active/churn-risk", headers=right).status_code == 200
        assert client.get("/model", headers=right).json()["version"] == VERSION
        assert [client.get(path).status_code for path in ("/health", "/ready")] == [200, 200]
        text = client.get("/metrics").text
    assert "s3cret-token" not in text
    assert _count(metrics, "errors", kind="unauthorized") == 5


def test_routes_answer_503_before_the_service_has_started(world):
    settings, _, source = world
    client = TestClient(create_app(settings, online=source, metrics=ApiMetrics()))  # no lifespan
    assert client.get("/users/active/churn-risk").status_code == 503
    assert client.get("/ready").status_code == 503
    assert client.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_concurrent_answers_share_one_read(world):
    """The service alone, no HTTP: single-user answers in flight together are one read."""
    settings, _, source = world
    holder = ModelHolder(settings, lambda card: source.plan("churn_model_v1", []))
    holder.refresh()
    service = ScoringService(settings, source, holder, ApiMetrics())

    async def together() -> list[dict]:
        return await asyncio.gather(*(service.answer(u) for u in ("active", "edge", "lapsed")))

    answers = asyncio.run(together())
    assert [a["status"] for a in answers] == ["scored", "scored", "lapsed"]
    assert source.lookups == [["active", "edge", "lapsed"]]


# Every status each route can answer; 401 only where the token guards, when one is set.
STATUSES = {
    ("get", "/users/{user_id}/churn-risk"): {"200", "404", "422", "503"},
    ("post", "/churn-risk:batch"): {"200", "400", "413", "422", "503"},
    ("get", "/model"): {"200", "503"},
    ("get", "/health"): {"200"},
    ("get", "/ready"): {"200", "503"},
    ("get", "/metrics"): {"200"},
}
GUARDED = {("get", "/users/{user_id}/churn-risk"), ("post", "/churn-risk:batch"), ("get", "/model")}


@pytest.mark.parametrize("token", [None, "s3cret-token"])
def test_openapi_lists_every_status_of_every_route(make_settings, token):
    settings = make_settings(api_token=SecretStr(token) if token else None)
    schema = TestClient(create_app(settings, metrics=ApiMetrics())).get("/openapi.json").json()
    documented = {
        (method, path): set(operation["responses"])
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }
    expected = {
        route: statuses | ({"401"} if token and route in GUARDED else set())
        for route, statuses in STATUSES.items()
    }
    assert documented == expected
    for (method, path), statuses in documented.items():
        responses = schema["paths"][path][method]["responses"]
        for status in statuses - {"200", "422"}:  # every error answers {"detail": …}
            schema_ref = responses[status]["content"]["application/json"]["schema"]
            assert schema_ref == {"$ref": "#/components/schemas/Problem"}, (path, status)


USERS = [f"u{i:03d}" for i in range(8)]
NIGHT = date(2026, 3, 1)


def _write_list(settings, arms: dict[str, str], night: date = NIGHT) -> None:
    """``night``'s list of the users in ``arms``, as the nightly batch writes it."""
    write_assignments(settings, night, pd.DataFrame({
        "user_id": list(arms), "arm": list(arms.values()), "risk_band": "high",
        "churn_risk": 0.5, "monthly_revenue": 0.0, "model_version": VERSION,
    }))  # fmt: skip


def _source(settings) -> InMemoryFeatures:
    """USERS' features of two hours ago; every fourth user lapsed."""
    lookback = settings.active_lookback_days
    return InMemoryFeatures({user: _row(2 if i % 4 else lookback) for i, user in enumerate(USERS)})


def _answered(client: TestClient) -> dict[str, tuple[str, bool, str | None]]:
    """Each of USERS' (status, listed, arm) from the single endpoint, each answer as
    documented; the batch answers the same."""
    single = {u: client.get(f"/users/{u}/churn-risk").json() for u in USERS}
    for body in single.values():
        ChurnRisk.model_validate(body)
    items = client.post("/churn-risk:batch", json={"user_ids": USERS}).json()["results"]
    batch = {i["user_id"]: (i["result"]["listed"], i["result"]["arm"]) for i in items}
    assert batch == {u: (body["listed"], body["arm"]) for u, body in single.items()}
    return {u: (body["status"], body["listed"], body["arm"]) for u, body in single.items()}


def test_only_users_on_the_newest_list_are_listed_and_only_they_have_an_arm(world):
    """u001 contact and u002 holdout on the newest night's list, u004 too although lapsed
    today; u003 only on an older night's; the others on none."""
    settings = world[0].model_copy(update={"api_batch_max": len(USERS)})
    _write_list(settings, {"u001": HOLDOUT, "u003": CONTACT}, NIGHT - timedelta(days=1))
    _write_list(settings, {"u001": CONTACT, "u002": HOLDOUT, "u004": HOLDOUT})
    source = _source(settings)
    with TestClient(create_app(settings, online=source, metrics=ApiMetrics())) as client:
        answered = _answered(client)
        assert client.app.state.service.outreach.night == NIGHT
    listed = {"u001": ("scored", True, CONTACT), "u002": ("scored", True, HOLDOUT),
              "u004": ("lapsed", True, HOLDOUT)}  # fmt: skip
    unlisted = {u: ("lapsed" if i % 4 == 0 else "scored", False, None)
                for i, u in enumerate(USERS)}  # fmt: skip
    assert answered == unlisted | listed


def test_a_new_list_is_answered_once_the_service_has_looked(world):
    settings = world[0].model_copy(update={"api_batch_max": len(USERS)})
    source = _source(settings)
    holder = ModelHolder(settings, lambda card: source.plan("churn_model_v1", []))
    holder.refresh()
    outreach = OutreachList(settings)
    outreach.refresh()
    metrics = ApiMetrics()
    app = create_app(settings, online=source, metrics=metrics)
    app.state.service = ScoringService(settings, source, holder, metrics, outreach=outreach)
    client = TestClient(app)  # no lifespan: the service is the test's
    assert {arm for _, _, arm in _answered(client).values()} == {None}  # no list yet

    _write_list(settings, {"u001": CONTACT, "u002": HOLDOUT})
    assert _answered(client)["u001"] == ("scored", False, None)  # not looked yet
    outreach.refresh()
    answered = _answered(client)
    assert (answered["u001"], answered["u002"]) == (("scored", True, CONTACT),
                                                     ("scored", True, HOLDOUT))  # fmt: skip
    _write_list(settings, {"u002": CONTACT, "u003": HOLDOUT}, NIGHT + timedelta(days=1))
    outreach.refresh()
    answered = _answered(client)
    assert [answered[u][1:] for u in ("u001", "u002", "u003")] == [
        (False, None),
        (True, CONTACT),
        (True, HOLDOUT),
    ]


def test_openapi_documents_listed_and_the_arm_only_when_listed(make_settings):
    schema = TestClient(create_app(make_settings(), metrics=ApiMetrics())).get("/openapi.json")
    risk = schema.json()["components"]["schemas"]["ChurnRisk"]
    listed, arm = risk["properties"]["listed"], risk["properties"]["arm"]
    assert {"listed", "arm"} <= set(risk["required"])
    assert listed["type"] == "boolean"
    assert "newest night's outreach list" in listed["description"]
    assert {"enum": ["contact", "holdout"], "type": "string"} in arm["anyOf"]
    assert {"type": "null"} in arm["anyOf"]
    assert "only when listed (else null)" in arm["description"]
    assert "(CHURN_HOLDOUT_SHARE), which must not be contacted" in arm["description"]
    # The examples show both, the unlisted one's null arm included (FastAPI drops nulls).
    assert [(e["listed"], e["arm"]) for e in risk["examples"]] == [(True, CONTACT), (False, None)]
    for example in risk["examples"]:
        ChurnRisk.model_validate(example)
    with pytest.raises(ValueError, match="a listed answer has an arm, an unlisted one none"):
        ChurnRisk.model_validate(risk["examples"][0] | {"arm": None})
    with pytest.raises(ValueError, match="a listed answer has an arm, an unlisted one none"):
        ChurnRisk.model_validate(risk["examples"][1] | {"arm": HOLDOUT})


def test_stored_values_decode_as_feast_and_only_immutable_ones_are_kept(monkeypatch):
    """The read path's decoder: each value as Feast's ValueProto parse and conversion gives
    it; a list is parsed anew on every read (a row may be changed by its reader); the
    number of values kept decoded is bounded."""
    from feast.protos.feast.types.Value_pb2 import Int64List, Null, Value

    from online_api import online_features

    values = [Value(int32_val=-7), Value(int64_val=2**40), Value(float_val=0.1),
              Value(double_val=1 / 3), Value(string_val="ü"), Value(bool_val=False),
              Value(null_val=Null.NULL), Value(), Value(unix_timestamp_val=1_700_000_000),
              Value(int64_list_val=Int64List(val=[1, 2]))]  # fmt: skip
    monkeypatch.setattr(online_features, "DECODED_MAX", 6)
    decoded = online_features._Decoded({None: None, b"": None})
    for value in values:
        raw = value.SerializeToString()
        assert decoded[raw] == online_features._python(Value.FromString(raw)), value
    assert decoded[None] is None and decoded[b""] is None
    listed = values[-1].SerializeToString()
    assert decoded[listed] == [1, 2] and decoded[listed] is not decoded[listed]
    assert len(decoded) == 6
