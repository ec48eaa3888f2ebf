"""ckks: the documented error bound, the public context, packing and sizes, processes."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

ts = pytest.importorskip("tenseal")

from test_he_roles import HeRound

from fl.engines.pool import process_map
from protocols.ckks import CkksConfig, CkksScheme, make_config
from protocols.ckks.config import POLY_MODULUS_DEGREE, SLOTS
from protocols.ckks.scheme import blinds
from protocols.he import EncryptedInput, InputRequest, PublicContext
from protocols.he.blind import ENVELOPE_SIZE
from secagg import wire
from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng

SCHEME = CkksScheme()


def _extreme_inputs(n: int, dim: int, clip: float) -> list[np.ndarray]:
    """Every client at the clip with all its mass on one coordinate: coordinate 0 sums to
    the largest magnitude n clients can reach; half the clients push coordinate 1 down."""
    out = []
    for u in range(n):
        x = np.zeros(dim)
        if u % 2:
            x[1] = -clip
        else:
            x[0] = clip
        out.append(x)
    return out


# -- the error bound ---------------------------------------------------------------------
@pytest.mark.parametrize(("n", "clip", "max_weight", "frac_bits"), [
    (2, 1.0, 1.0, 16), (7, 1.0, 1.0, 16), (4, 4.0, 2.0, 16), (3, 0.5, 1.0, 20), (20, 2.0, 1.0, 8),
])
def test_released_error_is_within_the_worst_case_bound(n: int, clip: float, max_weight: float,
                                                        frac_bits: int) -> None:
    enc = EncodingConfig(clip=clip, max_weight=max_weight, frac_bits=frac_bits, max_clients=n)
    dim = 40
    inputs = _extreme_inputs(n, dim, clip)
    inputs[-1] = np.linspace(-1, 1, dim) * 10  # one client far outside the clip
    r = HeRound("ckks", n, dim, seed=n, inputs=inputs, weights=[max_weight] * n, encoding=enc)
    result = r.run()
    want, weight = r.expected_float_sum(range(n))
    err = max(float(np.max(np.abs(result.sum - want))), abs(result.total_weight - weight))
    assert err <= r.config.max_abs_error(n)
    # The slot that carries n * A is the largest the scale was chosen for.
    assert abs(weight) + abs(want[0]) > 0


@pytest.mark.parametrize("n", [2, 5, 16])
def test_ckks_error_before_rounding_is_within_the_noise_terms(n: int) -> None:
    """The scheme's own error (decrypted floats, blinds removed, no rounding) stays within
    the honest-error bound the grid check tolerates, even at the largest magnitude the scale
    allows."""
    config = make_config(n, SLOTS + 10)
    public, secret = SCHEME.keygen(config, Csprng.from_seed(1))
    ctx = SCHEME.load_public(config, public)
    rng = Csprng.from_seed(2)
    scale = config.encoding.scale
    want = np.zeros(config.n_ciphertexts * SLOTS)
    acc = None
    for u in range(n):
        x = rng.random(config.dim) - 0.5
        x[0] = 1.0 if u % 2 == 0 else -1.0  # magnitude 1: the clip
        x[1] = 1.0
        prepared = np.rint(np.concatenate([x, [1.0]]) * scale).astype(np.int64)  # not clipped
        seed = rng.bytes(32)
        want[: config.dim + 1] += prepared / scale
        want += blinds(config, seed) / scale
        upload = SCHEME.open_blocks(config, ctx, SCHEME.encrypt(config, public, ctx,
                                                                 prepared, rng, seed))
        acc = SCHEME.add(config, ctx, acc, upload)
    assert acc is not None
    agg = SCHEME.open_blocks(config, secret, SCHEME.seal(config, ctx, acc))
    got = np.concatenate([np.asarray(v.decrypt()) for v in agg])
    noise_terms = config.honest_error(n)
    assert np.max(np.abs(got - want)) <= noise_terms
    assert noise_terms <= 2.0 ** -(config.encoding.frac_bits + config.tolerance_bits + 1)
    # In practice it is far smaller than the worst case: well under the release grid.
    assert np.max(np.abs(got - want)) < 2.0 ** -(config.encoding.frac_bits + 8)


def test_scale_follows_the_headroom_and_refuses_what_cannot_fit() -> None:
    small = make_config(10, 5)
    big = make_config(10, 5, encoding=EncodingConfig(max_clients=1000, clip=2.0, max_weight=2.0))
    assert small.scale_bits == 57 - 4 and big.scale_bits == 57 - 12
    # More headroom, a smaller scale: more CKKS error, so a coarser grid check.
    assert big.honest_error(10) > small.honest_error(10)
    assert big.tolerance_bits < small.tolerance_bits
    assert big.max_abs_error(10) == small.max_abs_error(10)  # the release stays exact
    with pytest.raises(ConfigError, match="max_clients"):
        make_config(10, 5, encoding=EncodingConfig(max_clients=10**6, clip=8.0, frac_bits=20,
                                                   bits=64))


# -- the public context --------------------------------------------------------------------
def test_the_public_context_cannot_decrypt() -> None:
    r = HeRound("ckks", 3)
    r.run()
    (ctx_msg,) = r.emitted(PublicContext)
    for ctx in (ts.context_from(ctx_msg.context), r.server._public):
        assert not ctx.has_secret_key() and ctx.is_public()
        assert not ctx.has_relin_keys() and not ctx.has_galois_keys()
        upload = r.emitted(EncryptedInput)[0]
        vec = ts.ckks_vector_from(ctx, upload.blocks[0])
        with pytest.raises(ValueError, match="secret"):
            vec.decrypt()
    assert all(m.context == ctx_msg.context for m in r.emitted(InputRequest))


def _forge_context(config: CkksConfig, n: int = POLY_MODULUS_DEGREE, bits: tuple[int, ...] = (60, 40),
                   scale: float | None = None, secret: bool = False, relin: bool = False) -> bytes:
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, n, coeff_mod_bit_sizes=list(bits))
    ctx.global_scale = 2.0**config.scale_bits if scale is None else scale
    return bytes(ctx.serialize(save_secret_key=secret, save_relin_keys=relin,
                               save_galois_keys=False))


@pytest.mark.parametrize("change", [
    {"secret": True}, {"relin": True}, {"n": 16384}, {"bits": (60, 60, 40)}, {"bits": (40, 40)},
    {"scale": 2.0**30}, {"garbage": True},
], ids=lambda c: ",".join(c))
def test_a_client_refuses_an_unsafe_or_foreign_context(change: dict[str, Any]) -> None:
    r = HeRound("ckks", 2)
    (ctx_msg,) = r.hand(r.server.start()[0])
    request = r.hand(ctx_msg)[0]
    context = b"\x00garbage" * 9 if change.get("garbage") else _forge_context(r.config, **change)
    with pytest.raises(ProtocolError):
        r.hand(dataclasses.replace(request, context=context))
    assert r.clients[0].aborted
    with pytest.raises(ProtocolError):  # the aggregator refuses it as well
        SCHEME.load_public(r.config, context)


# -- packing, sizes, uploads ---------------------------------------------------------------
def test_every_slot_is_used_and_the_upload_size_is_the_codecs() -> None:
    dim = 3 * SLOTS - 1  # dim + 1 values fill exactly three ciphertexts
    r = HeRound("ckks", 2, dim)
    r.check(r.run())
    for (upload, frame) in ((m, f) for m, f in zip(r.log, r.frames) if type(m) is EncryptedInput):
        assert len(upload.blocks) == r.config.n_ciphertexts == 3
        assert len(frame) == len(wire.encode(upload))
        assert len(frame) == (5 + 4 * 8 + 8 + 4 + sum(4 + len(b) for b in upload.blocks)
                              + 4 + ENVELOPE_SIZE)
        assert len(frame) / (4 * (dim + 1)) <= 8.5  # bytes per float32 byte


@pytest.mark.parametrize("mutate", ["scale", "size", "count", "truncate"])
def test_a_malformed_upload_is_refused(mutate: str) -> None:
    r = HeRound("ckks", 2, SLOTS + 5)
    (ctx_msg,) = r.hand(r.server.start()[0])
    requests = r.hand(ctx_msg)
    (upload,) = r.hand(requests[0])
    pub = r.server._public
    if mutate == "scale":
        blocks = (ts.ckks_vector(pub, [0.0] * SLOTS, 2.0**30).serialize(),) + upload.blocks[1:]
    elif mutate == "size":
        blocks = upload.blocks[:1] + (ts.ckks_vector(pub, [0.0] * 7).serialize(),)
    elif mutate == "count":
        blocks = upload.blocks[:1]
    else:
        blocks = (upload.blocks[0][: len(upload.blocks[0]) // 2],) + upload.blocks[1:]
    with pytest.raises(ProtocolError):
        r.hand(dataclasses.replace(upload, blocks=blocks))
    r.hand(upload)
    r.route(requests[1:])
    r.check(r.server.result())


def test_encryption_spreads_over_worker_processes() -> None:
    dim = 16 * SLOTS  # 17 ciphertexts: two workers of 8 or more each
    r = HeRound("ckks", 2, dim, client_map=process_map(2))
    result = r.run()
    r.check(result)
    assert all(len(m.blocks) == 17 for m in r.emitted(EncryptedInput))
