"""The in-process driver: one aggregation round of any protocol, with simulated dropouts.

The driver is thin and holds no crypto. The round harness (:class:`protocols.harness.Router`)
moves messages between the sans-IO roles, passing every one through the wire codec (so sizes
are real and nothing but bytes crosses), makes chosen clients fall silent at chosen stages,
and when no message is left in flight and the server has not finished, calls
``server.close_round()``. This module times each role's compute and measures the server's
retained memory after each step.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fl.engines._memory import deep_sizeof
from protocols.base import SERVER, AggregateResult, Message, ProtocolSpec, RoundConfig
from protocols.harness import Router
from secagg.errors import ConfigError, LateMessageError, SecAggError
from secagg.rng import Csprng

__all__ = ["RoundReport", "plan_dropouts", "run_round"]

Progress = Callable[[str], None]


@dataclass
class RoundReport:
    """What one simulated round did and cost."""

    protocol: str
    clients: int
    dim: int
    result: AggregateResult | None
    error: str | None
    dropped: list[int]
    dropped_by_stage: dict[str, int]
    contributors: tuple[int, ...]
    exact: bool | None
    max_abs_error: float | None
    client_seconds: float
    server_seconds: float
    helper_seconds: float
    upload_bytes_per_client: int
    download_bytes_per_client: int
    server_peak_bytes: int
    client_seconds_all: list[float] = field(default_factory=list)
    #: server-to-client requests each client answers in a round (the protocol's stages)
    client_exchanges: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``simulate --json`` contract (DESIGN.md)."""
        return {
            "protocol": self.protocol,
            "clients": self.clients,
            "dim": self.dim,
            "dropped": len(self.dropped),
            "dropped_by_stage": self.dropped_by_stage,
            "survivors": len(self.contributors),
            "exact": self.exact,
            "max_abs_error": self.max_abs_error,
            "client_seconds": self.client_seconds,
            "server_seconds": self.server_seconds,
            "helper_seconds": self.helper_seconds,
            "upload_bytes_per_client": self.upload_bytes_per_client,
            "download_bytes_per_client": self.download_bytes_per_client,
            "server_peak_bytes": self.server_peak_bytes,
            "client_exchanges": self.client_exchanges,
            "error": self.error,
        }


