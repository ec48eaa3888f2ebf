"""ckks: secure aggregation with CKKS homomorphic encryption (TenSEAL), three roles.

Theory of operation. CKKS (Cheon, Kim, Kim, Song, ASIACRYPT 2017, section 3) encodes
N/2 real numbers into one plaintext polynomial through the inverse canonical embedding scaled
by Delta, and encrypts it as an RLWE ciphertext; adding ciphertexts adds the encoded vectors,
approximately. The round follows DESIGN.md "HE roles" (:mod:`protocols.he`):

- the decryptor makes a fresh key for every round and publishes a TenSEAL context serialised
  with no secret key and no relinearisation or Galois keys (aggregation only adds);
- a client checks the context (no secret key, no key but the public key, exactly the
  parameters :mod:`.config` fixes), clips, weights and quantises its update to the 2^-f grid
  exactly as the exact protocols do (stochastic rounding), appends the weight, adds its
  one-time blind (:func:`blinds`: [0, 1) grid units in every slot, padding included) and
  encrypts all ``4096 * ceil((dim + 1) / 4096)`` slots, spread over the driver's ``map`` (8
  ciphertexts per task); the blind's seed goes to the decryptor sealed (:mod:`protocols.he.blind`);
- the aggregator checks each upload (sizes, scale, two polynomials per ciphertext) and adds it
  into one running sum; it holds the public context only;
- the decryptor decrypts the one aggregate once, removes the named contributors' blinds and
  requires every slot within 2^-t grid units of the grid, the padding at 0 and every value
  within what ``count`` clipped clients can produce (:mod:`.config`); it then releases the
  *rounded* sum, after DP noise when configured. So no CKKS error reaches a release: a raw
  CKKS decryption leaks its noise and with it the key (Li and Micciancio, EUROCRYPT 2021),
  a rounded one carries none, and anything the aggregator adds that would carry some fails
  the grid check (SECURITY.md, "HE").

Randomness: key generation and encryption noise come from SEAL's own generator (seeded by the
OS); TenSEAL offers no way to inject :class:`~secagg.rng.Csprng`. The error bound is in
:mod:`.config`.
"""

from __future__ import annotations

import builtins
from typing import Any, ClassVar, Final

import numpy as np
import tenseal as ts

from protocols.ckks.config import (
    COEFF_MOD_BIT_SIZES,
    POLY_MODULUS_DEGREE,
    SLOTS,
    CkksConfig,
)
from protocols.he import HeKind, HeScheme, MapFn
from secagg.errors import ProtocolError
from secagg.rng import Csprng

__all__ = ["CkksScheme"]

#: a serialised ciphertext is at most its raw size plus headers (SEAL compresses it)
MAX_BLOCK_BYTES: Final = 2 * POLY_MODULUS_DEGREE * 8 + 4096
#: the public key (two polynomials over both primes) plus parameters and headers
MAX_CONTEXT_BYTES: Final = 4 * POLY_MODULUS_DEGREE * 8 + 65536
#: ciphertexts per task handed to the driver's ``map``
_PER_TASK: Final = 8
_TS_ERRORS = (ValueError, RuntimeError, TypeError)


class _Sum:
    """The aggregator's running sum: one CKKSVector per ciphertext (memory lives in C++,
    so ``__sizeof__`` reports it for drivers that measure retained memory)."""

    __slots__ = ("vectors",)

    def __init__(self, vectors: list[Any]) -> None:
        self.vectors = vectors

    def __sizeof__(self) -> int:
        return object.__sizeof__(self) + len(self.vectors) * 2 * POLY_MODULUS_DEGREE * 8


def blinds(config: CkksConfig, seed: bytes) -> np.ndarray:
    """The one-time blind of every slot (padding included), in grid units: uniform in
    [0, 1) on the 2^-32 grid, expanded from ``seed``."""
    rng = Csprng(seed).spawn("ckks-blind")
    return rng.uint32(config.n_ciphertexts * SLOTS).astype(np.float64) * 2.0**-32


