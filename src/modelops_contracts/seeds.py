"""Replicate seeds: deterministic, uint32, distinct within a parameter set.

Replicate ``i`` of a parameter set gets
``int.from_bytes(blake2b(f"{param_id}:{i}".encode(), digest_size=8).digest(), "little") % 2**32``.
uint32 so that every RNG a model may use (numpy ``RandomState``, Starsim) accepts it.

Should two replicates of one set land on the same seed (a birthday collision, likely only beyond
~10^4 replicates), the later replicate ``i`` is re-derived from ``f"{param_id}:{i}:{k}"`` for
k = 1, 2, ... until the seed is unused. The rule depends only on (param_id, i) and the earlier
seeds, so it is as deterministic as the plain formula.
"""

from __future__ import annotations

from hashlib import blake2b

from modelops_contracts.errors import ContractViolationError

__all__ = ["SEED_MODULUS", "replicate_seed", "replicate_seeds"]

SEED_MODULUS = 2**32


def _seed_of(text: str) -> int:
    digest = blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % SEED_MODULUS


def replicate_seed(param_id: str, replicate_idx: int) -> int:
    """The raw seed formula for one replicate (no collision handling)."""
    return _seed_of(f"{param_id}:{replicate_idx}")


def replicate_seeds(param_id: str, n_replicates: int) -> list[int]:
    """Seeds of replicates ``0 .. n_replicates - 1``, distinct, derived as the module describes."""
    if type(n_replicates) is not int or n_replicates < 1:
        raise ContractViolationError(
            f"n_replicates must be a positive int, got {n_replicates!r}",
            field="n_replicates",
            value=n_replicates,
        )
    return _seeds_of(param_id, _suffixes(n_replicates)[:n_replicates])


def _seeds_of(param_id: str, suffixes: list[bytes]) -> list[int]:
    """The seeds of one parameter set, one per suffix (``str(i).encode()`` for replicate i)."""
    copy = blake2b(f"{param_id}:".encode(), digest_size=8).copy
    from_bytes = int.from_bytes
    seeds: list[int] = []
    append = seeds.append
    for suffix in suffixes:
        h = copy()
        h.update(suffix)
        append(from_bytes(h.digest(), "little") & _MASK)  # the low 32 bits: % 2**32
    if len(seeds) > 1 and len(set(seeds)) != len(seeds):
        seeds = _resolve_collisions(param_id, seeds)
    return seeds


def _flat_seeds(param_ids: list[str], n_replicates: int) -> list[int]:
    """``replicate_seeds(pid, n_replicates)`` of every param_id, concatenated (compile path)."""
    seeds: list[int] = []
    if n_replicates == 1:  # one seed per set, which can never collide
        copy, from_bytes, append = _EMPTY_HASHER.copy, int.from_bytes, seeds.append
        for pid in param_ids:
            h = copy()
            h.update(f"{pid}:0".encode())
            append(from_bytes(h.digest(), "little") & _MASK)
        return seeds
    suffixes = _suffixes(n_replicates)[:n_replicates]
    extend = seeds.extend
    for pid in param_ids:
        extend(_seeds_of(pid, suffixes))
    return seeds


_MASK = SEED_MODULUS - 1
_EMPTY_HASHER = blake2b(digest_size=8)


_SUFFIXES: list[bytes] = [str(i).encode() for i in range(64)]


def _suffixes(n: int) -> list[bytes]:
    """``str(i).encode()`` for i < n, cached (replicate counts repeat across parameter sets)."""
    if n > len(_SUFFIXES):
        _SUFFIXES.extend(str(i).encode() for i in range(len(_SUFFIXES), n))
    return _SUFFIXES


def _resolve_collisions(param_id: str, seeds: list[int]) -> list[int]:
    used: set[int] = set()
    out: list[int] = []
    for i, seed in enumerate(seeds):
        k = 0
        while seed in used:
            k += 1
            seed = _seed_of(f"{param_id}:{i}:{k}")
        used.add(seed)
        out.append(seed)
    return out
