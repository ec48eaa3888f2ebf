"""The bench's output format and correctness (never its speed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from vectors import cases, unhex

from bench import (
    CSV_COLUMNS,
    PLOTS,
    CellSpec,
    MatrixOptions,
    add_throughput,
    client_floor,
    drop_plan,
    graph_parameters,
    keystream_throughput,
    machine_floor,
    quick_cells,
)
from fl.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _bench(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    rc = main(["bench", "--protocols", "plaintext", "secagg+", "--clients", "5",
               "--dims", "1000", "--repeats", "1", "--out", str(tmp_path), "--json", *extra])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_tiny_matrix_writes_json_csv_and_plots(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    result = _bench(tmp_path, capsys, "--dropout", "0", "0.2")
    cells = result["cells"]
    # 2 protocols x (dropout 0 once + dropout 0.2 under both schedules)
    assert {(c["protocol"], c["dropout"], c["drop_schedule"]) for c in cells} == {
        (p, f, s) for p in ("plaintext", "secagg+")
        for f, s in ((0.0, "masked_input"), (0.2, "masked_input"), (0.2, "spread"))}
    for c in cells:
        assert c["status"] == "ok", c
        assert c["exact"] is True
        assert c["clients"] == 5 and c["dim"] == 1000
        for key in ("client_seconds", "server_seconds", "upload_bytes_per_client",
                    "download_bytes_per_client", "server_peak_bytes", "max_abs_error"):
            assert c[key] is not None and c[key] >= 0, key
        if c["protocol"] == "secagg+":
            assert c["x_floor"] > 0 and c["floor_seconds"] > 0
            assert c["floor_streams"] == c["degree"] + 1 == 5  # n=5: k shrinks to n-1
            assert c["floor_bytes_per_stream"] == (1000 + 1) * 4
        else:
            assert c.get("x_floor") is None
    dropped = [c for c in cells if c["dropout"] == 0.2]
    assert all(c["dropped"] == 1 for c in dropped)
    # A client that drops after sending its (masked) input is still in the sum.
    assert all(c["survivors"] == 4 for c in dropped if c["drop_schedule"] == "masked_input")
    # The same client drops under both schedules; only the stage differs.
    masked = next(c for c in dropped if c["protocol"] == "secagg+"
                  and c["drop_schedule"] == "masked_input")
    assert masked["dropped_by_stage"] == {"SHARE_FORWARD": 1}

    assert result["floor"]["keystream"]["bytes_per_second"] > 0
    assert result["floor"]["add"]["bytes_per_second"] > 0
    assert result["machine"]["cpu_count"] >= 1
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["cells"] == cells
    with (tmp_path / "results.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == len(cells)
    assert all(r["exact"] == "True" for r in rows)
    assert all(float(r["x_floor"]) > 0 for r in rows if r["protocol"] == "secagg+")
    for name in PLOTS:
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "headline.md").read_text().startswith("| protocol")


def test_floor_reports_positive_throughput() -> None:
    assert keystream_throughput(1 << 20, repeats=1).bytes_per_second > 0
    assert add_throughput(1 << 20, repeats=1).bytes_per_second > 0
    f = client_floor(3, 4004, repeats=1)
    assert f.streams == 3 and f.nbytes == 4004
    assert f.seconds > 0 and f.keystream_seconds > 0
    m = machine_floor(1 << 20, repeats=1)
    assert m["keystream_plus_add"]["gb_per_second"] > 0
    with pytest.raises(ValueError):
        client_floor(0, 10)


def test_graph_parameters_match_flower_mapping() -> None:
    opts = MatrixOptions()
    assert graph_parameters("secagg+", 100, 0.1, opts) == {"degree": 10, "threshold": 6}
    assert graph_parameters("secagg+", 5, 0.1, opts) == {"degree": 4, "threshold": 3}
    assert graph_parameters("secagg", 100, 0.1, opts) == {"degree": 99, "threshold": 51}
    assert graph_parameters("plaintext", 100, 0.1, opts) is None
    auto = graph_parameters("secagg+", 100, 0.1, MatrixOptions(degree=None))
    assert auto is not None and auto["degree"] % 2 == 0
    assert 1 <= auto["threshold"] <= auto["degree"] + 1


def test_drop_plans_share_clients_across_schedules() -> None:
    a = drop_plan(CellSpec(40, 10, 0.2, "secagg+", "masked_input"), seed=3)
    b = drop_plan(CellSpec(40, 10, 0.2, "secagg+", "spread"), seed=3)
    assert set(a) == set(b) and len(a) == 8
    assert set(a.values()) == {2}  # SHARE_FORWARD: keys shared, masked input never sent
    assert len(set(b.values())) > 1


def test_quick_design_holds_the_headline_cells() -> None:
    cells, base = quick_cells(["plaintext", "secagg", "secagg+"])
    for proto in ("secagg", "secagg+"):
        assert CellSpec(100, 1_000_000, 0.1, proto, "masked_input") in cells
    assert any(c.schedule == "spread" for c in cells)
    assert base.clients == 100 and base.dropout == 0.1


def test_bad_parameters_are_one_line_errors(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    assert main(["bench", "--repeats", "0", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--protocols", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("secagg: error:") for line in err)


def test_vs_flower_tiny_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("flwr")
    rc = main(["bench", "--protocols", "secagg+", "--clients", "4", "--dims", "100",
               "--dropout", "0", "--repeats", "1", "--vs", "flower", "--out", str(tmp_path),
               "--json", "--no-plots"])
    assert rc == 0
    (cell,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cells"]
    flower = cell["flower"]
    assert flower["status"] in ("ok", "aborted")
    assert flower["workflow"] == "SecAggPlusWorkflow"
    assert flower["num_shares"] == cell["degree"] + 1 and flower["threshold"] == cell["threshold"]
    if flower["status"] == "ok":
        assert cell["speedup_vs_flower"]["server"] > 0
        assert cell["speedup_vs_flower"]["client"] > 0
        assert flower["max_abs_error"] < 1e-3
    else:
        assert flower["error"]


def test_flower_abort_is_reported_not_raised() -> None:
    pytest.importorskip("flwr")
    import numpy as np

    from bench.flower_peer import run_flower

    xs = [np.full(50, 0.01, np.float32) for _ in range(5)]
    # Client 0 drops at setup: nobody holds shares of its seed, so Flower halts at unmask.
    r = run_flower(xs, num_shares=3, threshold=2, drop_at={0: 0})
    assert r.aborted and r.error
    ok = run_flower(xs, num_shares=3, threshold=2, drop_at={0: 2})
    assert not ok.aborted and ok.survivors == 4
    assert ok.max_abs_error is not None and ok.max_abs_error < 1e-3


# -- the optional torch mask path (bench.gpu_chacha), checked on CPU torch -------------------
CHACHA_VECTORS = "chacha20/rfc8439.json"


def _words_bytes(t: Any) -> bytes:
    import numpy as np

    return np.asarray(t.numpy()).view(np.uint32).astype("<u4").tobytes()


@pytest.mark.parametrize("v", cases(CHACHA_VECTORS, "block"))
def test_torch_chacha20_block_matches_rfc8439(v: dict) -> None:
    pytest.importorskip("torch")
    from bench.gpu_chacha import chacha20_blocks

    got = chacha20_blocks(unhex(v["key"]), v["counter"], 1, nonce=unhex(v["nonce"]))
    assert _words_bytes(got) == unhex(v["keystream"])


@pytest.mark.parametrize("v", cases(CHACHA_VECTORS, "encrypt"))
def test_torch_chacha20_encrypts_rfc8439_texts(v: dict) -> None:
    pytest.importorskip("torch")
    from bench.gpu_chacha import chacha20_blocks

    pt, ct = unhex(v["plaintext"]), unhex(v["ciphertext"])
    ks = _words_bytes(chacha20_blocks(unhex(v["key"]), v["counter"], -(-len(pt) // 64),
                                      nonce=unhex(v["nonce"])))
    assert bytes(a ^ b for a, b in zip(pt, ks)) == ct


@pytest.mark.parametrize("count", [1, 15, 16, 17, 33, 1000])
def test_torch_keystream_is_bit_identical_to_prg(count: int) -> None:
    pytest.importorskip("torch")
    import numpy as np

    from bench import gpu_chacha
    from secagg import prg

    key = bytes(range(7, 39))
    for dt in (np.uint32, np.uint64):
        assert np.array_equal(gpu_chacha.keystream(key, count, dt), prg.keystream(key, count, dt))


@pytest.mark.parametrize(("dtype", "length", "chunk"), [("uint32", 1001, 64), ("uint64", 517, 48)])
def test_torch_masked_add_equals_prg_add_masks(dtype: str, length: int, chunk: int) -> None:
    torch = pytest.importorskip("torch")
    import numpy as np

    from bench import gpu_chacha
    from secagg import prg

    terms = [(bytes([i]) * 32, sign) for i, sign in ((1, 1), (2, -1), (3, 1))]
    base = np.arange(length, dtype=dtype) * 2654435761
    want = prg.add_masks(base.copy(), terms)
    signed = np.int32 if dtype == "uint32" else np.int64
    acc = torch.from_numpy(base.view(signed).copy())
    gpu_chacha.add_masks(acc, terms, chunk_words=chunk)
    assert np.array_equal(acc.numpy().view(dtype), want)
    with pytest.raises(ValueError):
        gpu_chacha.add_masks(acc, [(bytes(32), 2)])


def test_torch_path_self_check_passes_on_cpu_and_would_catch_a_wrong_keystream(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """matches_cpu is what the GPU benchmark reports as bit_identical_to_cpu."""
    torch = pytest.importorskip("torch")
    from bench import gpu_chacha

    assert gpu_chacha.matches_cpu(device="cpu") is True
    real = gpu_chacha.chacha20_blocks

    def off_by_one(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        out[-1] += 1
        return out

    monkeypatch.setattr(gpu_chacha, "chacha20_blocks", off_by_one)
    assert gpu_chacha.matches_cpu(device="cpu") is False
    assert torch is not None


def test_a_lean_cell_generates_inputs_per_client_and_stays_exact() -> None:
    """Large cells take ``u -> vector`` and run lean; the sum is still exact, and the
    generated inputs are the same on every call (so the oracle sees what the client saw)."""
    from functools import partial

    from bench.matrix import make_input, run_cell

    a, b = make_input(12, 300, 0, 4), make_input(12, 300, 0, 4)
    assert a.dtype == "float32" and (a == b).all() and not (a == make_input(12, 300, 0, 5)).all()
    cell = CellSpec(12, 300, 0.2, "secagg+", "masked_input")
    rec = run_cell(cell, partial(make_input, 12, 300, 0), MatrixOptions(repeats=1, degree=6,
                                                                         threshold=4))
    assert rec["status"] == "ok", rec["error"]
    assert rec["lean"] is True and rec["exact"] is True and rec["dropped"] == 2
    assert rec["process_peak_rss_bytes"] is None or rec["process_peak_rss_bytes"] > 0
