"""Distributed DP in the masking protocols: clients noise before masking (Kairouz et al. 2021)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import protocols
from fl.engines.simulation import run_round
from protocols.parties import party_rng
from secagg.dp import CentralDiscreteGaussian, DistributedDiscreteGaussian
from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError
from secagg.rng import Csprng

N, DIM, Z = 12, 4000, 1.0


def _hook(n: int = N, dim: int = DIM) -> DistributedDiscreteGaussian:
    sens = EncodingConfig(max_clients=n).l2_sensitivity(dim)
    return DistributedDiscreteGaussian(Z, sens, n)


def _arrays(obj, seen=None):
    """Every numpy array reachable from ``obj``'s attributes."""
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays(v, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            yield from _arrays(v, seen)
    elif hasattr(obj, "__dict__"):
        yield from _arrays(vars(obj), seen)


@pytest.mark.parametrize("name", ["secagg", "secagg+"])
def test_noise_is_in_the_sum_and_the_server_never_holds_the_plain_sum(name: str) -> None:
    spec = protocols.get(name)
    hook = _hook()
    cfg = spec.make_config(N, DIM, client_noise=hook)
    seed = 11
    gen = np.random.default_rng(0)
    inputs = [gen.uniform(-0.005, 0.005, DIM) for _ in range(N)]
    drop = {2: 2}  # one client drops before masking
    # The un-noised encodings: the same per-client CSPRNG streams, without noise.
    root = Csprng.from_seed(seed)
    plain = {u: cfg.encoding.encode(inputs[u], party_rng(root, u)) for u in range(N)}

    server_box = {}
    orig = spec.server

    def keep_server(config, rng):
        server_box["s"] = orig(config, rng)
        return server_box["s"]

    rep = run_round(
        type(spec)(**{**spec.__dict__, "server": keep_server}), cfg, inputs,
        Csprng.from_seed(seed), drop_at=drop,
    )
    assert rep.error is None and rep.exact is True
    res = rep.result
    survivors = res.contributors
    assert 2 not in survivors
    unnoised = sum(cfg.encoding.centre(plain[u]) for u in survivors)
    noise = res.int_sum - unnoised
    # The noise that survived has variance s/n * sigma^2 (clamping at ~15 sigma_c is invisible).
    expect_sd = math.sqrt(len(survivors) / N * float(hook.sigma_sq))
    assert abs(noise.std() / expect_sd - 1) < 0.1
    assert abs(noise.mean()) < 5 * expect_sd / math.sqrt(noise.size)
    # No array the server holds, nor its result, equals the un-noised sum (in any form).
    ring_plain = unnoised.astype(cfg.encoding.dtype)
    for arr in _arrays(server_box["s"]):
        if arr.shape == unnoised.shape:
            assert not np.array_equal(arr.astype(np.int64), unnoised)
            assert not np.array_equal(arr, ring_plain)
    # The event is that of the noise that survived.
    assert res.dp_event.noise_multiplier == pytest.approx(Z * math.sqrt(len(survivors) / N), rel=1e-6)


def test_the_clamp_lives_next_to_its_mechanism() -> None:
    """One clamp: protocols use secagg.dp's, which covers the weight coordinate too and
    fails (any client, any coordinate) with probability at most NOISE_FAILURE."""
    import protocols.secagg.config as sc
    from secagg.dp import NOISE_FAILURE, client_noise_bound

    hook = _hook()
    assert sc.client_noise_bound is client_noise_bound and sc.NOISE_FAILURE == NOISE_FAILURE
    bound = client_noise_bound(hook, DIM, N)
    assert bound == hook.tail_bound(DIM + 1, 1, NOISE_FAILURE / N) > 0
    assert protocols.get("secagg").make_config(N, DIM, client_noise=hook).client_noise_bound \
        == bound
    with pytest.raises(ConfigError, match="n must be"):
        client_noise_bound(hook, DIM, 0)


def test_headroom_must_cover_the_clamped_noise() -> None:
    hook = _hook()
    spec = protocols.get("secagg+")
    cfg = spec.make_config(N, DIM, client_noise=hook)
    assert cfg.encoding.noise_bound == N * cfg.client_noise_bound > 0
    with pytest.raises(ConfigError, match="noise_bound"):
        spec.make_config(N, DIM, client_noise=hook, encoding=EncodingConfig(max_clients=N))


def test_central_and_distributed_together_are_refused() -> None:
    hook = _hook()
    central = CentralDiscreteGaussian(1.0, EncodingConfig(max_clients=N).l2_sensitivity(DIM))
    with pytest.raises(ConfigError, match="not both"):
        protocols.get("secagg").make_config(N, DIM, client_noise=hook, noise=central)
