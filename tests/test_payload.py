"""fl.training.payload: the one layout of a client vector, and reading the released sum back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fl.training.payload import (
    LOSS_CAP,
    METRIC_NAMES,
    METRIC_SCALE,
    PAYLOAD_NORM,
    WIRE_NORM,
    client_vector,
    metric_noise_std,
    metrics_from_sum,
    metrics_vector,
    model_scale,
    read_sum,
    vector_dim,
    wire_scale,
)
from secagg.errors import ConfigError

# metrics through the secure sum (moved here from tests/test_fl_train.py with the code)


def test_metrics_round_trip_through_a_sum() -> None:
    clients = [({"loss": 0.5, "accuracy": 0.9}, 10.0), ({"loss": 1.5, "accuracy": 0.5}, 30.0)]
    summed = sum(metrics_vector(m, w) for m, w in clients)
    assert METRIC_NAMES == ("loss", "accuracy")
    got = metrics_from_sum(summed, 40.0)
    assert got == pytest.approx({"loss": 1.25, "accuracy": 0.6})
    with pytest.raises(ConfigError, match="accuracy"):
        metrics_vector({"loss": 1.0}, 1.0)
    with pytest.raises(ConfigError, match="total_weight"):
        metrics_from_sum(summed, 0.0)


# the client vector


def test_a_client_vector_is_the_clipped_update_at_wire_norm_then_bounded_metrics() -> None:
    rng = np.random.default_rng(0)
    big = rng.normal(size=50) * 100  # far over the clip
    x = client_vector(big, {"loss": 9.0, "accuracy": 1.5}, 0.5)
    assert x.shape == (vector_dim(50),) == (52,)
    assert float(np.linalg.norm(x[:50])) == pytest.approx(WIRE_NORM)
    np.testing.assert_allclose(x[:50] / WIRE_NORM, big / np.linalg.norm(big))
    assert list(x[50:]) == [METRIC_SCALE, METRIC_SCALE]  # loss capped at LOSS_CAP, acc at 1
    small = rng.normal(size=50) * 1e-3  # within the clip: only scaled
    y = client_vector(small, {"loss": LOSS_CAP / 2, "accuracy": 0.25}, 0.5)
    np.testing.assert_allclose(y[:50], small * wire_scale(0.5))
    assert list(y[50:]) == pytest.approx([METRIC_SCALE / 2, METRIC_SCALE / 4])
    assert float(np.linalg.norm(x)) <= PAYLOAD_NORM * (1 + 1e-12)
    assert np.all(client_vector(big, None, 0.5)[50:] == 0)  # no metrics: zeros
    with pytest.raises(ConfigError, match="accuracy"):
        client_vector(big, {"loss": float("nan"), "accuracy": float("nan")}, 0.5)


def test_reading_a_sum_inverts_the_client_vectors() -> None:
    rng = np.random.default_rng(1)
    clip, d = 2.0, 30
    clients = [(rng.normal(size=d) * 0.05, {"loss": 1.0 + i, "accuracy": 0.1 * i}, 1.0 + i)
               for i in range(4)]
    summed = sum(w * client_vector(u, m, clip) for u, m, w in clients)
    total = sum(w for _, _, w in clients)
    released = read_sum(summed, total, d)
    want = sum(w * u for u, _, w in clients)
    np.testing.assert_allclose(released.update * model_scale(clip), want, rtol=1e-12)
    assert released.train_loss == pytest.approx(
        sum(w * (1.0 + i) for i, (_, _, w) in enumerate(clients)) / total)
    assert released.train_accuracy == pytest.approx(
        sum(w * 0.1 * i for i, (_, _, w) in enumerate(clients)) / total)
    noisy = summed.copy()
    noisy[d:] = [-5.0, 99.0]  # noise past the ranges: clamped (post-processing)
    clamped = read_sum(noisy, total, d)
    assert clamped.train_loss == 0.0 and clamped.train_accuracy == 1.0
    with pytest.raises(ConfigError, match="32 values"):
        read_sum(summed[:-1], total, d)
    assert metric_noise_std(3.0, 6.0) == pytest.approx(3.0 / (6.0 * METRIC_SCALE))
    assert model_scale(clip) * wire_scale(clip) == pytest.approx(1.0)
    assert math.isclose(PAYLOAD_NORM, math.sqrt(WIRE_NORM**2 + 2 * METRIC_SCALE**2))
