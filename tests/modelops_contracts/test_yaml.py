from __future__ import annotations

import yaml

from modelops_contracts import restore_on_key


def test_restore_on_key_undoes_yaml_1_1_booleans() -> None:
    item = yaml.safe_load("{name: cases, on: [day], 3: x}")
    assert True in item  # what PyYAML does to a bare ``on:`` key
    restored = restore_on_key(item)
    assert restored == {"name": "cases", "on": ["day"], "3": "x"}
    assert list(restored) == ["name", "on", "3"]
    assert restore_on_key({"on": 1}) == {"on": 1}
