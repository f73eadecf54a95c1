"""Hypothesis strategies shared by the sampler and calibration tests: parameters and spaces."""

from __future__ import annotations

from hypothesis import strategies as st

from modelops.model import Parameter
from modelops.sampling import ParameterSpace


@st.composite
def parameters(draw: st.DrawFn, name: str, max_width: int = 1000) -> Parameter:
    """A float or int parameter, on a linear or log scale, with random bounds."""
    kind = draw(st.sampled_from(["float", "int"]))
    log = draw(st.booleans())
    low = draw(st.integers(1, 50) if log else st.integers(-50, 50))
    width = draw(st.integers(1, max_width))
    if kind == "float":
        return Parameter(name, low / 4, (low + width) / 4, log=log)
    return Parameter(name, low, low + width, kind="int", log=log)


@st.composite
def spaces(draw: st.DrawFn, max_dims: int = 4, max_width: int = 1000) -> ParameterSpace:
    """A space of 1 to ``max_dims`` such parameters, named p0, p1, ..."""
    dims = draw(st.integers(1, max_dims))
    params = [draw(parameters(f"p{i}", max_width)) for i in range(dims)]
    return ParameterSpace.from_parameters(params, model="pkg.mod.Model")
