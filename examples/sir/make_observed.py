"""Write ``observed.csv`` (day, cases): one SIR epidemic with known parameters, fixed seed.

The "truth" behind the data is ``beta = 0.3``, ``gamma = 0.1`` (baseline scenario, default
population 10000 and 100 initial cases, 100 days, seed 20240501). Run ``python make_observed.py``
from any directory; the CSV is written next to this script.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRUE_PARAMS = {"beta": 0.3, "gamma": 0.1}
SEED = 20240501


def main() -> None:
    """Simulate once with the true parameters and write day and new cases."""
    sys.path.insert(0, str(HERE))
    from sir_model import SIR

    incidence = SIR().run(TRUE_PARAMS, SEED)["incidence"]
    with (HERE / "observed.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["day", "cases"])
        for day, cases in zip(incidence["day"], incidence["new_cases"], strict=True):
            writer.writerow([int(day), int(cases)])


if __name__ == "__main__":
    main()
