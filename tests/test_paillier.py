"""paillier: exact sums, key size, packing density and sizes, what the aggregator holds."""

from __future__ import annotations

import dataclasses
import gc
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("phe")
pytest.importorskip("gmpy2")

from phe.paillier import EncryptedNumber, PaillierPrivateKey, PaillierPublicKey
from test_he_roles import HeRound

from fl.engines.pool import process_map
from protocols.he import EncryptedInput, PublicContext, Verdict
from protocols.he.blind import ENVELOPE_SIZE
from protocols.he.state import DecryptorState
from protocols.paillier import PaillierScheme, make_config
from protocols.paillier.scheme import generate_keypair, pack, unpack
from secagg import wire
from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng

SCHEME = PaillierScheme()


# -- exact sums ----------------------------------------------------------------------------
def test_the_released_int_sum_is_exactly_the_contributors_encoded_sum() -> None:
    r = HeRound("paillier", 6, 300, silent={2}, weights=[1.0, 0.5, 1.0, 0.75, 1.0, 0.25])
    r.start()
    r.flush()
    r.close()
    r.flush()
    result = r.server.result()
    assert result.contributors == (0, 1, 3, 4, 5)
    r.check(result)  # int_sum == sum of centred encodings, exactly
    assert result.int_sum is not None and result.int_sum.dtype == np.int64
    assert result.total_weight == 1.0 + 0.5 + 0.75 + 1.0 + 0.25


def test_extreme_values_at_full_headroom_stay_exact() -> None:
    # Every client at the clip with the largest weight: each slot sum touches the top of
    # its range (2 * A * max_clients) or the bottom (0).
    n, dim = 4, 90
    enc = EncodingConfig(max_clients=n, clip=3.0, max_weight=2.0, frac_bits=12)
    inputs = []
    for u in range(n):
        x = np.zeros(dim)
        x[u % 2] = 3.0 if u < 2 else -3.0
        inputs.append(x)
    r = HeRound("paillier", n, dim, inputs=inputs, weights=[2.0] * n, encoding=enc)
    r.check(r.run())


@given(st.data())
def test_packing_is_additive_and_round_trips(data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 6), label="clients")
    dim = data.draw(st.integers(1, 200), label="dim")
    config = make_config(max(n, 2), dim)
    a = config.offset
    total = np.zeros(config.n_ciphertexts * config.slots_per_ciphertext, np.uint64)
    packed_sum = [0] * config.n_ciphertexts
    for _ in range(n):
        vals = np.array(data.draw(st.lists(st.integers(-a, a), min_size=dim + 1,
                                           max_size=dim + 1)), np.int64)
        ring = vals.astype(config.encoding.dtype)
        packed_sum = [s + p for s, p in zip(packed_sum, pack(config, ring))]
        total[: dim + 1] += (vals + a).astype(np.uint64)
    np.testing.assert_array_equal(unpack(config, packed_sum), total)


# -- keys ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [512, 1024, 2047, 2000])
def test_keys_under_2048_bits_or_odd_sizes_are_refused(bits: int) -> None:
    with pytest.raises(ConfigError, match="2048" if bits < 2048 else "multiple of 64"):
        make_config(3, 10, key_bits=bits)


def test_a_client_refuses_a_short_or_malformed_public_key() -> None:
    r = HeRound("paillier", 2)
    (ctx,) = r.hand(r.server.start()[0])
    request = r.hand(ctx)[0]
    key = generate_keypair(2048, Csprng.from_seed(9)).public_key.n.to_bytes(256, "big")
    SCHEME.load_public(r.config, key)
    for context in (key[:128], b"\x00" + key[1:], key[:-1] + b"\x02", b""):
        with pytest.raises(ProtocolError):  # 1024 bits, 2040 bits, even, empty
            SCHEME.load_public(r.config, context)
    with pytest.raises(ProtocolError):
        r.hand(dataclasses.replace(request, context=key[:128]))
    assert r.clients[0].aborted


