"""paillier: secure aggregation with packed Paillier encryption (phe + gmpy2), three roles.

Theory of operation. Paillier (EUROCRYPT 1999, section 4, Scheme 1, with g = n + 1) encrypts
m < n as ``E(m) = (1 + m n) r^n mod n^2`` for a random r, and ``E(a) E(b) = E(a + b mod n)``
(section 8): multiplying ciphertexts adds plaintexts, exactly. The round follows DESIGN.md "HE roles"
(:mod:`protocols.he`):

- the decryptor makes a fresh key pair for every round (primes from :class:`Csprng` and
  gmpy2's primality test, top two bits set so that n has exactly ``key_bits`` bits) and
  publishes n alone;
- a client encodes its update exactly as plaintext does (``encoded`` is that ring vector),
  offsets and packs the ``dim + 1`` values into slots of big plaintexts (:mod:`.config`),
  adds its one-time blind (:func:`blinds`: uniform mod n per plaintext, the seed sealed to
  the decryptor, :mod:`protocols.he.blind`), and encrypts each with phe's raw encryption, r drawn from its Csprng, spread over the driver's
  ``map`` (16 per task); the ciphertexts travel as one block of fixed-width
  big-endian integers;
- the aggregator checks every ciphertext is in (0, n^2) and multiplies it into one running
  product (phe's EncryptedNumber addition); it holds the public key only;
- the decryptor decrypts the one aggregate once (CRT), removes the named contributors'
  blinds, checks that the 64 guard bits and the padding slots are zero and every slot sum is
  one that ``count`` clients can produce, removes the offsets and releases the exact integer
  sum, after DP noise when configured. A left-over blind sets the guard bits with
  probability 1 - 2^-64.
"""

from __future__ import annotations

import builtins
from typing import Any, ClassVar, Final

import gmpy2
import numpy as np
from phe.paillier import EncryptedNumber, PaillierPrivateKey, PaillierPublicKey

from protocols.he import FarOutOfRange, HeKind, HeScheme, MapFn
from protocols.paillier.config import MASK_BITS, PaillierConfig
from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng

__all__ = ["PaillierScheme", "generate_keypair", "pack", "unpack"]

#: plaintexts per task handed to the driver's ``map``
_PER_TASK: Final = 16


def _prime(bits: int, rng: Csprng) -> int:
    while True:
        p = int(gmpy2.next_prime(rng.randbits(bits) | (3 << (bits - 2)) | 1))
        if p.bit_length() == bits:
            return p


def generate_keypair(key_bits: int, rng: Csprng) -> PaillierPrivateKey:
    """A fresh key pair with an n of exactly ``key_bits`` bits.

    .. warning:: the result is the round's secret key.
    """
    half = key_bits // 2
    p = _prime(half, rng)
    q = _prime(half, rng)
    while q == p:
        q = _prime(half, rng)
    return PaillierPrivateKey(PaillierPublicKey(p * q), p, q)


def pack(config: PaillierConfig, ring: np.ndarray) -> list[int]:
    """Offset and pack one client's encoded ring vector into plaintext integers."""
    shifted = config.encoding.centre(ring) + config.offset
    if shifted.min(initial=0) < 0 or shifted.max(initial=0) > 2 * config.offset:
        raise ConfigError("an encoded value lies outside the packing's range")
    slots, width = config.slots_per_ciphertext, config.slot_bytes
    padded = np.zeros(config.n_ciphertexts * slots, "<u8")
    padded[: shifted.size] = shifted
    rows = padded.view(np.uint8).reshape(-1, 8)[:, :width].reshape(config.n_ciphertexts, -1)
    return [int.from_bytes(row.tobytes(), "little") for row in rows]


