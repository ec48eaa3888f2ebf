"""Rebuilding a secret from shares when some shares may be forged.

Every secret the server rebuilds is committed: a self-mask seed b_u by the SHA-256
commitment in u's advertisement, a mask key s_u^SK by its public key s_u^PK. So a rebuilt
value is checked, not trusted. :func:`rebuild` interpolates the first t shares and checks the
commitment (the honest case costs one interpolation). If that fails and more than t shares
arrived, it searches t-subsets that leave out d = 1, 2, ... of the first t + d shares (with e
forged shares it succeeds by d = e, after at most sum_{d<=e} C(t+d, d) tries, within a
budget), then names the shares that do not fit the rebuilt secret. With exactly t shares, or
when no subset within the budget rebuilds the commitment, it raises
:class:`ForgedShareError` naming the suspects. It never returns an unchecked value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import combinations

from secagg import shamir
from secagg.errors import ForgedShareError, ProtocolError

__all__ = ["MAX_TRIES", "rebuild"]

#: the most interpolations one secret may cost before the server gives up.
MAX_TRIES = 4096


def rebuild(shares: Mapping[int, bytes], t: int, valid: Callable[[bytes], bool], *, owner: int,
            what: str, length: int = 32) -> tuple[bytes, tuple[int, ...]]:
    """The committed secret of ``owner`` from ``shares`` ``{x: share}`` (x = holder + 1).

    Args:
        valid: whether a candidate secret matches the owner's commitment.
        what: names the secret in errors ("client 3's self-mask seed").

    Returns:
        (secret, holders whose shares did not fit it).

    Raises:
        ForgedShareError: no t of the shares rebuild the committed secret (exactly t
            arrived, or the search ran past :data:`MAX_TRIES`); ``suspects`` are the owner
            and the holders of the shares tried.
    """
    xs = sorted(shares)

    def attempt(subset: list[int]) -> bytes | None:
        try:
            secret = shamir.reconstruct_bytes({x: shares[x] for x in subset}, t, length)
        except ProtocolError:
            return None
        return secret if valid(secret) else None

    secret = attempt(xs[:t])
    if secret is not None:
        return secret, ()
    holders = tuple(x - 1 for x in xs)
    if len(xs) <= t:
        raise ForgedShareError(
            f"the {len(xs)} shares of {what} do not rebuild its commitment: a share from one of "
            f"clients {list(holders)} is forged, or client {owner} dealt inconsistent shares; "
            "refusing to release a wrong sum", owner, tuple(sorted({owner, *holders})))
    tries = 1
    for d in range(1, len(xs) - t + 1):
        head = xs[: t + d]
        for left_out in combinations(head, d):
            tries += 1
            if tries > MAX_TRIES:
                break
            subset = [x for x in head if x not in left_out]
            secret = attempt(subset)
            if secret is None:
                continue
            base = subset[1:]  # t - 1 shares known to fit
            return secret, tuple(x - 1 for x in xs
                                 if x not in subset and attempt([*base, x]) != secret)
        if tries > MAX_TRIES:
            break
    raise ForgedShareError(
        f"no {t} of the {len(xs)} shares of {what} rebuild its commitment (tried {tries - 1}): "
        f"forged shares among clients {list(holders)}, or client {owner} dealt inconsistent "
        "shares; refusing to release a wrong sum", owner, tuple(sorted({owner, *holders})))
