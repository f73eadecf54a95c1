"""Fixtures for the sensitivity tests: models whose indices or ranking are known.

``functions.Ishigami`` is the Ishigami function (a = 7, b = 0.1) over [-pi, pi]^3, plus
Gaussian noise of sd ``noise`` drawn from the task's seed (fixed at 0 for the noise-free case).
``functions.Ranked`` is ``10 a + 5 b + 2 c + 0 d`` plus a small a*b interaction over [0, 1]^4,
so Morris's mu* must rank a > b > c > d; ``functions.Fragile`` is Ranked failing where a > 0.9.
``functions.Series`` writes ``y = a * t + b`` for days t = 0..4, one row per day, and a one-row
``total`` (its ``zero`` is constant): a model for ``by`` and row checks.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

FUNCTIONS = textwrap.dedent(
    '''
    """Test functions with known sensitivity."""

    from __future__ import annotations

    import math

    import numpy as np

    from modelops.model import Model, Parameter


    class Ishigami(Model):
        """sin x1 + 7 sin^2 x2 + 0.1 x3^4 sin x1, plus N(0, noise) noise."""

        parameters = (
            Parameter("x1", -math.pi, math.pi),
            Parameter("x2", -math.pi, math.pi),
            Parameter("x3", -math.pi, math.pi),
            Parameter("noise", 0.0, 10.0, default=0.0),
        )
        outputs = ("y",)

        def simulate(self, params, seed):
            x1, x2, x3 = params["x1"], params["x2"], params["x3"]
            f = math.sin(x1) + 7.0 * math.sin(x2) ** 2 + 0.1 * x3**4 * math.sin(x1)
            if params["noise"]:
                f += float(np.random.default_rng(seed).normal(0.0, params["noise"]))
            return {"y": {"f": f}}


    class Ranked(Model):
        """10 a + 5 b + 2 c + 0 d + 0.5 a b."""

        parameters = tuple(Parameter(name, 0.0, 1.0) for name in "abcd")
        outputs = ("y",)

        def simulate(self, params, seed):
            a, b, c = params["a"], params["b"], params["c"]
            return {"y": {"f": 10.0 * a + 5.0 * b + 2.0 * c + 0.5 * a * b}}


    class Fragile(Ranked):
        """Ranked, but fails where a > 0.9."""

        def simulate(self, params, seed):
            if params["a"] > 0.9:
                raise RuntimeError("a is too large")
            return super().simulate(params, seed)


    class Series(Model):
        """y = a * t + b for t = 0..4, plus N(0, 0.1) noise; total = sum of y."""

        parameters = (Parameter("a", 0.0, 1.0), Parameter("b", 0.0, 1.0))
        outputs = ("series", "total")

        def simulate(self, params, seed):
            t = np.arange(5)
            y = params["a"] * t + params["b"] + np.random.default_rng(seed).normal(0, 0.1, 5)
            return {"series": {"day": t, "y": y}, "total": {"sum": float(y.sum()), "zero": 0.0}}
    '''
)

A, B = 7.0, 0.1
_V1 = 0.5 * (1 + B * math.pi**4 / 5) ** 2
_V2 = A**2 / 8
_V13 = B**2 * math.pi**8 * (1 / 18 - 1 / 50)
ISHIGAMI_VARIANCE = _V1 + _V2 + _V13
ISHIGAMI_S1 = {"x1": _V1 / ISHIGAMI_VARIANCE, "x2": _V2 / ISHIGAMI_VARIANCE, "x3": 0.0}
ISHIGAMI_ST = {
    "x1": (_V1 + _V13) / ISHIGAMI_VARIANCE,
    "x2": _V2 / ISHIGAMI_VARIANCE,
    "x3": _V13 / ISHIGAMI_VARIANCE,
}


@pytest.fixture
def functions_bundle(tmp_path: Path) -> Path:
    """A bundle directory holding ``functions.py``."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "functions.py").write_text(FUNCTIONS, encoding="utf-8")
    return bundle