def test_keygen_is_fresh_per_round_and_full_size() -> None:
    rng = Csprng.from_seed(1)
    k1, k2 = generate_keypair(2048, rng), generate_keypair(2048, rng)
    assert k1.public_key.n != k2.public_key.n
    for k in (k1, k2):
        assert k.public_key.n.bit_length() == 2048 and k.p != k.q
    a = HeRound("paillier", 2, seed="a")
    b = HeRound("paillier", 2, seed="b")
    a.run()
    b.run()
    assert a.emitted(PublicContext)[0].context != b.emitted(PublicContext)[0].context


# -- the aggregator holds the public key only ----------------------------------------------
def _reachable(root: object) -> list[object]:
    seen, stack, out = {id(root)}, [root], []
    while stack:
        obj = stack.pop()
        out.append(obj)
        for ref in gc.get_referents(obj):
            if isinstance(ref, (type, types.ModuleType, types.FunctionType)) or id(ref) in seen:
                continue
            seen.add(id(ref))
            stack.append(ref)
    return out


def test_the_aggregator_object_graph_holds_no_private_key() -> None:
    def holds(obj: object, cls: type) -> bool:
        return any(isinstance(o, cls) for o in _reachable(obj))

    r = HeRound("paillier", 3, silent={2})
    r.start()
    r.flush()
    assert holds(r.decryptor, PaillierPrivateKey)  # the walk does find a key where one is
    assert holds(r.server, PaillierPublicKey) and not holds(r.server, PaillierPrivateKey)
    r.close()
    r.flush()
    assert r.server.finished and not holds(r.server, PaillierPrivateKey)
    assert not holds(r.decryptor, PaillierPrivateKey)  # forgotten after its one decryption
    assert not any(holds(c, PaillierPrivateKey) for c in r.clients)


# -- forged ciphertexts, tampered aggregates ---------------------------------------------------
def test_ciphertexts_outside_z_n2_are_refused() -> None:
    r = HeRound("paillier", 2)
    (ctx,) = r.hand(r.server.start()[0])
    requests = r.hand(ctx)
    (upload,) = r.hand(requests[0])
    (blob,) = upload.blocks
    width = r.config.ciphertext_bytes
    for bad in (b"\x00" * width + blob[width:], b"\xff" * width + blob[width:], blob[:-1]):
        with pytest.raises(ProtocolError):
            r.hand(dataclasses.replace(upload, blocks=(bad,)))
    r.hand(upload)
    r.route(requests[1:])
    r.check(r.server.result())


class _Tampered(PaillierScheme):
    """A malicious client's scheme: encrypts honestly, then adds ``extra`` to plaintext ``i``
    of its upload (a client may encrypt anything; only the sum is ever decrypted)."""

    def __init__(self, i: int, extra: int) -> None:
        self.i, self.extra = i, extra

    def encrypt(self, config, context, public, prepared, rng, seed, map=map):  # type: ignore[no-untyped-def]
        (blob,) = super().encrypt(config, context, public, prepared, rng, seed, map)
        cts = SCHEME.open_blocks(config, public, (blob,))
        cts[self.i] = (EncryptedNumber(public, cts[self.i])
                       + EncryptedNumber(public, public.raw_encrypt(self.extra))).ciphertext(False)
        return SCHEME.seal(config, public, [EncryptedNumber(public, c) for c in cts])


def test_a_value_smuggled_into_a_padding_slot_is_dropped_not_an_abort() -> None:
    g = HeRound("paillier", 2, 200)  # 201 values, 3 x 80 slots: 39 padding
    last_slot = 1 << (8 * g.config.slot_bytes * (g.config.slots_per_ciphertext - 1))
    g.clients[0].SCHEME = _Tampered(-1, last_slot)  # type: ignore[misc]
    result = g.run()
    assert g.server.excluded == ()
    g.check(result)  # the padding is never decoded: the release is the exact sum


