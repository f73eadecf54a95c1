from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelops_contracts import (
    ContractViolationError,
    DuplicateParameterSetWarning,
    SimJob,
    SimulationStudy,
    replicate_seeds,
)
from tests.conftest import KNOWN_PARAM_ID, KNOWN_PARAMS, KNOWN_SEEDS


def _study(**changes: object) -> SimulationStudy:
    fields: dict[str, object] = {
        "model": "sir_model.SIR",
        "scenario": "baseline",
        "parameter_sets": [KNOWN_PARAMS, {"beta": 0.3, "gamma": 0.1}],
        "sampling_method": "grid",
        "n_replicates": 3,
    }
    fields.update(changes)
    return SimulationStudy(**fields)  # type: ignore[arg-type]


def test_positional_signature_matches_the_published_one() -> None:
    study = SimulationStudy("m.M", "baseline", [{"x": 1}], "grid", 2, ["out"], {"a": 1})
    assert (study.n_replicates, study.outputs, study.metadata) == (2, ("out",), {"a": 1})
    with pytest.raises(TypeError, match="multiple"):
        SimulationStudy("m.M", model="m.N", parameter_sets=[{"x": 1}])  # type: ignore[misc]


def test_to_simjob_uses_the_known_seeds(bundle_ref: str) -> None:
    job = _study().to_simjob(bundle_ref)
    groups = job.get_task_groups()
    assert [t.seed for t in groups[KNOWN_PARAM_ID]] == KNOWN_SEEDS
    assert job.task_count() == 6 == _study().total_simulation_count()
    assert _study().parameter_count() == 2
    task = job.tasks[0]
    assert task.entrypoint == "sir_model.SIR/baseline" and task.bundle_ref == bundle_ref
    assert job.metadata["study"]["n_replicates"] == 3
    job.validate()


def test_parameter_sets_hold_plain_dicts() -> None:
    study = _study(parameter_sets=[{"beta": np.float64(0.5), "gamma": 0.1}])
    assert study.parameter_sets == [KNOWN_PARAMS]
    assert type(study.parameter_sets[0]) is dict


def test_explicit_seed_entries_make_exactly_one_task(bundle_ref: str) -> None:
    study = _study(parameter_sets=[{"params": KNOWN_PARAMS, "seed": 11}, {"beta": 0.9}])
    job = study.to_simjob(bundle_ref)
    assert [t.seed for t in job.tasks] == [11, *replicate_seeds(job.tasks[1].param_id, 3)]
    assert study.total_simulation_count() == 4


def test_duplicates_after_canonicalisation_are_merged_with_a_warning(bundle_ref: str) -> None:
    study = _study(
        parameter_sets=[KNOWN_PARAMS, {"gamma": 0.1, "beta": np.float64(0.5)}, {"beta": 0.2}]
    )
    with pytest.warns(DuplicateParameterSetWarning, match="1 parameter set"):
        job = study.to_simjob(bundle_ref)
    assert job.task_count() == 6 == study.total_simulation_count()
    ids = [t.task_id for t in job.tasks]
    assert len(set(ids)) == len(ids)


def test_explicit_seed_equal_to_a_replicate_seed_is_not_duplicated(bundle_ref: str) -> None:
    study = _study(parameter_sets=[KNOWN_PARAMS, {"params": KNOWN_PARAMS, "seed": KNOWN_SEEDS[1]}])
    with pytest.warns(DuplicateParameterSetWarning):
        job = study.to_simjob(bundle_ref)
    assert [t.seed for t in job.tasks] == KNOWN_SEEDS


