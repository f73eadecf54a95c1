"""The sensitivity section of the job report, on real jobs run into a fresh store."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

import modelops
from modelops.analysis import write_report
from modelops.api import JobHandle
from modelops.sensitivity import report_section
from modelops.sensitivity._saved import save_analysis
from modelops.services import InProcessSimulationService
from modelops_contracts import SimulationStudy
from tests.conftest import ToyBundle
from tests.modelops.sensitivity.test_plots import by_result, daily, sobol_result

IMAGE = re.compile(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'")
SALTELLI = {"method": "saltelli", "n": 2, "second_order": False, "rows": []}


def _page(handle: JobHandle) -> str:
    """The job's report as ``mops report`` writes it: with the sensitivity section."""
    sections = [report_section(handle.store, handle.job_id)]
    return write_report(handle, sections=sections).read_text(encoding="utf-8")


def run_toy(toy_bundle: ToyBundle, metadata: dict[str, Any] | None) -> JobHandle:
    """A small toy job, run in this process, with ``metadata`` as its study's metadata."""
    study = SimulationStudy(
        model="toy.ok",
        parameter_sets=[{"x": x} for x in range(2)],
        n_replicates=1,
        outputs=["summary"],
        metadata=metadata,
    )
    backend = InProcessSimulationService()
    handle = modelops.run(study, bundle=toy_bundle.path, store=toy_bundle.store, backend=backend)
    assert handle.summary is not None and handle.summary.failed == 0
    return handle


def test_a_design_job_without_analyses_gets_the_hint(toy_bundle: ToyBundle) -> None:
    handle = run_toy(toy_bundle, {"design": SALTELLI})
    page = _page(handle)
    assert "<h2>Sensitivity</h2>" in page
    assert f"<code>mops sensitivity {handle.job_id} OUTPUT --value COLUMN</code>" in page
    assert not IMAGE.search(page)


def test_a_design_job_embeds_each_saved_analysis(toy_bundle: ToyBundle) -> None:
    handle = run_toy(toy_bundle, {"design": {**SALTELLI, "method": "morris"}})
    warned = sobol_result(job_id=handle.job_id, warnings=("ST of c: wide interval <0.2>",))
    by_day = by_result(
        "sobol", [{"day": 0}, {"day": 1}], ("day",), daily, noise=[0.02, 0.3], job_id=handle.job_id
    )
    pictures = [save_analysis(r, handle.store)[1] for r in (by_day, warned)]
    broken = pictures[0].parent / "broken.json"
    broken.write_text("{", encoding="utf-8")
    page = _page(handle)
    section = page[page.index("<h2>Sensitivity</h2>") :]
    embedded = [base64.b64decode(data) for data in IMAGE.findall(section)]
    assert embedded == [p.read_bytes() for p in pictures]  # sorted by name, damaged file skipped
    assert "Sobol&#x27; indices of new_cases (incidence) by day, N=256, noise fraction 2-30%" in (
        section
    )
    assert "Sobol&#x27; indices of attack_rate (summary), N=1024, noise fraction 12%" in section
    assert "<li>ST of c: wide interval &lt;0.2&gt;</li>" in section
    assert "mops sensitivity" not in section


@pytest.mark.parametrize(
    "metadata",
    [None, {"design": "saltelli"}, {"design": {"method": "latin-hypercube"}}],
    ids=["no-design", "not-a-mapping", "other-method"],
)
def test_no_section_without_a_sensitivity_design(
    toy_bundle: ToyBundle, metadata: dict[str, Any] | None
) -> None:
    handle = run_toy(toy_bundle, metadata)
    save_analysis(sobol_result(job_id=handle.job_id), handle.store)  # ignored: not a design job
    page = _page(handle)
    assert "Sensitivity" not in page
    assert not IMAGE.search(page)
