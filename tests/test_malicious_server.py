"""A scripted malicious server against honest SecAgg / SecAgg+ clients.

An honest round runs up to the moment a client expects the server's next message; the test
then plays the server and sends a forged variant of that message instead. Every forgery must:

- raise ProtocolError;
- leave the client ABORTED for good (the genuine message gets nothing out of it afterwards);
- make the client emit nothing at all: no ShareKeys, no MaskedInput, no UnmaskResponse, and
  none of the share bytes it holds in any frame it ever sent.

The invariant that protects every input (DESIGN.md): a client never reveals both the seed
share and the key share of one neighbour in a round.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from helpers import Envelope, Router

import protocols
from protocols.base import SERVER, Message
from protocols.secagg._state import ClientState, Kind
from protocols.secagg.client import SecAggClient
from protocols.secagg.messages import (
    KeyBroadcast,
    PublicKeys,
    SealedShare,
    SealedShares,
    ShareForward,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg import wire
from secagg.errors import ProtocolError
from secagg.rng import Csprng

VICTIM = 0


def _round(name: str = "secagg", n: int = 6, *, seed: str = "evil", round_id: int = 0,
           drop_at: dict[int, int] | None = None, session: bytes = b"one deployment",
           **kw: object) -> Router:
    spec = protocols.get(name)
    config = spec.make_config(n, 4, round_id=round_id, session=session, **kw)
    return Router(spec, config, Csprng.from_seed(seed), drop_at=drop_at)


def _up_to(router: Router, kind: Kind) -> Message:
    """Run the round until the victim's message of ``kind`` is in flight; hold it back."""
    where = lambda e: e.recipient == VICTIM and e.kind is kind
    router.run_until(lambda: router.find(where) is not None)
    env = router.take(where)
    assert env is not None
    return env.open()


def _secret_shares(client: SecAggClient) -> set[bytes]:
    """The share bytes the client holds (white box: what a leak would consist of)."""
    held = {b for pair in client._held.values() for b in pair}
    if client._own_shares is not None:
        held |= set(client._own_shares)
    return {b for b in held if b}


def _frames(router: Router, u: int) -> bytes:
    return b"".join(wire.encode(m) for m in router.sent.get(u, []))


