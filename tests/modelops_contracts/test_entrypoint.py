from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_contracts import (
    ContractViolationError,
    format_entrypoint,
    parse_entrypoint,
    validate_scenario,
)

slugs = st.from_regex(r"\A[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?\Z")


def test_round_trip() -> None:
    assert format_entrypoint("pkg.models.SIR", "lockdown-2") == "pkg.models.SIR/lockdown-2"
    assert parse_entrypoint("pkg.models.SIR/lockdown-2") == ("pkg.models.SIR", "lockdown-2")
    assert format_entrypoint("sir.SIR") == "sir.SIR/baseline"


@given(slugs)
def test_every_slug_round_trips(scenario: str) -> None:
    assert parse_entrypoint(format_entrypoint("m.Obj", scenario)) == ("m.Obj", scenario)


@pytest.mark.parametrize(
    "scenario", ["", "Baseline", "-a", "a-", "a b", "a/b", "x" * 65, "é", "a_", ".a"]
)
def test_bad_scenarios(scenario: str) -> None:
    with pytest.raises(ContractViolationError, match="scenario"):
        validate_scenario(scenario)


def test_scenario_length_limits() -> None:
    assert validate_scenario("a") == "a"
    assert validate_scenario("a" * 64) == "a" * 64


@pytest.mark.parametrize(
    "entrypoint",
    [
        "sir.SIR",
        "sir.SIR/",
        "/baseline",
        "sir/baseline",
        "sir.SIR/base/line",
        "1sir.SIR/x",
        "a..b/x",
    ],
)
def test_bad_entrypoints(entrypoint: str) -> None:
    with pytest.raises(ContractViolationError) as info:
        parse_entrypoint(entrypoint)
    assert info.value.field in {"entrypoint", "import_path", "scenario"}
    assert info.value.value in {entrypoint, *entrypoint.split("/")}
