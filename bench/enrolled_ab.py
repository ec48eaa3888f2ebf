"""Interleaved A/B of a masking protocol's per-round setup against its enrolled mode.

    python3 -m bench.enrolled_ab secagg+ --clients 100 --dim 1e6 --rounds 5 [--warm]

Each round runs the per-round-setup protocol, then the enrolled one, on the same inputs and
with the same 10% of clients silent before their input is requested (the ``masked_input``
schedule of ``secagg bench``). Role time is CPU time of the calling thread
(``time.thread_time``), so a loaded machine stretches it less than the wall time the bench
reports; the medians over rounds (of the median contributing client, and of the server)
are printed with their ratios. ``--warm`` enrols once and reuses the identities across
rounds, as a deployment does, so their Diffie-Hellman results are cached after round one.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import protocols
from protocols.base import Message
from protocols.harness import Router, random_inputs
from secagg.rng import Csprng

__all__ = ["main", "run"]


def _round(protocol: str, n: int, dim: int, round_id: int, inputs: Sequence[Any], rng: Csprng,
           credentials: dict[str, Any] | None) -> tuple[float, float]:
    enrolled = protocol.endswith(":enrolled")
    name = protocol.removesuffix(":enrolled")
    spec = protocols.get(name)
    graph = ({"degree": 10, "threshold": 6} if name == "secagg+"
             else {"degree": n - 1, "threshold": n // 2 + 1})
    config = spec.make_config(n, dim, round_id=round_id, enrolled=enrolled or None, **graph)
    kw: dict[str, Any] = {}
    if enrolled and credentials is not None:
        if not credentials:
            provisioned, ids = spec.provision(config, rng.spawn("enrolment"))
            credentials.update(registry=provisioned.registry, ids=ids)
        config = dataclasses.replace(config, **{"registry": credentials["registry"]})
        kw["credentials"] = credentials["ids"]
    client_time = [0.0] * n
    server_time = [0.0]

    def step(address: int, call: Callable[[], list[Message]]) -> list[Message]:
        t0 = time.thread_time()
        try:
            return call()
        finally:
            dt = time.thread_time() - t0
            if address >= 0:
                client_time[address] += dt
            else:
                server_time[0] += dt

    first = 0 if enrolled else 2  # the stage that asks for the input
    drop = {u: first for u in rng.spawn(f"drop/{round_id}").sample(n, n // 10)}
    router = Router(spec, config, rng.spawn(f"round/{round_id}/{protocol}"), inputs, None,
                    drop_at=drop, step=step, start=False, record=False, server_first=True, **kw)
    router.start()
    result = router.run()
    if not router.is_exact(result):
        raise RuntimeError(f"{protocol} round {round_id} gave an inexact sum")
    return statistics.median(client_time[u] for u in result.contributors), server_time[0]


def run(protocol: str, n: int, dim: int, rounds: int, warm: bool,
        seed: str = "enrolled-ab") -> dict[str, float]:
    """Median client and server CPU seconds of both modes, and enrolled / per-round."""
    rng = Csprng.from_seed(seed)
    inputs = random_inputs(n, dim, rng.spawn("inputs"))
    credentials: dict[str, Any] | None = {} if warm else None
    times: dict[str, list[tuple[float, float]]] = {protocol: [], protocol + ":enrolled": []}
    for r in range(rounds):
        for p in times:
            times[p].append(_round(p, n, dim, r, inputs, rng, credentials))
    (c0, s0), (c1, s1) = ((statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
                          for v in times.values())
    return {"client_s": c0, "enrolled_client_s": c1, "client_ratio": c1 / c0,
            "server_s": s0, "enrolled_server_s": s1, "server_ratio": s1 / s0}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python3 -m bench.enrolled_ab", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("protocol", choices=["secagg", "secagg+"])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--dim", type=float, default=1e6)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warm", action="store_true", help="reuse enrolled identities across rounds")
    a = ap.parse_args(argv)
    if a.clients < 10 or a.dim < 1 or a.rounds < 1:
        ap.error("--clients must be >= 10, --dim >= 1 and --rounds >= 1")
    out = run(a.protocol, a.clients, int(a.dim), a.rounds, a.warm)
    print(f"{a.protocol} n={a.clients} d={int(a.dim)} rounds={a.rounds} warm={a.warm}: "
          f"client {out['client_s'] * 1e3:.2f} ms, enrolled {out['enrolled_client_s'] * 1e3:.2f}"
          f" ms ({out['client_ratio']:.2f}x); server {out['server_s'] * 1e3:.1f} ms, enrolled "
          f"{out['enrolled_server_s'] * 1e3:.1f} ms ({out['server_ratio']:.2f}x)")


if __name__ == "__main__":
    main()
