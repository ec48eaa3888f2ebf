"""Third-party protocols through the entry-point group ``secagg.protocols``: a broken plugin
gives one typed line and never breaks the others."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import protocols
from protocols import registry
from secagg.errors import ConfigError


def _fake_distribution(root: Path, name: str, entry_points: str) -> None:
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "good_plugin.py").write_text(
        "import dataclasses, protocols\n"
        "SPEC = dataclasses.replace(protocols.get('plaintext'), name='renamed-plain')\n"
        "def wrong():\n    return 42\n")
    (tmp_path / "bad_plugin.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    _fake_distribution(tmp_path, "fake_plugins", (
        "[secagg.protocols]\n"
        "renamed-plain = good_plugin:SPEC\n"
        "exploding = bad_plugin:SPEC\n"
        "not-a-spec = good_plugin:wrong\n"
        "misnamed = good_plugin:SPEC\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("renamed-plain",):
        registry._SPECS.pop(name, None)
    for name in ("exploding", "not-a-spec", "misnamed"):
        registry._BROKEN.pop(name, None)
    sys.modules.pop("good_plugin", None)
    sys.modules.pop("bad_plugin", None)


def test_a_broken_plugin_is_one_typed_line_and_the_others_load(plugins: Path) -> None:
    registry.load_plugins(reload=True)
    assert "renamed-plain" in protocols.names()
    for name in ("plaintext", "secagg", "secagg+"):
        assert name in protocols.names()
    for name in ("exploding", "not-a-spec", "misnamed"):
        assert name not in protocols.names()
        with pytest.raises(ConfigError) as info:
            protocols.get(name)
        line = str(info.value)
        assert "\n" not in line and f"protocol plugin {name!r}" in line
    assert "RuntimeError: boom" in str(pytest.raises(ConfigError, protocols.get, "exploding").value)
    errors = protocols.plugin_errors()
    assert any("not a ProtocolSpec" in e for e in errors)
    assert any("named 'misnamed' but the spec 'renamed-plain'" in e for e in errors)
    # The plugin that loaded runs like a built-in protocol.
    import numpy as np

    result = protocols.aggregate("renamed-plain", None, [np.full(3, 0.5)] * 3)
    assert result.total_weight == 3.0


def test_unknown_names_still_list_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="choose one of: plaintext, secagg"):
        protocols.get("no-such-protocol")
