"""Sensitivity indices of a design job's results: SALib's estimators on replicate means.

Each design row's value is the mean over the replicates of its parameter set, read from the
job's shards (or its total loss, from its scores) and put in SALib's row order through the
design's ``rows``. SALib computes the indices and their bootstrap intervals.

Replicate noise. The mean of R replicates still carries noise of variance Var(Y|theta)/R,
which inflates SALib's variance of the output and each total index's numerator. The sample
variance of the replicates estimates it, so the indices are corrected to those of the noise-free
response E[Y|theta] (the variance and the affected numerators lose their noise terms; the
intervals are scaled alike). The noise fraction E[Var(Y|theta)] / Var(Y) tells how much of the
output's spread the parameters cannot explain. Morris effects are reported uncorrected.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelops.model import KEY_COLUMNS
from modelops.sensitivity._design import Design, read_design
from modelops.sensitivity._result import GroupIndices, SensitivityResult
from modelops.store import read_job, resolve_job
from modelops_contracts.errors import ContractViolationError

if TYPE_CHECKING:
    import polars as pl
    from numpy.typing import NDArray

    from modelops.store import JobLike, ResultStore
    from modelops_contracts import SimJob

__all__ = ["METHODS", "analyze", "compute_indices"]

METHODS = {"saltelli": "sobol", "morris": "morris"}
"""The analysis each design takes."""

WIDE_INTERVAL = 0.1
"""A Sobol' index whose interval half-width exceeds this is flagged as uncertain."""
CONVERGENCE_TOLERANCE = 0.05
"""An index that moves more than this from N/2 to N is flagged as not converged."""
NEGLIGIBLE = 0.02
"""An index outside [0, 1] by less than this is not flagged, even beyond its interval: a 95%
interval misses a true 0 one time in twenty, and so small a miss changes no conclusion."""
NOISY = 0.5
"""A noise fraction above this is flagged: replicate noise swamps the parameters' effect."""
_CHECK_RESAMPLES = 10  # bootstrap draws for the N/4 and N/2 estimates (only their values count)


def analyze(
    job: JobLike | str,
    output: str | None = None,
    *,
    value: str | None = None,
    by: Sequence[str] = (),
    method: str | None = None,
    loss: bool = False,
    store: ResultStore | Path | str | None = None,
    resamples: int = 100,
    conf_level: float = 0.95,
) -> pl.DataFrame:
    """The sensitivity indices of ``value`` in ``output`` (or, with ``loss``, of the scored
    total loss) as a polars frame, one row per ``by`` group and parameter.

    Sobol' designs give ``S1``, ``S1_conf``, ``ST``, ``ST_conf`` (and ``S2_<other>`` columns
    for a second-order design); Morris designs ``mu_star``, ``mu_star_conf``, ``sigma`` and
    ``mu``. Every row carries its group's ``noise_fraction``. See :func:`compute_indices`.
    """
    return compute_indices(
        job,
        output,
        value=value,
        by=by,
        method=method,
        loss=loss,
        store=store,
        resamples=resamples,
        conf_level=conf_level,
    ).table()


def compute_indices(
    job: JobLike | str,
    output: str | None = None,
    *,
    value: str | None = None,
    by: Sequence[str] = (),
    method: str | None = None,
    loss: bool = False,
    store: ResultStore | Path | str | None = None,
    resamples: int = 100,
    conf_level: float = 0.95,
) -> SensitivityResult:
    """The indices with their convergence check and warnings (see the module docstring).

    It reads results only and never runs a task. ``method`` defaults to the design's
    (``sobol`` for a Saltelli design, ``morris`` for a Morris one).

    Raises:
        ContractViolationError: the job has no sensitivity design, a bad argument, an unknown
            or non-numeric column, several rows per task without a ``by`` that separates them,
            or design sets without results.
        StoreError: unknown job or output, or unreadable shards.
    """
    result_store, job_id = resolve_job(job, store)
    sim_job = read_job(result_store, job_id)
    design = read_design(sim_job)
    chosen = _method(design, method, job_id)
    if type(resamples) is not int or resamples < 2:
        raise ContractViolationError(f"resamples must be an integer >= 2, got {resamples!r}")
    if not 0.0 < conf_level < 1.0:
        raise ContractViolationError(f"conf_level must lie in (0, 1), got {conf_level!r}")
    if loss:
        if output is not None or value is not None or by:
            raise ContractViolationError(
                "loss: the total loss is one number per parameter set; give no output, value "
                "or by with it"
            )
        groups: list[tuple[dict[str, Any], _RowValues]] = [
            ({}, _loss_values(result_store, job_id, design))
        ]
        output_name, value_name, by = None, "loss", ()
    else:
        if output is None or value is None:
            raise ContractViolationError(
                "give the output and its value column to analyse (or loss=True)", field="value"
            )
        by = tuple(by)
        groups = _output_values(result_store, sim_job, design, output, value, by)
        output_name, value_name = output, value
    seed = design.seed + 1  # SALib draws from numpy's global generator for a seed of 0
    computed = tuple(
        _analyse_group(design, chosen, key, values, seed, resamples, conf_level)
        for key, values in groups
    )
    return SensitivityResult(
        job_id=job_id,
        method=chosen,
        output=output_name,
        value=value_name,
        by=tuple(by),
        n=design.n,
        parameters=design.parameters,
        second_order=chosen == "sobol" and design.second_order,
        groups=computed,
    )


