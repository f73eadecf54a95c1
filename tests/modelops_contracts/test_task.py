from __future__ import annotations

import pickle

import pytest

from modelops_contracts import ContractViolationError, SimTask, UniqueParameterSet
from modelops_contracts.task import bundle_digest
from tests.conftest import KNOWN_PARAM_ID, KNOWN_PARAMS


def _task(ref: str, /, **changes: object) -> SimTask:
    fields: dict[str, object] = {
        "bundle_ref": ref,
        "entrypoint": "sir.SIR/baseline",
        "params": KNOWN_PARAMS,
        "seed": 42,
        "outputs": None,
        "config": None,
    }
    fields.update(changes)
    return SimTask(**fields)  # type: ignore[arg-type]


def test_from_components(bundle_ref: str) -> None:
    task = SimTask.from_components("sir.SIR", "lockdown", bundle_ref, KNOWN_PARAMS, 7, ["b", "a"])
    assert task.entrypoint == "sir.SIR/lockdown"
    assert task.import_path == "sir.SIR" and task.scenario == "lockdown"
    assert task.params.param_id == KNOWN_PARAM_ID == task.param_id
    assert task.outputs == ("a", "b")
    assert isinstance(task.params, UniqueParameterSet)


def test_outputs_are_sorted_unique(bundle_ref: str) -> None:
    assert _task(bundle_ref, outputs=["z", "a", "z"]).outputs == ("a", "z")
    assert (
        _task(bundle_ref, outputs=("a", "z")).task_id
        == _task(bundle_ref, outputs=["z", "a"]).task_id
    )
    with pytest.raises(ContractViolationError, match="at least one"):
        _task(bundle_ref, outputs=[])


@pytest.mark.parametrize(
    "change",
    [
        {"bundle_ref": "sha256:" + "cd" * 32},
        {"entrypoint": "sir.SIR/lockdown"},
        {"entrypoint": "sir.SEIR/baseline"},
        {"params": {"beta": 0.5, "gamma": 0.2}},
        {"seed": 43},
        {"outputs": ["summary"]},
        {"config": {"days": 10}},
    ],
)
def test_task_id_changes_with_every_component(bundle_ref: str, change: dict[str, object]) -> None:
    assert _task(bundle_ref).task_id != _task(bundle_ref, **change).task_id


def test_task_id_ignores_the_repository_part_and_key_order(bundle_ref: str) -> None:
    plain = _task(bundle_ref, config={"a": 1, "b": 2})
    assert plain.task_id == _task("registry/sir@" + bundle_ref, config={"b": 2, "a": 1}).task_id
    assert len(plain.task_id) == 64


def test_json_round_trip_is_exact(bundle_ref: str) -> None:
    task = _task(bundle_ref, outputs=["incidence"], config={"days": 30, "nested": {"x": [1, 2]}})
    text = task.to_json()
    back = SimTask.from_json(text)
    assert back == task and back.to_json() == text and back.task_id == task.task_id
    assert SimTask.from_dict(task.to_dict()) == task
    assert pickle.loads(pickle.dumps(task)) == task


def test_params_accept_the_wire_form_and_verify_its_id(bundle_ref: str) -> None:
    wire = {"param_id": KNOWN_PARAM_ID, "params": KNOWN_PARAMS}
    assert _task(bundle_ref, params=wire).param_id == KNOWN_PARAM_ID
    with pytest.raises(ContractViolationError, match="does not match"):
        _task(bundle_ref, params={"param_id": "0" * 64, "params": KNOWN_PARAMS})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bundle_ref": "sha256:abc"}, "bundle_ref"),
        ({"bundle_ref": "md5:" + "a" * 64}, "bundle_ref"),
        ({"bundle_ref": "sha256:" + "A" * 64}, "bundle_ref"),
        ({"entrypoint": "sir.SIR"}, "entrypoint"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"seed": 1.0}, "seed"),
        ({"params": {"beta": float("nan")}}, "beta"),
        ({"config": {"f": float("inf")}}, "config"),
        ({"outputs": ["bad name"]}, "outputs"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_fields_raise_contract_errors_naming_them(
    bundle_ref: str, change: dict[str, object], field: str
) -> None:
    with pytest.raises(ContractViolationError, match=field):
        _task(bundle_ref, **change)


def test_seed_limits(bundle_ref: str) -> None:
    assert _task(bundle_ref, seed=0).seed == 0
    assert _task(bundle_ref, seed=2**64 - 1).seed == 2**64 - 1


def test_tasks_are_immutable(bundle_ref: str) -> None:
    task = _task(bundle_ref)
    with pytest.raises(ValueError, match="frozen"):
        task.seed = 3  # type: ignore[misc]


HEX = "ab" * 32


def test_bundle_digest_accepts_both_ref_forms() -> None:
    assert bundle_digest(f"sha256:{HEX}") == HEX
    assert bundle_digest(f"ghcr.io/org/model@sha256:{HEX}") == HEX


@pytest.mark.parametrize(
    "ref", ["", HEX, f"sha256:{HEX[:-1]}", f"sha256:{HEX.upper()}", f"md5:{HEX}", f"sha256:{HEX}\n"]
)
def test_bundle_digest_rejects_malformed_refs(ref: str) -> None:
    with pytest.raises(ContractViolationError, match="bundle_ref must be"):
        bundle_digest(ref)
