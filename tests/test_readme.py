"""README.md and .ci/run stay in step: CI runs exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    test_cmds = [b for b in _bash_blocks(readme) if "pytest" in b]
    assert len(test_cmds) == 1, "README must show exactly one test command"
    assert test_cmds[0] in ci_lines


def test_main_job_command_installs_torch_first_and_runs_secagg() -> None:
    readme = (ROOT / "README.md").read_text()
    main = [b for b in _bash_blocks(readme) if "pip install" in b and "pytest" not in b]
    assert main, "README must show the install-and-run command"
    cmd = main[0]
    assert cmd.startswith("python3 -m pip install") and "torch==2.13.0" in cmd.split("&&")[0]
    assert re.search(r"&& secagg (run|simulate)\b", cmd)


def test_library_example_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README must show a library example"
    scope: dict[str, object] = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102 - our own README
    result = scope["result"]
    assert result.total_weight == 20.0  # type: ignore[attr-defined]
    assert abs(float(result.sum[0]) - 0.2) < 1e-3  # type: ignore[attr-defined]


def test_dp_path_example_runs() -> None:
    """The README's "One DP path" example: checked before, charged once after, from the
    event in the result."""
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S)
              if "privacy.settle" in b]
    assert len(blocks) == 1, "README must show the DP path once"
    scope: dict[str, object] = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102 - our own README
    ledger, result = scope["ledger"], scope["result"]
    assert ledger.rounds == 1 and ledger.events[0] == result.dp_event  # type: ignore[attr-defined]
    assert scope["epsilon"] == ledger.epsilon() <= 3.0  # type: ignore[attr-defined]
    privacy, config = scope["privacy"], scope["config"]
    sigma = privacy.sigma / config.encoding.scale  # type: ignore[attr-defined]
    values = result.sum  # type: ignore[attr-defined]  # 0.2 plus noise in each coordinate
    assert abs(float(values.mean()) - 0.2) < 5 * sigma / values.size**0.5
    assert 0.5 * sigma < float(values.std()) < 1.5 * sigma
