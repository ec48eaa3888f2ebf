"""The kit's worked examples run as written: the one in ``protocols.testing``'s docstring (two
files: a protocol module and its test module) and the README's "Testing your own protocol"
test module. Each is written out to a fresh folder and run by pytest in a subprocess, as a
user would; a planted bug in the protocol must make the same files fail."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import protocols.testing

ROOT = Path(__file__).resolve().parents[1]

# A small hypothesis profile for the subprocess (the files themselves load none).
CONFTEST = ("from hypothesis import HealthCheck, settings\n"
            "settings.register_profile('docs', max_examples=10, deadline=None,\n"
            "                          suppress_health_check=[HealthCheck.too_slow])\n"
            "settings.load_profile('docs')\n")

# Planted bug: the server adds one unit to coordinate 0 of every release.
BROKEN = '''
import numpy as np
_orig = SPEC.server

def _server(config, rng):
    server = _orig(config, rng)
    result = server.result

    def wrong():
        r = result()
        if r.int_sum is not None:
            r.int_sum[0] += 1
        r.sum[0] += 1.0
        return r
    server.result = wrong
    return server

SPEC = dataclasses.replace(SPEC, server=_server)
'''


def _docstring_example() -> dict[str, str]:
    doc = protocols.testing.__doc__ or ""
    block = doc.split("Worked example", 1)[1].split("::\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    code = textwrap.dedent("\n".join(lines))
    module, test = code.split("# test_my_protocol.py", 1)
    return {"my_protocol.py": module, "test_my_protocol.py": "# test_my_protocol.py" + test}


def _readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Testing your own protocol", 1)[1]
    blocks = [b for b in re.findall(r"```python\n(.*?)```", section, flags=re.S)
              if "ProtocolConformance" in b]
    assert len(blocks) == 1, "the README's kit section must show one test module"
    return blocks[0]


def _pytest(folder: Path) -> subprocess.CompletedProcess[str]:
    (folder / "conftest.py").write_text(CONFTEST)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(folder), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-x", str(folder)], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=900)


def _passed(run: subprocess.CompletedProcess[str]) -> int:
    found = re.search(r"(\d+) passed", run.stdout)
    return int(found.group(1)) if found else 0


def test_the_docstring_example_runs_as_written_and_catches_a_planted_bug(
        tmp_path: Path) -> None:
    files = _docstring_example()
    assert "protocols.register(SPEC)" in files["my_protocol.py"]
    good = tmp_path / "good"
    good.mkdir()
    for name, text in files.items():
        (good / name).write_text(text)
    run = _pytest(good)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert _passed(run) >= 10  # the conformance suite and the state machine were collected
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "my_protocol.py").write_text(files["my_protocol.py"].replace(
        "protocols.register(SPEC)", BROKEN + "protocols.register(SPEC)"))
    (bad / "test_my_protocol.py").write_text(files["test_my_protocol.py"])
    run = _pytest(bad)
    assert run.returncode == 1 and "failed" in run.stdout, run.stdout[-3000:]
    assert "is not the exact sum" in run.stdout  # caught by the oracle, not by accident


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "test_my_protocol.py").write_text(_readme_example())
    run = _pytest(tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert _passed(run) >= 10


def test_the_examples_are_found() -> None:
    files = _docstring_example()
    assert set(files) == {"my_protocol.py", "test_my_protocol.py"}
    assert "round_machine(my_protocol.SPEC)" in files["test_my_protocol.py"]
    assert "ProtocolConformance" in _readme_example()
