"""ParameterSpace: from a Model, from space files, bounds checks, fixing values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import modelops.sampling as sampling
from modelops.model import Model, Parameter
from modelops.sampling import ParameterSpace
from modelops_contracts import ContractViolationError


class Toy(Model):
    parameters = (
        Parameter("rate", 0.1, 10.0, log=True),
        Parameter("size", 1, 5, kind="int"),
    )


def test_public_names() -> None:
    assert sampling.__all__ == sorted(sampling.__all__, key=lambda n: (not n.isupper(), n))
    for name in sampling.__all__:
        assert hasattr(sampling, name)


def test_from_model_takes_declared_parameters_and_import_path() -> None:
    space = ParameterSpace.from_model(Toy)
    assert space.names == ("rate", "size")
    assert space.model == f"{__name__}.Toy"


def test_space_file_round_trips(tmp_path: Path) -> None:
    text = (
        "beta: {lower: 0.05, upper: 1.0}\n"
        "pop: {lower: 100, upper: 100000, kind: int, scale: log}\n"
        "fixed: {initial: 10}\n"
    )
    path = tmp_path / "space.yaml"
    path.write_text(text)
    space = ParameterSpace.from_file(path)
    assert space.names == ("beta", "pop")
    assert space.parameters[1].log and space.parameters[1].kind == "int"
    assert space.fixed == {"initial": 10}
    as_json = tmp_path / "space.json"
    as_json.write_text(json.dumps(space.to_dict()))
    assert ParameterSpace.from_file(as_json) == space


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"x": {"lower": 2, "upper": 1}}, "below upper"),
        ({"x": {"lower": 0, "upper": 1, "scale": "log"}}, "log scale needs lower > 0"),
        ({"x": {"lower": 0.5, "upper": 3, "kind": "int"}}, "whole numbers"),
        ({"x": {"lower": 0, "upper": 1, "scale": "cubic"}}, "scale must be"),
        ({"x": {"lower": 0, "upper": 1, "step": 2}}, "unknown key"),
        ({"x": {"lower": 0}}, "'lower' and 'upper'"),
        ({"x": {"lower": 0, "upper": 1}, "fixed": {"y": "a"}}, "finite number"),
        ({"x": {"lower": 0, "upper": 1}, "fixed": {"x": 0.5}}, "both sampled and fixed"),
    ],
)
def test_bad_space_names_the_parameter(spec: dict[str, object], words: str) -> None:
    with pytest.raises(ContractViolationError, match=words) as info:
        ParameterSpace.from_dict(spec)
    assert "\n" not in str(info.value)
    assert "'x'" in str(info.value) or "'y'" in str(info.value)


def test_with_fixed_coerces_and_stops_sampling() -> None:
    space = ParameterSpace.from_model(Toy).with_fixed({"size": 3.0})
    assert space.names == ("rate",)
    assert space.fixed == {"size": 3} and type(space.fixed["size"]) is int
    with pytest.raises(ContractViolationError, match="unknown parameter 'nope'"):
        ParameterSpace.from_model(Toy).with_fixed({"nope": 1})
    with pytest.raises(ContractViolationError, match="outside"):
        ParameterSpace.from_model(Toy).with_fixed({"size": 9})


def test_scale_is_log_uniform_and_int_bins_are_equal() -> None:
    space = ParameterSpace.from_model(Toy)
    unit = np.array([[0.0, 0.0], [0.5, 0.39], [1.0, 0.99999], [0.25, 0.4]])
    points = space.scale(unit)
    assert [p["rate"] for p in points[:3]] == pytest.approx([0.1, 1.0, 10.0])
    assert [p["size"] for p in points] == [1, 2, 5, 3]
    assert all(type(p["size"]) is int and type(p["rate"]) is float for p in points)
