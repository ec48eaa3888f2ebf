"""Job folders: how the loopback engine hands rounds to the ServerApp and ClientApps.

Only :class:`fl.flower.engine.FlowerEngine` uses this. It runs on one machine, holds every
client's input (the training loop computed them) and starts the SuperLink, the SuperNodes and
one long-lived ``flwr run`` itself; the run config's ``job-dir`` names a private folder
(mode 0700) that all of them can read::

    JOB_DIR/round-K/server.json     protocol, config (typed JSON), server and helper keys,
                                    stage timeout, cohort size    -- read by the ServerApp
    JOB_DIR/round-K/client-U.npz    input, weight, generator key, credentials, drop stage
                                                                  -- read by client U only
    JOB_DIR/round-K/ready           written last: the round may start
    JOB_DIR/round-K/result.json     written by the ServerApp (+ sum.npy, int-sum.npy)
    JOB_DIR/round-K/noise-*.npy     central DP requests and answers (see RemoteNoise)
    JOB_DIR/stop                    the engine is done: the ServerApp returns

So the ServerApp never handles a client's input or secrets even here: each ClientApp reads its
own file, and only wire frames cross Flower. Arrays are ``.npy``/``.npz`` read with
``allow_pickle=False``; everything else is JSON (:mod:`fl.flower.codec`). Files appear
atomically (written aside, then renamed).

Central DP. A noise hook such as :class:`fl.privacy.rounds.CentralDPHook` charges a privacy ledger that
lives in the engine's process, so it cannot be shipped. The ServerApp's config gets a
:class:`RemoteNoise` in its place: the decoding party calls it as usual, it writes the exact
integer sum to ``noise-request.npy`` and waits for the engine to answer with the hook's
noised sum in ``noise-reply.npy``. The noise is drawn from the engine's generator, not the
server's.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fl.flower import codec
from protocols.base import NoiseHook
from secagg.errors import ConfigError, DecodeError, ProtocolError, SecAggError
from secagg.rng import Csprng

__all__ = [
    "ClientJob", "RemoteNoise", "RemoteNoiseError", "ServerJob", "answer_noise",
    "read_client_job", "read_result", "read_server_job", "round_dir", "write_atomic",
    "write_client_job", "write_result", "write_server_job",
]

READY = "ready"
STOP = "stop"
RESULT = "result.json"
NOISE_REQUEST = "noise-request.npy"
NOISE_REPLY = "noise-reply.npy"
NOISE_ERROR = "noise-error.txt"


class RemoteNoiseError(SecAggError):
    """The engine's noise hook refused (e.g. the privacy budget is spent): nothing released."""


def round_dir(job_dir: str | os.PathLike[str], k: int) -> Path:
    """The folder of the engine's ``k``-th round."""
    return Path(job_dir) / f"round-{k}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _load_npy(path: Path) -> np.ndarray:
    try:
        arr: np.ndarray = np.load(path, allow_pickle=False)
        return arr
    except (OSError, ValueError) as exc:
        raise DecodeError(f"cannot read {path.name}: {exc}") from None


@dataclass(frozen=True)
class ServerJob:
    """What the ServerApp needs for one engine round."""

    protocol: str
    config: Any
    server_key: bytes
    helpers_key: bytes
    stage_timeout: float
    remote_noise: bool
    #: client id -> node id, when the engine knows it (saves the ServerApp a hello).
    nodes: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientJob:
    """What client ``u`` needs for one engine round (secret: its input and generator key)."""

    update: np.ndarray
    weight: float
    key: bytes
    credentials: Mapping[str, Any]
    drop_at: int | None


def write_server_job(rdir: Path, job: ServerJob) -> None:
    """Write ``server.json`` (the config's noise hook is replaced by :class:`RemoteNoise`)."""
    config = job.config
    if getattr(config, "noise", None) is not None:
        config = replace(config, noise=None)
    doc = {"protocol": job.protocol, "config": codec.to_jsonable(config),
           "server-key": job.server_key.hex(), "helpers-key": job.helpers_key.hex(),
           "stage-timeout": job.stage_timeout, "remote-noise": job.remote_noise,
           "nodes": {str(u): nid for u, nid in job.nodes.items()}}
    write_atomic(rdir / "server.json", json.dumps(doc).encode())


def read_server_job(rdir: Path, noise_timeout: float = 300.0) -> ServerJob:
    """Read ``server.json``; a config that had a noise hook gets a :class:`RemoteNoise`.

    Raises:
        DecodeError: a missing or malformed file.
    """
    try:
        doc = json.loads((rdir / "server.json").read_bytes())
        config = codec.from_jsonable(doc["config"])
        if doc["remote-noise"]:
            config = replace(config, noise=RemoteNoise(rdir, noise_timeout))
        return ServerJob(str(doc["protocol"]), config, bytes.fromhex(doc["server-key"]),
                         bytes.fromhex(doc["helpers-key"]), float(doc["stage-timeout"]),
                         bool(doc["remote-noise"]),
                         {int(u): int(nid) for u, nid in doc.get("nodes", {}).items()})
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"bad server job in {rdir}: {type(exc).__name__}: {exc}") from None


