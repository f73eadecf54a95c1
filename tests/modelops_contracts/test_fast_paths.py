"""Every fast path of loading and compiling gives exactly what the general path gives.

Each bulk shortcut (parameter sets checked a column at a time, ids hashed a chunk at a time,
JSON parsed without a per-mapping hook, the job file written a chunk of groups at a time) is
compared with the one-value-at-a-time code it replaces, on random input including the values
that must leave the shortcut (NaN, -0.0, big ints, numpy scalars, strings holding ``}`` or ``:``).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops_contracts import (
    ContractViolationError,
    SimJob,
    SimulationStudy,
    _job_format,
    _loading,
    replicate_seeds,
)
from modelops_contracts import job as job_module
from modelops_contracts import params as params_module
from modelops_contracts._job_format import dump_job_json
from modelops_contracts.params import _hash_canonical, _hash_many
from modelops_contracts.seeds import _flat_seeds
from modelops_contracts.study import _canonical_entry, _check_kinds, _plain_canonical
from modelops_contracts.task import bundle_digest

BUNDLE = "sha256:" + "ab" * 32

_texts = st.sampled_from(["", "a", "}", "},{", "a:b", 'q"', "é", "\u2028", "x}y"])
_scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf]),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 0, 1]),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.booleans(),
    _texts,
)
_odd_values = st.one_of(
    st.none(),
    st.lists(st.integers(), max_size=1),
    st.sampled_from([np.float64(-0.0), np.int64(3), np.bool_(True), np.float32(0.5)]),
)
_names = st.sampled_from(["a", "b", "c", "seed"])
_any_names = st.sampled_from(["a", "b", "c", "seed", "params"])  # "params" leaves the shortcut


def _entries(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    plain = st.dictionaries(_names, values, max_size=3)
    explicit = st.fixed_dictionaries(
        {"params": st.dictionaries(_names, values, max_size=2), "seed": st.integers(-1, 2**64)}
    )
    odd = st.one_of(
        explicit,
        st.dictionaries(_any_names, values, max_size=2),
        st.dictionaries(st.integers(0, 2), values, max_size=2),
    )
    return st.one_of(plain, plain, plain, odd)


def _general(value: list[Any]) -> tuple[str, Any]:
    """The one-entry-at-a-time result of the parameter-set check: canonical sets or an error."""
    try:
        sets = [_canonical_entry(i, entry) for i, entry in enumerate(value)]
        _check_kinds(sets)
    except ContractViolationError as err:
        return "error", str(err)
    return "ok", sets


def _exact(sets: Any) -> str:
    """A form that tells -0.0 from 0.0, 1 from 1.0 and True from 1, and keeps key order."""
    return repr(sets)


@settings(max_examples=400, deadline=None)
@given(st.lists(_entries(st.one_of(_scalars, _scalars, _scalars, _odd_values)), max_size=6))
def test_sets_checked_by_column_equal_the_general_check(value: list[Any]) -> None:
    expected = _general(value)
    for owned in (False, True):
        given_value = [dict(e) if isinstance(e, dict) else e for e in value]
        try:
            fast = _plain_canonical(given_value, owned=owned)
        except ContractViolationError as err:
            assert expected == ("error", str(err))
            continue
        if fast is not None:
            assert expected[0] == "ok" and _exact(fast) == _exact(expected[1])
            if not owned:  # the caller's dicts are left as they were
                assert _exact(given_value) == _exact(value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(_any_names, _scalars, max_size=3), min_size=1, max_size=6))
def test_a_study_holds_the_general_checks_sets_or_names_its_error(value: list[Any]) -> None:
    expected = _general(value)
    if expected[0] == "error":
        with pytest.raises(ContractViolationError) as caught:
            SimulationStudy("pkg.Model", parameter_sets=value)
        assert str(caught.value) == f"SimulationStudy: parameter_sets: {expected[1]}"
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a plain set named "params" may look like a legacy one
        study = SimulationStudy("pkg.Model", parameter_sets=value)
        text = json.dumps({"model": "pkg.Model", "parameter_sets": value}, allow_nan=False)
        loaded = SimulationStudy.from_json(text)  # a parsed file's sets are kept, not copied
    assert _exact(study.parameter_sets) == _exact(loaded.parameter_sets)
    if all("params" not in entry for entry in value):
        assert _exact(study.parameter_sets) == _exact(expected[1])


def test_negative_zero_is_folded_wherever_it_stands() -> None:
    sets = [{"a": 1.0, "b": 2.5}] * 3 + [{"a": 0.0, "b": -0.0}, {"a": -0.0, "b": 1.0}]
    canonical = _plain_canonical(sets)
    assert canonical is not None
    assert all(math.copysign(1.0, v) > 0 for s in canonical for v in s.values() if v == 0)
    assert math.copysign(1.0, sets[3]["b"]) < 0  # the caller's dict is untouched
    owned = [dict(s) for s in sets]
    assert _plain_canonical(owned, owned=True) == canonical
    assert math.copysign(1.0, owned[3]["b"]) > 0


@settings(max_examples=200, deadline=None)
@given(
    sets=st.lists(st.dictionaries(_names, st.one_of(_texts, st.floats(-1e9, 1e9))), max_size=12),
    chunk=st.integers(1, 5),
)
def test_ids_hashed_by_chunk_equal_ids_hashed_one_by_one(
    sets: list[dict[str, Any]], chunk: int
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(params_module, "_HASH_CHUNK", chunk)
        assert _hash_many(sets) == [_hash_canonical(s) for s in sets]


@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_flat_seeds_are_the_replicate_seeds_of_each_set(n: int) -> None:
    pids = [_hash_canonical({"i": i}) for i in range(50)]
    assert _flat_seeds(pids, n) == [s for pid in pids for s in replicate_seeds(pid, n)]


def _studies() -> list[SimulationStudy]:
    sets = [{"beta": i / 7, "name": "é}" if i % 5 else "a:b", "n": i} for i in range(40)]
    return [
        SimulationStudy("pkg.Model", parameter_sets=sets),
        SimulationStudy(
            "pkg.Model",
            parameter_sets=sets,
            n_replicates=3,
            outputs=["y", "x"],
            config={"k": [1, "é"]},
            metadata={"who": "ünïcode"},
            targets=[{"name": "t"}],
        ),
        SimulationStudy(  # merged duplicates and explicit seeds: groups of different sizes
            "pkg.Model",
            parameter_sets=[*sets[:5], *sets[:3], {"params": sets[7], "seed": 9}],
            n_replicates=2,
        ),
    ]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_job_text_written_by_chunk_equals_the_whole_document(
    index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = _studies()[index].to_simjob(BUNDLE)
    decoded = SimJob.from_json(job.to_json(encoding="grouped"))
    for chunk in (1, 3, 1000):
        monkeypatch.setattr(_job_format, "_CHUNK_GROUPS", chunk)
        for one in (job, decoded):
            text = one.to_json(encoding="grouped")
            assert text == dump_job_json(one.to_dict(encoding="grouped"))
            assert one.to_json(encoding="grouped", indent=2) == dump_job_json(
                one.to_dict(encoding="grouped"), indent=2
            )
            assert one.to_json(encoding="tasks") == dump_job_json(one.to_dict(encoding="tasks"))


def _reference_digest(job: SimJob) -> str:
    """The content digest as its docstring defines it, one group at a time."""
    from hashlib import blake2b

    first = job.tasks[0]
    outputs = json.dumps(list(first.outputs) if first.outputs is not None else None)
    config = json.dumps(first.config, sort_keys=True, separators=(",", ":"))
    h = blake2b(digest_size=8)
    header = f"modelops:job:v1|{bundle_digest(job.bundle_ref)}|{first.entrypoint}|{outputs}|"
    h.update((header + config).encode())
    for pid, tasks in job.get_task_groups().items():
        h.update(f"|{pid}:{','.join(str(t.seed) for t in tasks)}".encode())
    return h.hexdigest()


@pytest.mark.parametrize("index", [0, 1, 2])
def test_content_digest_by_chunk_equals_the_reference(
    index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = _studies()[index].to_simjob(BUNDLE)
    for chunk in (1, 7, 4096):
        monkeypatch.setattr(job_module, "_DIGEST_CHUNK", chunk)
        assert job_module._hash_content(job.tasks) == _reference_digest(job)
    assert job.job_id == "job-" + _reference_digest(job)[:16]


# -- JSON parsing: the plain parse must agree with the exact one ------------------------------

_ESCAPED = "<escaped colon>"  # written as "\u003a": a colon the text does not show

_json_keys = st.sampled_from(["a", "b", "a:b", "}", "é", _ESCAPED])


def _trees(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(st.tuples(_json_keys, inner), max_size=4),  # pairs: keys may repeat
        ),
        max_leaves=30,
    )


def _to_json(tree: Any) -> str:
    if isinstance(tree, list) and tree and all(isinstance(p, tuple) for p in tree):
        return "{" + ",".join(f"{_to_json(k)}:{_to_json(v)}" for k, v in tree) + "}"
    if isinstance(tree, list):
        return "[" + ",".join(_to_json(v) for v in tree) + "]"
    return '"\\u003a"' if tree == _ESCAPED else json.dumps(tree)


def _outcome(parse: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", parse()
    except ContractViolationError as err:
        return "error", str(err)


@settings(max_examples=400, deadline=None)
@given(
    tree=_trees(st.one_of(st.integers(), st.sampled_from(["x", "a:b", "}", None, _ESCAPED]))),
    depth=st.integers(1, 6),
    nodes=st.integers(1, 40),
)
def test_plain_json_parse_agrees_with_the_exact_parse(tree: Any, depth: int, nodes: int) -> None:
    text = _to_json(tree)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_loading, "MAX_DEPTH", depth)
        patch.setattr(_loading, "MAX_NODES", nodes)
        fast = _outcome(lambda: _loading.parse_json(text, what="f"))
        fast_bytes = _outcome(lambda: _loading.parse_json(text.encode(), what="f"))
        patch.setattr(_loading, "_parse_json_plain", lambda _text: _loading._UNDECIDED)
        exact = _outcome(lambda: _loading.parse_json(text, what="f"))
    assert fast == exact == fast_bytes


def _reference_walk(data: Any) -> tuple[int, int, int]:
    """(values, levels of non-empty containers, keys) of a parsed document, by recursion.

    The root is level 1, so a document is too deep when its second value reaches MAX_DEPTH.
    """
    if isinstance(data, dict | list) and data:
        children = list(data.values()) if isinstance(data, dict) else data
        walks = [_reference_walk(child) for child in children]
        return (
            1 + sum(w[0] for w in walks),
            1 + max(w[1] for w in walks),
            (len(data) if isinstance(data, dict) else 0) + sum(w[2] for w in walks),
        )
    return 1, 0, 0


@settings(max_examples=300, deadline=None)
@given(
    data=_trees(st.one_of(st.integers(), st.just("s"))).map(
        lambda t: json.loads(_to_json(t))  # repeated keys collapse: plain dicts and lists
    ),
    depth=st.integers(1, 6),
    nodes=st.integers(1, 40),
)
def test_tree_check_enforces_each_limit(data: Any, depth: int, nodes: int) -> None:
    values, height, keys = _reference_walk(data)
    too_deep, too_big = height >= depth, values > nodes
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_loading, "MAX_DEPTH", depth)
        patch.setattr(_loading, "MAX_NODES", nodes)
        if not (too_deep or too_big):
            assert _loading._check_tree(data) == keys
            return
        with pytest.raises(_loading._Refused) as caught:
            _loading._check_tree(data)
    if too_deep and not too_big:
        assert str(caught.value) == f"nested deeper than {depth} levels"
    if too_big and not too_deep:
        assert str(caught.value) == f"more than {nodes:,} values"