def _method(design: Design, method: str | None, job_id: str) -> str:
    natural = METHODS[design.method]
    if method is None or method == natural:
        return natural
    if method not in METHODS.values():
        raise ContractViolationError(
            f"method must be sobol or morris, got {method!r}", field="method", value=method
        )
    wanted = "saltelli" if method == "sobol" else "morris"
    raise ContractViolationError(
        f"method {method} needs a {wanted} design; job {job_id} has a {design.method} design "
        f"(make one with 'mops sample {wanted}')",
        field="method",
        value=method,
    )


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RowValues:
    """Per design row: the replicate mean, the variance of that mean (NaN if unknown), the
    sample variance of the replicates (NaN if unknown), and the row's parameter-set code."""

    mean: NDArray[np.float64]
    mean_var: NDArray[np.float64]
    replicate_var: NDArray[np.float64]
    codes: NDArray[np.int64]


def _output_values(
    store: ResultStore,
    sim_job: SimJob,
    design: Design,
    output: str,
    value: str,
    by: tuple[str, ...],
) -> list[tuple[dict[str, Any], _RowValues]]:
    import polars as pl

    from modelops.analysis._aggregate import check_by, reading_results

    job_id = sim_job.job_id
    lazy = store.scan_results(job_id, output)
    with reading_results(job_id, output):
        schema = lazy.collect_schema()
    declared = set(sim_job.parameter_names())
    if value not in schema or value in KEY_COLUMNS or value in declared:
        numeric = [
            c for c, t in schema.items() if t.is_numeric() and c not in (*KEY_COLUMNS, *declared)
        ]
        raise ContractViolationError(
            f"value: no result column {value!r} in output {output!r} "
            f"(numeric columns: {', '.join(numeric) or 'none'})",
            field="value",
        )
    if not schema[value].is_numeric():
        raise ContractViolationError(
            f"value: column {value!r} of output {output!r} is {schema[value]}, not numeric",
            field="value",
        )
    check_by(list(by), schema.names(), declared, output)
    column = pl.col(value).cast(pl.Float64)
    query = lazy.group_by(["param_id", *by]).agg(
        column.mean().alias("mean"),
        column.var(ddof=1).alias("var"),
        column.count().alias("count"),
        pl.len().alias("rows"),
        pl.col("task_id").n_unique().alias("tasks"),
    )
    with reading_results(job_id, output):
        stats = query.collect(engine="streaming")
    repeated = stats.filter(pl.col("rows") > pl.col("tasks"))
    if repeated.height:
        others = [c for c in schema.names() if c not in (*KEY_COLUMNS, *declared, value, *by)]
        hint = f" (columns: {', '.join(others)})" if others else ""
        raise ContractViolationError(
            f"output {output!r} has several rows per task for {value!r}: give --by with the "
            f"column that tells them apart{hint}",
            field="by",
        )
    if not by:
        return [({}, _rows(design, stats, job_id, output, require=True))]
    groups = []
    for key, part in sorted(
        stats.partition_by(list(by), as_dict=True).items(), key=lambda kv: _sort_key(kv[0])
    ):
        groups.append(
            (dict(zip(by, key, strict=True)), _rows(design, part, job_id, output, require=False))
        )
    return groups


