from __future__ import annotations

import json
import math
from hashlib import blake2b

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_contracts import ContractViolationError, UniqueParameterSet, make_param_id
from tests.conftest import KNOWN_PARAM_ID, KNOWN_PARAMS

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
param_dicts = st.dictionaries(st.text(min_size=1, max_size=12), scalars, max_size=6)


def test_known_answer() -> None:
    assert make_param_id(KNOWN_PARAMS) == KNOWN_PARAM_ID
    assert make_param_id({"gamma": 0.1, "beta": 0.5}) == KNOWN_PARAM_ID
    assert UniqueParameterSet.from_dict(KNOWN_PARAMS).param_id == KNOWN_PARAM_ID


def test_matches_the_documented_formula() -> None:
    params = {"z": "ünï", "a": 3, "m": True, "f": 1e-300}
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = blake2b(("contracts:param:v1|" + text).encode(), digest_size=32).hexdigest()
    assert make_param_id(params) == expected


@given(param_dicts)
def test_id_is_independent_of_key_order(params: dict[str, object]) -> None:
    reversed_params = dict(reversed(list(params.items())))
    assert make_param_id(params) == make_param_id(reversed_params)


@given(param_dicts, param_dicts)
def test_different_params_get_different_ids(a: dict[str, object], b: dict[str, object]) -> None:
    same = UniqueParameterSet(a).params == UniqueParameterSet(b).params and all(
        type(UniqueParameterSet(a)[k]) is type(UniqueParameterSet(b)[k]) for k in a
    )
    assert (make_param_id(a) == make_param_id(b)) == same


def test_numpy_scalars_are_converted_first() -> None:
    assert make_param_id({"beta": np.float64(0.5), "gamma": np.float64(0.1)}) == KNOWN_PARAM_ID
    ups = UniqueParameterSet({"n": np.int64(3), "flag": np.bool_(True), "s": np.str_("x")})
    assert type(ups["n"]) is int and type(ups["flag"]) is bool and type(ups["s"]) is str
    assert ups.param_id == make_param_id({"n": 3, "flag": True, "s": "x"})


def test_negative_zero_hashes_as_zero() -> None:
    assert make_param_id({"x": -0.0}) == make_param_id({"x": 0.0})
    assert math.copysign(1, UniqueParameterSet({"x": -0.0})["x"]) == 1


def test_int_and_float_and_bool_are_distinct() -> None:
    ids = {make_param_id({"x": v}) for v in (1, 1.0, True, "1")}
    assert len(ids) == 4


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), -float("inf"), [1], {"a": 1}, None, b"x", 1j, np.float64("nan")],
)
def test_bad_values_raise_naming_the_key(bad: object) -> None:
    with pytest.raises(ContractViolationError, match="'beta'") as info:
        make_param_id({"beta": bad})
    assert info.value.field == "beta"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("big", [2**63, 2**70, -(2**63) - 1, -(2**100)])
def test_ints_beyond_64_bits_are_refused(big: int) -> None:
    # parameters become int64 columns of every output; a bigger one could only be mangled
    with pytest.raises(ContractViolationError, match=r"'n' is -?\d+, outside the 64-bit") as info:
        UniqueParameterSet({"n": big})
    assert info.value.field == "n" and info.value.value == big


def test_the_64_bit_extremes_keep_their_ids() -> None:
    for edge in (2**63 - 1, -(2**63), np.int64(2**63 - 1), np.int64(-(2**63))):
        text = json.dumps({"n": int(edge)}, separators=(",", ":"))
        expected = blake2b(("contracts:param:v1|" + text).encode(), digest_size=32).hexdigest()
        assert make_param_id({"n": edge}) == expected


def test_non_string_keys_raise() -> None:
    with pytest.raises(ContractViolationError, match="strings"):
        make_param_id({1: 2})  # type: ignore[dict-item]
    with pytest.raises(ContractViolationError, match="mapping"):
        make_param_id([("a", 1)])  # type: ignore[arg-type]


def test_constructor_verifies_a_given_param_id() -> None:
    assert UniqueParameterSet(KNOWN_PARAMS, KNOWN_PARAM_ID).param_id == KNOWN_PARAM_ID
    with pytest.raises(ContractViolationError, match="does not match"):
        UniqueParameterSet(KNOWN_PARAMS, "0" * 64)


def test_is_read_only_and_detached_from_its_input() -> None:
    source = {"beta": 0.5}
    ups = UniqueParameterSet(source)
    source["beta"] = 0.9
    assert ups["beta"] == 0.5
    with pytest.raises(TypeError):
        ups.params["beta"] = 1.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        ups.param_id = "x"  # type: ignore[misc]
    copy = ups.to_dict()
    copy["beta"] = 2.0
    assert ups["beta"] == 0.5


def test_mapping_behaviour_equality_and_pickle() -> None:
    import pickle

    ups = UniqueParameterSet(KNOWN_PARAMS)
    assert dict(ups) == KNOWN_PARAMS and len(ups) == 2 and "beta" in ups
    assert ups == UniqueParameterSet({"gamma": 0.1, "beta": 0.5})
    assert hash(ups) == hash(UniqueParameterSet(KNOWN_PARAMS))
    back = pickle.loads(pickle.dumps(ups))
    assert back == ups and back.params == ups.params
