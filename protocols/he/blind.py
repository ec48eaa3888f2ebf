"""One-time blinds that make the aggregator's claim checkable, and the DP-event codec.

Every client adds a one-time blind, expanded from a fresh 32-byte seed, to its plaintext
before it encrypts, and sends the seed to the decryptor in a *blind envelope*: sealed to the
decryptor's X25519 key of this round (ephemeral X25519, HKDF-SHA256, XChaCha20-Poly1305 with
associated data binding session, round, scheme and client) and signed with the client's
long-term Ed25519 key from the registry. The aggregator relays the envelopes it received with
the aggregate and names their senders; the decryptor removes exactly the blinds of the named
contributors. Any other combination of ciphertexts leaves a residual of unknown blinds,
which the scheme's range check refuses (SECURITY.md, "HE: a lying aggregator").

Wire layout of an envelope (168 bytes)::

    ephemeral X25519 public key (32) || nonce + sealed seed + tag (24 + 32 + 16) || signature (64)
"""

from __future__ import annotations

import json
from typing import Any, Final

from secagg import aead, kex, sign
from secagg.dp.events import (
    ComposedEvent,
    DiscreteGaussianEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
)
from secagg.errors import ConfigError, DecodeError, ProtocolError
from secagg.rng import Csprng

__all__ = ["ENVELOPE_SIZE", "SEED_SIZE", "decode_event", "encode_event", "open_envelope",
           "seal_envelope"]

SEED_SIZE: Final = 32
_SEALED: Final = aead.NONCE_SIZE + SEED_SIZE + aead.TAG_SIZE
ENVELOPE_SIZE: Final = kex.PUBLIC_KEY_SIZE + _SEALED + sign.SIGNATURE_SIZE
_PURPOSE: Final = "he-blind"


def _statement(session: bytes, round_id: int, scheme: int, client: int, blind_key: bytes,
               body: bytes) -> bytes:
    return kex.label(b"secagg/he/blind-envelope/v1", session, str(round_id).encode(),
                     str(scheme).encode(), str(client).encode(), blind_key, body)


def _ad(session: bytes, round_id: int, scheme: int, client: int) -> bytes:
    return aead.associated_data(f"{_PURPOSE}/{scheme}", 1, session, round_id, client, -2)


def seal_envelope(*, session: bytes, round_id: int, scheme: int, client: int,
                  blind_key: bytes, seed: bytes, signing_key: bytes, rng: Csprng) -> bytes:
    """The envelope that carries ``seed`` from ``client`` to the decryptor."""
    eph = kex.KeyPair.generate(rng)
    key = kex.derive_key(kex.agree(eph.secret, blind_key), _PURPOSE, session, round_id,
                         client, -2, ordered=True)
    body = eph.public + aead.seal(key, seed, _ad(session, round_id, scheme, client), rng)
    return body + sign.sign(signing_key,
                            _statement(session, round_id, scheme, client, blind_key, body))


def open_envelope(envelope: bytes, *, session: bytes, round_id: int, scheme: int, client: int,
                  blind_secret: bytes, blind_key: bytes, verify_key: bytes) -> bytes:
    """The seed in ``client``'s envelope.

    Raises:
        ProtocolError: a wrong size, a signature that is not the client's, or a seal that does
            not open (forged, replayed from another round or session, or misrouted).
    """
    if len(envelope) != ENVELOPE_SIZE:
        raise ProtocolError(f"a blind envelope is {ENVELOPE_SIZE} bytes, got {len(envelope)}")
    body, signature = envelope[:-sign.SIGNATURE_SIZE], envelope[-sign.SIGNATURE_SIZE:]
    sign.verify(verify_key, _statement(session, round_id, scheme, client, blind_key, body),
                signature)
    eph, sealed = body[: kex.PUBLIC_KEY_SIZE], body[kex.PUBLIC_KEY_SIZE:]
    key = kex.derive_key(kex.agree(blind_secret, eph), _PURPOSE, session, round_id, client, -2,
                         ordered=True)
    seed = aead.open_(key, sealed, _ad(session, round_id, scheme, client))
    if len(seed) != SEED_SIZE:
        raise ProtocolError(f"a blind seed is {SEED_SIZE} bytes, got {len(seed)}")
    return seed


# -- the DP event the decryptor charged, as wire bytes ------------------------------------
def _to_json(ev: Any) -> Any:
    if ev is None or isinstance(ev, (bool, int, float, str)):
        return ev
    if isinstance(ev, tuple):
        return {"tuple": [_to_json(e) for e in ev]}
    if isinstance(ev, DiscreteGaussianEvent):
        return {"dg": [ev.noise_multiplier, ev.sigma, ev.l2_sensitivity]}
    if isinstance(ev, PoissonSampledEvent):
        return {"poisson": [ev.sampling_rate, _to_json(ev.event)]}
    if isinstance(ev, ComposedEvent):
        return {"composed": [_to_json(e) for e in ev.events]}
    if isinstance(ev, SelfComposedEvent):
        return {"self": [_to_json(ev.event), ev.count]}
    raise ConfigError(f"the noise hook's DP event {type(ev).__name__} cannot be sent to the "
                      "aggregator; return a secagg.dp event (or None, str, numbers, tuples)")


def _from_json(doc: Any) -> Any:
    if doc is None or isinstance(doc, (bool, int, float, str)):
        return doc
    if not isinstance(doc, dict) or len(doc) != 1:
        raise DecodeError("malformed DP event")
    (tag, val), = doc.items()
    if tag == "tuple":
        return tuple(_from_json(e) for e in val)
    if tag == "dg":
        return DiscreteGaussianEvent(float(val[0]), val[1], val[2])
    if tag == "poisson":
        return PoissonSampledEvent(float(val[0]), _from_json(val[1]))
    if tag == "composed":
        return ComposedEvent(tuple(_from_json(e) for e in val))
    if tag == "self":
        return SelfComposedEvent(_from_json(val[0]), int(val[1]))
    raise DecodeError(f"unknown DP event tag {tag!r}")


def encode_event(event: Any) -> bytes:
    """The DP event as bytes (JSON of secagg.dp events, numbers, strings and tuples)."""
    return json.dumps(_to_json(event), separators=(",", ":")).encode()


def decode_event(data: bytes) -> Any:
    """The inverse of :func:`encode_event`.

    Raises:
        ProtocolError: bytes that are not an encoded event.
    """
    try:
        return _from_json(json.loads(data.decode()))
    except (ValueError, TypeError, KeyError, IndexError, ConfigError, DecodeError) as exc:
        raise ProtocolError(f"the released DP event does not decode: {exc}") from None
