"""Shared fixtures."""

from __future__ import annotations

import pytest

KNOWN_PARAMS = {"beta": 0.5, "gamma": 0.1}
KNOWN_PARAM_ID = "4dcc7ab13573314d32533202b02f34a316bfb06c4155cb84f7cad4908a22f85e"
KNOWN_SEEDS = [2794990768, 755616011, 3093967472]


@pytest.fixture
def bundle_ref() -> str:
    return "sha256:" + "ab" * 32


@pytest.fixture
def other_bundle_ref() -> str:
    return "sha256:" + "cd" * 32
