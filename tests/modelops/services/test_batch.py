"""Batch-cluster settings: where each one comes from, and what is refused before submitting."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops.services import backend_for
from modelops.services.batch import BatchSettings, check_batch_settings, load_batch_settings
from modelops.services.dask import DaskSimulationService
from modelops_contracts import ContractViolationError


def _user(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_flags_win_over_the_study_which_wins_over_the_user_file(tmp_path: Path) -> None:
    user = _user(tmp_path, "queue: long\nmemory: 8GB\ncores: 4\nkind: pbs\n")
    section = {"kind": "slurm", "queue": "short", "jobs": 3}
    settings = load_batch_settings(None, {"jobs": 5, "cores": None}, section, user)
    assert settings is not None
    assert settings.kind == "slurm"  # the study chose it; the user file's kind is not read
    assert (settings.jobs, settings.queue, settings.memory, settings.cores) == (
        5,
        "short",
        "8GB",
        4,
    )
    assert settings.walltime == BatchSettings().walltime


def test_no_cluster_unless_the_command_or_the_study_asks(tmp_path: Path) -> None:
    user = _user(tmp_path, "kind: slurm\nqueue: long\n")
    assert load_batch_settings(None, {}, None, user) is None
    assert load_batch_settings("slurm", {}, None, user) == BatchSettings(queue="long")
    extra = load_batch_settings("slurm", {"job_extra": "--qos=debug --exclusive"}, None, user)
    assert extra is not None and extra.job_extra == ("--qos=debug", "--exclusive")


@pytest.mark.parametrize(
    ("kind", "flags", "section", "message"),
    [
        ("k8s", {}, None, "unknown batch system 'k8s'"),
        ("slurm", {"jobs": 0}, None, "jobs must be a positive integer"),
        ("slurm", {}, {"cores": "many"}, "cores must be a positive integer"),
        ("slurm", {}, {"nodes": 2}, "unknown key(s) nodes"),
        ("slurm", {"start_timeout": -1}, None, "start_timeout must be a positive number"),
        ("slurm", {}, ["queue"], "must be a mapping"),
    ],
)
def test_bad_settings_are_named(
    tmp_path: Path, kind: str, flags: dict[str, object], section: object, message: str
) -> None:
    with pytest.raises(
        ContractViolationError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        load_batch_settings(kind, flags, section, tmp_path / "absent.yaml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (BatchSettings(walltime="1h"), "walltime must look like HH:MM:SS"),
        (BatchSettings(walltime="1:2:3:4"), "walltime must look like HH:MM:SS"),
        (BatchSettings(memory="lots"), "memory must be an amount"),
    ],
)
def test_malformed_walltime_or_memory(settings: BatchSettings, message: str) -> None:
    with pytest.raises(ContractViolationError, match=message):
        check_batch_settings(settings)


@pytest.mark.parametrize("walltime", ["04:00:00", "1-12:00:00", "30:00", "90"])
def test_walltimes_slurm_takes(walltime: str) -> None:
    check_batch_settings(BatchSettings(walltime=walltime, queue=None))  # sbatch is installed here


def test_backend_for_batch_settings() -> None:
    backend = backend_for(scheduler=None, workers=None, batch=BatchSettings(jobs=3, cores=2))
    assert isinstance(backend, DaskSimulationService)
    assert backend.workers == 6  # every job's threads: chunks wait for adaptive scaling
    assert backend.description.startswith("Dask on slurm (dask-jobqueue)")
    assert backend.status_line() is None and backend.provenance() == {}
    with pytest.raises(ContractViolationError, match="not both"):
        backend_for(scheduler="tcp://127.0.0.1:1", workers=None, batch=BatchSettings())
    with pytest.raises(ContractViolationError, match="jobs and cores"):
        backend_for(scheduler=None, workers=2, batch=BatchSettings())