def _encrypt_with(ctx: Any, values: np.ndarray, scale: float) -> list[bytes]:
    return [ts.ckks_vector(ctx, values[s : s + SLOTS].tolist(), scale).serialize()
            for s in range(0, values.size, SLOTS)]


def _encrypt_span(context: bytes, values: np.ndarray, scale: float) -> list[bytes]:
    """Worker: encrypt ``values`` (a whole number of ciphertexts) under a public context."""
    return _encrypt_with(ts.context_from(context, n_threads=1), values, scale)


def _load_context(context: bytes) -> Any:
    if len(context) > MAX_CONTEXT_BYTES:
        raise ProtocolError(f"a context of {len(context)} bytes; at most {MAX_CONTEXT_BYTES}")
    try:
        return ts.context_from(context, n_threads=1)
    except _TS_ERRORS as exc:
        raise ProtocolError(f"malformed CKKS context: {exc}") from None


class CkksScheme(HeScheme):
    """TenSEAL CKKS, addition only."""

    kind: ClassVar[HeKind] = HeKind.CKKS
    exact: ClassVar[bool] = False

    # -- decryptor -------------------------------------------------------------------------
    def keygen(self, config: CkksConfig, rng: Csprng) -> tuple[bytes, Any]:
        """A fresh context (SEAL's randomness) and its public serialisation.

        .. warning:: the returned context holds the round's secret key.
        """
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, POLY_MODULUS_DEGREE,
                         coeff_mod_bit_sizes=list(COEFF_MOD_BIT_SIZES), n_threads=1)
        ctx.global_scale = 2.0**config.scale_bits
        public = ctx.serialize(save_public_key=True, save_secret_key=False,
                               save_galois_keys=False, save_relin_keys=False)
        return public, ctx

    def decrypt(self, config: CkksConfig, secret: Any, aggregate: list[Any],
                seeds: list[bytes]) -> np.ndarray:
        """Remove the blinds, check the grid, padding and range, round: see :mod:`.config`."""
        count, total = len(seeds), config.dim + 1
        vals = np.concatenate([np.asarray(v.decrypt(), np.float64) for v in aggregate])
        if vals.shape != (config.n_ciphertexts * SLOTS,) or not np.all(np.isfinite(vals)):
            raise ProtocolError("the aggregate does not decrypt to finite values in every slot")
        units = vals * config.encoding.scale
        for seed in seeds:
            units -= blinds(config, seed)
        rounded = np.rint(units)
        off = float(np.max(np.abs(units - rounded)))
        tol = 2.0 ** -config.tolerance_bits
        if off > tol:
            raise ProtocolError(
                f"aggregate out of range: a slot lies {off:.3g} grid units off the grid (at most "
                f"{tol:.3g}) once the named contributors' blinds are removed; the aggregate is "
                "not the sum of their uploads, each counted once")
        top = count * config.unit_bound
        if np.any(rounded[total:]) or float(np.max(np.abs(rounded[:total]))) > top:
            raise ProtocolError(
                f"aggregate out of range: a slot exceeds {top} grid units, the most {count} "
                "clipped clients can sum to, or a padding slot is not zero; a contributor sent "
                "values outside the clip or weight bound, or the aggregate was tampered with")
        return rounded[:total].astype(np.int64)

    # -- everyone else -----------------------------------------------------------------
    def load_public(self, config: CkksConfig, context: bytes) -> Any:
        ctx = _load_context(context)
        if ctx.has_secret_key() or ctx.is_private():
            raise ProtocolError("the public context holds a secret key; refusing to use it")
        if ctx.has_relin_keys() or ctx.has_galois_keys() or not ctx.has_public_key():
            raise ProtocolError("the public context must carry the public key and no "
                                "relinearisation or Galois keys")
        seal = ctx.seal_context().data
        first, key = seal.first_context_data(), seal.key_context_data()
        got = (first.parms().scheme() == ts.SCHEME_TYPE.CKKS.value,
               first.parms().poly_modulus_degree(), first.total_coeff_modulus_bit_count(),
               first.next_context_data() is None, key.total_coeff_modulus_bit_count())
        want = (True, POLY_MODULUS_DEGREE, COEFF_MOD_BIT_SIZES[0], True, sum(COEFF_MOD_BIT_SIZES))
        if got != want or ctx.global_scale != 2.0**config.scale_bits:
            raise ProtocolError(
                f"context parameters (ckks, N, data bits, one level, key bits) = {got}, scale "
                f"{ctx.global_scale:g}; this round uses {want}, scale 2^{config.scale_bits}")
        return ctx

    # -- client ------------------------------------------------------------------------
    def prepare(self, config: CkksConfig, update: np.ndarray, weight: float,
                rng: Csprng) -> np.ndarray:
        """``[weight * clip(update), weight]`` quantised to the grid as the exact protocols
        do (stochastic rounding), in int64 grid units."""
        return config.encoding.centre(config.encoding.encode(update, rng, weight))

    def encrypt(self, config: CkksConfig, context: bytes, public: Any, prepared: np.ndarray,
                rng: Csprng, seed: bytes, map: MapFn = builtins.map) -> tuple[bytes, ...]:
        scale = 2.0**config.scale_bits
        n_ct = config.n_ciphertexts
        padded = np.zeros(n_ct * SLOTS, np.float64)
        padded[: prepared.size] = prepared
        padded += blinds(config, seed)
        prepared = padded / config.encoding.scale  # exact: below 2^53 units, a power of 2
        if n_ct <= _PER_TASK or map is builtins.map:
            return tuple(_encrypt_with(public, prepared, scale))
        spans = [prepared[a : a + _PER_TASK * SLOTS] for a in range(0, n_ct * SLOTS,
                                                                   _PER_TASK * SLOTS)]
        parts = map(_encrypt_span, [context] * len(spans), spans, [scale] * len(spans))
        return tuple(blob for part in parts for blob in part)

    # -- aggregator (and the decryptor, for parsing) -----------------------------------
    def open_blocks(self, config: CkksConfig, key: Any, blocks: tuple[bytes, ...]) -> list[Any]:
        n_ct = config.n_ciphertexts
        if len(blocks) != n_ct:
            raise ProtocolError(f"{len(blocks)} ciphertexts; this round needs {n_ct}")
        scale = 2.0**config.scale_bits
        out = []
        for i, blob in enumerate(blocks):
            if len(blob) > MAX_BLOCK_BYTES:
                raise ProtocolError(f"ciphertext {i} has {len(blob)} bytes; at most "
                                    f"{MAX_BLOCK_BYTES}")
            try:
                vec = ts.ckks_vector_from(key, blob)
                cts = vec.ciphertext()
                shape = (vec.size(), len(cts), cts[0].size() if cts else 0,
                         cts[0].scale if cts else 0.0)
            except _TS_ERRORS as exc:
                raise ProtocolError(f"malformed ciphertext {i}: {exc}") from None
            want = (SLOTS, 1, 2, scale)
            if shape != want:
                raise ProtocolError(f"ciphertext {i} has (slots, ciphertexts, polynomials, "
                                    f"scale) = {shape}; expected {want}")
            out.append(vec)
        return out

    def add(self, config: CkksConfig, public: Any, acc: _Sum | None,
            upload: list[Any]) -> _Sum:
        if acc is None:
            return _Sum(upload)
        for total, vec in zip(acc.vectors, upload, strict=True):
            total.add_(vec)
        return acc

    def seal(self, config: CkksConfig, public: Any, acc: _Sum) -> tuple[bytes, ...]:
        return tuple(v.serialize() for v in acc.vectors)
