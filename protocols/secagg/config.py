"""SecAgg / SecAgg+ parameters: the graph degree k and threshold t, derived or given.

``secagg`` uses the complete graph (k = n - 1) and, unless told otherwise, the majority
threshold t = floor(n/2) + 1: the server learns nothing about an honest client's input even
with t - 1 clients colluding, and up to n - t clients may drop.

``secagg+`` (Bell et al. 2020) uses a random k-regular graph (a Harary graph under a random
relabelling). Each client's secrets are shared among its k neighbours and itself. With
dropout rate ``delta`` and corrupt fraction ``gamma`` of clients, k and t are the smallest
with, per client and union-bounded over n clients:

- security:    P[Binomial(k, gamma) >= t]   <= 2^-sigma / n   (corrupt neighbours never
  hold t shares of an honest client's secrets);
- correctness: P[Binomial(k, 1 - delta) < t] <= 2^-eta / n     (every client keeps t live
  share holders).

If no k < n - 1 satisfies both, the complete graph with the majority threshold is used.
Both can be overridden; an override is validated, never silently changed. Whatever is
derived or given, t >= 2 (:data:`MIN_THRESHOLD`): with t = 1 every single share is the
secret, so a client whose neighbours all drop after sharing is unmasked by its own unmask
answer, even to an honest-but-curious server (and ``corruption=0`` would derive t = 1).

The active variant (Bonawitz et al. 2017, section 4 and theorem A.2) needs
t > (m + c)/2 for the m holders of each secret's shares (m = n for the complete graph,
k + 1 for SecAgg+) of which c = floor(corruption * m) are corrupt: then the c corrupt holders
and two disjoint sets of honest ones can never reach t for both a client's seed and its mask
key. :func:`make_config` derives the smallest such t by default (:func:`active_min_threshold`),
and a config below it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import comb
from typing import Any, ClassVar

from protocols.base import ClientNoise, RoundConfig
from protocols.secagg.registry import ClientRegistry
from secagg.dp.mechanisms import NOISE_FAILURE, client_noise_bound
from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError

__all__ = ["MIN_THRESHOLD", "NOISE_FAILURE", "SecAggConfig", "active_min_threshold",
           "client_noise_bound", "derive_graph_parameters", "make_config"]

# NOISE_FAILURE and client_noise_bound (the clamp of one client's noise) live with their
# mechanism in secagg.dp.mechanisms; they are re-exported here for the config's users.

#: the smallest Shamir threshold any config may have (see the module docstring)
MIN_THRESHOLD = 2


def active_min_threshold(holders: int, corruption: float) -> int:
    """The smallest t > (m + c)/2 for m = ``holders`` and c = floor(corruption * m)."""
    c = int(corruption * holders)
    return (holders + c) // 2 + 1


@dataclass(frozen=True)
class SecAggConfig(RoundConfig):
    """A SecAgg round.

    Args (beyond :class:`RoundConfig`):
        threshold: Shamir threshold t (shares needed to rebuild a secret).
        degree: neighbours per client k; ``n_clients - 1`` is the complete graph.
        corruption: the fraction of clients assumed to collude with the server.
        active: the active-adversary variant (signed keys, consistency round).
        registry: long-term verify keys of the clients (required by ``active``); with
            ``enrolled``, an :class:`~protocols.secagg.enrolled_keys.EnrolledRegistry`.
        enrolled: clients hold long-term keys (``secagg enroll``): two exchanges per round
            and no key setup (:mod:`protocols.secagg.enrolled_client`).
        client_noise: distributed DP: every client adds this noise before masking, so no
            party ever sees an un-noised sum. Each client clamps its noise to
            :attr:`client_noise_bound` (exceeded with probability below 2^-40 over the whole
            round, which adds at most 2^-40 to delta), so the encoding's ``noise_bound``
            must be at least ``n_clients * client_noise_bound``: the sum can never wrap.
    """

    SUPPORTS_CLIENT_NOISE: ClassVar[bool] = True

    threshold: int = 0
    degree: int = 0
    corruption: float = 0.1
    active: bool = False
    registry: ClientRegistry | None = None
    enrolled: bool = False
    client_noise: ClientNoise | None = None

    def __post_init__(self) -> None:
        RoundConfig.__post_init__(self)
        n, k, t = self.n_clients, self.degree, self.threshold
        if not isinstance(k, int) or not 0 <= k <= n - 1:
            raise ConfigError(f"degree must be in 0..{n - 1} (n_clients - 1), got {k!r}")
        if k < n - 1 and k % 2:
            raise ConfigError(f"a sparse graph needs an even degree, got {k}; use {k + 1} or {k - 1}")
        if not isinstance(t, int) or not 1 <= t <= k + 1:
            raise ConfigError(
                f"threshold must be in 1..{k + 1} (degree {k} neighbours + the client itself), "
                f"got {t!r}"
            )
        if t < MIN_THRESHOLD:
            raise ConfigError(
                f"threshold t={t} lets one share reveal a secret: a client whose neighbours "
                "all drop would be unmasked by its own unmask answer (its self-mask seed and "
                f"their mask keys); use threshold >= {MIN_THRESHOLD}"
                + (f" and degree >= {MIN_THRESHOLD - 1}" if k + 1 < MIN_THRESHOLD else "")
            )
        if not 0 <= self.corruption < 1:
            raise ConfigError(f"corruption fraction must be in [0, 1), got {self.corruption}")
        if self.active:
            m = k + 1
            need = active_min_threshold(m, self.corruption)
            if t < need:
                c = int(self.corruption * m)
                raise ConfigError(
                    f"the active variant needs threshold t > (m + c)/2 = {(m + c) / 2:g} for "
                    f"m={m} share holders and c={c} corrupt (corruption {self.corruption:g}); "
                    f"got t={t}, use threshold >= {need}"
                )
        if self.client_noise is not None:
            if self.noise is not None:
                raise ConfigError("choose central DP (noise) or distributed DP (client_noise), "
                                  "not both")
            need = n * self.client_noise_bound
            if self.encoding.noise_bound < need:
                raise ConfigError(
                    f"distributed noise of {n} clients needs noise_bound >= {need} in the "
                    f"encoding, got {self.encoding.noise_bound}; use "
                    f"EncodingConfig(noise_bound={need}, ...) and check its headroom"
                )
        if self.active and self.registry is not None and not self.registry.covers(n):
            missing = [u for u in range(n) if u not in self.registry.keys][:5]
            raise ConfigError(f"the registry does not enroll clients {missing}... of 0..{n - 1}")

    @property
    def client_noise_bound(self) -> int:
        """Largest magnitude of one client's noise coordinate (0 without distributed DP)."""
        if self.client_noise is None:
            return 0
        return client_noise_bound(self.client_noise, self.dim, self.n_clients)

    @property
    def signature_threshold(self) -> int:
        """Signatures a client needs on the survivor list before it unmasks (active variant).

        At least t, and more than (n + c)/2 for c = floor(corruption * n) corrupt clients, so
        two different survivor lists can never both gather enough signatures from clients
        that each sign once: equivocation needs more than c double-signers.
        """
        c = int(self.corruption * self.n_clients)
        return min(self.n_clients, max(self.threshold, (self.n_clients + c) // 2 + 1))

    @property
    def complete(self) -> bool:
        """Whether every client neighbours every other (classic SecAgg)."""
        return self.degree == self.n_clients - 1


def _tail_ge(k: int, p: float, t: int) -> float:
    return sum(comb(k, i) * p**i * (1 - p) ** (k - i) for i in range(t, k + 1))


@lru_cache(maxsize=256)
def derive_graph_parameters(
    n: int, dropout: float = 0.1, corruption: float = 0.1, sigma: int = 40, eta: int = 20,
) -> tuple[int, int]:
    """(degree k, threshold t) for ``n`` clients; see the module docstring.

    Raises:
        ConfigError: fractions outside [0, 1) or a non-positive n.
    """
    if n < 1:
        raise ConfigError(f"n_clients must be >= 1, got {n}")
    for name, v in (("dropout", dropout), ("corruption", corruption)):
        if not 0 <= v < 1:
            raise ConfigError(f"{name} fraction must be in [0, 1), got {v}")
    for k in range(2, n - 1, 2):
        t = next((t for t in range(MIN_THRESHOLD, k + 2)
                  if _tail_ge(k, corruption, t) <= 2.0**-sigma / n),
                 None)
        if t is None:
            continue
        if 1 - _tail_ge(k, 1 - dropout, t) <= 2.0**-eta / n:
            return k, t
    return n - 1, n // 2 + 1


def make_config(
    n_clients: int,
    dim: int,
    *,
    sparse: bool = False,
    threshold: int | None = None,
    degree: int | None = None,
    dropout_tolerance: float = 0.1,
    corruption: float = 0.1,
    **kw: Any,
) -> SecAggConfig:
    """A validated :class:`SecAggConfig`, deriving k and t unless given."""
    if "encoding" not in kw:
        noise = kw.get("client_noise")
        bound = n_clients * client_noise_bound(noise, dim, n_clients) if noise is not None else 0
        kw["encoding"] = EncodingConfig(max_clients=max(n_clients, 1), noise_bound=bound)
    if degree is None:
        if sparse:
            degree, derived_t = derive_graph_parameters(n_clients, dropout_tolerance, corruption)
        else:
            degree, derived_t = n_clients - 1, n_clients // 2 + 1
    else:
        derived_t = degree // 2 + 1 if degree < n_clients - 1 else n_clients // 2 + 1
    if kw.get("active") and 0 <= degree < n_clients:
        derived_t = max(derived_t, active_min_threshold(degree + 1, corruption))
    return SecAggConfig(
        n_clients=n_clients, dim=dim, degree=degree, corruption=corruption,
        threshold=derived_t if threshold is None else threshold, **kw,
    )