def test_default_job_id_is_derived_from_content(bundle_ref: str, other_bundle_ref: str) -> None:
    a = _study().to_simjob(bundle_ref).job_id
    assert (
        a
        == _study(metadata={"note": "metadata does not change results"})
        .to_simjob(bundle_ref)
        .job_id
    )
    assert a.startswith("job-") and len(a) == 20
    assert a != _study().to_simjob(other_bundle_ref).job_id
    assert a != _study(n_replicates=4).to_simjob(bundle_ref).job_id
    assert a != _study(scenario="lockdown").to_simjob(bundle_ref).job_id
    assert a != _study(outputs=["summary"]).to_simjob(bundle_ref).job_id
    assert a != _study(config={"days": 5}).to_simjob(bundle_ref).job_id
    assert _study().to_simjob(bundle_ref, "named").job_id == "named"


def test_a_design_record_names_the_job_but_not_its_tasks(bundle_ref: str) -> None:
    plain = _study().to_simjob(bundle_ref)
    small = _study(metadata={"design": {"method": "morris", "trajectories": 4}}).to_simjob(
        bundle_ref
    )
    large = _study(metadata={"design": {"method": "morris", "trajectories": 8}}).to_simjob(
        bundle_ref
    )
    assert len({plain.job_id, small.job_id, large.job_id}) == 3
    assert small.job_id.startswith("job-") and len(small.job_id) == 20
    assert plain.content_digest() == small.content_digest() == large.content_digest()
    assert [t.task_id for t in small.tasks] == [t.task_id for t in plain.tasks]
    again = _study(metadata={"note": "x", "design": {"trajectories": 4, "method": "morris"}})
    assert again.to_simjob(bundle_ref).job_id == small.job_id


def test_job_id_is_stable_across_processes(bundle_ref: str) -> None:
    code = (
        "from modelops_contracts import SimulationStudy as S;"
        f"print(S.from_json({_study().to_json()!r}).to_simjob({bundle_ref!r}).job_id)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _study().to_simjob(bundle_ref).job_id


def test_json_and_yaml_round_trips_are_exact(tmp_path: Path) -> None:
    study = _study(
        parameter_sets=[KNOWN_PARAMS, {"params": {"beta": 0.2}, "seed": 3}],
        outputs=["summary", "incidence"],
        config={"days": 50},
        metadata={"sampler": {"n": 2}},
    )
    assert SimulationStudy.from_json(study.to_json()) == study
    assert SimulationStudy.from_yaml(study.to_yaml()) == study
    assert json.loads(study.to_json())["format_version"] == 2
    (tmp_path / "s.yaml").write_text(study.to_yaml())
    (tmp_path / "s.json").write_text(study.to_json())
    assert SimulationStudy.load(tmp_path / "s.yaml") == SimulationStudy.load(tmp_path / "s.json")


def test_hand_written_yaml_needs_no_format_version(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(
        "model: sir_model.SIR\nparameter_sets:\n  - {beta: 0.5, gamma: 0.1}\nn_replicates: 2\n"
    )
    study = SimulationStudy.load(path)
    assert study.scenario == "baseline" and study.sampling_method == "manual"
    assert study.total_simulation_count() == 2


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("model: [unclosed", "not valid YAML"),
        ("- 1\n- 2\n", "mapping"),
        ("model: m.M\nparameter_sets: []\n", "parameter_sets"),
        ("model: m.M\nparameter_sets: [{beta: .nan}]\n", "beta"),
        ("model: m.M\nparameter_sets: [{beta: [1]}]\n", "beta"),
        ("model: m.M\nparameter_sets: [{beta: 1}]\nn_replicates: 0\n", "n_replicates"),
        ("model: m.M\nparameter_sets: [{beta: 1}]\nscenario: Bad\n", "scenario"),
        ("model: m.M\nparameter_sets: [{beta: 1}]\nreplicates: 3\n", "replicates"),
        ("model: m.M\nparameter_sets: [{params: {beta: 1}, seed: -2}]\n", "seed"),
        ("model: m.M\nparameter_sets: [{params: {beta: 1}, seed: 1, x: 2}]\n", "params"),
        ("model: m.M\nparameter_sets: [{beta: 1}]\nformat_version: 7\n", "newer"),
    ],
)
def test_bad_study_files_give_one_line_contract_errors(text: str, match: str) -> None:
    with pytest.raises(ContractViolationError, match=match) as info:
        SimulationStudy.from_yaml(text)
    assert "\n" not in str(info.value)