def test_a_client_far_out_of_range_is_identified_and_left_out() -> None:
    """One client's plaintext far out of range (the old abort for everyone): the decryptor
    tests each contributor's own upload, re-masked, and the round releases without it."""
    g = HeRound("paillier", 5, 200)
    g.clients[3].SCHEME = _Tampered(1, 1 << g.config.far_bits)  # type: ignore[misc]
    result = g.run()
    assert g.server.excluded == (3,)
    assert result.contributors == (0, 1, 2, 4)
    g.check(result)  # exactly the sum of the other four
    kinds = [type(m).__name__ for m in g.log]
    assert kinds.count("DecryptRequest") == 2 and kinds.count("ReleasedAggregate") == 1
    assert kinds.count("Verdict") == 1 and g.emitted(Verdict)[0].culprits == (3,)
    assert g.decryptor._secret is None


def test_a_client_inside_the_window_biases_within_the_range_and_never_aborts() -> None:
    """A plaintext that overflows its slots but stays inside the window is decoded with every
    slot sum clamped into what the contributors can produce: a bias, not an abort."""
    g = HeRound("paillier", 3, 50)
    slot = 8 * g.config.slot_bytes
    g.clients[0].SCHEME = _Tampered(0, (1 << (3 * slot)) - 1)  # slots 0-2 to their maximum
    result = g.run()
    assert result.contributors == (0, 1, 2) and g.server.excluded == ()
    assert result.int_sum is not None
    a = g.config.offset
    honest = sum(g.config.encoding.centre(g.encoded[u]) for u in (1, 2))
    assert np.all(np.abs(result.int_sum) <= 3 * a)  # within what 3 clients can produce
    want = honest + g.config.encoding.centre(g.encoded[0])
    assert abs(int(result.int_sum[3] - want[3])) <= 1  # the carry out of slot 2: one unit
    np.testing.assert_array_equal(result.int_sum[4:], want[4:])  # the rest are exact


# -- sizes -------------------------------------------------------------------------------------
def test_packing_density_and_the_upload_size_is_the_codecs() -> None:
    # Headroom for 100 clients, as in the benchmark; two of them take part here.
    config = make_config(2, 5000, encoding=EncodingConfig(max_clients=100))
    assert config.slots_per_ciphertext >= 60  # 80 values per 2048-bit key
    r = HeRound("paillier", 2, config=config)
    r.check(r.run())
    for upload, frame in ((m, f) for m, f in zip(r.log, r.frames) if type(m) is EncryptedInput):
        (blob,) = upload.blocks
        assert len(blob) == config.n_ciphertexts * config.ciphertext_bytes
        assert len(frame) == len(wire.encode(upload)) == (5 + 4 * 8 + 8 + 4 + 4 + len(blob)
                                                     + 4 + ENVELOPE_SIZE)
        assert len(frame) / (4 * config.dim) <= 2.1  # bytes per float32 byte


def test_encryption_spreads_over_worker_processes() -> None:
    config = make_config(2, 40 * 85)  # 42 ciphertexts: three tasks of 16 or fewer
    r = HeRound("paillier", 2, config=config, client_map=process_map(2))
    r.check(r.run())


def test_after_a_verdict_only_the_rest_may_be_asked_for_once() -> None:
    g = HeRound("paillier", 5, 40)
    g.clients[2].SCHEME = _Tampered(0, -(2 << g.config.far_bits))  # type: ignore[misc]
    g.start()
    (verdict,) = g.until(Verdict)
    assert g.take(lambda e: e.kind is Verdict.KIND) is not None and not g.pending
    assert verdict.culprits == (2,)  # the test plays the aggregator from here
    (req,) = g.hand(verdict)
    assert req.contributors == (0, 1, 3, 4)
    everyone = dataclasses.replace(req, contributors=(0, 1, 2, 3, 4),
                                   envelopes=tuple(m.envelope for m in sorted(
                                       g.emitted(EncryptedInput), key=lambda m: m.sender)))
    with pytest.raises(ProtocolError, match="only"):
        g.hand(everyone)
    assert g.decryptor.state is DecryptorState.RETRY
    g.route([req])
    g.check(g.server.result())
    with pytest.raises(ProtocolError):  # the release was the last thing the key did
        g.hand(req)
