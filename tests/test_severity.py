"""The severity table, at and around every boundary; targets, cadence and escalation matrix."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runbooks import escalation
from runbooks.severity import LEVELS, classify

RANK = {level: i for i, level in enumerate(LEVELS)}  # P1 = 0: lower rank is more severe
EPS = 1e-6


# --- error rate: P3 from 1 %, P2 from 10 %, P1 from 99 % ("all requests failing"); boundaries go up


@pytest.mark.parametrize(
    "rate, level, threshold",
    [
        (0.0, "P4", None),
        (0.01 - EPS, "P4", None),
        (0.01, "P3", "1 %"),
        (0.01 + EPS, "P3", "1 %"),
        (0.05, "P3", "1 %"),
        (0.10 - EPS, "P3", "1 %"),
        (0.10, "P2", "10 %"),
        (0.1 * 3 / 3, "P2", "10 %"),
        (0.10 + EPS, "P2", "10 %"),
        (0.12, "P2", "10 %"),
        (0.99 - EPS, "P2", "10 %"),
        (0.99, "P1", "99 %"),
        (1.0, "P1", "99 %"),
    ],
)
def test_error_rate_boundaries(rate, level, threshold):
    result = classify(error_rate=rate)
    assert result.level == level
    if threshold:
        assert f"error rate >= {threshold}" in result.rule
        assert result.measured == {"error_rate": rate}
    else:
        assert "below every P1-P3 threshold" in result.rule


def test_a_ratio_float_arithmetic_puts_just_under_a_boundary_reads_as_the_boundary():
    assert 0.7 / 7 < 0.1  # 0.09999999999999999
    assert classify(error_rate=0.7 / 7).level == "P2"


@pytest.mark.parametrize(
    "ratio, level, threshold",
    [
        (1.0, "P4", None),
        (1.5 - EPS, "P4", None),
        (1.5, "P3", "1.5x"),
        (2.0, "P3", "1.5x"),
        (3.0 - EPS, "P3", "1.5x"),
        (3.0, "P2", "3x"),
        (10.0, "P2", "3x"),
    ],
)
def test_latency_boundaries(ratio, level, threshold):
    result = classify(latency_ratio=ratio)
    assert result.level == level
    if threshold:
        assert f"latency >= {threshold} normal" in result.rule
        assert result.measured == {"latency_ratio": ratio}


def test_latency_alone_never_makes_p1():
    assert classify(latency_ratio=1000.0).level == "P2"


def test_services_down_are_p2_and_critical_ones_p1():
    assert classify(services_down=["tax-service"]).level == "P2"
    assert classify(services_down=["tax-service"]).measured == {"services_down": ["tax-service"]}
    result = classify(services_down=["auth-service"], critical_services_down=["auth-service"])
    assert (result.level, result.measured) == ("P1", {"critical_services_down": ["auth-service"]})
    assert "Authentication system down" in result.rule


def test_the_highest_severity_wins_and_names_its_own_rule():
    # 2x latency (P3) at 12 % errors (P2): P2 by error rate.
    result = classify(error_rate=0.12, latency_ratio=2.0)
    assert (result.level, result.measured) == ("P2", {"error_rate": 0.12})
    # 4x latency (P2) at 0.5 % errors (P4): P2 by latency.
    result = classify(error_rate=0.005, latency_ratio=4.0)
    assert (result.level, result.measured) == ("P2", {"latency_ratio": 4.0})
    # 2x latency at 0.5 % errors: P3 by latency.
    result = classify(error_rate=0.005, latency_ratio=2.0)
    assert (result.level, result.measured) == ("P3", {"latency_ratio": 2.0})
    assert "latency >= 1.5x normal" in result.rule


def test_quiet_is_p4_with_every_measured_value_and_what_was_not_measured():
    result = classify(error_rate=0.002, latency_ratio=1.1)
    assert result.level == "P4"
    assert result.measured == {
        "error_rate": 0.002,
        "latency_ratio": 1.1,
        "services_down": [],
        "critical_services_down": [],
    }
    assert result.unmeasured == ()
    nothing = classify()
    assert nothing.level == "P4" and nothing.unmeasured == ("error_rate", "latency_ratio")
    assert classify(error_rate=float("nan")).unmeasured == ("error_rate", "latency_ratio")


@pytest.mark.parametrize("kwargs", [{"error_rate": 12.0}, {"error_rate": -0.1}, {"latency_ratio": float("inf")}])
def test_impossible_measurements_are_refused(kwargs):
    with pytest.raises(ValueError):
        classify(**kwargs)


rates = st.one_of(st.none(), st.floats(0, 1))
ratios = st.one_of(st.none(), st.floats(0, 100))
names = st.lists(st.sampled_from(["auth-service", "tax-service", "deal-service"]), max_size=3, unique=True)


@given(rates, rates, ratios)
def test_more_errors_never_lower_the_severity(a, b, ratio):
    low, high = sorted((a or 0, b or 0))
    assert RANK[classify(high, ratio).level] <= RANK[classify(low, ratio).level]


@given(rates, ratios, ratios)
def test_more_latency_never_lowers_the_severity(rate, a, b):
    low, high = sorted((a or 0, b or 0))
    assert RANK[classify(rate, high).level] <= RANK[classify(rate, low).level]


@given(rates, ratios, names, names)
def test_more_services_down_never_lower_the_severity(rate, ratio, down, more):
    both = sorted(set(down) | set(more))
    assert RANK[classify(rate, ratio, both).level] <= RANK[classify(rate, ratio, down).level]


@given(rates, ratios, names)
def test_the_rule_named_fired_on_the_value_reported(rate, ratio, down):
    result = classify(rate, ratio, down)
    for measure, value in result.measured.items():
        if result.level != "P4" and measure == "error_rate":
            assert value == rate and round(value, 9) >= {"P1": 0.99, "P2": 0.10, "P3": 0.01}[result.level]
        if result.level != "P4" and measure == "latency_ratio":
            assert value == ratio and round(value, 9) >= {"P2": 3.0, "P3": 1.5}[result.level]


# --- targets, cadence, escalation matrix

T0 = dt.datetime(2024, 11, 26, 14, 0, tzinfo=dt.timezone.utc)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.mark.parametrize(
    "level, response, resolution",
    [
        ("P1", 5, 60),
        ("P2", 15, 240),
        ("P3", 60, 24 * 60),
        ("P4", 240, 7 * 24 * 60),
    ],
)
def test_targets_are_the_runbook_documents(level, response, resolution):
    table = escalation.targets(level, T0, at(10)).set_index("target")
    assert table.loc["response", "due"] == at(response)
    assert table.loc["resolution", "due"] == at(resolution)
    assert table.loc["response", "overdue"] == (response <= 10)


def test_a_target_is_overdue_from_its_due_time_on():
    assert not escalation.targets("P2", T0, at(14)).set_index("target").loc["response", "overdue"]
    assert escalation.targets("P2", T0, at(15)).set_index("target").loc["response", "overdue"]


@pytest.mark.parametrize(
    "level, minutes, every, next_at",
    [
        ("P1", 0, 15, 15),
        ("P1", 14, 15, 15),
        ("P1", 15, 15, 30),
        ("P1", 16, 15, 30),
        ("P2", 0, 30, 30),
        ("P2", 29, 30, 30),
        ("P2", 30, 30, 60),
        ("P2", 95, 30, 120),
    ],
)
def test_next_update_is_the_next_multiple_of_the_cadence(level, minutes, every, next_at):
    cadence = escalation.cadence(level, T0, at(minutes))
    assert cadence.update_every == dt.timedelta(minutes=every)
    assert cadence.next_update == at(next_at)


def test_p3_and_p4_have_no_fixed_cadence():
    assert escalation.cadence("P3", T0, at(5)).communication == "At start, major updates, and resolution"
    assert escalation.cadence("P3", T0, at(5)).next_update is None
    assert escalation.cadence("P4", T0, at(5)).communication == "Internal only"


def engaged(level: str, minutes: float) -> list[str]:
    table = escalation.engagement(level, T0, at(minutes))
    return list(table.loc[table["engage_now"] & table["role"].notna(), "role"])


@pytest.mark.parametrize(
    "level, minutes, roles",
    [
        ("P1", 0, ["Primary On-Call", "Secondary On-Call"]),
        ("P1", 29.9, ["Primary On-Call", "Secondary On-Call"]),
        ("P1", 30, ["Primary On-Call", "Secondary On-Call", "Engineering Manager"]),
        ("P1", 60, ["Primary On-Call", "Secondary On-Call", "Engineering Manager", "VP Engineering"]),
        ("P1", 120, ["Primary On-Call", "Secondary On-Call", "Engineering Manager", "VP Engineering", "CTO"]),
        ("P2", 10, ["Primary On-Call"]),
        ("P2", 30, ["Primary On-Call", "Secondary On-Call"]),
        ("P2", 90, ["Primary On-Call", "Secondary On-Call", "Engineering Manager"]),
        ("P2", 121, ["Primary On-Call", "Secondary On-Call", "Engineering Manager", "VP Engineering"]),
        ("P3", 45, ["Primary On-Call"]),
        ("P3", 60, ["Primary On-Call", "Secondary On-Call"]),
        ("P3", 180, ["Primary On-Call", "Secondary On-Call", "Engineering Manager"]),
        ("P4", 600, ["Primary On-Call"]),
    ],
)
def test_escalation_matrix_is_cumulative_and_boundaries_escalate(level, minutes, roles):
    assert engaged(level, minutes) == roles


def test_engagement_lists_who_comes_next_with_contacts_and_the_runbook_documents_notes():
    table = escalation.engagement("P2", T0, at(10))
    manager = table[table["role"] == "Engineering Manager"].iloc[0]
    assert (manager["from"], manager["contact"], manager["backup"]) == (at(60), "@eng-manager", "@backup-manager")
    assert not manager["engage_now"]
    p3 = escalation.engagement("P3", T0, at(40))
    assert p3.loc[p3["column"] == "30-60 min", "note"].tolist() == ["Continue investigation"]


def test_a_start_in_the_future_or_an_unknown_severity_is_refused():
    with pytest.raises(ValueError, match="after now"):
        escalation.targets("P1", at(5), T0)
    with pytest.raises(ValueError, match="one of P1, P2, P3, P4"):
        escalation.cadence("SEV1", T0, at(5))


def test_a_feature_down_is_p2_a_feature_degraded_p3_and_features_not_looked_at_are_not_listed():
    down = classify(features_down=["Deal tax calculation"], features_degraded=["Email notifications"])
    assert (down.level, down.measured) == ("P2", {"features_down": ["Deal tax calculation"]})
    assert "Major feature completely unavailable" in down.rule
    degraded = classify(features_down=[], features_degraded=["Email notifications"])
    assert (degraded.level, degraded.measured) == ("P3", {"features_degraded": ["Email notifications"]})
    assert classify(features_down=[], features_degraded=[]).level == "P4"
    assert "features_down" not in classify(error_rate=0.0).measured
