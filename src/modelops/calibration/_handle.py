"""A calibration in a store: its answer, its evaluations and (ABC-SMC) its posterior."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops.calibration._journal import (
    BEST_FILE,
    EVALUATIONS_FILE,
    POSTERIOR_FILE,
    Journal,
    list_journals,
    param_columns,
)
from modelops_contracts.errors import StoreError

if TYPE_CHECKING:
    import polars as pl

    from modelops.calibration._spec import CalibrationSpec

__all__ = ["Calibration", "list_calibrations", "open_calibration"]

_QUANTILES = (("q05", 0.05), ("q50", 0.5), ("q95", 0.95))


@dataclass(frozen=True)
class Calibration:
    """One calibration's journal in a store (see :mod:`modelops.calibration._journal`)."""

    calibration_id: str
    store: Path

    @property
    def journal(self) -> Journal:
        return Journal(self.store, self.calibration_id)

    @property
    def directory(self) -> Path:
        return self.journal.directory

    @property
    def spec(self) -> CalibrationSpec:
        return self.journal.spec()

    @property
    def status(self) -> str:
        """``running`` (or killed before it finished) or ``finished``."""
        return str(self.journal.record().get("status", "running"))

    @property
    def best(self) -> dict[str, Any] | None:
        """The answer: the best re-evaluated point with its loss and standard error."""
        path = self.directory / BEST_FILE
        if not path.is_file():
            return None
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def evaluations(self) -> pl.DataFrame:
        """Every point the search evaluated, in the order asked."""
        import polars as pl

        path = self.directory / EVALUATIONS_FILE
        return pl.read_parquet(path) if path.is_file() else pl.DataFrame()

    def posterior(self) -> pl.DataFrame | None:
        """ABC-SMC: the particles of every complete population (None for other algorithms)."""
        import polars as pl

        path = self.directory / POSTERIOR_FILE
        return pl.read_parquet(path) if path.is_file() else None

    def posterior_summary(self) -> dict[str, dict[str, float]] | None:
        """Weighted mean and 5/50/95% quantiles of each free parameter, last population."""
        import numpy as np
        import polars as pl

        table = self.posterior()
        if table is None or table.is_empty():
            return None
        last = table.filter(pl.col("population") == table["population"].max())
        weights = last["weight"].to_numpy()
        summary: dict[str, dict[str, float]] = {}
        names = self.spec.space.names
        for name, column in param_columns(names, posterior=True).items():
            values = last[column].cast(pl.Float64).to_numpy()
            entry = {"mean": float(np.average(values, weights=weights))}
            for key, q in _QUANTILES:
                entry[key] = float(np.quantile(values, q, weights=weights, method="inverted_cdf"))
            summary[name] = entry
        return summary

    def result(self) -> dict[str, Any]:
        """The JSON object ``mops calibrate --json`` and ``mops calibration ID --json`` print."""
        record = self.journal.record()
        kept = record.get("summary")
        if record.get("status") == "finished" and isinstance(kept, dict):
            return {**kept, "store": str(self.store)}
        return self._summary(record)

    def _summary(self, record: dict[str, Any]) -> dict[str, Any]:
        spec = record["spec"]
        best = self.best
        data: dict[str, Any] = {
            "calibration_id": self.calibration_id,
            "status": record.get("status", "running"),
            "algorithm": spec["algorithm"],
            "budget": spec["budget"],
            "evaluations": self.evaluations().height,
            "best": None
            if best is None
            else {"params": best["params"], "loss": best["loss"], "loss_se": best["loss_se"]},
        }
        posterior = self.posterior_summary()
        if posterior is not None:
            data["posterior"] = posterior
        data["store"] = str(self.store)
        return data

    def keep_summary(self) -> None:
        """Compute the answer once and keep it in the journal (see :meth:`result`)."""
        record = self.journal.record()
        if record.get("status") == "finished" and "summary" not in record:
            summary = self._summary(record)
            del summary["store"]  # where the store is now, not where it was
            self.journal.keep_summary(summary)


def open_calibration(calibration_id: str, *, store: Path | str | None = None) -> Calibration:
    """The calibration ``calibration_id`` of ``store`` (default: the default store).

    Raises:
        StoreError: no such calibration.
    """
    from modelops.store import default_store

    root = Path(store) if store is not None else default_store()
    journal = Journal(root, calibration_id)
    if not journal.exists():
        raise StoreError(
            f"no calibration {calibration_id} in {root}",
            hint="`mops calibrations` lists the calibrations of a store",
        )
    return Calibration(calibration_id, root)


def list_calibrations(store: Path | str | None = None) -> list[Calibration]:
    """Every calibration of ``store``, by id.

    Raises:
        StoreError: there is no store there.
    """
    from modelops.store import existing_store_root

    root = existing_store_root(store)
    return [Calibration(j.calibration_id, root) for j in list_journals(root)]
