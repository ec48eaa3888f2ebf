"""Clients enrolled out of band, over Flower: the node's own key file and registry.

The protocols that authenticate clients (the enrolled mode of secagg / secagg+, their
``-active`` variants, ckks and paillier, whose blinds are signed) need every client's
long-term keys in a registry that the server and every client hold, and each client's own
secrets. Over Flower both come from files, never from the server:

1. ``secagg enroll --clients N --out DIR`` writes ``DIR/registry.json`` (public keys) and
   ``DIR/client-<i>.key`` (one 0600 file per client);
2. the ServerApp gets the registry (``SecAggWorkflow(..., registry="DIR/registry.json")``);
3. node ``i`` gets its key file and the registry in its node config::

       flower-supernode ... --node-config "secagg-key-file='DIR/client-3.key'
                                           secagg-registry='DIR/registry.json'"

A node answers the workflow's hello with the client id of its key file, so client ``u`` of
every round is the node holding ``client-u.key``. When a round's config carries a registry,
the node compares it with its own file and refuses a different one (:class:`PolicyError`
naming both fingerprints): a server cannot substitute keys. The core is then built with the
node's registry, its identity (enrolled mode) or its signing key (active variants, HE), and
the node's file-backed memory of answered requests, all from node config.

Node config keys: ``secagg-key-file``, ``secagg-registry``, ``secagg-state-dir`` (where the
answered-request memory lives; default ``~/.secagg/node-<node id>``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from secagg.errors import ConfigError, PolicyError

__all__ = ["KEY_FILE", "REGISTRY", "STATE_DIR", "enrol", "enrolled_id", "needs_enrolment",
           "node_config", "node_credentials", "state_dir"]

KEY_FILE = "secagg-key-file"
REGISTRY = "secagg-registry"
STATE_DIR = "secagg-state-dir"


def needs_enrolment(spec: Any, **variant: Any) -> bool:
    """Whether ``spec`` (with ``variant`` keywords such as ``active=True``,
    ``enrolled=True``) authenticates clients, so that a deployment must enrol them out of
    band: its own provisioning hands out client credentials for a config without a
    registry."""
    from secagg.rng import Csprng

    _, credentials = spec.provision(spec.make_config(3, 1, **variant), Csprng())
    return bool(credentials)


def enrol(folder: str | Path, n: int) -> Path:
    """Enrol clients ``0..n-1`` into ``folder`` (what ``secagg enroll`` does): returns the
    registry's path; the key files are ``folder/client-<i>.key`` (mode 0600)."""
    from protocols.secagg.enrolled_keys import enroll_clients
    from secagg.rng import Csprng

    out = Path(folder)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    registry, identities = enroll_clients(n, Csprng())  # OS entropy
    for u, ident in identities.items():
        ident.save(out / f"client-{u}.key")
    registry.save(out / "registry.json")
    return out / "registry.json"


def node_config(folder: str | Path, client: int) -> dict[str, str]:
    """The node config entries of the node that plays enrolled client ``client``."""
    out = Path(folder).resolve()
    return {KEY_FILE: str(out / f"client-{client}.key"), REGISTRY: str(out / "registry.json")}


def state_dir(node_config: Any, node_id: int) -> Path:
    """The node's own folder for what it must remember across ClientApp processes."""
    folder = node_config.get(STATE_DIR) or (Path.home() / ".secagg" / f"node-{node_id}")
    return Path(str(folder))


def enrolled_id(node_config: Any) -> int:
    """The client id of the node's key file, or -1 if the node has none.

    Raises:
        ConfigError: the key file is named but unreadable.
    """
    path = node_config.get(KEY_FILE)
    if not path:
        return -1
    try:
        return int(json.loads(Path(str(path)).read_text())["client"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read node config {KEY_FILE}={path}: {exc}") from None


def _need(node_config: Any, key: str, protocol: str) -> str:
    path = node_config.get(key)
    if not path:
        raise ConfigError(
            f"{protocol} with this configuration needs clients enrolled out of band, and this "
            f"node has no node config {key!r}: run 'secagg enroll --clients N --out DIR' and "
            f"start the node with --node-config \"{KEY_FILE}='DIR/client-<i>.key' "
            f"{REGISTRY}='DIR/registry.json'\"")
    return str(path)


def node_credentials(protocol: str, config: Any, client_id: int, node_config: Any,
                     node_id: int) -> tuple[Any, dict[str, Any]]:
    """``config`` with the node's own registry in place of the server's, and the client
    core's credentials from the node's key file; ``(config, {})`` for a config without a
    registry (nothing to authenticate).

    Raises:
        ConfigError: the config needs a registry but the node has no enrolment files, or they
            do not match each other.
        PolicyError: the server's registry is not the node's, or it addressed the node as
            another client than its key file's.
    """
    offered = getattr(config, "registry", None)
    if offered is None:
        return config, {}
    from protocols.secagg.enrolled_keys import EnrolledRegistry, Identity

    registry = EnrolledRegistry.load(_need(node_config, REGISTRY, protocol))
    mine, theirs = registry.fingerprint(), _fingerprint(offered)
    if mine != theirs:
        raise PolicyError(f"the server's client registry (fingerprint {theirs[:16]}...) is not "
                          f"this node's {node_config.get(REGISTRY)} ({mine[:16]}...); refusing")
    enrolled = bool(getattr(config, "enrolled", False))
    answers = None
    if enrolled:
        from protocols.secagg.enrolled_store import FileStore

        answers = FileStore(state_dir(node_config, node_id) / "enrolled-answers")
    identity = Identity.load(_need(node_config, KEY_FILE, protocol), answers)
    if identity.client_id != client_id:
        raise PolicyError(f"the server addressed this node as client {client_id}, but its key "
                          f"file is client {identity.client_id}'s; refusing")
    identity.check_against(registry)
    config = dataclasses.replace(config, registry=registry)
    if enrolled:
        return config, {"identity": identity}
    return config, {"signing_key": identity.signing_key}


def _fingerprint(registry: Any) -> str:
    from protocols.secagg.enrolled_keys import EnrolledRegistry

    if isinstance(registry, EnrolledRegistry):
        return registry.fingerprint()
    # A plain ClientRegistry from the server: compare it as an enrolled one would print.
    return f"verify-keys-only:{registry.fingerprint()}"
