"""load_space and parse_fixes: spaces and fixed values from user text, errors without CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops.sampling import lhs, load_space, parse_fixes
from modelops_contracts import ContractViolationError, ModelError

SIR_DIR = Path(__file__).resolve().parents[3] / "examples" / "sir"


def test_a_model_path_gives_its_declared_parameters() -> None:
    space = load_space("sir_model.SIR", SIR_DIR)
    assert space.names == ("beta", "gamma", "population", "initial_infected")
    assert space.model == "sir_model.SIR"
    with pytest.raises(ContractViolationError, match="unknown parameter 'nope'"):
        space.with_fixed({"nope": 1})


def test_a_space_file_takes_the_model_path(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("beta: {lower: 0.1, upper: 0.9}\nfixed: {population: 1000}\n")
    space = load_space(path, model="sir_model.SIR")
    assert space.names == ("beta",) and space.fixed == {"population": 1000}
    study = lhs(space, 4, seed=1)  # no model argument: the space knows it
    assert study.model == "sir_model.SIR"


def test_a_space_file_without_a_model_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("beta: {lower: 0.1, upper: 0.9}\n")
    with pytest.raises(ContractViolationError) as caught:
        load_space(path)
    assert caught.value.field == "model"
    assert str(caught.value) == "a space file needs the model's import path"


def test_an_unknown_scenario_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="nope"):
        load_space("sir_model.SIR", SIR_DIR, scenario="nope")


def test_fixes_are_numbers_ints_where_they_read_as_ints() -> None:
    got = parse_fixes(["population=1000", " beta = 0.25", "gamma=1e-2"])
    assert got == {"population": 1000, "beta": 0.25, "gamma": 0.01}
    assert type(got["population"]) is int and type(got["beta"]) is float


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("beta", "fixed value 'beta' is not name=value"),
        ("=3", "fixed value '=3' is not name=value"),
        ("beta=high", "fixed value of 'beta' must be a number, got 'high'"),
    ],
)
def test_bad_fixes_name_the_item_not_a_flag(item: str, message: str) -> None:
    with pytest.raises(ContractViolationError) as caught:
        parse_fixes([item])
    assert str(caught.value) == message and caught.value.field == "fix"
