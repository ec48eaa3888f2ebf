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
    JOB_DIR/round-K/result.json     written by the ServerApp (+ sum.npy, int-sum.npy), with
                                    the DP event of what it released
    JOB_DIR/stop                    the engine is done: the ServerApp returns

So the ServerApp never handles a client's input or secrets even here: each ClientApp reads its
own file, and only wire frames cross Flower. Arrays are ``.npy``/``.npz`` read with
``allow_pickle=False``; everything else is JSON (:mod:`fl.flower.codec`). Files appear
atomically (written aside, then renamed).

Central DP. A noise hook holds a mechanism and no ledger (:class:`fl.privacy.rounds.CentralDPHook`),
so it travels like the rest of the config: ``server.json`` carries the hook's mechanism
(:class:`secagg.dp.CentralDiscreteGaussian` or a subclass, typed JSON), and the ServerApp's
config gets a fresh one-shot :class:`~fl.privacy.rounds.CentralDPHook` around it. The decoding
party (server or decryptor) draws the noise from its own generator, exactly as in the
simulator, and the DP event of what it released comes back in ``result.json``
(``dp_event``, typed JSON); the engine's driver charges it to the ledger after the round
(:meth:`fl.privacy.rounds.RoundPrivacy.settle`). Nothing waits on a reply.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fl.flower import codec
from fl.privacy.rounds import CentralDPHook
from secagg.errors import ConfigError, DecodeError, SecAggError

__all__ = [
    "ClientJob", "ServerJob", "decode_event", "encode_event", "read_client_job", "read_result",
    "read_server_job", "round_dir", "shippable_noise", "write_atomic", "write_client_job",
    "write_result", "write_server_job",
]

READY = "ready"
STOP = "stop"
RESULT = "result.json"
#: The key of the released DP event in ``result.json``.
DP_EVENT = "dp_event"


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
    #: the central noise mechanism (``config.noise`` is a one-shot hook around it), or None.
    noise: Any = None
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


def shippable_noise(hook: Any) -> Any:
    """The mechanism of a central noise hook, as it travels to the ServerApp (None: none).

    A :class:`~fl.privacy.rounds.CentralDPHook` travels as its mechanism; a mechanism that is
    itself a hook (:class:`secagg.dp.CentralDiscreteGaussian`) travels as it is.

    Raises:
        ConfigError: a hook that is neither (it may hold state of this process, such as a
            ledger, that cannot travel), before any file is written.
    """
    if hook is None:
        return None
    mechanism = hook.mechanism if isinstance(hook, CentralDPHook) else hook
    try:
        codec.from_jsonable(codec.to_jsonable(mechanism))  # what the ServerApp will rebuild
    except SecAggError as exc:
        raise ConfigError(
            f"the Flower engine ships the central noise to the ServerApp, and cannot ship a "
            f"{type(hook).__name__} ({exc}); use fl.privacy.rounds.CentralDPHook or a "
            "secagg.dp.CentralDiscreteGaussian") from None
    return mechanism


def write_server_job(rdir: Path, job: ServerJob) -> None:
    """Write ``server.json``: the config without its noise hook, and the hook's mechanism
    (:func:`shippable_noise`) beside it.

    Raises:
        ConfigError: a noise hook that cannot travel.
    """
    config = job.config
    noise = shippable_noise(getattr(config, "noise", None)) if job.noise is None else job.noise
    if getattr(config, "noise", None) is not None:
        config = replace(config, noise=None)
    doc = {"protocol": job.protocol, "config": codec.to_jsonable(config),
           "server-key": job.server_key.hex(), "helpers-key": job.helpers_key.hex(),
           "stage-timeout": job.stage_timeout,
           "noise": None if noise is None else codec.to_jsonable(noise),
           "nodes": {str(u): nid for u, nid in job.nodes.items()}}
    write_atomic(rdir / "server.json", json.dumps(doc).encode())


def read_server_job(rdir: Path) -> ServerJob:
    """Read ``server.json``; a round with central noise gets a fresh one-shot
    :class:`~fl.privacy.rounds.CentralDPHook` around the mechanism in its config.

    Raises:
        DecodeError: a missing or malformed file.
    """
    try:
        doc = json.loads((rdir / "server.json").read_bytes())
        config = codec.from_jsonable(doc["config"])
        noise = None if doc["noise"] is None else codec.from_jsonable(doc["noise"])
        if noise is not None:
            config = replace(config, noise=CentralDPHook(noise))
        return ServerJob(str(doc["protocol"]), config, bytes.fromhex(doc["server-key"]),
                         bytes.fromhex(doc["helpers-key"]), float(doc["stage-timeout"]),
                         noise, {int(u): int(nid) for u, nid in doc.get("nodes", {}).items()})
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


def encode_event(event: Any) -> Any:
    """A released DP event as the typed JSON of ``result.json`` (None stays None)."""
    return codec.to_jsonable(event)


def decode_event(value: Any) -> Any:
    """The inverse of :func:`encode_event`.

    Raises:
        DecodeError: JSON that is not an event of a trusted package.
    """
    return codec.from_jsonable(value)
