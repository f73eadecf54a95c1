"""Study design: parameter spaces and the samplers that turn them into studies.

::

    from modelops.sampling import ParameterSpace, lhs

    study = lhs(ParameterSpace.from_model(SIR).with_fixed({"population": 10_000}), 16, seed=1)
    study.to_yaml()  # a study file `mops run` takes as is

:func:`load_space` and :func:`parse_fixes` read a space and fixed values from user text (a
Model path or a space file; ``name=value`` items).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelops_contracts._lazy import lazy_getattr

if TYPE_CHECKING:
    from modelops.sampling._load import is_space_file, load_space, parse_fixes
    from modelops.sampling._samplers import (
        MAX_SETS,
        SAMPLERS,
        SobolSampleSizeWarning,
        grid,
        lhs,
        random,
        sobol,
    )
    from modelops.sampling._space import ParameterSpace

_EXPORTS = {
    "MAX_SETS": "modelops.sampling._samplers",
    "SAMPLERS": "modelops.sampling._samplers",
    "ParameterSpace": "modelops.sampling._space",
    "SobolSampleSizeWarning": "modelops.sampling._samplers",
    "grid": "modelops.sampling._samplers",
    "is_space_file": "modelops.sampling._load",
    "lhs": "modelops.sampling._samplers",
    "load_space": "modelops.sampling._load",
    "parse_fixes": "modelops.sampling._load",
    "random": "modelops.sampling._samplers",
    "sobol": "modelops.sampling._samplers",
}

__all__ = [
    "MAX_SETS",
    "SAMPLERS",
    "ParameterSpace",
    "SobolSampleSizeWarning",
    "grid",
    "is_space_file",
    "lhs",
    "load_space",
    "parse_fixes",
    "random",
    "sobol",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