def unpack(config: PaillierConfig, plaintexts: list[int]) -> np.ndarray:
    """The slot values of plaintext integers (uint64, padding slots included).

    Raises:
        ProtocolError: a plaintext wider than its slots.
    """
    nbytes = config.slots_per_ciphertext * config.slot_bytes
    try:
        buf = b"".join(m.to_bytes(nbytes, "little") for m in plaintexts)
    except OverflowError:
        raise ProtocolError("a decrypted plaintext overflows its slots") from None
    raw = np.frombuffer(buf, np.uint8).reshape(-1, config.slot_bytes)
    full = np.zeros((raw.shape[0], 8), np.uint8)
    full[:, : config.slot_bytes] = raw
    return full.reshape(-1).view("<u8")


def blinds(config: PaillierConfig, n: int, seed: bytes) -> list[int]:
    """The one-time blind of each plaintext: uniform in [0, n), expanded from ``seed``."""
    rng = Csprng(seed).spawn("paillier-blind")
    return [rng.randbelow(n) for _ in range(config.n_ciphertexts)]


def _unblind(config: PaillierConfig, n: int, plain: list[int], seeds: list[bytes]) -> list[int]:
    """Remove the seeds' blinds; each plaintext centred mod n into (-n/2, n/2]."""
    for seed in seeds:
        plain = [(m - b) % n for m, b in zip(plain, blinds(config, n, seed), strict=True)]
    half = n // 2
    return [m - n if m > half else m for m in plain]


def _encrypt_span(context: bytes, plaintexts: list[int], seed: bytes) -> bytes:
    """Worker: encrypt plaintexts under n (``context``), with r from ``Csprng(seed)``."""
    n = int.from_bytes(context, "big")
    public, rng, width = PaillierPublicKey(n), Csprng(seed), 2 * len(context)
    out = bytearray()
    for m in plaintexts:
        out += public.raw_encrypt(m, r_value=rng.randbelow(n - 1) + 1).to_bytes(width, "big")
    return bytes(out)


