"""The five privacy principles of the seed, each shown by a test that could fail.

1. No server-side object ever holds an individual update that can be decoded: the server's
   (and the HE decryptor's) object graph is walked after every step of a round and searched
   for any client's input in every form it takes. The plaintext server is the positive
   control: the same search finds an update there.
2. Clients send only the quantised delta and aggregated metrics: every frame a client
   uploads in a training round is decoded and its fields listed.
3. After a full ``secagg run``, no file, output or log of the run holds any client's update
   bytes: they are captured during the run and searched for in everything it wrote.
4. FedAvg over the secure sum: every model step is ``fedavg_step`` of the decoded sum, and
   masking changes nothing: the plaintext protocol with the same seeds gives the same models.
5. Clipping plus accounted DP: a client's influence is bounded by the clip (and covered by
   the noise's sensitivity) however large its update, the noise in each release has the
   accounted standard deviation, and the ledger's epsilon is ``compute_epsilon``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import itertools
import json
import logging
import math
import re
import types
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

import fl.cli
import fl.training.fedavg
import fl.training.loop
import fl.training.payload
import protocols
from fl.engines import EngineRound, SimulationEngine
from fl.engines.simulation import run_round
from fl.privacy.rounds import CentralDPHook
from fl.training.config import RunConfig
from fl.training.fedavg import fedavg_step
from fl.training.loop import plan_run, run_training
from fl.training.payload import WIRE_NORM
from protocols.base import AggregateResult, ProtocolSpec, RoundConfig
from protocols.secagg import SecAggClient
from protocols.secagg.messages import (
    AdvertiseKeys,
    MaskedInput,
    ShareKeys,
    UnmaskResponse,
)
from secagg import wire
from secagg.dp import compute_epsilon
from secagg.encoding import clip_l2
from secagg.rng import Csprng


@pytest.fixture(autouse=True, scope="module")
def _quiet_and_single_threaded() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    logging.getLogger("absl").setLevel(logging.ERROR)
    yield
    torch.set_num_threads(threads)


# The functions the tests wrap, as they are before any wrapping.
_LOCAL_TRAIN = fl.training.fedavg.local_train
_CLIENT_VECTOR = fl.training.payload.client_vector
_SET_INPUT = SecAggClient.set_input
_ENCODE = wire.encode


def _small(**kw: Any) -> RunConfig:
    base: dict[str, Any] = {"dataset": "digits", "clients": 6, "rounds": 1, "epochs": 1,
                            "seed": 17}
    base.update(kw)
    return RunConfig(**base)


class _Keep:
    """The simulation engine, keeping each round's config and released aggregate."""

    name = "keep"

    def __init__(self) -> None:
        self.inner = SimulationEngine()
        self.rounds: list[tuple[RoundConfig, AggregateResult | None]] = []

    def run_round(self, spec: ProtocolSpec, config: RoundConfig, inputs: Sequence[np.ndarray],
                  weights: Sequence[float], rng: Csprng) -> EngineRound:
        out = self.inner.run_round(spec, config, inputs, weights, rng)
        self.rounds.append((config, out.result))
        return out


# -- 1: no server-side object holds a decodable individual update ------------------------


_SKIP = (type, ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
         functools.partial)


