"""The rollout plan: strict documents, the percentage over time, stable buckets that cover the fleet."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.rollout import (
    RolloutError,
    admits,
    bucket,
    exceeds_threshold,
    opens_at,
    parse_plan,
    percent_at,
    plan_document,
)

START = "2026-12-05T08:00:00Z"
T0 = datetime(2026, 12, 5, 8, tzinfo=UTC).timestamp()


def test_ramp_is_linear_from_start_to_duration() -> None:
    plan = parse_plan({"start": START, "duration": 1000, "failure_threshold": 2})
    assert plan.failure_threshold == 2
    assert percent_at(plan, T0 - 1) == 0
    assert percent_at(plan, T0) == 0
    assert percent_at(plan, T0 + 250) == pytest.approx(25)
    assert percent_at(plan, T0 + 1000) == 100
    assert percent_at(plan, T0 + 10**6) == 100


def test_steps_hold_each_percentage_until_the_next() -> None:
    plan = parse_plan(b'{"start": "2026-12-05T09:00:00+01:00", "steps": [{"offset": 60, "percent": 1},'
                      b' {"offset": 3600, "percent": 10}, {"offset": 7200, "percent": 100}]}')
    assert plan.start_ts == T0  # the zone is honoured
    assert percent_at(plan, T0 + 59) == 0
    assert percent_at(plan, T0 + 60) == 1
    assert percent_at(plan, T0 + 3599) == 1
    assert percent_at(plan, T0 + 3600) == 10
    assert percent_at(plan, T0 + 7200) == 100
    assert plan.failure_threshold is None


def test_zero_duration_is_everyone_at_start() -> None:
    plan = parse_plan({"start": START, "duration": 0})
    assert percent_at(plan, T0 - 0.001) == 0
    assert percent_at(plan, T0) == 100


def test_document_round_trips() -> None:
    doc = {"start": START, "steps": [{"offset": 0, "percent": 5}, {"offset": 10, "percent": 50}],
           "failure_threshold": 3.5}
    plan = parse_plan(doc)
    assert parse_plan(plan_document(plan)) == plan


@pytest.mark.parametrize(("doc", "message"), [
    ({"duration": 10}, "start"),
    ({"start": "2026-12-05T08:00:00", "duration": 10}, "timezone"),
    ({"start": "yesterday", "duration": 10}, "datetime"),
    ({"start": START}, "exactly one of"),
    ({"start": START, "duration": 10, "steps": [{"offset": 0, "percent": 1}]}, "exactly one of"),
    ({"start": START, "duration": -1}, "duration"),
    ({"start": START, "duration": 10**9}, "duration"),
    ({"start": START, "duration": "10"}, "duration"),
    ({"start": START, "steps": []}, "1 to 100 steps"),
    ({"start": START, "steps": [{"offset": 0, "percent": 101}]}, "percent"),
    ({"start": START, "steps": [{"offset": 0, "percent": -1}]}, "percent"),
    ({"start": START, "steps": [{"offset": 0, "percent": 10}, {"offset": 0, "percent": 20}]}, "time order"),
    ({"start": START, "steps": [{"offset": 0, "percent": 50}, {"offset": 9, "percent": 20}]},
     "never shrinks"),
    ({"start": START, "steps": [{"offset": 0, "percent": 5, "extra": 1}]}, "extra"),
    ({"start": START, "steps": [[0, 5]]}, "object"),
    ({"start": START, "duration": 10, "failure_threshold": 150}, "failure_threshold"),
    ({"start": START, "duration": 10, "speed": "fast"}, "speed"),
    ([], "object"),
    (b"{not json", "not JSON"),
])
def test_bad_plans_are_refused_naming_the_field(doc: object, message: str) -> None:
    with pytest.raises(RolloutError, match=message) as info:
        parse_plan(doc, source="release 1.2.3")
    assert isinstance(info.value, ZosUpgradeError)
    assert "release 1.2.3" in str(info.value)


ids = st.text(min_size=1, max_size=40)
releases = st.text(min_size=1, max_size=40)


@given(ids, releases)
def test_bucket_is_stable_and_in_range(node_id: str, release: str) -> None:
    b = bucket(node_id, release)
    assert 0 <= b < 100
    assert bucket(node_id, release) == b


@given(st.lists(ids, min_size=1, max_size=50, unique=True), releases,
       st.floats(0, 100), st.floats(0, 100))
def test_a_growing_percentage_only_adds_nodes(fleet: list[str], release: str, p1: float, p2: float) -> None:
    low, high = sorted((p1, p2))
    plan = parse_plan({"start": START, "duration": 100})
    admitted_low = {n for n in fleet if admits(plan, n, release, T0 + low)}
    admitted_high = {n for n in fleet if admits(plan, n, release, T0 + high)}
    assert admitted_low <= admitted_high
    assert {n for n in fleet if admits(plan, n, release, T0 + 100)} == set(fleet)  # 100 %: everyone
    assert not {n for n in fleet if admits(plan, n, release, T0)}                    # 0 %: nobody


@settings(max_examples=20, deadline=None)
@given(releases, st.integers(1, 99))
def test_the_admitted_share_follows_the_percentage(release: str, percent: int) -> None:
    fleet = [f"node-{i}" for i in range(4000)]
    plan = parse_plan({"start": START, "steps": [{"offset": 0, "percent": percent}]})
    share = sum(admits(plan, n, release, T0) for n in fleet) / len(fleet) * 100
    assert abs(share - percent) < 4  # ~6 standard deviations of a binomial over 4000 nodes at 50 %


def test_releases_shuffle_the_fleet() -> None:
    fleet = [f"node-{i}" for i in range(1000)]
    first_a = {n for n in fleet if bucket(n, "1.0.0") < 10}
    first_b = {n for n in fleet if bucket(n, "1.1.0") < 10}
    assert first_a and first_b and first_a != first_b


@given(st.floats(0, 99.999), st.sampled_from(["ramp", "steps"]))
def test_opens_at_is_when_the_node_is_admitted(node_bucket: float, kind: str) -> None:
    doc: dict[str, object] = {"start": START, "duration": 3600} if kind == "ramp" else {
        "start": START, "steps": [{"offset": 10, "percent": 20}, {"offset": 500, "percent": 100}]}
    plan = parse_plan(doc)
    at = opens_at(plan, node_bucket)
    assert at is not None
    assert percent_at(plan, at + 0.01) > node_bucket
    if at - 0.01 >= T0:
        assert percent_at(plan, at - 0.01) <= node_bucket + 1e-6


def test_opens_at_none_when_steps_stop_short() -> None:
    plan = parse_plan({"start": START, "steps": [{"offset": 0, "percent": 10}]})
    assert opens_at(plan, 50) is None
    assert opens_at(plan, 5) == T0


def test_the_failure_threshold() -> None:
    plan = parse_plan({"start": START, "duration": 10, "failure_threshold": 2})
    assert not exceeds_threshold(plan, 0, 0)
    assert not exceeds_threshold(plan, 2, 100)   # at the threshold: not past it
    assert exceeds_threshold(plan, 3, 100)
    assert exceeds_threshold(plan, 1, 10)
    assert not exceeds_threshold(parse_plan({"start": START, "duration": 10}), 10, 10)  # no threshold
    with pytest.raises(ValueError, match="between 0 and reported"):
        exceeds_threshold(plan, 11, 10)
