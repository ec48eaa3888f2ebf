"""Every wrong type secagg refuses is a SecAggTypeError: ``except SecAggError`` catches it,
and so does ``except TypeError`` (it is both, like PyNaCl's TypeError)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import secagg.errors
from secagg.dp import (
    AdaptiveClipper,
    CentralDiscreteGaussian,
    DiscreteGaussianEvent,
    DistributedDiscreteGaussian,
    PoissonSampledEvent,
    PrivacyLedger,
    SelfComposedEvent,
    compute_epsilon,
    noise_multiplier_for,
    sample_discrete_gaussian,
    to_dp_accounting,
)
from secagg.errors import SecAggError, SecAggTypeError
from secagg.rng import Csprng


def test_the_twin_is_both_a_secagg_error_and_a_type_error() -> None:
    assert issubclass(SecAggTypeError, SecAggError) and issubclass(SecAggTypeError, TypeError)
    assert "SecAggTypeError" in secagg.errors.__all__


_RNG = Csprng.from_seed(1)
_MECH = CentralDiscreteGaussian(1.0, 100.0)
_DIST = DistributedDiscreteGaussian(1.0, 100.0, 4)

WRONG_TYPES: list[tuple[str, Callable[[], Any]]] = [
    ("sampler sigma_sq", lambda: sample_discrete_gaussian("4", 10, _RNG)),
    ("sampler size", lambda: sample_discrete_gaussian(4, 2.5, _RNG)),
    ("central noise_multiplier", lambda: CentralDiscreteGaussian("1", 100.0)),
    ("central int_sum", lambda: _MECH.add_noise([1, 2, 3], _RNG)),
    ("central float int_sum", lambda: _MECH.add_noise(np.zeros(3), _RNG)),
    ("central beta", lambda: _MECH.tail_bound(10, beta="small")),
    ("distributed n_clients", lambda: DistributedDiscreteGaussian(1.0, 100.0, 2.5)),
    ("distributed survivors", lambda: _DIST.event_for("3")),
    ("event noise multiplier", lambda: DiscreteGaussianEvent("1")),
    ("sampled event rate", lambda: PoissonSampledEvent("0.5", DiscreteGaussianEvent(1.0))),
    ("sampled inner event", lambda: PoissonSampledEvent(0.5, "gaussian")),
    ("composed count", lambda: SelfComposedEvent(DiscreteGaussianEvent(1.0), 2.5)),
    ("event conversion", lambda: to_dp_accounting("gaussian")),
    ("ledger event", lambda: PrivacyLedger(1.0, 1e-5).charge("gaussian")),
    ("epsilon rounds", lambda: compute_epsilon(1.0, 0.01, 2.5, 1e-5)),
    ("epsilon delta", lambda: compute_epsilon(1.0, 0.01, 2, "1e-5")),
    ("inverse epsilon", lambda: noise_multiplier_for("1", 1e-5, 0.01, 10)),
    ("clipper clip", lambda: AdaptiveClipper("1", 0.5, 0.2)),
]


@pytest.mark.parametrize(("what", "call"), WRONG_TYPES, ids=[w for w, _ in WRONG_TYPES])
def test_a_wrong_type_is_caught_by_except_secagg_error(what: str, call: Callable[[], Any]) -> None:
    try:
        call()
    except SecAggError as exc:
        assert isinstance(exc, SecAggTypeError), f"{what}: {type(exc).__name__}: {exc}"
        assert isinstance(exc, TypeError)
        assert "must be" in str(exc) or "expected" in str(exc)
    else:
        pytest.fail(f"{what}: a wrong type was accepted")


def test_no_bare_type_error_is_raised_in_secagg_or_protocols() -> None:
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    bare = re.compile(r"raise\s+TypeError\b")
    offenders = [str(p.relative_to(root)) for d in ("secagg", "protocols")
                 for p in (root / d).rglob("*.py") if bare.search(p.read_text())]
    assert offenders == []