def _assert_refused(router: Router, forged: Message, genuine: Message,
                    secrets: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
    client = router.clients[VICTIM]
    before = list(router.sent.get(VICTIM, []))
    with pytest.raises(ProtocolError):
        router.send(forged, to=VICTIM)
    assert client.state is ClientState.ABORTED
    assert router.sent.get(VICTIM, []) == before, "a refusing client must emit nothing"
    # Aborted for good: the genuine message gets nothing out of it either.
    with pytest.raises(ProtocolError):
        router.send(genuine, to=VICTIM)
    assert router.sent.get(VICTIM, []) == before
    assert not any(isinstance(m, UnmaskResponse) for m in router.sent.get(VICTIM, []))
    frames = _frames(router, VICTIM)
    assert not any(s in frames for s in secrets), "share bytes left the client"


# -- the unmask request ------------------------------------------------------------------
def _at_unmask(name: str = "secagg", **kw: object) -> tuple[Router, UnmaskRequest, set[bytes]]:
    # Client 5 drops after sharing its keys and before masking, so the honest request to the
    # victim has a non-empty dropped list: survivors (0..4), dropped (5,).
    router = _round(name, drop_at={5: 2}, **kw)
    msg = _up_to(router, Kind.UNMASK_REQUEST)
    assert isinstance(msg, UnmaskRequest)
    secrets = _secret_shares(router.clients[VICTIM])
    assert len(secrets) >= 2 * 5
    return router, msg, secrets


UNMASK_FORGERIES: dict[str, Callable[[UnmaskRequest, int], dict[str, object]]] = {
    "neighbour both survivor and dropped":
        lambda m, n: {"survivors": tuple(sorted({*m.survivors, *m.dropped}))},
    "live neighbour also listed as dropped":
        lambda m, n: {"dropped": tuple(sorted({*m.dropped, m.survivors[-1]}))},
    "fewer survivors than t (rest called dropped)":
        lambda m, n: {"survivors": m.survivors[:3],
                      "dropped": tuple(sorted({*m.survivors[3:], *m.dropped}))},
    "extra id outside the cohort":
        lambda m, n: {"survivors": (*m.survivors, n)},
    "missing survivor":
        lambda m, n: {"survivors": m.survivors[:-1]},
    "missing dropped neighbour":
        lambda m, n: {"dropped": ()},
    "the client itself called dropped":
        lambda m, n: {"survivors": tuple(v for v in m.survivors if v != VICTIM),
                      "dropped": (VICTIM, *m.dropped)},
    "a survivor listed twice":
        lambda m, n: {"survivors": (*m.survivors, m.survivors[-1])},
}


@pytest.mark.parametrize("forgery", UNMASK_FORGERIES)
def test_forged_unmask_request(forgery: str) -> None:
    router, honest, secrets = _at_unmask()
    assert honest.dropped == (5,) and VICTIM in honest.survivors
    forged = dataclasses.replace(honest, **UNMASK_FORGERIES[forgery](honest, router.n))
    _assert_refused(router, forged, honest, secrets)


def test_unmask_request_naming_a_non_neighbour_in_a_sparse_graph() -> None:
    router, honest, _ = _at_unmask("secagg+", n=8, degree=4, threshold=3)
    strangers = sorted(set(range(router.n)) - set(honest.survivors) - set(honest.dropped))
    assert strangers, "the victim has non-neighbours in a degree-4 graph of 8"
    for field in ("survivors", "dropped"):
        r, h, held = _at_unmask("secagg+", n=8, degree=4, threshold=3)
        value = tuple(sorted({*getattr(h, field), strangers[0]}))
        _assert_refused(r, dataclasses.replace(h, **{field: value}), h, held)


def test_a_second_unmask_request_gets_nothing() -> None:
    router, honest, _ = _at_unmask()
    out = router.send(honest, to=VICTIM)
    assert len(out) == 1 and isinstance(out[0], UnmaskResponse)
    assert {s.owner for s in out[0].key_shares} == {5}
    before = list(router.sent[VICTIM])
    # The second request flips client 5 to "survived": answering would reveal its seed share
    # after its key share, and unmask client 5 completely.
    flipped = dataclasses.replace(honest, survivors=tuple(sorted({*honest.survivors, 5})),
                                  dropped=())
    for again in (flipped, honest):
        with pytest.raises(ProtocolError):
            router.send(again, to=VICTIM)
        assert router.sent[VICTIM] == before
    assert sum(isinstance(m, UnmaskResponse) for m in router.sent[VICTIM]) == 1


def test_unmask_request_replayed_from_another_round() -> None:
    old = _round(seed="round0", drop_at={5: 2})
    stale = _up_to(old, Kind.UNMASK_REQUEST)
    router, honest, secrets = _at_unmask(seed="round1", round_id=1)
    assert stale.round == 0 and honest.round == 1
    _assert_refused(router, stale, honest, secrets)


# -- the key broadcast -------------------------------------------------------------------
def _at_keys(name: str = "secagg", **kw: object) -> tuple[Router, KeyBroadcast]:
    router = _round(name, **kw)
    msg = _up_to(router, Kind.KEY_BROADCAST)
    assert isinstance(msg, KeyBroadcast)
    return router, msg


def _replace_entry(keys: tuple[PublicKeys, ...], who: int, **change: object
                   ) -> tuple[PublicKeys, ...]:
    return tuple(dataclasses.replace(k, **change) if k.client == who else k for k in keys)


def _fresh_key(seed: str) -> bytes:
    return Csprng.from_seed(seed).bytes(32)


KEY_FORGERIES: dict[str, Callable[[KeyBroadcast, int], tuple[PublicKeys, ...]]] = {
    "own encryption key swapped":
        lambda m, n: _replace_entry(m.keys, VICTIM, c_pk=_fresh_key("evil-c")),
    "own mask key swapped":
        lambda m, n: _replace_entry(m.keys, VICTIM, s_pk=_fresh_key("evil-s")),
    "own two keys exchanged":
        lambda m, n: _replace_entry(m.keys, VICTIM, c_pk=m.keys[VICTIM].s_pk,
                                    s_pk=m.keys[VICTIM].c_pk),
    "own entry missing":
        lambda m, n: tuple(k for k in m.keys if k.client != VICTIM),
    "a key repeated across neighbours":
        lambda m, n: _replace_entry(m.keys, 1, s_pk=m.keys[2].s_pk),
    "a neighbour's keys equal to the client's own":
        lambda m, n: _replace_entry(m.keys, 1, c_pk=m.keys[VICTIM].c_pk),
    "too few neighbours (t - 2)":
        lambda m, n: tuple(k for k in m.keys if k.client in (VICTIM, 1, 2)),
    "an id outside the cohort":
        lambda m, n: _replace_entry(m.keys, 1, client=n),
    "a negative id":
        lambda m, n: _replace_entry(m.keys, 1, client=-3),
    "a neighbour listed twice":
        lambda m, n: (*m.keys, m.keys[1]),
    "a short public key":
        lambda m, n: _replace_entry(m.keys, 1, c_pk=m.keys[1].c_pk[:31]),
    # A low-order point would force a shared secret the server knows.
    "a low-order encryption key":
        lambda m, n: _replace_entry(m.keys, 1, c_pk=bytes(32)),
}


@pytest.mark.parametrize("forgery", KEY_FORGERIES)
def test_forged_key_broadcast(forgery: str) -> None:
    router, honest = _at_keys()  # n = 6, t = 4
    assert [k.client for k in honest.keys] == list(range(6))
    forged = dataclasses.replace(honest, keys=KEY_FORGERIES[forgery](honest, router.n))
    _assert_refused(router, forged, honest)
    assert not any(isinstance(m, ShareKeys) for m in router.sent[VICTIM])


def test_a_low_order_mask_key_is_refused_at_the_key_broadcast() -> None:
    # The client agrees its pairwise mask keys as soon as it gets the broadcast, so a
    # low-order mask key (a secret the server could compute) is refused before it sends
    # anything built on it.
    router, honest = _at_keys()
    forged = dataclasses.replace(honest, keys=_replace_entry(honest.keys, 1,
                                                             s_pk=bytes([1]) + bytes(31)))
    _assert_refused(router, forged, honest)
    assert not any(isinstance(m, ShareKeys) for m in router.sent[VICTIM])


def test_key_broadcast_with_more_neighbours_than_the_degree() -> None:
    router, honest = _at_keys("secagg+", n=8, degree=4, threshold=3)
    listed = {k.client for k in honest.keys}
    assert len(listed) == 5
    stranger = min(set(range(8)) - listed)
    extra = PublicKeys(stranger, _fresh_key("x-c"), _fresh_key("x-s"))
    forged = dataclasses.replace(honest, keys=tuple(sorted((*honest.keys, extra),
                                                           key=lambda k: k.client)))
    _assert_refused(router, forged, honest)


def test_key_broadcast_replayed_from_another_round() -> None:
    stale = _up_to(_round(seed="kb-round0"), Kind.KEY_BROADCAST)
    router, honest = _at_keys(seed="kb-round1", round_id=1)
    _assert_refused(router, stale, honest)
    # Relabelled to the current round, its keys are still the old round's: refused too.
    router, honest = _at_keys(seed="kb-round1", round_id=1)
    _assert_refused(router, dataclasses.replace(stale, round=1), honest)


# -- the share forward -------------------------------------------------------------------
def _at_shares(name: str = "secagg", **kw: object) -> tuple[Router, ShareForward]:
    router = _round(name, **kw)
    msg = _up_to(router, Kind.SHARE_FORWARD)
    assert isinstance(msg, ShareForward)
    return router, msg


def _flip(ct: bytes, pos: int) -> bytes:
    pos %= len(ct)
    return ct[:pos] + bytes([ct[pos] ^ 1]) + ct[pos + 1:]


def _with(m: ShareForward, peer: int, ciphertext: bytes, as_peer: int | None = None
          ) -> tuple[SealedShare, ...]:
    return tuple(SealedShare(as_peer if s.peer == peer and as_peer is not None else s.peer,
                             ciphertext if s.peer == peer else s.ciphertext) for s in m.shares)


def _sealed_by(router: Router, sender: int, receiver: int) -> bytes:
    """The ciphertext ``sender`` sealed for ``receiver`` in its ShareKeys."""
    msg = next(m for m in router.sent[sender] if isinstance(m, ShareKeys))
    return next(s.ciphertext for s in msg.shares if s.peer == receiver)


SHARE_FORGERIES: dict[str, Callable[[ShareForward, Router], tuple[SealedShare, ...]]] = {
    "tampered nonce": lambda m, r: _with(m, 1, _flip(m.shares[0].ciphertext, 0)),
    "tampered ciphertext": lambda m, r: _with(m, 1, _flip(m.shares[0].ciphertext, 40)),
    "tampered tag": lambda m, r: _with(m, 1, _flip(m.shares[0].ciphertext, -1)),
    "truncated ciphertext": lambda m, r: _with(m, 1, m.shares[0].ciphertext[:-1]),
    "too short to hold a tag": lambda m, r: _with(m, 1, m.shares[0].ciphertext[:20]),
    "two peers' ciphertexts swapped": lambda m, r: (
        SealedShare(1, m.shares[1].ciphertext), SealedShare(2, m.shares[0].ciphertext),
        *m.shares[2:]),
    # The pair key is symmetric: only the associated data (sender, receiver) tells the
    # victim's own ciphertext to 2 apart from 2's ciphertext to the victim.
    "own ciphertext reflected back (AD binding)": lambda m, r: _with(
        m, 2, _sealed_by(r, VICTIM, 2)),
    "re-addressed from another pair (2 -> 1)": lambda m, r: _with(m, 2, _sealed_by(r, 2, 1)),
    "two ciphertexts from one peer": lambda m, r: (*m.shares, m.shares[0]),
    "a sender outside the cohort": lambda m, r: _with(m, 1, m.shares[0].ciphertext, as_peer=99),
    "too few shares (t - 2)": lambda m, r: m.shares[:2],
}


@pytest.mark.parametrize("forgery", SHARE_FORGERIES)
def test_forged_share_forward(forgery: str) -> None:
    router, honest = _at_shares()  # n = 6, t = 4
    assert [s.peer for s in honest.shares] == [1, 2, 3, 4, 5]
    forged = dataclasses.replace(
        honest, shares=SealedShares.of(SHARE_FORGERIES[forgery](honest, router)))
    own = _secret_shares(router.clients[VICTIM])
    assert len(own) == 2  # its own shares of its seed and key
    _assert_refused(router, forged, honest, own)
    assert router.sent[VICTIM][-1].KIND is Kind.SHARE_KEYS  # and no MaskedInput after it


def test_share_forward_from_a_non_neighbour() -> None:
    router, honest = _at_shares("secagg+", n=8, degree=4, threshold=3)
    peers = [s.peer for s in honest.shares]
    stranger = min(set(range(8)) - set(peers) - {VICTIM})
    forged = dataclasses.replace(honest, shares=SealedShares.of(
        _with(honest, peers[0], honest.shares[0].ciphertext, stranger)))
    _assert_refused(router, forged, honest)


def test_share_forward_replayed_from_another_round() -> None:
    # Same seed and session, so the clients even draw the same keys in both rounds: only the
    # round binding (HKDF info and AEAD associated data) stops the replay.
    stale = _up_to(_round(seed="same"), Kind.SHARE_FORWARD)
    router, honest = _at_shares(seed="same", round_id=1)
    assert [s.peer for s in stale.shares] == [s.peer for s in honest.shares]
    _assert_refused(router, stale, honest)
    router, honest = _at_shares(seed="same", round_id=1)
    _assert_refused(router, dataclasses.replace(stale, round=1), honest)


# -- the active variant: what the passive one cannot see -----------------------------------
def test_active_client_refuses_a_substituted_neighbour_key() -> None:
    router, honest = _at_keys(active=True)
    forged = dataclasses.replace(honest, keys=_replace_entry(honest.keys, 1,
                                                             c_pk=_fresh_key("mitm")))
    _assert_refused(router, forged, honest)


def test_active_client_refuses_to_unmask_without_the_consistency_round() -> None:
    router = _round(active=True, drop_at={5: 2})
    honest = _up_to(router, Kind.CONSISTENCY_REQUEST)
    # Skip the consistency round: send an unmask request straight away.
    forged = UnmaskRequest(version=honest.version, round=honest.round, sender=SERVER,
                           recipient=VICTIM, survivors=(0, 1, 2, 3, 4), dropped=(5,))
    _assert_refused(router, forged, honest, _secret_shares(router.clients[VICTIM]))


ACTIVE_UNMASK_FORGERIES: dict[str, Callable[[UnmaskRequest], dict[str, object]]] = {
    # Client 4 signed the list, so it survived: calling it dropped would reveal its key.
    "a signer called dropped": lambda m: {"survivors": (0, 1, 2, 3), "dropped": (4, 5)},
    # Client 5 is not on the signed list: calling it a survivor would reveal its seed.
    # (A passive client cannot tell this from the truth; the consistency round can.)
    "a non-signer called survivor": lambda m: {"survivors": (0, 1, 2, 3, 4, 5), "dropped": ()},
    "too few signatures": lambda m: {"signatures": m.signatures[:1]},
    "a signer repeated": lambda m: {"signatures": (*m.signatures[:-1], m.signatures[0])},
    "a forged signature": lambda m: {"signatures": (
        dataclasses.replace(m.signatures[0], signature=_flip(m.signatures[0].signature, 5)),
        *m.signatures[1:])},
}


@pytest.mark.parametrize("forgery", ACTIVE_UNMASK_FORGERIES)
def test_active_client_refuses_an_unmask_request_at_odds_with_the_signed_list(
        forgery: str) -> None:
    router = _round(active=True, drop_at={5: 2})
    honest = _up_to(router, Kind.UNMASK_REQUEST)
    assert isinstance(honest, UnmaskRequest) and honest.dropped == (5,)
    assert len(honest.signatures) >= router.config.signature_threshold
    forged = dataclasses.replace(honest, **ACTIVE_UNMASK_FORGERIES[forgery](honest))
    _assert_refused(router, forged, honest, _secret_shares(router.clients[VICTIM]))


def test_share_forward_replayed_from_another_session() -> None:
    stale = _up_to(_round(seed="same", session=b"deployment A"), Kind.SHARE_FORWARD)
    router, honest = _at_shares(seed="same", session=b"deployment B")
    _assert_refused(router, stale, honest)


def test_envelopes_carry_what_the_client_sent() -> None:
    # Sanity for the checks above: the router sees the victim's frames byte for byte.
    router, honest, secrets = _at_unmask()
    out = router.send(honest, to=VICTIM)
    frame = Envelope.of(out[0]).frame
    assert frame in _frames(router, VICTIM)
    revealed = {s.value for s in out[0].seed_shares} | {s.value for s in out[0].key_shares}
    assert revealed <= secrets
