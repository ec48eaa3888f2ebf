"""The in-process driver: one aggregation round of any protocol, with simulated dropouts.

The driver is thin and holds no crypto. It moves messages between the sans-IO roles, passing
every one through the wire codec (so sizes are real and nothing but bytes crosses), times each
role's compute, measures the server's retained memory after each step, and makes chosen
clients fall silent at chosen stages. When no message is left in flight and the server has
not finished, the stage's deadline has passed: it calls ``server.close_round()``.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fl.memory import deep_sizeof
from protocols.base import (
    SERVER, AggregateResult, ClientCore, Message, Party, ProtocolSpec, RoundConfig, stages_of,
)
from secagg import wire
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
    inputs: Sequence[np.ndarray],
    rng: Csprng,
    *,
    weights: Sequence[float] | None = None,
    drop_at: Mapping[int, int] | None = None,
    measure_memory: bool = True,
    progress: Progress | None = None,
    credentials: Mapping[int, dict[str, Any]] | None = None,
) -> RoundReport:
    """Run one round of ``spec`` over ``inputs`` (one vector per client).

    Args:
        drop_at: client -> stage index (into ``spec.client_stages``) from which it is silent.
        measure_memory: walk the server's state after each step (costs a little time,
            which is not counted in ``server_seconds``).
        credentials: client -> extra keyword arguments of ``spec.client`` (e.g. an
            enrolled ``identity`` loaded from ``secagg enroll``'s files); default: what
            ``spec.provision`` makes up for the simulation.

    Returns:
        A :class:`RoundReport`. A round that aborts (e.g. too many dropouts) is reported with
        ``result=None`` and ``error`` set, not raised.
    """
    n = config.n_clients
    if len(inputs) != n:
        raise ConfigError(f"got {len(inputs)} inputs for {n} clients")
    drop_at = dict(drop_at or {})
    weights = list(weights) if weights is not None else [1.0] * n
    if credentials is None:  # simulated enrolment (unless the caller brings real keys)
        config, credentials = spec.provision(config, rng.spawn("enrolment"))
    server = spec.server(config, rng.spawn("server"))
    helpers = spec.helpers(config, rng.spawn("helpers"))
    clients: list[ClientCore] = [
        spec.client(config, u, rng.spawn(f"client/{u}"), **credentials.get(u, {}))
        for u in range(n)
    ]
    client_time = [0.0] * n
    up = [0] * n
    down = [0] * n
    delivered = [0] * n
    server_time = helper_time = 0.0
    peak = 0

    encoded: list[np.ndarray | None] = []
    for u, c in enumerate(clients):
        t0 = time.perf_counter()
        c.set_input(inputs[u], weights[u])
        client_time[u] += time.perf_counter() - t0
        # The driver (not the client) keeps a copy of each encoding to check exactness.
        enc = getattr(c, "encoded", None)
        encoded.append(None if enc is None else enc.copy())

    sample_every = max(1, n // 8)
    steps = 0

    def step_server(fn: Callable[[], list[Message]]) -> list[Message]:
        # Retained memory is sampled at least 8 times per stage and after every step that
        # moves the round on; walking the state is not counted as server time.
        nonlocal server_time, peak, steps
        t0 = time.perf_counter()
        out: list[Message] = []
        try:
            out = fn()
            return out
        finally:
            server_time += time.perf_counter() - t0
            steps += 1
            if measure_memory and (out or steps % sample_every == 0 or server.finished):
                peak = max(peak, deep_sizeof(server))

    error: str | None = None
    queue: deque[Message] = deque(step_server(server.start))
    stage_names = stages_of(spec, config)
    try:
        while True:
            while queue:
                msg = queue.popleft()
                frame = wire.encode(msg)
                r, s = msg.recipient, msg.sender
                if r >= 0:
                    stage = delivered[r]
                    if drop_at.get(r, len(stage_names) + 1) <= stage:
                        continue  # the client is gone: the message is never delivered
                    delivered[r] += 1
                    down[r] += len(frame)
                if s >= 0:
                    up[s] += len(frame)
                msg = wire.decode(frame)
                if r >= 0:
                    t0 = time.perf_counter()
                    out = clients[r].receive(msg)
                    client_time[r] += time.perf_counter() - t0
                elif r == SERVER:
                    try:
                        out = step_server(lambda m=msg: server.receive(m))  # type: ignore[misc]
                    except LateMessageError:
                        out = []
                else:
                    party: Party = helpers[r]
                    t0 = time.perf_counter()
                    out = party.receive(msg)
                    helper_time += time.perf_counter() - t0
                queue.extend(out)
            if server.finished:
                break
            if progress:
                progress("deadline: closing stage")
            if measure_memory:
                peak = max(peak, deep_sizeof(server))
            out = step_server(server.close_round)
            if not out and not server.finished:
                raise ConfigError("the server neither finished nor asked for anything more")
            queue.extend(out)
    except SecAggError as exc:
        error = f"{type(exc).__name__}: {exc}"

    result = server.result() if server.finished else None
    contributors = result.contributors if result else ()
    dropped = sorted(drop_at)
    by_stage: dict[str, int] = {}
    for u, st in drop_at.items():
        name = stage_names[st] if st < len(stage_names) else "never"
        by_stage[name] = by_stage.get(name, 0) + 1
    exact: bool | None = None
    max_err: float | None = None
    if result is not None:
        exact, max_err = _check(spec, config, encoded, inputs, weights, result)
    ids = list(contributors) or list(range(n))
    return RoundReport(
        protocol=spec.name, clients=n, dim=config.dim, result=result, error=error,
        dropped=dropped, dropped_by_stage=by_stage, contributors=contributors,
        exact=exact, max_abs_error=max_err,
        client_seconds=statistics.median(client_time[u] for u in ids),
        server_seconds=server_time, helper_seconds=helper_time,
        upload_bytes_per_client=int(statistics.median(up[u] for u in ids)),
        download_bytes_per_client=int(statistics.median(down[u] for u in ids)),
        server_peak_bytes=peak,
        client_seconds_all=[client_time[u] for u in ids],
        client_exchanges=len(stage_names),
    )


def _check(spec: ProtocolSpec, config: RoundConfig, encoded: Sequence[np.ndarray | None],
           inputs: Sequence[np.ndarray], weights: Sequence[float],
           result: AggregateResult) -> tuple[bool | None, float]:
    """Exactness against the contributors' encoded inputs; error against their float sum."""
    enc = config.encoding
    float_sum = np.zeros(config.dim, np.float64)
    for u in result.contributors:
        x = np.asarray(inputs[u], np.float64)
        norm = float(np.linalg.norm(x))
        if norm > enc.clip:
            x = x * (enc.clip / norm)
        float_sum += weights[u] * x
    max_err = float(np.max(np.abs(result.sum - float_sum))) if config.dim else 0.0
    if not spec.exact or result.int_sum is None:
        return None, max_err
    expected = np.zeros(config.dim + 1, np.int64)
    for u in result.contributors:
        e = encoded[u]
        if e is None:
            return None, max_err
        expected += enc.centre(e)
    if config.noise is not None:
        return None, max_err  # the decoder noised the sum on purpose: exactness is moot
    # With distributed DP the snapshots include each client's noise: still exact.
    return bool(np.array_equal(result.int_sum, expected)), max_err
