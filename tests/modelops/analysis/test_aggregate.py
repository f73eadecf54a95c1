"""Replicate aggregation checked against a direct polars computation on the raw rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from modelops.analysis import DEFAULT_QUANTILES, aggregate
from modelops_contracts import ContractViolationError, StoreError
from tests.modelops.analysis.conftest import SirJob

STATS = ["mean", "std", "q05", "q25", "q50", "q75", "q95"]


def direct(raw: pl.DataFrame, keys: list[str], column: str) -> pl.DataFrame:
    value = pl.col(column).cast(pl.Float64)
    return (
        raw.group_by(keys)
        .agg(
            pl.col("replicate").n_unique().alias("n"),
            value.mean().alias("mean"),
            value.std().alias("std"),
            *[
                value.quantile(q, "linear").alias(f"q{round(q * 100):02d}")
                for q in DEFAULT_QUANTILES
            ],
        )
        .sort(keys)
    )


def test_incidence_by_day_matches_direct_computation(sir_job: SirJob) -> None:
    raw = sir_job.handle.results("incidence")
    got = aggregate(sir_job.handle, "incidence", by=["day"]).sort(["param_id", "day"])
    assert got.height == 9 * 100
    assert got.columns[:5] == ["param_id", "beta", "gamma", "day", "n"]
    assert got["n"].to_list() == [5] * got.height
    for column in ("new_cases", "infected", "recovered"):
        want = direct(raw, ["param_id", "day"], column)
        for stat in STATS:
            np.testing.assert_allclose(
                got[f"{column}_{stat}"].to_numpy(), want[stat].to_numpy(), rtol=1e-12
            )


def test_quantiles_are_linear_interpolation_over_replicates(sir_job: SirJob) -> None:
    raw = sir_job.handle.results("summary").filter(
        (pl.col("beta") == 0.3) & (pl.col("gamma") == 0.1)
    )
    got = aggregate(sir_job.job_id, "summary", store=sir_job.store).filter(
        (pl.col("beta") == 0.3) & (pl.col("gamma") == 0.1)
    )
    values = raw["peak_infected"].to_numpy().astype(float)
    assert got.height == 1 and got["n"][0] == 5
    assert got["peak_infected_mean"][0] == pytest.approx(values.mean())
    assert got["peak_infected_std"][0] == pytest.approx(values.std(ddof=1))
    expected = np.quantile(values, DEFAULT_QUANTILES)
    for q, want in zip(["q05", "q25", "q50", "q75", "q95"], expected, strict=True):
        assert got[f"peak_infected_{q}"][0] == pytest.approx(want)


def test_parameter_values_are_columns_one_row_per_parameter_set(sir_job: SirJob) -> None:
    got = aggregate(sir_job.handle, "summary", quantiles=[0.5], columns=["attack_rate"])
    assert got.columns == [
        "param_id", "beta", "gamma", "n", "attack_rate_mean", "attack_rate_std", "attack_rate_q50"
    ]  # fmt: skip
    assert sorted(zip(got["beta"], got["gamma"], strict=True)) == [
        (b, g) for b in (0.2, 0.3, 0.5) for g in (0.05, 0.1, 0.2)
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": ["nope"]}, "no column 'nope'"),
        ({"columns": ["nope"]}, "no numeric column 'nope'"),
        ({"quantiles": [1.5]}, "quantiles must lie in [0, 1]"),
    ],
)
def test_bad_arguments_are_contract_errors(
    sir_job: SirJob, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ContractViolationError, match=message.replace("[", r"\[")):
        aggregate(sir_job.handle, "incidence", **kwargs)


def test_unknown_job_or_output(sir_job: SirJob) -> None:
    with pytest.raises(StoreError, match="no job"):
        aggregate("job-nope", "incidence", store=sir_job.store)
    with pytest.raises(StoreError, match="no output 'nope'"):
        aggregate(sir_job.handle, "nope")
