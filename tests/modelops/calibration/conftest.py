"""Fixtures for the calibration tests: a small noisy model with known true parameters.

``line.Line`` draws ``y = slope * t + offset + noise`` for ``t = 0..9`` (noise sd 0.5 from the
task's seed); ``observed.csv`` holds the noise-free line of ``TRUE`` and ``targets.yaml`` scores
``y`` against it with ``mse_of_mean``. ``line.Gated`` is the same model, but a call made while
the ``gate`` file named by the environment exists (after ``GATE_AFTER`` calls) first writes the
``blocked`` file and waits for the gate to go: a test can then kill a calibration mid-round.
Every call appends a ``slope offset seed`` line to the file ``LINE_CALLS`` names, if set, so a
test can tell which simulations ran, and how often.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

TRUE = {"slope": 2.0, "offset": 10.0}
GATE_AFTER = 40

LINE_MODULE = textwrap.dedent(
    f'''
    """A noisy line for the calibration tests."""

    from __future__ import annotations

    import os
    import time
    from pathlib import Path

    import numpy as np

    from modelops.model import Model, Parameter


    def _line(params, seed):
        rng = np.random.default_rng(seed)
        t = np.arange(10)
        y = params["slope"] * t + params["offset"] + rng.normal(0.0, 0.5, size=10)
        calls = os.environ.get("LINE_CALLS")
        if calls:
            with open(calls, "a", encoding="utf-8") as handle:
                handle.write(f"{{params['slope']!r}} {{params['offset']!r}} {{seed}}\\n")
        return {{"series": {{"t": t, "y": y}}, "total": {{"sum": float(y.sum())}}}}


    class Line(Model):
        """y = slope * t + offset + N(0, 0.5) noise, t = 0..9."""

        parameters = (
            Parameter("slope", 0.0, 5.0),
            Parameter("offset", 1.0, 100.0, log=True),
            Parameter("width", 1, 9, kind="int", default=5),
        )
        outputs = ("series", "total")

        def simulate(self, params, seed):
            return _line(params, seed)


    class Gated(Line):
        """Line, but blocks while the gate file exists once enough calls were made."""

        def simulate(self, params, seed):
            gate = os.environ.get("LINE_GATE")
            calls = os.environ.get("LINE_CALLS")
            if gate and calls and Path(gate).exists() and Path(calls).exists():
                made = sum(1 for _ in open(calls, encoding="utf-8"))
                if made >= {GATE_AFTER}:
                    Path(gate + ".blocked").write_text("1", encoding="utf-8")
                    while Path(gate).exists():
                        time.sleep(0.01)
            return _line(params, seed)
    '''
)

TARGETS = textwrap.dedent(
    """\
    targets:
      - {name: line, output: series, data: observed.csv, on: [t], value: y, loss: mse_of_mean}
    """
)


@dataclass(frozen=True)
class LineBundle:
    """The bundle directory, its targets file and a store path beside it."""

    path: Path
    targets: Path
    store: Path

    @property
    def fix(self) -> dict[str, int]:
        return {"width": 5}


def make_line_bundle(root: Path, targets: str = TARGETS) -> LineBundle:
    """The line bundle, its data (``targets`` as the targets file) and a store under ``root``."""
    bundle = root / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "line.py").write_text(LINE_MODULE, encoding="utf-8")
    data = root / "data"
    data.mkdir()
    rows = ["t,y"] + [f"{t},{TRUE['slope'] * t + TRUE['offset']}" for t in range(10)]
    (data / "observed.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (data / "targets.yaml").write_text(targets, encoding="utf-8")
    return LineBundle(bundle, data / "targets.yaml", root / "store")


@pytest.fixture
def line_bundle(tmp_path: Path) -> LineBundle:
    return make_line_bundle(tmp_path)
