"""fl.training.fedavg: local training, evaluation, the FedAvg step, weights, sampling (the
metrics' layout is tests/test_payload.py's)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch

from fl.training.data import Dataset, Shard, load_dataset
from fl.training.fedavg import (
    SAMPLING_MODES,
    cap_weights,
    evaluate,
    fedavg_step,
    local_train,
    sample_clients,
)
from fl.training.linear import LinearModel
from fl.training.model import ModelVector, make_model, num_params
from fl.training.payload import METRIC_NAMES, metrics_from_sum, metrics_vector
from secagg.errors import ConfigError


@cache
def _ds(name: str) -> Dataset:
    return load_dataset(name)


def _client(n_clients: int = 5, i: int = 0) -> Shard:
    return _ds("breast_cancer").split_iid(n_clients, seed=0)[i]


# local_train


def test_local_train_returns_the_delta_from_the_given_weights() -> None:
    ds = _ds("breast_cancer")
    mv = ModelVector(make_model(ds))
    start = np.linspace(-0.1, 0.1, len(mv)).astype(np.float32)
    data = _client()
    delta, n, metrics = local_train(
        mv, data, epochs=2, lr=0.1, batch_size=16, seed=1, weights=start
    )
    assert delta.dtype == np.float32 and delta.shape == (num_params(mv.model),)
    assert n == len(data)
    trained = mv.to_vector()
    np.testing.assert_array_equal(delta, trained - start)
    assert np.abs(delta).max() > 0
    assert not np.shares_memory(delta, trained)
    assert set(metrics) == {"loss", "accuracy"}
    assert metrics["loss"] > 0 and 0.0 <= metrics["accuracy"] <= 1.0


def test_local_train_is_deterministic_per_seed() -> None:
    ds = _ds("breast_cancer")
    mv = ModelVector(make_model(ds))
    g = mv.to_vector().copy()
    data = _client()
    a, _, _ = local_train(mv, data, 1, 0.1, 8, seed=4, weights=g)
    b, _, _ = local_train(mv, data, 1, 0.1, 8, seed=4, weights=g)
    c, _, _ = local_train(mv, data, 1, 0.1, 8, seed=5, weights=g)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # a bare module works too, and gives the same update from the same weights
    model = make_model(ds)
    ModelVector(model).from_vector(g)
    d, _, _ = local_train(model, data, 1, 0.1, 8, seed=4)
    np.testing.assert_array_equal(a, d)


def _torch_linear(model: LinearModel) -> torch.nn.Linear:
    ref = torch.nn.Linear(model.n_features, model.n_classes)
    ModelVector(ref).from_vector(model.vector)
    return ref


def test_one_full_batch_step_is_plain_gradient_descent() -> None:
    """The numpy linear model's step is the torch autograd gradient of nn.Linear's mean
    cross-entropy, from the same weights."""
    ds = _ds("breast_cancer")
    data = _client()
    model = make_model(ds)
    assert isinstance(model, LinearModel)
    start = ModelVector(model).to_vector().copy()
    ref = _torch_linear(model)
    loss = torch.nn.functional.cross_entropy(
        ref(torch.from_numpy(data.x)), torch.from_numpy(data.y)
    )
    loss.backward()
    loss = loss.detach()
    grad = torch.cat([ref.weight.grad.flatten(), ref.bias.grad]).numpy()
    delta, _, metrics = local_train(model, data, 1, 0.5, batch_size=len(data), seed=0)
    np.testing.assert_allclose(delta, -0.5 * grad, rtol=1e-5, atol=1e-7)
    assert metrics["loss"] == pytest.approx(float(loss), rel=1e-6)
    np.testing.assert_allclose(ModelVector(model).to_vector(), start + delta, rtol=0, atol=1e-6)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_linear_sgd_follows_torch_over_minibatches(momentum: float) -> None:
    """Two epochs of minibatches with the same shuffles: the numpy model and nn.Linear under
    the torch loop reach the same weights, up to float32 rounding, and the same metrics."""
    ds = _ds("breast_cancer")
    shard = ds.split_iid(4, seed=0)[2]
    model = make_model(ds, seed=3)
    assert isinstance(model, LinearModel)
    ref = _torch_linear(model)
    kw = {"epochs": 2, "lr": 0.3, "batch_size": 16, "seed": 4, "momentum": momentum}
    mine, _, m1 = local_train(model, shard, **kw)  # type: ignore[arg-type]
    theirs, _, m2 = local_train(ref, shard, **kw)  # type: ignore[arg-type]
    assert np.abs(theirs).max() > 0.01
    np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=2e-6)
    assert m1["accuracy"] == m2["accuracy"]
    assert m1["loss"] == pytest.approx(m2["loss"], rel=1e-5)


def test_evaluate_on_the_linear_model_matches_torch() -> None:
    ds = _ds("breast_cancer")
    model = make_model(ds, seed=1)
    assert isinstance(model, LinearModel)
    mine = evaluate(model, ds.test, batch_size=50)  # a ragged last batch
    theirs = evaluate(_torch_linear(model), ds.test)
    assert mine["accuracy"] == theirs["accuracy"] and mine["n_examples"] == ds.n_test
    assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1.5}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"momentum": 1.0}, "momentum"),
    ],
)
def test_local_train_refuses_bad_hyperparameters(kwargs: dict[str, float], word: str) -> None:
    args = {"epochs": 1, "lr": 0.1, "batch_size": 8, "seed": 0} | kwargs
    with pytest.raises(ConfigError, match=word):
        local_train(make_model("breast_cancer"), _client(), **args)  # type: ignore[arg-type]


def test_local_train_refuses_empty_data_and_wrong_weights() -> None:
    model = make_model("breast_cancer")
    empty = Shard(np.zeros((0, 30), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))
    with pytest.raises(ConfigError, match="no examples"):
        local_train(model, empty)
    with pytest.raises(ConfigError, match="61.*62"):
        local_train(model, _client(), weights=np.zeros(61, dtype=np.float32))


def test_data_the_linear_model_cannot_take_is_one_typed_line() -> None:
    model = make_model("breast_cancer")
    data = _client()
    narrow = Shard(data.x[:, :29], data.y, data.indices)
    with pytest.raises(ConfigError, match="29 features but the model takes 30"):
        local_train(model, narrow)
    with pytest.raises(ConfigError, match="29 features"):
        evaluate(model, narrow)
    bad = Shard(data.x, np.where(data.y == 1, 2, data.y), data.indices)
    with pytest.raises(ConfigError, match=r"labels must be in 0\.\.1.*got 0\.\.2"):
        local_train(model, bad)


def test_diverging_training_is_reported() -> None:
    with pytest.raises(ConfigError, match="diverged"):
        local_train(make_model("breast_cancer"), _client(), epochs=5, lr=1e38, batch_size=4)


# evaluate


def test_evaluate_matches_a_direct_computation_and_changes_nothing() -> None:
    ds = _ds("digits")
    model = make_model(ds)
    before = ModelVector(model).to_vector().copy()
    result = evaluate(model, ds.test, batch_size=100)  # several batches, a ragged last one
    x, y = torch.from_numpy(ds.x_test), torch.from_numpy(ds.y_test)
    with torch.no_grad():
        logits = model(x)
    assert result["n_examples"] == ds.n_test
    assert result["accuracy"] == int((logits.argmax(1) == y).sum()) / ds.n_test
    assert result["loss"] == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-5
    )
    np.testing.assert_array_equal(ModelVector(model).to_vector(), before)
    assert model.training


# fedavg_step


def test_fedavg_step_is_the_weighted_mean_of_the_updates() -> None:
    rng = np.random.default_rng(0)
    g = rng.standard_normal(50).astype(np.float32)
    deltas = rng.standard_normal((3, 50))
    w = np.array([10.0, 30.0, 60.0])
    new = fedavg_step(g, (w[:, None] * deltas).sum(axis=0), w.sum())
    assert new.dtype == np.float32
    np.testing.assert_allclose(new, g + (w[:, None] * deltas).sum(axis=0) / 100.0, rtol=1e-6)
    half = fedavg_step(g, (w[:, None] * deltas).sum(axis=0), w.sum(), server_lr=0.5)
    np.testing.assert_allclose(half - g, 0.5 * (new - g), rtol=1e-4, atol=1e-6)


def test_fedavg_step_in_place() -> None:
    g = np.ones(8, dtype=np.float32)
    expected = g + np.arange(8) / 4.0
    got = fedavg_step(g, np.arange(8, dtype=np.float64), 4.0, out=g)
    assert got is g
    np.testing.assert_array_equal(g, expected.astype(np.float32))


def test_fedavg_step_refuses_what_cannot_work() -> None:
    g = np.zeros(10, dtype=np.float32)
    with pytest.raises(ConfigError, match=r"\(9,\).*\(10,\)"):
        fedavg_step(g, np.zeros(9), 1.0)
    for tw in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="total_weight"):
            fedavg_step(g, np.zeros(10), tw)
    with pytest.raises(ConfigError, match="server_lr"):
        fedavg_step(g, np.zeros(10), 1.0, server_lr=0.0)
    bad = np.zeros(10)
    bad[2] = np.inf
    with pytest.raises(ConfigError, match="NaN or infinity"):
        fedavg_step(g, bad, 1.0)


# cap_weights


def test_cap_weights() -> None:
    np.testing.assert_array_equal(cap_weights([3, 10, 200, 0], 100), [3.0, 10.0, 100.0, 0.0])
    np.testing.assert_array_equal(cap_weights([3, 10, 200], None), [3.0, 10.0, 200.0])
    assert cap_weights([5, 7], 2.5).dtype == np.float64
    for cap in (0, -1, float("nan")):
        with pytest.raises(ConfigError, match="max_weight"):
            cap_weights([1, 2], cap)
    with pytest.raises(ConfigError, match=">= 0"):
        cap_weights([1, -2], 10)


# sample_clients


def test_fixed_size_sampling() -> None:
    for seed in range(20):
        ids = sample_clients(30, "fixed", 7, rng_seed=seed)
        assert len(ids) == 7 and len(set(ids)) == 7
        assert ids == sorted(ids) and 0 <= ids[0] and ids[-1] < 30
        assert all(isinstance(i, int) for i in ids)
    assert sample_clients(30, "fixed", 7, 1) == sample_clients(30, "fixed", 7, 1)
    assert sample_clients(5, "fixed", 5, 0) == [0, 1, 2, 3, 4]


def test_poisson_sampling() -> None:
    assert sample_clients(12, "poisson", 1.0, rng_seed=3) == list(range(12))
    sizes = [len(sample_clients(1000, "poisson", 0.1, rng_seed=s)) for s in range(5)]
    assert all(60 <= k <= 140 for k in sizes), sizes  # mean 100, sd 9.5
    assert len(set(sizes)) > 1  # the sample size itself is random
    # each client is taken independently with probability q
    hits = np.zeros(20)
    for s in range(400):
        hits[sample_clients(20, "poisson", 0.25, rng_seed=s)] += 1
    assert np.all(np.abs(hits / 400 - 0.25) < 0.1)


def test_sampling_refuses_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="poisson.*fixed"):
        sample_clients(10, "uniform", 0.5)
    assert SAMPLING_MODES == ("poisson", "fixed")
    for q in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="rate"):
            sample_clients(10, "poisson", q)
    for k in (0, 11, 2.5):
        with pytest.raises(ConfigError, match=r"1\.\.10"):
            sample_clients(10, "fixed", k)
    with pytest.raises(ConfigError, match="n must"):
        sample_clients(0, "fixed", 1)


# FedAvg end to end, plain float sums (no crypto)


def _fedavg(ds: Dataset, shards: list[Shard], rounds: int, **train: float) -> list[float]:
    mv = ModelVector(make_model(ds, seed=0))
    g = mv.to_vector().copy()
    accuracies = []
    for r in range(rounds):
        total = np.zeros(len(mv), dtype=np.float64)
        weight = 0.0
        metric_sum = np.zeros(len(METRIC_NAMES))
        for i, shard in enumerate(shards):
            delta, n, metrics = local_train(mv, shard, seed=1000 * r + i, weights=g, **train)  # type: ignore[arg-type]
            w = float(cap_weights([n], 64)[0])
            total += w * delta
            weight += w
            metric_sum += metrics_vector(metrics, w)
        assert 0.0 <= metrics_from_sum(metric_sum, weight)["accuracy"] <= 1.0
        g = fedavg_step(g, total, weight, out=g)
        mv.from_vector(g)
        accuracies.append(evaluate(mv, ds.test)["accuracy"])
    return accuracies


def test_fedavg_iid_breast_cancer_reaches_90_percent() -> None:
    ds = _ds("breast_cancer")
    acc = _fedavg(ds, ds.split_iid(5, seed=0), rounds=3, epochs=1, lr=0.1, batch_size=16)
    assert acc[-1] >= 0.9, acc


def test_fedavg_dirichlet_breast_cancer_reaches_90_percent() -> None:
    ds = _ds("breast_cancer")
    shards = ds.split_dirichlet(10, alpha=0.5, seed=0)
    acc = _fedavg(ds, shards, rounds=5, epochs=1, lr=0.1, batch_size=16)
    assert acc[-1] >= 0.9, acc


def test_fedavg_digits_learns() -> None:
    ds = _ds("digits")
    acc = _fedavg(ds, ds.split_iid(5, seed=0), rounds=3, epochs=2, lr=0.5, batch_size=32)
    assert acc[-1] >= 0.8, acc


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_local_sgd_is_torch_sgd_bit_for_bit(momentum: float) -> None:
    """local_train steps without torch.optim (whose first use imports torch._dynamo, seconds
    of start-up); the weights it reaches must be torch.optim.SGD's, exactly."""
    ds = _ds("digits")
    shard = ds.split_iid(5, seed=0)[1]
    mine = make_model(ds, seed=3)
    ref = make_model(ds, seed=3)
    delta, _, _ = local_train(mine, shard, epochs=2, lr=0.3, batch_size=16, seed=4,
                              momentum=momentum)
    start = ModelVector(ref).to_vector().copy()
    opt = torch.optim.SGD(ref.parameters(), lr=0.3, momentum=momentum)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(np.ascontiguousarray(shard.x, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(shard.y, dtype=np.int64))
    rng = np.random.default_rng(4)
    ref.train()
    for _ in range(2):
        order = torch.from_numpy(rng.permutation(len(y)))
        for lo in range(0, len(y), 16):
            idx = order[lo : lo + 16]
            opt.zero_grad(set_to_none=True)
            loss_fn(ref(x[idx]), y[idx]).backward()
            opt.step()
    expected = ModelVector(ref).to_vector() - start
    assert np.array_equal(delta, expected)