class PaillierScheme(HeScheme):
    """Packed Paillier with raw phe encryption; exact."""

    kind: ClassVar[HeKind] = HeKind.PAILLIER
    exact: ClassVar[bool] = True
    identifies: ClassVar[bool] = True

    # -- decryptor -----------------------------------------------------------------------
    def keygen(self, config: PaillierConfig, rng: Csprng) -> tuple[bytes, Any]:
        secret = generate_keypair(config.key_bits, rng)
        return secret.public_key.n.to_bytes(config.key_bits // 8, "big"), secret

    def decrypt(self, config: PaillierConfig, secret: Any, aggregate: list[int],
                seeds: list[bytes]) -> np.ndarray:
        """Remove the blinds; refuse a plaintext far out of range (:class:`FarOutOfRange`:
        the decryptor then tests each contributor); otherwise decode the low ``packed_bits``
        of every plaintext, clamp every slot sum into what ``count`` clients can produce
        (a malicious client can bias, not abort) and remove the offsets."""
        n, count = secret.public_key.n, len(seeds)
        plain = _unblind(config, n, [secret.raw_decrypt(c) for c in aggregate], seeds)
        far = 1 << config.far_bits
        if any(abs(t) >= far for t in plain):
            raise FarOutOfRange(
                "aggregate out of range: a plaintext is far outside the window once the named "
                "contributors' blinds are removed; either the aggregate is not the sum of "
                "their uploads, each counted once, or a contributor's own upload is far out of "
                "range")
        low = (1 << config.packed_bits) - 1
        slots = unpack(config, [t & low for t in plain])
        total = config.dim + 1
        vals = np.clip(slots[:total].astype(np.int64), 0, 2 * config.offset * count)
        return vals - count * config.offset

    def test_blocks(self, config: PaillierConfig, public: Any, upload: list[int],
                    rng: Csprng) -> bytes:
        """``E(m + rho) * E(tau)`` per plaintext, tau uniform in [0, 2^(P + MASK_BITS))."""
        n, n2, width = public.n, public.nsquare, config.ciphertext_bytes
        out = bytearray()
        for c in upload:
            mask = public.raw_encrypt(rng.randbits(config.packed_bits + MASK_BITS),
                                      r_value=rng.randbelow(n - 1) + 1)
            out += (c * mask % n2).to_bytes(width, "big")
        return bytes(out)

    def test(self, config: PaillierConfig, secret: Any, block: bytes, seed: bytes,
             rng: Csprng) -> bool:
        """Whether ``m + tau + sigma`` lies in [0, 2^P + 2^(P + MASK_BITS + 1)) for every
        plaintext, with sigma the decryptor's own uniform mask in [0, 2^(P + MASK_BITS)):
        always for an honest upload (m in [0, 2^P)), never for one whose plaintext is
        2^window_bits or more out, and the answer moves by at most 2^(1 - MASK_BITS) with an
        honest m whatever tau the aggregator chose."""
        n = secret.public_key.n
        cts = self.open_blocks(config, secret, (block,))
        plain = _unblind(config, n, [secret.raw_decrypt(c) for c in cts], [seed])
        top = (1 << config.packed_bits) + (1 << (config.packed_bits + MASK_BITS + 1))
        return all(0 <= t + rng.randbits(config.packed_bits + MASK_BITS) < top for t in plain)

    # -- everyone else -------------------------------------------------------------------
    def load_public(self, config: PaillierConfig, context: bytes) -> PaillierPublicKey:
        """The public key n. A context carries nothing else, so it cannot hold a secret."""
        n = int.from_bytes(context, "big")
        if len(context) != config.key_bits // 8 or n.bit_length() != config.key_bits or n % 2 == 0:
            raise ProtocolError(f"the public key must be an odd {config.key_bits}-bit modulus in "
                                f"{config.key_bits // 8} bytes; got {len(context)} bytes, "
                                f"{n.bit_length()} bits")
        return PaillierPublicKey(n)

    # -- client --------------------------------------------------------------------------
    def prepare(self, config: PaillierConfig, update: np.ndarray, weight: float,
                rng: Csprng) -> np.ndarray:
        return config.encoding.encode(update, rng, weight)

    def encrypt(self, config: PaillierConfig, context: bytes, public: Any, prepared: np.ndarray,
                rng: Csprng, seed: bytes, map: MapFn = builtins.map) -> tuple[bytes, ...]:
        n = public.n
        plaintexts = [(m + b) % n for m, b in zip(pack(config, prepared),
                                                   blinds(config, n, seed), strict=True)]
        spans = [plaintexts[a : a + _PER_TASK] for a in range(0, len(plaintexts), _PER_TASK)]
        keys = [rng.bytes(32) for _ in spans]
        return (b"".join(map(_encrypt_span, [context] * len(spans), spans, keys)),)

    # -- aggregator (and the decryptor, for parsing) -------------------------------------
    def open_blocks(self, config: PaillierConfig, key: Any,
                    blocks: tuple[bytes, ...]) -> list[int]:
        public = key if isinstance(key, PaillierPublicKey) else key.public_key
        width, count = config.ciphertext_bytes, config.n_ciphertexts
        if len(blocks) != 1 or len(blocks[0]) != width * count:
            raise ProtocolError(f"expected one block of {count} ciphertexts of {width} bytes, "
                                f"got {len(blocks)} blocks of {[len(b) for b in blocks[:3]]} bytes")
        blob, n2 = blocks[0], public.nsquare
        cts = [int.from_bytes(blob[i : i + width], "big") for i in range(0, len(blob), width)]
        if not all(0 < c < n2 for c in cts):
            raise ProtocolError("a ciphertext is not in (0, n^2)")
        return cts

    def add(self, config: PaillierConfig, public: Any, acc: list[EncryptedNumber] | None,
            upload: list[int]) -> list[EncryptedNumber]:
        if acc is None:
            return [EncryptedNumber(public, c) for c in upload]
        for i, c in enumerate(upload):
            acc[i] = acc[i] + EncryptedNumber(public, c)
        return acc

    def seal(self, config: PaillierConfig, public: Any,
             acc: list[EncryptedNumber]) -> tuple[bytes, ...]:
        width = config.ciphertext_bytes
        return (b"".join(e.ciphertext(be_secure=False).to_bytes(width, "big") for e in acc),)