def plan_dropouts(n: int, fraction: float, stages: Sequence[str], rng: Csprng) -> dict[int, int]:
    """Choose ``round(fraction*n)`` clients to drop, spread over ``stages`` round-robin.

    Returns:
        client id -> index of the first stage whose message it never answers.

    Raises:
        ConfigError: a fraction outside [0, 1).
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"dropout fraction must be in [0, 1), got {fraction}")
    m = round(fraction * n)
    chosen = rng.sample(n, m)
    order = rng.permutation(len(stages))
    return {u: order[i % len(stages)] for i, u in enumerate(chosen)}


def run_round(
    spec: ProtocolSpec,
    config: RoundConfig,
    inputs: Sequence[np.ndarray] | Callable[[int], np.ndarray],
    rng: Csprng,
    *,
    weights: Sequence[float] | None = None,
    drop_at: Mapping[int, int] | None = None,
    measure_memory: bool = True,
    progress: Progress | None = None,
    client_map: Callable[..., Any] | None = None,
    lean: bool = False,
    credentials: Mapping[int, dict[str, Any]] | None = None,
) -> RoundReport:
    """Run one round of ``spec`` over ``inputs`` (one vector per client, or ``u -> vector``
    so that not every input is in memory at once).

    The round runs on :class:`protocols.harness.Router` (the one harness every driver uses);
    this function only times the roles and samples the server's memory.

    Args:
        drop_at: client -> stage index (into ``spec.client_stages(config)``) from which it
            is silent.
        measure_memory: walk the server's state after each step (costs a little time,
            which is not counted in ``server_seconds``).
        client_map: an executor-like ``map`` handed to every client (``map=``) that spreads
            its encryption, e.g. :func:`fl.engines.pool.process_map` for ckks and paillier; None:
            each client works in this thread.
        lean: give each client its input only just before the stage that needs it, so the
            driver never holds every input and encoding at once (``secagg simulate`` does).
            A lean client encodes after drawing its keys, so its stochastic rounding uses
            other bits of its generator than an eager one: the sums are exact either way,
            but not bit-identical to an eager run (e.g. the Flower engine's) of the same seed.
        credentials: client -> extra keyword arguments of ``spec.client`` (e.g. an
            enrolled ``identity`` loaded from ``secagg enroll``'s files); default: what
            ``spec.provision`` makes up for the simulation.

    Returns:
        A :class:`RoundReport`. A round that aborts (e.g. too many dropouts) is reported with
        ``result=None`` and ``error`` set, not raised.
    """
    n = config.n_clients
    if not callable(inputs) and len(inputs) != n:
        raise ConfigError(f"got {len(inputs)} inputs for {n} clients")
    drop_at = dict(drop_at or {})
    client_time = [0.0] * n
    server_time = helper_time = 0.0
    peak = 0
    sample_every = max(1, n // 8)
    steps = 0
    router: Router | None = None

    def step(address: int, call: Callable[[], list[Message]]) -> list[Message]:
        # Retained memory is sampled at least 8 times per stage and after every step that
        # moves the round on; walking the state is not counted as server time.
        nonlocal server_time, helper_time, peak, steps
        out: list[Message] = []
        t0 = time.perf_counter()
        try:
            out = call()
            return out
        finally:
            dt = time.perf_counter() - t0
            if address >= 0:
                client_time[address] += dt
            elif address == SERVER:
                server_time += dt
                steps += 1
                if measure_memory and router is not None and (
                        out or steps % sample_every == 0 or router.server.finished):
                    peak = max(peak, deep_sizeof(router.server))
                if out and progress:  # the server moved the round on (outside the timing)
                    progress(f"server sent {len(out):,} {type(out[0]).__name__}")
            else:
                helper_time += dt

    def before_close() -> None:
        nonlocal peak
        if progress:
            stage = getattr(getattr(router, "server", None), "stage", None)
            progress(f"deadline: closing {getattr(stage, 'name', 'the stage')}")
        if measure_memory and router is not None:
            peak = max(peak, deep_sizeof(router.server))

    error: str | None = None
    result: AggregateResult | None = None
    # Only the clients that will drop need their encoding kept: every other client
    # contributes, so one running sum checks them (a lean driver holds one vector, not n).
    # Uploads are summed as soon as they are sent; lean, inputs are also given just before
    # the stage that needs them, so the driver holds about one client's vectors at a time.
    router = Router(spec, config, rng, inputs, weights, drop_at=drop_at, step=step,
                    start=False, keep_encodings=set(drop_at), record=False,
                    lazy_inputs=lean, server_first=True,
                    client_kwargs=None if client_map is None else {"map": client_map},
                    credentials=credentials)
    stage_names = router.stage_names
    try:
        router.start()
        result = router.run(swallow=LateMessageError, before_close=before_close)
    except SecAggError as exc:
        error = f"{type(exc).__name__}: {exc}"
    if result is None and router.finished:
        result = router.server.result()

    contributors = result.contributors if result else ()
    dropped = sorted(drop_at)
    by_stage: dict[str, int] = {}
    for st in drop_at.values():
        name = stage_names[st] if st < len(stage_names) else "never"
        by_stage[name] = by_stage.get(name, 0) + 1
    exact: bool | None = None
    max_err: float | None = None
    if result is not None:
        exact = router.is_exact(result)
        want, _ = router.expected_float_sum(result.contributors)
        max_err = float(np.max(np.abs(result.sum - want))) if config.dim else 0.0
    ids = list(contributors) or list(range(n))
    return RoundReport(
        protocol=spec.name, clients=n, dim=config.dim, result=result, error=error,
        dropped=dropped, dropped_by_stage=by_stage, contributors=contributors,
        exact=exact, max_abs_error=max_err,
        client_seconds=statistics.median(client_time[u] for u in ids),
        server_seconds=server_time, helper_seconds=helper_time,
        upload_bytes_per_client=int(statistics.median(router.up[u] for u in ids)),
        download_bytes_per_client=int(statistics.median(router.down[u] for u in ids)),
        server_peak_bytes=peak,
        client_seconds_all=[client_time[u] for u in ids],
        client_exchanges=len(stage_names),
    )