def test_missing_study_file(tmp_path: Path) -> None:
    with pytest.raises(ContractViolationError, match="cannot read study file"):
        SimulationStudy.load(tmp_path / "nope.yaml")


def test_compiled_job_round_trips_through_its_file(bundle_ref: str) -> None:
    job = _study().to_simjob(bundle_ref)
    assert SimJob.from_json(job.to_json()) == job


def test_targets_travel_with_the_job_and_never_change_its_id(bundle_ref: str) -> None:
    targets = [{"name": "cases", "output": "incidence", "data": "observed.csv"}]
    job = _study(targets=targets).to_simjob(bundle_ref)
    assert job.target_spec == {"targets": targets}
    assert job.job_id == _study().to_simjob(bundle_ref).job_id
    assert _study().to_simjob(bundle_ref).target_spec is None
    yaml_text = "model: m.M\nparameter_sets: [{x: 1}]\ntargets:\n  - {name: c, on: [day]}\n"
    assert SimulationStudy.from_yaml(yaml_text).targets == [{"name": "c", "on": ["day"]}]


def test_default_job_ids_do_not_change_between_versions(bundle_ref: str) -> None:
    # a re-run of the same study with a newer ModelOps must find (and resume) the same job
    job = SimulationStudy("m.M", "baseline", [{"x": 1}], "grid", 2).to_simjob(bundle_ref)
    assert job.job_id == "job-433cc3a80d46f4c4" == "job-" + job.content_digest()


# -- one kind per parameter across the study ---------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "kinds"),
    [
        (1, "x", ("int", "str")),
        (True, 1, ("bool", "int")),
        (0.5, False, ("float", "bool")),
        ("a", 2.5, ("str", "float")),
    ],
)
def test_a_parameter_of_two_kinds_is_refused(first: object, second: object, kinds: tuple) -> None:
    sets = [{"a": first, "b": 1}, {"b": 2}, {"a": second, "b": 3}]
    with pytest.raises(ContractViolationError) as info:
        _study(parameter_sets=sets)
    message = str(info.value)
    assert f"parameter 'a' is {kinds[0]} in parameter_sets[0] but {kinds[1]}" in message
    assert "parameter_sets[2]" in message and "\n" not in message
    assert info.value.field == "parameter_sets[2].a"


def test_explicit_seed_entries_count_for_the_kind_too() -> None:
    sets = [{"params": {"a": "x"}, "seed": 3}, {"a": 1}]
    with pytest.raises(ContractViolationError, match="'a' is str in parameter_sets"):
        _study(parameter_sets=sets)


def test_a_study_file_with_two_kinds_is_one_line() -> None:
    text = "model: m.M\nparameter_sets: [{a: 1}, {a: x}]\n"
    with pytest.raises(ContractViolationError, match=r"'a' is int .* but str") as info:
        SimulationStudy.from_yaml(text)
    assert "\n" not in str(info.value)


def test_ints_and_floats_mix_and_keep_their_ids(bundle_ref: str) -> None:
    from modelops_contracts import make_param_id

    sets = [{"a": 1}, {"a": 0.5}, {"a": np.int64(2)}]
    job = _study(parameter_sets=sets, n_replicates=1).to_simjob(bundle_ref)
    assert [t.param_id for t in job.tasks] == [make_param_id(s) for s in sets]
    assert [type(t.params["a"]) for t in job.tasks] == [int, float, int]


def test_a_parameter_beyond_64_bits_is_refused() -> None:
    with pytest.raises(ContractViolationError, match=r"parameter_sets\[1\]: .*'a'.* 64-bit"):
        _study(parameter_sets=[{"a": 1}, {"a": 2**70}])