def _sort_key(key: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    return tuple((1, "") if v is None else (0, v) for v in key)


def _rows(
    design: Design, stats: pl.DataFrame, job_id: str, output: str, *, require: bool
) -> _RowValues:
    """The per-set statistics laid out by design row; missing sets are NaN (or, when
    ``require``, an error)."""
    import polars as pl

    joined = design.by_row(stats)
    mean = joined["mean"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    if require:
        _require_finite(
            design, mean, f"{job_id} have no finite {output!r} value (not run, failed, null or "
            "NaN): finish the job with 'mops run' before analysing it", "design",
        )  # fmt: skip
    count = joined["count"].cast(pl.Float64).fill_null(0.0).to_numpy()
    var = joined["var"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    return _row_values(design, mean, var, count)


def _require_finite(design: Design, mean: NDArray[np.float64], what: str, field: str) -> None:
    """Refuse a design whose sets lack a value: ``N of M design parameter sets of job <what>``."""
    missing = {pid for pid, m in zip(design.rows, mean, strict=True) if not np.isfinite(m)}
    if missing:
        raise ContractViolationError(
            f"{len(missing)} of {len(set(design.rows))} design parameter sets of job {what}",
            field=field,
        )


def _row_values(
    design: Design,
    mean: NDArray[np.float64],
    var: NDArray[np.float64],
    count: NDArray[np.float64],
) -> _RowValues:
    known = np.isfinite(var) & (count >= 2)
    replicate_var = np.where(known, var, np.nan)
    if known.any() and not known.all():  # a set whose other replicates failed: pooled variance
        replicate_var = np.where(known, var, float(np.nanmean(replicate_var)))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_var = replicate_var / count
    return _RowValues(mean, mean_var, replicate_var, design.row_codes)


def _loss_values(store: ResultStore, job_id: str, design: Design) -> _RowValues:
    import polars as pl

    from modelops.analysis import load_scores

    scores = load_scores(store, job_id)
    if scores is None:
        raise ContractViolationError(
            f"job {job_id} has no scores: run 'mops score {job_id} --targets FILE' first",
            field="scores",
        )
    losses = scores.select("param_id", pl.col("loss").cast(pl.Float64).alias("mean"))
    mean = design.by_row(losses)["mean"].fill_null(float("nan")).to_numpy()
    _require_finite(
        design, mean, f"{job_id} have no finite loss (failed, or observed points not "
        "simulated): see 'mops score'", "scores",
    )  # fmt: skip
    nan = np.full(mean.shape, np.nan)
    return _row_values(design, mean, nan, np.ones(mean.shape))


# -- analysing -----------------------------------------------------------------------------------


def _analyse_group(
    design: Design,
    method: str,
    key: Mapping[str, Any],
    values: _RowValues,
    seed: int,
    resamples: int,
    conf_level: float,
) -> GroupIndices:
    if not np.isfinite(values.mean).all():
        missing = len({c for c, m in zip(values.codes, values.mean, strict=True) if np.isnan(m)})
        return GroupIndices(
            key=key,
            indices=_nan_indices(design, method),
            noise_fraction=None,
            warnings=(f"{missing} design parameter sets have no value here: no indices",),
        )
    if np.ptp(values.mean) == 0.0:
        return GroupIndices(
            key=key,
            indices=_constant_indices(design, method),
            noise_fraction=_noise_fraction(values, np.arange(len(values.mean))),
            warnings=("the value is constant over the design: every index is 0",),
        )
    estimate = _sobol_at if method == "sobol" else _morris_at
    main = ("S1", "ST") if method == "sobol" else ("mu_star",)
    notes: list[str] = []
    noise = _noise_fraction(values, np.arange(len(values.mean)))
    figures = estimate(design, values, design.n, seed, resamples, conf_level, notes)
    convergence: dict[int, dict[str, dict[str, float]]] = {}
    for n in (design.n // 4, design.n // 2):
        if n >= 2:  # only the values count: few resamples, and their SALib notes dropped
            at = estimate(design, values, n, seed, _CHECK_RESAMPLES, conf_level, [])
            convergence[n] = {p: {k: f[k] for k in main} for p, f in at.items()}
    convergence[design.n] = {p: {k: f[k] for k in main} for p, f in figures.items()}
    half = convergence.get(design.n // 2)
    if method == "sobol":
        notes += _sobol_warnings(figures, half, design.n)
    else:
        notes += _morris_warnings(figures, half)
    notes += _noise_warning(noise)
    return GroupIndices(key, figures, noise, convergence, tuple(notes))


def _ab_rows(design: Design, n: int) -> NDArray[np.int64]:
    step = design.step
    starts = np.arange(n) * step
    return np.concatenate([starts, starts + step - 1])


def _sobol_at(
    design: Design,
    values: _RowValues,
    n: int,
    seed: int,
    resamples: int,
    conf_level: float,
    notes: list[str],
) -> dict[str, dict[str, Any]]:
    """SALib's indices on the first ``n`` base samples, corrected for replicate noise."""
    from SALib.analyze import sobol as salib_sobol

    step, d, names = design.step, len(design.parameters), design.parameters
    used = n * step
    y = values.mean[:used]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = salib_sobol.analyze(
            design.problem(),
            y,
            calc_second_order=design.second_order,
            num_resamples=resamples,
            conf_level=conf_level,
            seed=seed,
        )
    if caught:
        notes.append(_salib_note(caught))
    ab_rows = _ab_rows(design, n)
    a, b = ab_rows[:n], ab_rows[n:]
    v = float(np.var(y[ab_rows]))
    nv = np.nan_to_num(values.mean_var[:used], nan=0.0)
    codes = values.codes[:used]
    signal = v - float(np.mean(nv[ab_rows]))
    scale = v / signal if signal > 0 else float("nan")
    if not signal > 0 and v > 0:
        notes.append("replicate noise accounts for all of the output's variance: no index")
    figures: dict[str, dict[str, Any]] = {}
    s1c = np.empty(d)
    for j, name in enumerate(names):
        abj = a + j + 1
        same_b = (codes[b] == codes[abj]).astype(float) - (codes[b] == codes[a]).astype(float)
        bias_s1 = float(np.mean(same_b * nv[b]))
        bias_st = 0.5 * float(np.mean((codes[a] != codes[abj]) * (nv[a] + nv[abj])))
        s1c[j] = _corrected(float(raw["S1"][j]), v, bias_s1, signal)
        figures[name] = {
            "S1": s1c[j],
            "S1_conf": float(raw["S1_conf"][j]) * scale,
            "ST": _corrected(float(raw["ST"][j]), v, bias_st, signal),
            "ST_conf": float(raw["ST_conf"][j]) * scale,
        }
    if design.second_order:
        s1 = np.asarray(raw["S1"], dtype=float)
        for j, name in enumerate(names):
            pairs, confs = {}, {}
            for k, other in enumerate(names):
                if k == j:
                    continue
                lo, hi = min(j, k), max(j, k)
                s2 = float(raw["S2"][lo, hi])
                pairs[other] = (s2 + s1[lo] + s1[hi]) * scale - s1c[lo] - s1c[hi]
                confs[other] = float(raw["S2_conf"][lo, hi]) * scale
            figures[name]["S2"], figures[name]["S2_conf"] = pairs, confs
    return figures


def _corrected(index: float, variance: float, bias: float, signal: float) -> float:
    """An index whose numerator and variance lose their replicate-noise terms."""
    if not signal > 0:
        return float("nan")
    return (index * variance - bias) / signal


def _morris_at(
    design: Design,
    values: _RowValues,
    trajectories: int,
    seed: int,
    resamples: int,
    conf_level: float,
    notes: list[str],
) -> dict[str, dict[str, Any]]:
    from SALib.analyze import morris as salib_morris

    used = trajectories * design.step
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = salib_morris.analyze(
            design.problem(),
            design.unit_matrix()[:used],
            values.mean[:used],
            num_resamples=resamples,
            conf_level=conf_level,
            num_levels=design.levels,
            seed=seed,
        )
    if caught:
        notes.append(_salib_note(caught))
    return {
        name: {
            "mu_star": float(raw["mu_star"][j]),
            "mu_star_conf": float(raw["mu_star_conf"][j]),
            "sigma": float(raw["sigma"][j]),
            "mu": float(raw["mu"][j]),
        }
        for j, name in enumerate(design.parameters)
    }


def _noise_fraction(values: _RowValues, rows: NDArray[np.int64]) -> float | None:
    """E[Var(Y|theta)] / Var(Y) over ``rows``, by the law of total variance; None without
    replicates to estimate it from."""
    replicate_var = values.replicate_var[rows]
    if not np.isfinite(replicate_var).any():
        return None
    within = float(np.nanmean(replicate_var))
    between = float(np.var(values.mean[rows])) - float(np.nanmean(values.mean_var[rows]))
    total = within + max(between, 0.0)
    return within / total if total > 0 else 0.0


def _constant_indices(design: Design, method: str) -> dict[str, dict[str, Any]]:
    """Every figure 0: an output that never moves depends on no parameter."""
    return {
        p: {k: (dict.fromkeys(v, 0.0) if isinstance(v, dict) else 0.0) for k, v in f.items()}
        for p, f in _nan_indices(design, method).items()
    }


def _nan_indices(design: Design, method: str) -> dict[str, dict[str, Any]]:
    names = (
        ("S1", "S1_conf", "ST", "ST_conf")
        if method == "sobol"
        else (
            "mu_star",
            "mu_star_conf",
            "sigma",
            "mu",
        )
    )
    figures: dict[str, dict[str, Any]] = {}
    for p in design.parameters:
        figures[p] = dict.fromkeys(names, float("nan"))
        if method == "sobol" and design.second_order:
            others = {o: float("nan") for o in design.parameters if o != p}
            figures[p]["S2"], figures[p]["S2_conf"] = others, dict(others)
    return figures


# -- warnings ------------------------------------------------------------------------------------


def _sobol_warnings(
    figures: Mapping[str, Mapping[str, Any]],
    half: Mapping[str, Mapping[str, float]] | None,
    n: int,
) -> list[str]:
    notes = []
    wide = [
        f"{kind} of {p} ±{f[kind + '_conf']:.2f}"
        for p, f in figures.items()
        for kind in ("S1", "ST")
        if f[kind + "_conf"] > WIDE_INTERVAL
    ]
    if wide:
        notes.append(f"wide intervals ({', '.join(wide)}): use a larger N than {n}")
    for p, f in figures.items():
        for kind in ("S1", "ST"):
            index, conf = f[kind], f[kind + "_conf"]
            if index + conf < 0 and index < -NEGLIGIBLE:
                notes.append(
                    f"{kind} of {p} is negative beyond its interval ({index:.3f} ± {conf:.3f}): "
                    f"N={n} is too small for this output"
                )
            elif index - conf > 1 and index > 1 + NEGLIGIBLE:
                notes.append(
                    f"{kind} of {p} is above 1 beyond its interval ({index:.3f} ± {conf:.3f}): "
                    f"N={n} is too small for this output"
                )
    if half is not None:
        moved = [
            (abs(f[kind] - half[p][kind]), kind, p)
            for p, f in figures.items()
            for kind in ("S1", "ST")
            if np.isfinite(f[kind]) and np.isfinite(half[p][kind])
        ]
        if moved and max(moved)[0] > CONVERGENCE_TOLERANCE:
            shift, kind, p = max(moved)
            notes.append(
                f"not converged: {kind} of {p} moved by {shift:.3f} from N={n // 2} to N={n}; "
                "use a larger N"
            )
    return notes


def _morris_warnings(
    figures: Mapping[str, Mapping[str, Any]], half: Mapping[str, Mapping[str, float]] | None
) -> list[str]:
    notes = []
    if half is not None:
        now = sorted(figures, key=lambda p: -figures[p]["mu_star"])
        before = sorted(half, key=lambda p: -half[p]["mu_star"])
        if now != before:
            notes.append(
                "not converged: the ranking by mu* at half the trajectories was "
                f"{', '.join(before)}, now {', '.join(now)}; use more trajectories"
            )
    top = max((f["mu_star"] for f in figures.values() if np.isfinite(f["mu_star"])), default=0.0)
    wide = [
        p
        for p, f in figures.items()
        if f["mu_star"] >= 0.1 * top and f["mu_star_conf"] > 0.5 * f["mu_star"] > 0
    ]
    if wide:
        notes.append(
            f"wide intervals for mu* of {', '.join(wide)} (more than half the value): "
            "use more trajectories"
        )
    return notes


def _noise_warning(noise: float | None) -> list[str]:
    if noise is not None and noise > NOISY:
        return [
            f"replicate noise is {noise:.0%} of the output's variance: the parameters explain "
            "little of it; more replicates narrow the indices"
        ]
    return []


def _salib_note(caught: list[warnings.WarningMessage]) -> str:
    return "SALib: " + " ".join(str(caught[0].message).split())
