from __future__ import annotations

from hashlib import blake2b

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_contracts import ContractViolationError, replicate_seed, replicate_seeds
from tests.conftest import KNOWN_PARAM_ID, KNOWN_SEEDS

# replicates 5702 and 106102 of the known parameter set collide under the raw formula
COLLIDING = (5702, 106102)


def test_known_answer() -> None:
    assert replicate_seeds(KNOWN_PARAM_ID, 3) == KNOWN_SEEDS
    assert [replicate_seed(KNOWN_PARAM_ID, i) for i in range(3)] == KNOWN_SEEDS


def test_matches_the_documented_formula() -> None:
    for i in (0, 7, 12345):
        digest = blake2b(f"{KNOWN_PARAM_ID}:{i}".encode(), digest_size=8).digest()
        assert replicate_seed(KNOWN_PARAM_ID, i) == int.from_bytes(digest, "little") % 2**32


def test_a_real_collision_is_re_derived_deterministically() -> None:
    first, second = COLLIDING
    assert replicate_seed(KNOWN_PARAM_ID, first) == replicate_seed(KNOWN_PARAM_ID, second)
    seeds = replicate_seeds(KNOWN_PARAM_ID, second + 1)
    assert len(set(seeds)) == len(seeds)
    assert seeds[first] == replicate_seed(KNOWN_PARAM_ID, first)
    assert seeds[second] != replicate_seed(KNOWN_PARAM_ID, second)
    digest = blake2b(f"{KNOWN_PARAM_ID}:{second}:1".encode(), digest_size=8).digest()
    assert seeds[second] == int.from_bytes(digest, "little") % 2**32
    assert replicate_seeds(KNOWN_PARAM_ID, second + 1) == seeds
    # the replicates before the collision are unaffected
    assert seeds[:second] == [replicate_seed(KNOWN_PARAM_ID, i) for i in range(second)]


@given(st.text(min_size=1, max_size=64), st.integers(min_value=1, max_value=200))
def test_seeds_are_uint32_distinct_and_prefix_stable(param_id: str, n: int) -> None:
    seeds = replicate_seeds(param_id, n)
    assert len(seeds) == n == len(set(seeds))
    assert all(0 <= s < 2**32 for s in seeds)
    assert replicate_seeds(param_id, n + 3)[:n] == seeds


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_bad_replicate_count(n: object) -> None:
    with pytest.raises(ContractViolationError, match="n_replicates"):
        replicate_seeds(KNOWN_PARAM_ID, n)  # type: ignore[arg-type]