def _objects(*roots: object) -> Iterator[object]:
    """Every object reachable from ``roots`` (containers, attributes, slots, array bases)."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, _SKIP):
            continue
        seen.add(id(o))
        yield o
        if isinstance(o, np.ndarray):
            if o.base is not None:
                stack.append(o.base)
        elif isinstance(o, memoryview):
            stack.append(o.obj)
        elif isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif not isinstance(o, (bytes, bytearray, str, int, float, complex, np.generic)):
            d = getattr(o, "__dict__", None)
            if isinstance(d, dict):
                stack.append(d)
            for cls in type(o).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if isinstance(name, str) and hasattr(o, name):
                        stack.append(getattr(o, name))


def _values(a: np.ndarray) -> list[np.ndarray]:
    """The readings of an integer or float array: as is, and centred if unsigned."""
    out = [a.astype(np.float64)]
    if a.dtype.kind == "u":
        out.append(a.view(a.dtype.str.replace("u", "i")).astype(np.float64))
    return out


class _Watch:
    """Wraps a protocol's roles: learns every client's input in all its forms, and after
    every step of the server (and of each helper, e.g. the HE decryptor) searches their
    whole object graph for any of those forms."""

    def __init__(self, spec: ProtocolSpec) -> None:
        self.base = spec
        self.roots: list[object] = []
        self.arrays: list[tuple[int, str, np.ndarray]] = []  # float64 readings
        self.needles: list[tuple[int, str, bytes]] = []  # raw bytes of every form
        self.ints: dict[int, int] = {}  # packed plaintexts (paillier) -> client
        self.found: list[str] = []
        self.steps = 0
        self._searched: set[bytes] = set()

    @property
    def spec(self) -> ProtocolSpec:
        return dataclasses.replace(self.base, server=self._server, helpers=self._helpers,
                                   client=self._client)

    def _server(self, config: Any, rng: Csprng) -> Any:
        return _Proxy(self.base.server(config, rng), self)

    def _helpers(self, config: Any, rng: Csprng) -> dict[int, Any]:
        return {k: _Proxy(v, self) for k, v in self.base.helpers(config, rng).items()}

    def _client(self, config: Any, u: int, rng: Csprng, **kw: Any) -> Any:
        return _ClientProxy(self.base.client(config, u, rng, **kw), config, self)

    def learn(self, u: int, config: Any, update: np.ndarray, weight: float,
              ring: np.ndarray) -> None:
        enc = config.encoding
        x = np.asarray(update, np.float64)
        centred = enc.centre(ring)
        decoded = centred / enc.scale
        forms = {"ring": ring, "centred": centred, "decoded": decoded,
                 "decoded values": decoded[:-1], "input": x, "input float32": x.astype(np.float32),
                 "clipped": clip_l2(x, enc.clip)[0], "weighted": weight * clip_l2(x, enc.clip)[0]}
        for name, f in forms.items():
            self.arrays.append((u, name, np.asarray(f, np.float64)))
            self.needles.append((u, name, np.ascontiguousarray(f).tobytes()))
        if self.base.name == "paillier":
            from protocols.paillier.scheme import pack

            self.ints.update({p: u for p in pack(config, ring)})

    def inspect(self) -> None:
        self.steps += 1
        shortest = min((len(n) for _, _, n in self.needles), default=0)
        by_size: dict[int, list[tuple[int, str, np.ndarray]]] = {}
        for u, name, f in self.arrays:
            by_size.setdefault(f.size, []).append((u, name, f))
        for o in _objects(*self.roots):
            if isinstance(o, np.ndarray) and o.dtype.kind in "uif" and o.size:
                flat = o.ravel()
                for reading in _values(flat):
                    for u, name, f in by_size.get(reading.size, ()):
                        if np.array_equal(f, reading):
                            self.found.append(f"step {self.steps}: client {u}'s {name} as an "
                                              f"array of {o.dtype}")
                hay = flat.tobytes() if flat.nbytes >= shortest else b""
            elif isinstance(o, (bytes, bytearray, memoryview)):
                hay = bytes(o) if len(o) >= shortest else b""
            elif isinstance(o, int) and not isinstance(o, bool) and o in self.ints:
                self.found.append(f"step {self.steps}: client {self.ints[o]}'s packed plaintext")
                continue
            else:
                continue
            if not hay or hay in self._searched:  # same bytes as an earlier step: done
                continue
            self._searched.add(hay)
            for u, name, needle in self.needles:
                if needle in hay:
                    self.found.append(f"step {self.steps}: client {u}'s {name} bytes in a "
                                      f"{type(o).__name__}")


class _Proxy:
    """A server or helper whose every step ends with an inspection of all server roots."""

    def __init__(self, inner: Any, watch: _Watch) -> None:
        self.inner, self.watch = inner, watch
        watch.roots.append(inner)

    def _step(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        finally:
            self.watch.inspect()

    def start(self) -> Any:
        return self._step(self.inner.start)

    def receive(self, msg: Any) -> Any:
        return self._step(lambda: self.inner.receive(msg))

    def close_round(self) -> Any:
        return self._step(self.inner.close_round)

    @property
    def finished(self) -> bool:
        return bool(self.inner.finished)

    def result(self) -> AggregateResult:
        return self.inner.result()  # type: ignore[no-any-return]


class _ClientProxy:
    def __init__(self, inner: Any, config: Any, watch: _Watch) -> None:
        self.inner, self.config, self.watch = inner, config, watch

    @property
    def encoded(self) -> Any:
        return self.inner.encoded

    def set_input(self, update: np.ndarray, weight: float = 1.0) -> None:
        self.inner.set_input(update, weight)
        self.watch.learn(self.inner.client_id, self.config, update, weight,
                         np.array(self.inner.encoded, copy=True))

    def receive(self, msg: Any) -> Any:
        return self.inner.receive(msg)


def _watched_round(name: str, n: int, dim: int, drop_at: dict[int, int] | None = None,
                   **kw: Any) -> tuple[_Watch, Any]:
    if name not in protocols.names():
        pytest.skip(f"{name} is not available here")
    watch = _Watch(protocols.get(name))
    config = watch.base.make_config(n, dim, **kw)
    gen = np.random.default_rng(5)
    inputs = [gen.normal(0, 0.3, dim) for _ in range(n)]
    report = run_round(watch.spec, config, inputs, Csprng.from_seed(name), drop_at=drop_at,
                       measure_memory=False)
    return watch, report


@pytest.mark.parametrize(("name", "n", "drop_at"), [
    ("secagg+", 60, {7: 2, 11: 3}),  # sparse graph (k=44); one drops before masking, one after
    ("secagg", 8, {3: 2}),
    ("paillier", 4, None),
])
def test_no_server_object_ever_holds_a_decodable_update(name: str, n: int,
                                                        drop_at: dict[int, int] | None) -> None:
    watch, report = _watched_round(name, n, 100, drop_at)
    assert report.error is None and report.exact
    assert watch.steps >= n and len(watch.arrays) == 8 * n
    assert watch.found == []


def test_the_search_finds_the_update_a_plaintext_server_holds() -> None:
    """Positive control: the same search does find individual updates, where they are."""
    watch, report = _watched_round("plaintext", 4, 100)
    assert report.error is None
    assert any("client 0's ring" in f for f in watch.found)  # the running sum after one input


# -- 2: clients send only the quantised delta and aggregated metrics ------------------------


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _leaves(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, tuple):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, value


def _record_uploads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bytes]]:
    frames: list[tuple[int, bytes]] = []

    def recording(msg: Any) -> bytes:
        frame = _ENCODE(msg)
        if msg.sender >= 0:
            frames.append((msg.sender, frame))
        return frame

    monkeypatch.setattr(wire, "encode", recording)
    return frames


def _record_encodings(monkeypatch: pytest.MonkeyPatch) -> dict[int, np.ndarray]:
    encoded: dict[int, np.ndarray] = {}

    def recording(self: SecAggClient, update: np.ndarray, weight: float = 1.0) -> None:
        _SET_INPUT(self, update, weight)
        encoded[self.client_id] = np.array(self.encoded, copy=True)

    monkeypatch.setattr(SecAggClient, "set_input", recording)
    return encoded


def test_clients_upload_only_the_masked_quantised_delta_and_metrics(
        monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _record_uploads(monkeypatch)
    encoded = _record_encodings(monkeypatch)
    vectors: list[np.ndarray] = []

    def keep(*a: Any) -> np.ndarray:
        vectors.append(_CLIENT_VECTOR(*a))
        return vectors[-1]

    # fl.training.loop calls it via the module
    monkeypatch.setattr(fl.training.payload, "client_vector", keep)
    plan = plan_run(_small(protocol="secagg+", clients=8, epsilon=5.0))
    res = run_training(plan)
    assert res.failed_rounds == 0
    d = len(plan.model)  # 2,410 parameters
    enc = plan.encoding
    by_client: dict[int, list[Any]] = {}
    for sender, frame in frames:
        by_client.setdefault(sender, []).append(wire.decode(frame))
    assert sorted(by_client) == list(range(8))
    for u, msgs in by_client.items():
        assert [type(m) for m in msgs] == [AdvertiseKeys, ShareKeys, MaskedInput, UnmaskResponse]
        arrays, others = [], []
        for m in msgs:
            for path, v in _leaves(m, type(m).__name__):
                (arrays if isinstance(v, np.ndarray) else others).append((path, v))
        # One vector: the masked ring vector of the delta, two metrics and the weight.
        assert [p for p, _ in arrays] == ["MaskedInput.masked"]
        masked = arrays[0][1]
        assert masked.dtype == enc.dtype and masked.shape == (d + 2 + 1,)
        # Nothing else could carry an update: every other field is far smaller than it.
        sizes = [len(v) for _, v in others if isinstance(v, (bytes, str))]
        assert max(sizes) < d // 4, [p for p, v in others if isinstance(v, bytes)
                                     and len(v) >= d // 4]
        assert all(isinstance(v, (bytes, str, int, float, bool)) for _, v in others)
        # Before masking it held exactly the weighted, quantised update and metrics ...
        ring = encoded[u]
        values, weight = enc.decode(enc.centre(ring))
        assert weight == pytest.approx(min(len(plan.shards[u]), plan.max_weight), abs=1e-4)
        assert np.max(np.abs(values - weight * vectors[u])) <= 2.0**-enc.frac_bits
        # ... and what left the client is uniform in the ring: half the values are "large".
        big = 2 ** (enc.bits - 2)
        assert 0.4 < float(np.mean(np.abs(enc.centre(np.array(masked))) > big)) < 0.6
        assert not np.any(np.abs(enc.centre(ring)) > big)


# -- 3: nothing the run writes holds a client's update ---------------------------------------

_NUMBER = re.compile(rb"-?\d+\.\d+(?:[eE][-+]?\d+)?|-?\d+[eE][-+]?\d+")


class _Secrets:
    """Every client's update in every form, and a search for them in what a run wrote."""

    def __init__(self) -> None:
        self.windows: list[tuple[str, bytes]] = []
        self.floats: set[float] = set()
        self.count = 0

    def add(self, what: str, raw: bytes) -> None:
        self.count += 1
        step = max(32, len(raw) // 16)
        for i in range(0, max(len(raw) - 32, 1), step):
            w = raw[i : i + 32]
            if len(w) == 32 and sum(b != 0 for b in w) >= 16:  # not a run of zeros
                self.windows.append((what, w))

    def add_values(self, values: np.ndarray) -> None:
        self.floats.update(float(v) for v in values if v != 0)

    def search(self, name: str, blob: bytes) -> list[str]:
        hits = [f"{name}: {what}" for what, w in self.windows if w in blob]
        hits += [f"{name}: the number {n.decode()}" for n in _NUMBER.findall(blob)
                 if float(n) in self.floats]
        return hits


def _capture_updates(monkeypatch: pytest.MonkeyPatch) -> _Secrets:
    secrets = _Secrets()

    def train(*a: Any, **kw: Any) -> Any:
        delta, n, metrics = _LOCAL_TRAIN(*a, **kw)
        secrets.add("a float32 delta", delta.tobytes())
        secrets.add_values(delta)
        return delta, n, metrics

    def vector(*a: Any) -> np.ndarray:
        x = _CLIENT_VECTOR(*a)
        secrets.add("a client vector", x.tobytes())
        secrets.add("a client vector as float32", x.astype(np.float32).tobytes())
        secrets.add_values(x[:-2])  # the two metrics are small numbers; they are checked as bytes
        return x

    def encoded(self: SecAggClient, update: np.ndarray, weight: float = 1.0) -> None:
        _SET_INPUT(self, update, weight)
        secrets.add("an encoded ring vector", np.asarray(self.encoded).tobytes())

    def frame(msg: Any) -> bytes:
        if isinstance(msg, MaskedInput):
            secrets.add("a masked upload", np.asarray(msg.masked).tobytes())
        return _ENCODE(msg)

    # fl.training.loop imports it per round
    monkeypatch.setattr(fl.training.fedavg, "local_train", train)
    monkeypatch.setattr(fl.training.payload, "client_vector", vector)
    monkeypatch.setattr(SecAggClient, "set_input", encoded)
    monkeypatch.setattr(wire, "encode", frame)
    return secrets


def _everything_written(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield str(path.relative_to(root)), path.read_bytes()


def _only_the_run_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def commands() -> dict[str, ModuleType]:
        eps = [ep for ep in entry_points(group="secagg.commands") if ep.name == "run"]
        return {ep.name: importlib.import_module(ep.value) for ep in eps}

    monkeypatch.setattr(fl.cli, "_commands", commands)


def test_nothing_a_full_run_writes_holds_a_client_update(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    _only_the_run_command(monkeypatch)
    secrets = _capture_updates(monkeypatch)
    monkeypatch.chdir(tmp_path)  # anything written to the working directory lands here too
    caplog.set_level(logging.DEBUG)
    argv = ["run", "--protocol", "secagg+", "--dataset", "digits", "--clients", "6",
            "--rounds", "2", "--epochs", "1", "--seed", "4", "--ledger", "ledger.json",
            "--out", "report", "--json"]
    assert fl.cli.main(argv) == 0
    out = capsys.readouterr()
    assert json.loads(out.out.strip().splitlines()[-1])["rounds"] == 2
    # 12 client-rounds, each captured as delta, vector (two forms), encoding, masked upload.
    assert secrets.count == 60 and len(secrets.windows) > 500
    written = list(_everything_written(tmp_path))
    assert {"ledger.json", "report/metrics.json", "report/metrics.csv"} <= {n for n, _ in written}
    streams = [("stdout", out.out.encode()), ("stderr", out.err.encode()),
               ("logs", "\n".join(r.getMessage() for r in caplog.records).encode())]
    hits = [h for name, blob in [*written, *streams] for h in secrets.search(name, blob)]
    assert hits == []
    # Positive control: the same search finds an update, in bytes or as text, once written.
    delta = next(iter(secrets.windows))[1]
    assert secrets.search("planted", b"header" + delta + b"trailer")
    value = next(iter(secrets.floats))
    assert secrets.search("planted", json.dumps({"x": [value]}).encode())


# -- 4: FedAvg over the secure sum ------------------------------------------------------------


def _fedavg_trace(protocol: str) -> tuple[list[np.ndarray], list[np.ndarray], _Keep, Any]:
    engine = _Keep()
    plan = plan_run(_small(protocol=protocol, dp=False, rounds=2, clients=5), engine=engine)
    before: list[np.ndarray] = []
    after: list[np.ndarray] = []

    class Trace:
        def round_started(self, round_: int, cohort: int) -> None:
            before.append(plan.model.to_vector().copy())

        def client_trained(self) -> None:
            pass

        def round_finished(self, record: Any) -> None:
            after.append(plan.model.to_vector().copy())

    run_training(plan, observer=Trace())
    return before, after, engine, plan


def test_every_model_step_is_fedavg_of_the_decoded_secure_sum() -> None:
    before, after, engine, plan = _fedavg_trace("secagg+")
    d, cfg = len(plan.model), plan.config
    weights = sum(min(len(s), plan.max_weight) for s in plan.shards)
    for b, a, (_, res) in zip(before, after, engine.rounds):
        assert res is not None and res.total_weight == pytest.approx(weights, abs=1e-4)
        expected = fedavg_step(b, res.sum[:d], res.total_weight,
                               cfg.server_lr * cfg.clip / WIRE_NORM)
        assert np.array_equal(a, expected)
    assert np.array_equal(before[1], after[0]) and not np.array_equal(after[0], before[0])
    # Masking changes nothing but who can read: plaintext with the same seeds, same models.
    p_before, p_after, p_engine, _ = _fedavg_trace("plaintext")
    for x, y in zip([*before, *after], [*p_before, *p_after]):
        assert np.array_equal(x, y)
    for (_, a_res), (_, b_res) in zip(engine.rounds, p_engine.rounds):
        assert a_res is not None and b_res is not None
        assert np.array_equal(a_res.int_sum, b_res.int_sum)


# -- 5: clipping plus accounted DP ----------------------------------------------------------


def _released_with_client_0(monkeypatch: pytest.MonkeyPatch, scale: float
                            ) -> tuple[AggregateResult, Any, dict[int, np.ndarray], float]:
    raw: list[float] = []

    def train(model: Any, data: Any, *a: Any, **kw: Any) -> Any:
        delta, n, metrics = _LOCAL_TRAIN(model, data, *a, **kw)
        if data is plan.shards[0]:
            delta = (delta * scale).astype(np.float32)
            raw.append(float(np.linalg.norm(delta)))
        return delta, n, metrics

    # fl.training.loop imports it per round
    monkeypatch.setattr(fl.training.fedavg, "local_train", train)
    encoded = _record_encodings(monkeypatch)
    engine = _Keep()
    plan = plan_run(_small(protocol="secagg+", dp=False), engine=engine)
    run_training(plan)
    (_, res), = engine.rounds
    assert res is not None
    return res, plan, encoded, raw[0]


def test_a_huge_update_moves_the_aggregate_by_at_most_the_clip(
        monkeypatch: pytest.MonkeyPatch) -> None:
    huge, plan, encoded, norm = _released_with_client_0(monkeypatch, 1e6)
    silent, _, _, _ = _released_with_client_0(monkeypatch, 0.0)
    d, enc = len(plan.model), plan.encoding
    w0 = min(len(plan.shards[0]), plan.max_weight)
    assert norm > 1e4 * plan.config.clip  # the update really was huge
    moved = huge.sum - silent.sum  # all else equal: same seeds, same other clients
    slack = 2 * math.sqrt(d + 2) * 2.0**-enc.frac_bits  # stochastic rounding, both runs
    # Exactly the clipped update, weighted: at the bound, not past it.
    assert abs(float(np.linalg.norm(moved[:d])) - w0 * WIRE_NORM) <= slack
    assert np.max(np.abs(moved[d:])) <= 2 * 2.0**-enc.frac_bits  # metrics unchanged
    assert huge.total_weight == silent.total_weight
    # And the whole encoded contribution is inside the sensitivity DP noise is calibrated to.
    contribution = enc.centre(encoded[0]).astype(np.float64)
    assert float(np.linalg.norm(contribution)) <= enc.l2_sensitivity(d + 2)


@pytest.mark.parametrize(("protocol", "q", "accountant"), [
    ("secagg+", 1.0, "rdp"), ("plaintext", 0.5, "rdp"), ("secagg+", 1.0, "pld"),
])
def test_each_release_is_noised_as_accounted_and_the_ledger_matches_compute_epsilon(
        monkeypatch: pytest.MonkeyPatch, protocol: str, q: float, accountant: str) -> None:
    noised: list[tuple[np.ndarray, np.ndarray, float]] = []
    add_noise = CentralDPHook.add_noise

    def recording(self: CentralDPHook, int_sum: np.ndarray, rng: Csprng) -> Any:
        out, event = add_noise(self, int_sum, rng)
        noised.append((int_sum.copy(), out.copy(), self.mechanism.sigma))
        return out, event

    monkeypatch.setattr(CentralDPHook, "add_noise", recording)
    z, rounds = 1.3, 3
    plan = plan_run(_small(protocol=protocol, clients=8, rounds=rounds, noise_multiplier=z,
                           sampling_rate=q, accountant=accountant))
    res = run_training(plan)
    assert plan.ledger is not None and plan.ledger.rounds == rounds  # skipped rounds count too
    assert res.epsilon == pytest.approx(compute_epsilon(z, q, rounds, 1e-5, accountant),
                                        rel=1e-9)
    eps = [r.epsilon for r in res.history]
    assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(eps))
    released = rounds - res.failed_rounds
    assert len(noised) == released >= 1
    for before, after, sigma in noised:
        noise = (after - before).astype(np.float64)
        assert sigma == pytest.approx(z * plan.encoding.l2_sensitivity(len(plan.model) + 2))
        assert abs(float(noise.mean())) < 4 * sigma / math.sqrt(noise.size)
        assert float(noise.std()) == pytest.approx(sigma, rel=0.1)
