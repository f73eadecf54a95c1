"""Model declarations: parameters, scenarios, coercion of a task's parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelops.model import Model, Parameter, Scenario
from modelops_contracts.errors import ContractViolationError, ModelError


class Epi(Model):
    parameters = (
        Parameter("beta", 0.0, 2.0),
        Parameter("gamma", 0.01, 1.0, log=True, default=0.1),
        Parameter("population", 10, 1_000_000, kind="int", default=1000),
    )
    scenarios = (
        Scenario("lockdown", params={"beta": 0.1}, config={"reduction": 0.5}),
        Scenario("big-town", params={"population": 500_000.0}),
    )
    outputs = ("summary",)

    def simulate(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        return {"summary": {**params, "seed": seed, "config": dict(self.config)}}


# -- Parameter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "a", "lower": 1.0, "upper": 1.0}, "must be below"),
        ({"name": "a", "lower": 2.0, "upper": 1.0}, "must be below"),
        ({"name": "a", "lower": 0.0, "upper": 1.0, "log": True}, "log scale"),
        ({"name": "a", "lower": 0.5, "upper": 3, "kind": "int"}, "whole numbers"),
        ({"name": "a", "lower": 0.0, "upper": 1.0, "default": 2.0}, "bad default"),
        ({"name": "a", "lower": 0, "upper": 9, "kind": "int", "default": 1.5}, "bad default"),
        ({"name": "a", "lower": 0.0, "upper": float("inf")}, "finite"),
        ({"name": "a", "lower": 0.0, "upper": 1.0, "kind": "str"}, "kind"),
        ({"name": "not valid", "lower": 0.0, "upper": 1.0}, "identifier"),
        ({"name": "seed", "lower": 0.0, "upper": 1.0}, "key column"),
    ],
)
def test_parameter_rejects_bad_declarations(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ModelError, match=fragment):
        Parameter(**kwargs)


def test_parameter_normalises_bounds_and_default() -> None:
    p = Parameter("n", 1.0, 10.0, kind="int", default=5.0)
    assert (p.lower, p.upper, p.default) == (1, 10, 5)
    assert all(type(v) is int for v in (p.lower, p.upper, p.default))
    q = Parameter("x", 0, 1, default=1)
    assert (type(q.lower), type(q.default)) == (float, float)


def test_parameter_coerce() -> None:
    n = Parameter("n", 0, 100, kind="int")
    assert n.coerce(3.0) == 3 and type(n.coerce(3.0)) is int
    assert type(n.coerce(np.int64(7))) is int
    x = Parameter("x", 0.0, 1.0)
    assert type(x.coerce(1)) is float
    assert x.coerce(np.float32(0.5)) == 0.5
    with pytest.raises(ContractViolationError, match="int parameter"):
        n.coerce(1.5)
    with pytest.raises(ContractViolationError, match="outside"):
        x.coerce(1.5)
    for bad in (True, "0.5", None, float("nan")):
        with pytest.raises(ContractViolationError):
            x.coerce(bad)


def test_parameter_tolerates_rounding_at_a_bound() -> None:
    assert Parameter("x", 0.1, 0.5, log=True).coerce(0.5000000000000001) == pytest.approx(0.5)


# -- Model declaration -------------------------------------------------------------------------


def test_declaration_is_introspectable() -> None:
    assert [p.name for p in Epi.parameter_space()] == ["beta", "gamma", "population"]
    assert Epi.scenario_names() == ("baseline", "lockdown", "big-town")
    assert Epi.get_scenario("baseline").params == {}
    assert Epi.outputs == ("summary",)


def test_duplicate_parameter_is_rejected_at_class_creation() -> None:
    with pytest.raises(ModelError, match="'a' is declared twice"):

        class Bad(Model):
            parameters = (Parameter("a", 0, 1), Parameter("a", 0, 2))


def test_duplicate_scenario_is_rejected() -> None:
    with pytest.raises(ModelError, match="scenario 'x' is declared twice"):

        class Bad(Model):
            scenarios = (Scenario("x"), Scenario("x"))


def test_scenario_patching_unknown_parameter_is_rejected() -> None:
    with pytest.raises(ModelError, match=r"undeclared parameter\(s\) 'delta'.*declared: beta"):

        class Bad(Model):
            parameters = (Parameter("beta", 0, 1),)
            scenarios = (Scenario("strong", params={"delta": 2.0}),)


def test_scenario_patch_value_is_checked() -> None:
    with pytest.raises(ModelError, match="outside"):

        class Bad(Model):
            parameters = (Parameter("beta", 0, 1),)
            scenarios = (Scenario("strong", params={"beta": 2.0}),)


def test_baseline_must_not_patch() -> None:
    with pytest.raises(ModelError, match="must not patch"):

        class Bad(Model):
            parameters = (Parameter("beta", 0, 1),)
            scenarios = (Scenario("baseline", params={"beta": 0.5}),)


@pytest.mark.parametrize("name", ["Lockdown", "", "a b", "-x"])
def test_scenario_name_must_be_a_slug(name: str) -> None:
    with pytest.raises(ModelError, match="scenario"):
        Scenario(name)


def test_malformed_members_are_rejected() -> None:
    with pytest.raises(ModelError, match="Parameter objects"):

        class BadParams(Model):
            parameters = ({"name": "a"},)  # type: ignore[assignment]

    with pytest.raises(ModelError, match="not a string"):

        class BadOutputs(Model):
            outputs = "summary"

    with pytest.raises(ModelError, match="twice"):

        class TwiceOutputs(Model):
            outputs = ("a", "a")


# -- preparing a task's parameters -------------------------------------------------------------


def test_prepare_fills_defaults_and_coerces_kinds() -> None:
    prepared = Epi.prepare_params({"beta": 1, "population": 2000.0})
    assert prepared == {"beta": 1.0, "gamma": 0.1, "population": 2000}
    assert type(prepared["beta"]) is float
    assert type(prepared["population"]) is int


def test_prepare_rejects_fractional_int() -> None:
    with pytest.raises(ModelError, match=r"'population' is an int parameter, got 1\.5"):
        Epi.prepare_params({"beta": 0.5, "population": 1.5})


def test_prepare_rejects_unknown_and_missing() -> None:
    with pytest.raises(ModelError, match=r"no parameter\(s\) 'delta', 'eta'.*declared: beta"):
        Epi.prepare_params({"beta": 0.5, "eta": 1, "delta": 2})
    with pytest.raises(ModelError, match="'beta' is missing and has no default"):
        Epi.prepare_params({"gamma": 0.2})


def test_scenario_patch_is_applied_over_task_params() -> None:
    assert Epi.prepare_params({"beta": 1.5}, "lockdown")["beta"] == 0.1
    prepared = Epi.prepare_params({"beta": 1.5, "population": 20}, "big-town")
    assert prepared["population"] == 500_000 and type(prepared["population"]) is int


def test_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(ModelError, match=r"no scenario 'curfew'.*baseline, lockdown, big-town"):
        Epi.prepare_params({"beta": 0.5}, "curfew")


def test_run_sets_config_and_scenario() -> None:
    model = Epi()
    out = model.run({"beta": 1.0}, 7, scenario="lockdown", config={"days": 3, "reduction": 0.0})
    assert out["summary"]["config"] == {"days": 3, "reduction": 0.5}
    assert out["summary"]["beta"] == 0.1 and out["summary"]["seed"] == 7
    assert model.scenario == "lockdown"
    with pytest.raises(TypeError):
        model.config["days"] = 4  # type: ignore[index]


def test_unimplemented_simulate_raises() -> None:
    class Empty(Model):
        pass

    with pytest.raises(NotImplementedError):
        Empty().run({}, 0)
