"""fl.training.anonymity: Mondrian k-anonymity, checked independently of how it partitions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl.training.anonymity import (
    DEFAULT_QUASI_IDENTIFIERS,
    Hierarchy,
    QuasiIdentifier,
    anonymise,
    anonymise_shards,
    feature_names,
    quasi_identifiers,
)
from fl.training.config import RunConfig
from fl.training.data import load_dataset
from fl.training.loop import plan_run, run_training
from secagg.errors import ConfigError


@pytest.fixture(autouse=True, scope="module")
def _restore_torch_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # `secagg run` sets one thread for its tiny models


def _check_k_anonymous(x: np.ndarray, qis: list[QuasiIdentifier], k: int) -> None:
    """Independent check: group the *recoded* rows by their QI values; every group has >= k
    rows, and each class's generalisation covers the raw values of its records."""
    table = anonymise(x, qis, k)
    cols = [q.column for q in qis]
    keys = [tuple(row) for row in table.x[:, cols]]
    counts: dict[tuple[float, ...], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    assert min(counts.values()) >= k
    assert table.report.k_achieved == min(counts.values())
    assert table.report.classes == len(counts)
    covered = np.zeros(len(x), dtype=int)
    for c in table.classes:
        covered[c.rows] += 1
        assert len(c.rows) >= k
        for j, q in enumerate(qis):
            lo, hi = c.ranges[j]
            raw = x[c.rows, q.column]
            assert np.all((raw >= lo) & (raw <= hi))
            if q.hierarchy is not None:
                node = c.nodes[j]
                assert set(raw.tolist()) <= set(q.hierarchy.leaves(node))
            # one generalised value per class, inside its range
            rec = table.x[c.rows, q.column]
            assert np.all(rec == rec[0]) and lo <= rec[0] <= hi
    assert np.all(covered == 1)  # the classes partition the table
    others = [i for i in range(x.shape[1]) if i not in cols]
    np.testing.assert_array_equal(table.x[:, others], x[:, others])
    assert 0.0 <= table.report.ncp <= 1.0
    assert table.report.discernibility == sum(len(c.rows) ** 2 for c in table.classes)
    assert table.report.suppressed == 0


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 120), k=st.integers(1, 12), seed=st.integers(0, 2**16),
       dims=st.integers(1, 3))
def test_every_class_has_at_least_k_records(n: int, k: int, seed: int, dims: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(n, dims + 1)) * 3)  # ties on purpose
    x[:, -1] = rng.integers(0, 3, size=n)  # a categorical column
    qis = [QuasiIdentifier(i, f"q{i}") for i in range(dims)]
    qis.append(QuasiIdentifier(dims, "cat", Hierarchy.flat([0, 1, 2])))
    if n < k:
        table = anonymise(x, qis, k)
        assert table.report.suppressed == n and len(table.x) == 0
        return
    _check_k_anonymous(x, qis, k)


def test_categorical_hierarchy_is_respected() -> None:
    rng = np.random.default_rng(0)
    x = np.stack([rng.integers(18, 90, 200), rng.integers(0, 4, 200)], axis=1).astype(float)
    hier = Hierarchy({"*": ["north", "south"], "north": [0.0, 1.0], "south": [2.0, 3.0]})
    qis = [QuasiIdentifier(0, "age"), QuasiIdentifier(1, "region", hier)]
    _check_k_anonymous(x, qis, 10)
    table = anonymise(x, qis, 10)
    assert {c.nodes[1] for c in table.classes} <= {"*", "north", "south", 0.0, 1.0, 2.0, 3.0}
    assert any(c.nodes[1] != "*" for c in table.classes)  # it did specialise


def test_bundled_defaults_on_a_client_shard() -> None:
    for name in DEFAULT_QUASI_IDENTIFIERS:
        ds = load_dataset(name)
        qis = quasi_identifiers(feature_names(ds), None, name, ds.x_train)
        shard = ds.split_iid(8, seed=2)[0]
        _check_k_anonymous(shard.x.astype(np.float64), qis, 5)


def test_feature_names_are_sklearns() -> None:
    from sklearn.datasets import load_breast_cancer

    want = tuple(str(f).replace(" ", "_") for f in load_breast_cancer().feature_names)
    assert feature_names(load_dataset("breast_cancer")) == want
    assert feature_names(load_dataset("diabetes"))[:4] == ("age", "sex", "bmi", "bp")
    assert feature_names(load_dataset("digits"))[9] == "pixel_1_1"


def test_bad_input_is_one_typed_line() -> None:
    ds = load_dataset("diabetes")
    for names, what in ((["height"], "height"), (["age", "age"], "twice")):
        with pytest.raises(ConfigError, match=what) as info:
            quasi_identifiers(feature_names(ds), names, "diabetes", ds.x_train)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="no default quasi-identifiers"):
        quasi_identifiers(feature_names(load_dataset("digits")), None, "digits",
                          load_dataset("digits").x_train)
    shards = ds.split_iid(20, seed=0)
    with pytest.raises(ConfigError, match="fewer than k=50"):
        anonymise_shards(ds, shards, 50, None)
    with pytest.raises(ConfigError, match="k must be"):
        anonymise(ds.x_train, [QuasiIdentifier(0, "age")], 0)
    with pytest.raises(ConfigError, match="quasi_identifiers need k-anonymity"):
        plan_run(RunConfig(dataset="diabetes", quasi_identifiers=("age",), dp=False))


def test_run_reports_anonymity_next_to_the_raw_accuracy() -> None:
    cfg = RunConfig(protocol="plaintext", dataset="diabetes", clients=5, rounds=3, dp=False,
                    seed=4, k_anonymity=8)
    plan = plan_run(cfg)
    # the shards the clients train on are k-anonymous over the default QIs
    ds = plan.dataset
    cols = [feature_names(ds).index(c) for c in DEFAULT_QUASI_IDENTIFIERS["diabetes"]]
    for shard in plan.shards:
        _, counts = np.unique(shard.x[:, cols], axis=0, return_counts=True)
        assert counts.min() >= 8
    anon = run_training(plan)
    raw = run_training(replace(cfg, k_anonymity=None))
    summary = anon.to_json()
    assert summary["k_anonymity"]["k_achieved"] >= 8
    assert summary["k_anonymity"]["suppressed"] == 0
    assert 0 < summary["k_anonymity"]["ncp"] < 1
    assert raw.to_json()["k_anonymity"] is None
    anon.baseline_accuracy = raw.final_accuracy
    again = json.loads(json.dumps(anon.to_json()))
    assert again["baseline_accuracy"] == raw.final_accuracy
    assert 0.0 <= again["final_accuracy"] <= 1.0


def test_cli_reports_both_accuracies(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    import fl.cli

    code = fl.cli.main(["run", "--protocol", "plaintext", "--dataset", "diabetes", "--no-dp",
                        "--clients", "4", "--rounds", "2", "--seed", "1", "--k-anonymity", "6",
                        "--baseline", "--out", f"{tmp_path}/r", "--json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert code == 0
    assert out["k_anonymity"]["k"] == 6 and out["k_anonymity"]["k_achieved"] >= 6
    assert isinstance(out["baseline_accuracy"], float)
    assert "accuracy without k-anonymity" in captured.err
    assert fl.cli.main(["run", "--baseline", "--out", f"{tmp_path}/s"]) == 2
    assert "add --k-anonymity" in capsys.readouterr().err
