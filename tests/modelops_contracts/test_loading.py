"""Bounded parsing of study, space and targets files: size, depth, aliases, duplicate keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelops.analysis import load_targets
from modelops.sampling import ParameterSpace
from modelops_contracts import ContractViolationError, SimulationStudy
from modelops_contracts._loading import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_TASKS,
    bounded_repr,
    parse_json,
    parse_yaml,
)

STUDY_HEAD = "model: toy.fast\nparameter_sets:\n"


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """A YAML mapping whose last key expands to ``width ** levels`` strings."""
    lines = [f"  l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_in_a_parameter_value_is_refused_naming_its_line() -> None:
    text = STUDY_HEAD + "  - x: 1\n    bomb:\n" + alias_bomb().replace("  l", "      l")
    with pytest.raises(ContractViolationError, match=r"line 11: more than 10,000,000 values"):
        SimulationStudy.from_yaml(text)


def test_alias_bomb_in_metadata_is_refused() -> None:
    text = STUDY_HEAD + "  - x: 1\nmetadata:\n" + alias_bomb()
    with pytest.raises(ContractViolationError, match="once its aliases are expanded") as caught:
        SimulationStudy.from_yaml(text)
    assert len(str(caught.value)) < 200


def test_small_aliases_still_work() -> None:
    text = STUDY_HEAD + "  - &base {x: 1, y: 2}\n  - {<<: *base, y: 3}\nmetadata: {a: *base}\n"
    study = SimulationStudy.from_yaml(text)
    assert study.parameter_sets == [{"x": 1, "y": 2}, {"x": 1, "y": 3}]
    assert study.metadata == {"a": {"x": 1, "y": 2}}


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(ContractViolationError, match=r"line 3: alias \*r refers to itself"):
        SimulationStudy.from_yaml(STUDY_HEAD + "  - x: &r [1, *r]\n")


@pytest.mark.parametrize("depth", [MAX_DEPTH, 10_000])
def test_deep_yaml_nesting_is_refused(depth: int) -> None:
    text = STUDY_HEAD + "  - x: " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(ContractViolationError, match=f"nested deeper than {MAX_DEPTH} levels"):
        SimulationStudy.from_yaml(text)


def test_deep_nesting_through_an_alias_is_refused() -> None:
    inner = "[" * 40 + "]" * 40
    text = f"a: &deep {inner}\nb: {'[' * 30}*deep{']' * 30}\n"
    with pytest.raises(ContractViolationError, match="line 2: nested deeper"):
        parse_yaml(text, what="file")


def test_nesting_within_the_limit_is_read() -> None:
    depth = MAX_DEPTH - 2  # the mapping and the list holding it are two more levels
    value = parse_yaml("a:\n  - " + "[" * depth + "]" * depth + "\n", what="file")
    for _ in range(depth):
        value = value[0] if isinstance(value, list) and value else value
    assert parse_json(json.dumps({"a": [[[[]]]]}), what="file") == {"a": [[[[]]]]}


def test_deep_json_nesting_is_refused() -> None:
    text = '{"model": "toy.fast", "parameter_sets": [{"x": ' + "[" * 10_000 + "]" * 10_000 + "}]}"
    with pytest.raises(ContractViolationError, match="nested deeper than 64 levels"):
        SimulationStudy.from_json(text)


def test_duplicate_yaml_key_names_the_key_and_both_lines() -> None:
    text = STUDY_HEAD + "  - beta: 1\n    gamma: 2\n    beta: 3\n"
    with pytest.raises(ContractViolationError) as caught:
        SimulationStudy.from_yaml(text)
    assert str(caught.value) == "study file, line 5: duplicate key 'beta' (first on line 3)"


def test_duplicate_top_level_yaml_key_is_refused() -> None:
    with pytest.raises(ContractViolationError, match="line 4: duplicate key 'model'"):
        SimulationStudy.from_yaml(STUDY_HEAD + "  - x: 1\nmodel: other.fn\n")


def test_duplicate_json_key_names_the_key_and_its_line(tmp_path: Path) -> None:
    path = tmp_path / "study.json"
    path.write_text('{"model": "toy.fast",\n "parameter_sets": [{"x": 1},\n {"x": 2, "x": 3}]}')
    with pytest.raises(ContractViolationError) as caught:
        SimulationStudy.load(path)
    assert str(caught.value) == f"study file {str(path)!r}, line 3: duplicate key 'x'"


def test_the_same_key_in_different_mappings_is_fine() -> None:
    study = SimulationStudy.from_yaml(STUDY_HEAD + "  - x: 1\n  - x: 2\n")
    assert study.parameter_sets == [{"x": 1}, {"x": 2}]


def test_too_large_study_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    with path.open("wb") as handle:  # sparse: the size is checked before anything is read
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ContractViolationError, match=r"is 64 MB, more than the limit of 64 MB"):
        SimulationStudy.load(path)


def test_huge_integer_is_one_line() -> None:
    with pytest.raises(ContractViolationError, match="not valid YAML: Exceeds the limit"):
        SimulationStudy.from_yaml(STUDY_HEAD + "  - x: " + "9" * 5000 + "\n")


def test_task_count_is_checked_before_any_task_is_built() -> None:
    """The study itself is refused, so nothing (not even a worker) starts for it."""
    message = (
        f"the study has 1,000,000,000 tasks (1 parameter sets x 1,000,000,000 replicates), "
        f"more than the limit of {MAX_TASKS:,} per job; split it into several studies"
    )
    with pytest.raises(ContractViolationError) as caught:
        SimulationStudy(model="toy.fast", parameter_sets=[{"x": 1}], n_replicates=10**9)
    assert str(caught.value).endswith(message)
    with pytest.raises(ContractViolationError, match="1,000,000,000 tasks"):
        SimulationStudy.from_yaml(
            "model: toy.fast\nparameter_sets: [{x: 1}]\nn_replicates: 1000000000\n"
        )


def test_task_count_at_the_limit_is_accepted() -> None:
    study = SimulationStudy(model="toy.fast", parameter_sets=[{"x": 1}, {"x": 2}], n_replicates=3)
    assert study.total_simulation_count() == 6


def test_bounded_repr_stays_short_and_fast() -> None:
    shared = ["lol"] * 10
    for _ in range(8):
        shared = [shared] * 10  # 10**9 strings once expanded
    assert len(bounded_repr(shared)) <= 80
    assert bounded_repr(10**5000) == "<int of 16610 bits>"
    assert (
        bounded_repr({i: i for i in range(10**5)})
        == "{0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, ... (100000 keys)}"
    )


def test_error_for_a_huge_bad_value_is_short() -> None:
    shared: list[object] = [1.5] * 10
    for _ in range(8):
        shared = [shared] * 10
    with pytest.raises(ContractViolationError) as caught:
        SimulationStudy(model="toy.fast", parameter_sets=[{"x": 1}], n_replicates=shared)
    assert len(str(caught.value)) < 300


def test_space_file_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("beta: {lower: 0.1, upper: 1}\nbeta: {lower: 0.2, upper: 2}\n")
    with pytest.raises(ContractViolationError, match="line 2: duplicate key 'beta'"):
        ParameterSpace.from_file(path)


def test_targets_file_alias_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text("bomb:\n" + alias_bomb() + "targets: []\n")
    with pytest.raises(ContractViolationError, match="once its aliases are expanded"):
        load_targets(path)


def test_targets_json_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    path.write_text('{"targets": [],\n "targets": []}')
    with pytest.raises(ContractViolationError, match="line 2: duplicate key 'targets'"):
        load_targets(path)