def write_client_job(rdir: Path, u: int, job: ClientJob) -> None:
    """Write ``client-U.npz`` (readable only by this user)."""
    buf = io.BytesIO()
    np.savez(buf, update=np.asarray(job.update, np.float64).reshape(-1),
             weight=np.float64(job.weight), key=np.frombuffer(job.key, np.uint8),
             credentials=np.frombuffer(codec.dumps(dict(job.credentials)), np.uint8),
             drop_at=np.int64(-1 if job.drop_at is None else job.drop_at))
    write_atomic(rdir / f"client-{u}.npz", buf.getvalue())


def read_client_job(rdir: Path, u: int) -> ClientJob:
    """Read ``client-U.npz``.

    Raises:
        DecodeError: a missing or malformed file.
    """
    try:
        with np.load(rdir / f"client-{u}.npz", allow_pickle=False) as z:
            drop = int(z["drop_at"])
            creds = codec.loads(z["credentials"].tobytes(), dict)
            return ClientJob(z["update"].astype(np.float64), float(z["weight"]),
                             z["key"].tobytes(), creds, None if drop < 0 else drop)
    except (OSError, KeyError, ValueError) as exc:
        raise DecodeError(f"bad client job {u} in {rdir}: {exc}") from None


def write_result(rdir: Path, doc: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write the ServerApp's outcome: arrays first, ``result.json`` last."""
    for name, arr in arrays.items():
        write_atomic(rdir / f"{name}.npy", _npy_bytes(arr))
    write_atomic(rdir / RESULT, json.dumps(doc).encode())


def read_result(rdir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The outcome, or None while ``result.json`` is not there yet."""
    path = rdir / RESULT
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise DecodeError(f"bad result in {rdir}: {exc}") from None
    arrays = {name: _load_npy(rdir / f"{name}.npy")
              for name in doc.get("arrays", []) if (rdir / f"{name}.npy").exists()}
    return doc, arrays


class RemoteNoise(NoiseHook):
    """A noise hook that asks the engine's process for the noise (see the module docstring).

    ``add_noise`` blocks until the engine answers, at most ``timeout`` seconds.

    .. warning:: ``int_sum`` is the exact aggregate: it goes to a 0600 file in the engine's
       private job folder on this machine, and nowhere else.
    """

    def __init__(self, rdir: Path, timeout: float = 300.0) -> None:
        self.rdir = Path(rdir)
        self.timeout = timeout

    def add_noise(self, int_sum: np.ndarray, rng: Csprng) -> tuple[np.ndarray, Any]:
        write_atomic(self.rdir / NOISE_REQUEST, _npy_bytes(np.asarray(int_sum, np.int64)))
        deadline = time.monotonic() + self.timeout
        reply = self.rdir / NOISE_REPLY
        failed = self.rdir / NOISE_ERROR
        while not reply.exists():
            if failed.exists():
                raise RemoteNoiseError(failed.read_text(errors="replace"))
            if time.monotonic() > deadline:
                raise ProtocolError(f"the engine did not add the DP noise within {self.timeout:g}s")
            time.sleep(0.02)
        noised = _load_npy(reply)
        if noised.dtype != np.int64 or noised.shape != np.shape(int_sum):
            raise ProtocolError("the engine's noised sum does not match the aggregate's shape")
        return noised, None


def answer_noise(rdir: Path, hook: NoiseHook, rng: Csprng) -> tuple[bool, Any]:
    """If the ServerApp asked for noise and has no answer yet, answer with ``hook``.

    Returns:
        ``(answered now, the hook's DP event)``.

    Raises:
        whatever the hook raises (for example
        :class:`~secagg.errors.BudgetExceededError`), after telling the waiting ServerApp,
        which then fails the round with :class:`RemoteNoiseError` instead of releasing.
    """
    req, reply = rdir / NOISE_REQUEST, rdir / NOISE_REPLY
    if not req.exists() or reply.exists() or (rdir / NOISE_ERROR).exists():
        return False, None
    try:
        int_sum = _load_npy(req)
        if int_sum.dtype != np.int64 or int_sum.ndim != 1:
            raise ConfigError(f"noise request must be an int64 vector, got {int_sum.dtype}")
        noised, event = hook.add_noise(int_sum, rng)
    except Exception as exc:
        write_atomic(rdir / NOISE_ERROR, f"{type(exc).__name__}: {exc}".encode())
        raise
    write_atomic(reply, _npy_bytes(np.asarray(noised, np.int64)))
    return True, event
