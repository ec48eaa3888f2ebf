"""Dropouts in SecAgg and SecAgg+: at every stage, several at once, and what the graph allows.

A client "dropped at stage i" never gets the i-th message a client receives (the driver's
meaning, :func:`protocols.base.stages_of`). The rules under test (protocols/secagg/server.py):

- a client that drops before it sends its masked input is left out, the round goes on;
- one that drops after is still in the sum: its self mask is rebuilt from t shares;
- before masking, a client whose live neighbourhood falls below t is excluded (its input is
  lost) rather than failing the round;
- after masking, every secret the server must rebuild needs t live share holders, or the
  round aborts with DropoutError, and then releases nothing.

For the complete graph the outcome has a closed form that these tests use as an oracle.
"""

from __future__ import annotations

from collections import Counter
from math import comb

import numpy as np
import pytest
from helpers import Router
from hypothesis import given, note
from hypothesis import strategies as st
from protocol_strategies import (
    ACTIVE_STAGES,
    PASSIVE_STAGES,
    dropout_schedules,
    graph_parameters,
)
from strategies import seeds

import protocols
from fl.engines.simulation import plan_dropouts, run_round
from protocols.secagg import derive_graph_parameters, make_config
from protocols.secagg._state import ClientState, ServerStage
from protocols.secagg.messages import MaskedInput, UnmaskRequest
from secagg.errors import ConfigError, DropoutError, UsageError
from secagg.rng import Csprng

VARIANTS = {"passive": False, "active": True}


def _router(name: str, n: int, *, seed: object = 0, dim: int = 6, active: bool = False,
            drop_at: dict[int, int] | None = None, start: bool = True, **kw: object) -> Router:
    spec = protocols.get(name)
    # A fixed session: the SecAgg+ graph is drawn from the transcript, which names it.
    kw.setdefault("session", f"dropout/{name}/{seed}".encode())
    config = spec.make_config(n, dim, active=active, **kw)
    return Router(spec, config, Csprng.from_seed(f"dropout/{name}/{seed}"), drop_at=drop_at,
                  start=start)


def _masked_senders(router: Router) -> set[int]:
    return {u for u in range(router.n) if any(isinstance(m, MaskedInput)
                                             for m in router.sent.get(u, []))}


def _complete_graph_oracle(router: Router, drop_at: dict[int, int]) -> tuple[bool, set[int]]:
    """(whether the round can finish, its contributors) for the complete graph.

    Survivor sets are nested, so the round finishes iff the clients left to answer the
    unmask request are at least t (and, in the active variant, the signers reach the
    signature threshold). Contributors are the clients whose masked input was sent."""
    stages, cfg = router.stage_names, router.config
    alive_after = lambda name: {u for u in range(router.n)
                                if drop_at.get(u, len(stages)) > stages.index(name)}
    masked = alive_after("SHARE_FORWARD")
    responders = alive_after("UNMASK_REQUEST")
    ok = len(responders) >= cfg.threshold
    if cfg.active:
        ok = ok and len(alive_after("CONSISTENCY_REQUEST")) >= cfg.signature_threshold
    return ok, masked


