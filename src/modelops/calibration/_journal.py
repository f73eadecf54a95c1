"""The journal: a calibration's record in the store, written as each round completes.

``<store>/calibrations/<id>/`` holds

- ``calibration.json``: the spec (:class:`CalibrationSpec`), the status and, once finished,
  the answer and the jobs it came from;
- ``evaluations.parquet``: one row per point asked (generation, point, param_id, parameters,
  loss, loss_se, n_replicates, job_id), rewritten whole after each round;
- ``populations.json`` and ``posterior.parquet`` (ABC-SMC): each complete population with its
  epsilon and kernel covariance, and its particles (population, parameters, weight, distance,
  epsilon);
- ``best.json``: the answer, once the top points are re-evaluated.

Every file is replaced atomically (temporary name, fsync, rename), so a kill at any moment
leaves the journal as it was after some round. The evaluations are the source of truth on
resume: the algorithm is replayed through them in order, which also restores the ABC
populations; those files are for reading.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops.store._fs import TEMP_PREFIX, atomic_write_bytes, check_name
from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    import pyarrow as pa

    from modelops.calibration._algorithms import Population
    from modelops.calibration._spec import CalibrationSpec

__all__ = [
    "BEST_FILE",
    "CALIBRATIONS_DIR",
    "EVALUATIONS_FILE",
    "POSTERIOR_FILE",
    "Evaluation",
    "Journal",
    "list_journals",
    "param_columns",
]

CALIBRATIONS_DIR = "calibrations"
SPEC_FILE = "calibration.json"
EVALUATIONS_FILE = "evaluations.parquet"
POSTERIOR_FILE = "posterior.parquet"
POPULATIONS_FILE = "populations.json"
BEST_FILE = "best.json"

_EVALUATION_COLUMNS = frozenset(
    {"generation", "point", "param_id", "loss", "loss_se", "n_replicates", "job_id"}
)
_POSTERIOR_COLUMNS = frozenset({"population", "weight", "distance", "epsilon"})


@dataclass(frozen=True)
class Evaluation:
    """One point asked by the algorithm, and what its replicates scored."""

    generation: int
    point: int
    param_id: str
    params: Mapping[str, int | float]
    loss: float | None  # None: failed, missing points or not finite
    loss_se: float | None
    n_replicates: int
    job_id: str


class Journal:
    """The files of one calibration in a store (see the module docstring)."""

    def __init__(self, store_root: Path, calibration_id: str) -> None:
        self.calibration_id = check_name("calibration id", calibration_id)
        self.directory = Path(store_root) / CALIBRATIONS_DIR / calibration_id

    # -- reading ---------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.directory / SPEC_FILE).is_file()

    def record(self) -> dict[str, Any]:
        """``calibration.json``: spec, status, and the answer once finished.

        Raises:
            StoreError: no such calibration, or its file is unreadable.
        """
        path = self.directory / SPEC_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreError(
                f"no calibration {self.calibration_id} in {self.directory.parent.parent}",
                hint="`mops calibrations` lists the calibrations of a store",
            ) from None
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise StoreError(f"{path} is not a calibration record")
        return data

    def spec(self) -> CalibrationSpec:
        from modelops.calibration._spec import CalibrationSpec

        return CalibrationSpec.from_dict(self.record()["spec"])

    def finished(self) -> bool:
        return self.exists() and self.record().get("status") == "finished"

    def evaluations(self, names: Sequence[str]) -> list[Evaluation]:
        """Every journaled point, in the order asked; ``names`` are the parameters."""
        path = self.directory / EVALUATIONS_FILE
        if not path.is_file():
            return []
        import pyarrow.parquet as pq

        columns = pq.read_table(path).to_pydict()
        where = param_columns(names)
        return [
            Evaluation(
                generation=columns["generation"][i],
                point=columns["point"][i],
                param_id=columns["param_id"][i],
                params={n: columns[where[n]][i] for n in names},
                loss=columns["loss"][i],
                loss_se=columns["loss_se"][i],
                n_replicates=columns["n_replicates"][i],
                job_id=columns["job_id"][i],
            )
            for i in range(len(columns["generation"]))
        ]

    def populations_written(self) -> int:
        """How many ABC-SMC populations ``populations.json`` holds."""
        path = self.directory / POPULATIONS_FILE
        if not path.is_file():
            return 0
        return len(json.loads(path.read_text(encoding="utf-8"))["populations"])

    # -- writing ---------------------------------------------------------------------------

    def start(self, spec: CalibrationSpec) -> None:
        """Create the journal, unless it exists (the directory's name is the spec's digest)."""
        if self.exists():
            return
        for leftover in self.directory.glob(f"{TEMP_PREFIX}*"):
            leftover.unlink(missing_ok=True)  # a kill mid-write left it
        self._write_json(
            SPEC_FILE,
            {"calibration_id": self.calibration_id, "status": "running", "spec": spec.to_dict()},
        )

    def write_evaluations(self, rows: Sequence[Evaluation], space_names: Sequence[str]) -> None:
        """Replace ``evaluations.parquet`` with ``rows`` (all rounds so far)."""
        import pyarrow as pa

        columns: dict[str, pa.Array] = {
            "generation": pa.array([r.generation for r in rows], pa.int64()),
            "point": pa.array([r.point for r in rows], pa.int64()),
            "param_id": pa.array([r.param_id for r in rows], pa.string()),
        }
        for name, column in param_columns(space_names).items():
            columns[column] = _values([r.params[name] for r in rows])
        columns["loss"] = pa.array([r.loss for r in rows], pa.float64())
        columns["loss_se"] = pa.array([r.loss_se for r in rows], pa.float64())
        columns["n_replicates"] = pa.array([r.n_replicates for r in rows], pa.int64())
        columns["job_id"] = pa.array([r.job_id for r in rows], pa.string())
        self._write_table(EVALUATIONS_FILE, pa.table(columns))

    def write_populations(self, populations: Sequence[Population], names: Sequence[str]) -> None:
        """Replace ``posterior.parquet`` and ``populations.json`` with every complete one.

        ``names`` are the free parameters (the fixed ones are in the spec).
        """
        import pyarrow as pa

        index = [p.index for p in populations for _ in p.points]
        columns: dict[str, pa.Array] = {"population": pa.array(index, pa.int64())}
        for name, column in param_columns(names, posterior=True).items():
            columns[column] = _values([point[name] for p in populations for point in p.points])
        columns["weight"] = pa.array([w for p in populations for w in p.weights], pa.float64())
        columns["distance"] = pa.array([d for p in populations for d in p.distances], pa.float64())
        columns["epsilon"] = pa.array(
            [p.epsilon for p in populations for _ in p.points], pa.float64()
        )
        self._write_table(POSTERIOR_FILE, pa.table(columns))
        states = [
            {
                "population": p.index,
                "size": len(p.points),
                "epsilon": _json_float(p.epsilon),
                "kernel_cov": [list(row) for row in p.kernel_cov],
            }
            for p in populations
        ]
        self._write_json(POPULATIONS_FILE, {"populations": states})

    def finish(self, best: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """Write ``best.json``, then mark the calibration finished with ``result``."""
        self._write_json(BEST_FILE, dict(best))
        record = self.record()
        record.update(status="finished", result=dict(result))
        self._write_json(SPEC_FILE, record)

    def keep_summary(self, summary: Mapping[str, Any]) -> None:
        """Store the finished calibration's answer as printed, so showing it reads one file."""
        record = self.record()
        record["summary"] = dict(summary)
        self._write_json(SPEC_FILE, record)

    def _write_json(self, name: str, data: Mapping[str, Any]) -> None:
        text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
        atomic_write_bytes(self.directory / name, text.encode("utf-8"))

    def _write_table(self, name: str, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        atomic_write_bytes(self.directory / name, buffer.getvalue())


def param_columns(names: Sequence[str], *, posterior: bool = False) -> dict[str, str]:
    """The column of each parameter in ``evaluations.parquet`` (or ``posterior.parquet``): its
    name, or ``param_<name>`` when the table has a column of that name already (an SIR
    model's ``population``, say)."""
    reserved = _POSTERIOR_COLUMNS if posterior else _EVALUATION_COLUMNS
    return {name: f"param_{name}" if name in reserved else name for name in names}


def list_journals(store_root: Path) -> list[Journal]:
    """Every calibration journal of a store, by id."""
    root = Path(store_root) / CALIBRATIONS_DIR
    if not root.is_dir():
        return []
    return [
        Journal(store_root, d.name)
        for d in sorted(root.iterdir())
        if d.is_dir() and (d / SPEC_FILE).is_file()
    ]


def _values(values: list[Any]) -> pa.Array:
    """A parameter column: int64 when every value is an int, else float64."""
    import pyarrow as pa

    if all(type(v) is int for v in values):
        return pa.array(values, pa.int64())
    return pa.array([float(v) for v in values], pa.float64())


def _json_float(value: float) -> float | None:
    """JSON has no infinity: population 0's epsilon is written as null."""
    return None if value in (float("inf"), float("-inf")) or value != value else value