# -- one dropout at each stage -----------------------------------------------------------
@pytest.mark.parametrize("name", ["secagg", "secagg+"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_one_dropout_at_each_stage(name: str, variant: str) -> None:
    n = 7
    for i, stage in enumerate(_router(name, n, active=VARIANTS[variant], start=False).stage_names):
        router = _router(name, n, seed=i, active=VARIANTS[variant], drop_at={3: i})
        result = router.run()
        router.check_result(result)
        ok, masked = _complete_graph_oracle(router, {3: i})
        assert ok and set(result.contributors) == masked, stage
        # The server saw client 3 go missing in the stage that asked it for its i-th reply.
        collecting = [s for s in ServerStage if s not in (ServerStage.FINISHED,
                                                          ServerStage.ABORTED)
                      and s in router.server.dropped_at]
        assert router.server.dropped_at[collecting[i]] == (3,)
        assert all(router.server.dropped_at[s] == () for s in collecting if s is not collecting[i])


@pytest.mark.parametrize("variant", VARIANTS)
def test_several_dropouts_at_once_across_every_stage(variant: str) -> None:
    n = 12  # t = 7: 5 may drop
    stages = _router("secagg", n, active=VARIANTS[variant], start=False).stage_names
    drop_at = {u: i for i, u in enumerate(range(0, 2 * len(stages), 2))}
    drop_at = dict(list(drop_at.items())[: n - 7])
    router = _router("secagg", n, active=VARIANTS[variant], drop_at=drop_at)
    result = router.run()
    router.check_result(result)
    assert set(result.contributors) == _complete_graph_oracle(router, drop_at)[1]


@st.composite
def _schedules(draw: st.DrawFn) -> tuple[int, bool, dict[int, int]]:
    n = draw(st.integers(3, 8))
    active = draw(st.booleans())
    stages = ACTIVE_STAGES if active else PASSIVE_STAGES
    return n, active, draw(dropout_schedules(n, stages))


@given(schedule=_schedules(), seed=seeds)
def test_complete_graph_finishes_exactly_when_the_oracle_says(
        schedule: tuple[int, bool, dict[int, int]], seed: int) -> None:
    n, active, drop_at = schedule
    router = _router("secagg", n, seed=seed, dim=3, active=active, drop_at=drop_at)
    ok, masked = _complete_graph_oracle(router, drop_at)
    note(f"t={router.config.threshold} ok={ok} masked={sorted(masked)}")
    if ok:
        result = router.run()
        router.check_result(result)
        assert set(result.contributors) == masked == _masked_senders(router)
    else:
        with pytest.raises(DropoutError):
            router.run()
        assert router.server.stage is ServerStage.ABORTED
        with pytest.raises(UsageError):
            router.server.result()


@st.composite
def _sparse_rounds(draw: st.DrawFn) -> tuple[int, int, int, dict[int, int]]:
    n = draw(st.integers(5, 10))
    k, t = draw(graph_parameters(n, sparse=True))
    return n, k, t, draw(dropout_schedules(n, PASSIVE_STAGES))


@given(setup=_sparse_rounds(), seed=seeds)
def test_sparse_graph_sums_exactly_who_masked_or_aborts(
        setup: tuple[int, int, int, dict[int, int]], seed: int) -> None:
    n, k, t, drop_at = setup
    router = _router("secagg+", n, seed=seed, dim=3, degree=k, threshold=t, drop_at=drop_at)
    try:
        result = router.run()
    except DropoutError:
        assert router.server.stage is ServerStage.ABORTED
        return
    router.check_result(result)
    assert set(result.contributors) == _masked_senders(router)
    assert not set(result.contributors) & {u for u, s in drop_at.items() if s <= 2}


# -- the graph: a neighbourhood below t ----------------------------------------------------
def _graph(name: str, n: int, seed: object, **kw: object) -> dict[int, set[int]]:
    """Each client's neighbours, read off the key broadcasts of a round without dropouts
    (the graph is drawn from the roster of advertisements, the same under the same seed as
    long as the same clients advertise)."""
    router = _router(name, n, seed=seed, **kw)
    router.run()
    return {m.recipient: {k.client for k in m.keys} - {m.recipient}
            for m in router.log if type(m).__name__ == "KeyBroadcast"}


def _prune(graph: dict[int, set[int]], live: set[int], t: int) -> set[int]:
    live = set(live)
    while True:
        weak = {u for u in live if len(graph[u] & live) + 1 < t}
        if not weak:
            return live
        live -= weak


def test_clients_gone_before_the_keys_leave_no_hole_in_the_graph() -> None:
    # The graph is drawn over the clients whose advertisements are in the roster (it is the
    # transcript's, not the server's), so clients that never advertise are simply not in
    # it: every remaining client keeps k neighbours and contributes.
    n, k, t = 12, 4, 3
    graph = _graph("secagg+", n, "graph", degree=k, threshold=t)
    gone = set(sorted(graph[0])[: k - t + 2])
    router = _router("secagg+", n, seed="graph", degree=k, threshold=t,
                     drop_at={u: 0 for u in gone})
    result = router.run()
    router.check_result(result)
    assert set(result.contributors) == set(range(n)) - gone
    broadcasts = [m for m in router.log if type(m).__name__ == "KeyBroadcast"]
    assert all(len(m.keys) == k + 1 for m in broadcasts)


@pytest.mark.parametrize("stage", [1], ids=["before-shares"])
def test_a_client_whose_neighbourhood_falls_below_t_is_excluded(stage: int) -> None:
    n, k, t = 12, 4, 3
    graph = _graph("secagg+", n, "graph", degree=k, threshold=t)
    assert all(len(vs) == k for vs in graph.values())
    victim = 0
    gone = set(sorted(graph[victim])[: k - t + 2])  # leaves it t - 2 live neighbours
    expected = _prune(graph, set(range(n)) - gone, t)
    assert victim not in expected and len(expected) >= t
    router = _router("secagg+", n, seed="graph", degree=k, threshold=t,
                     drop_at={u: stage for u in gone})
    result = router.run()
    router.check_result(result)
    assert set(result.contributors) == expected
    # The victim was never asked for more: it waits, unharmed, one step short of masking.
    want = ClientState.ADVERTISED if stage == 0 else ClientState.SHARED
    assert router.clients[victim].state is want
    assert not router.clients[victim].aborted


# -- too many dropouts ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["secagg", "secagg+"])
def test_too_many_dropouts_before_unmasking_aborts_without_asking_for_shares(name: str) -> None:
    n = 6  # t = 4: three clients that never mask leave only three survivors
    router = _router(name, n, drop_at={0: 2, 1: 2, 2: 2})
    assert router.config.threshold == 4
    with pytest.raises(DropoutError):
        router.run()
    assert router.server.stage is ServerStage.ABORTED
    with pytest.raises(UsageError):
        router.server.result()
    # Nobody was asked to reveal a share: the abort comes before any unmask request.
    assert not any(isinstance(m, UnmaskRequest) for m in router.sent[-1])


@pytest.mark.parametrize("name", ["secagg", "secagg+"])
def test_too_many_dropouts_while_unmasking_aborts_with_dropout_error(name: str) -> None:
    n = 6
    router = _router(name, n, drop_at={0: 3, 1: 3, 2: 3})
    with pytest.raises(DropoutError, match="t=4"):
        router.run()
    assert router.server.stage is ServerStage.ABORTED
    with pytest.raises(UsageError):
        router.server.result()


def test_too_many_dropouts_in_a_sparse_neighbourhood_after_masking() -> None:
    n, k, t = 10, 4, 3
    graph = _graph("secagg+", n, "sparse-abort", degree=k, threshold=t)
    victim = 0
    # The victim masks and then drops; all but one of its neighbours drop while unmasking,
    # so its self mask has fewer than t live share holders.
    silent = {victim: 3, **{v: 3 for v in sorted(graph[victim])[1:]}}
    router = _router("secagg+", n, seed="sparse-abort", degree=k, threshold=t, drop_at=silent)
    with pytest.raises(DropoutError):
        router.run()
    assert router.server.stage is ServerStage.ABORTED


# -- what the driver reports -----------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_run_round_reports_dropped_by_stage(variant: str) -> None:
    spec = protocols.get("secagg")
    n = 12
    config = spec.make_config(n, 5, active=VARIANTS[variant])
    stages = protocols.base.stages_of(spec, config)
    drop_at = {u: i for u, i in zip(range(1, 12, 2), range(len(stages)))}
    rng = Csprng.from_seed("report")
    inputs = [rng.random(5) - 0.5 for _ in range(n)]
    report = run_round(spec, config, inputs, Csprng.from_seed(f"report/{variant}"),
                       drop_at=drop_at, measure_memory=False)
    assert report.error is None
    assert report.exact is True
    assert report.dropped == sorted(drop_at)
    assert report.dropped_by_stage == dict(Counter(stages[i] for i in drop_at.values()))
    masked_at = stages.index("SHARE_FORWARD")
    assert set(report.contributors) == {u for u in range(n)
                                        if drop_at.get(u, len(stages)) > masked_at}


@given(n=st.integers(2, 60), fraction=st.floats(0, 0.99), seed=st.integers(0, 2**16))
def test_plan_dropouts_spreads_round_fraction_n_over_the_stages(
        n: int, fraction: float, seed: int) -> None:
    spec = protocols.get("secagg")
    stages = spec.client_stages(spec.make_config(n, 1))
    plan = plan_dropouts(n, fraction, stages, Csprng.from_seed(seed))
    assert len(plan) == round(fraction * n)
    assert set(plan) <= set(range(n))
    counts = Counter(plan.values())
    assert set(counts) <= set(range(len(stages)))
    if plan:
        per_stage = [counts.get(i, 0) for i in range(len(stages))]
        assert max(per_stage) - min(per_stage) <= 1


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_plan_dropouts_refuses_fractions_outside_zero_one(fraction: float) -> None:
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        plan_dropouts(10, fraction, ("A", "B"), Csprng.from_seed(0))


# -- derive_graph_parameters ---------------------------------------------------------------
def _tail_ge(k: int, p: float, t: int) -> float:
    return sum(comb(k, i) * p**i * (1 - p) ** (k - i) for i in range(t, k + 1))


@given(n=st.integers(2, 300), dropout=st.floats(0, 0.2), corruption=st.floats(0, 0.1))
def test_derived_graph_parameters_are_valid_and_meet_their_bounds(
        n: int, dropout: float, corruption: float) -> None:
    k, t = derive_graph_parameters(n, dropout, corruption)
    assert 0 <= k <= n - 1
    assert 1 <= t <= k + 1
    if k == n - 1:
        assert t == n // 2 + 1  # the complete graph keeps the majority threshold
    else:
        assert k % 2 == 0 and k >= 2
        # The documented guarantees, union-bounded over n clients (sigma=40, eta=20).
        assert _tail_ge(k, corruption, t) <= 2.0**-40 / n
        assert 1 - _tail_ge(k, 1 - dropout, t) <= 2.0**-20 / n
    config = make_config(n, 1, sparse=True, dropout_tolerance=dropout, corruption=corruption)
    assert (config.degree, config.threshold) == (k, t)


@given(n=st.integers(2, 300), m=st.integers(0, 300), dropout=st.floats(0, 0.2),
       d2=st.floats(0, 0.2), corruption=st.floats(0, 0.1), c2=st.floats(0, 0.1))
def test_derived_degree_is_monotone(n: int, m: int, dropout: float, d2: float,
                                    corruption: float, c2: float) -> None:
    k = derive_graph_parameters(n, dropout, corruption)[0]
    # More clients, more dropouts, more corruption: never fewer neighbours.
    assert derive_graph_parameters(n + m, dropout, corruption)[0] >= k
    assert derive_graph_parameters(n, max(dropout, d2), corruption)[0] >= k
    assert derive_graph_parameters(n, dropout, max(corruption, c2))[0] >= k


def test_derived_degree_grows_logarithmically() -> None:
    ks = {n: derive_graph_parameters(n)[0] for n in (100, 1_000, 10_000)}
    assert ks[100] < 99  # already sparse at a hundred clients
    assert ks[1_000] <= 100 and ks[10_000] <= 100  # O(log n), nowhere near n
    assert ks[10_000] - ks[1_000] <= ks[1_000] - ks[100] + 10


@pytest.mark.parametrize(("kw", "fragment"), [
    ({"degree": 3}, "use 4 or 2"),
    ({"degree": 10}, "0..9"),
    ({"degree": -2}, "0..9"),
    ({"degree": 4, "threshold": 6}, "1..5"),
    ({"degree": 4, "threshold": 0}, "1..5"),
    ({"threshold": 11}, "1..10"),
    ({"degree": 2, "threshold": 1}, "threshold >= 2"),  # one share would be the secret
    ({"dropout_tolerance": 1.0}, "[0, 1)"),
    ({"corruption": -0.5}, "[0, 1)"),
])
def test_explicit_overrides_are_validated_with_the_valid_range(
        kw: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(10, 4, sparse=True, **kw)  # type: ignore[arg-type]
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("degree", "threshold"), [(2, 2), (4, 2), (4, 5), (8, 3), (9, 10)])
def test_valid_overrides_are_kept_as_given(degree: int, threshold: int) -> None:
    config = make_config(10, 4, sparse=True, degree=degree, threshold=threshold)
    assert (config.degree, config.threshold) == (degree, threshold)
    router = Router(protocols.get("secagg+"), config, Csprng.from_seed(f"override/{degree}"))
    result = router.run()
    router.check_result(result)
    assert np.array_equal(result.int_sum, router.expected_int_sum(range(10)))
