"""``secagg enroll``: enrol clients once, for the enrolled mode of secagg / secagg+.

Writes into ``--out``:

- ``registry.json``: every client's long-term X25519 public key and Ed25519 verify key
  (public; give the same file to the server and to every client);
- ``client-<id>.key``: one key file per client, mode 0600, holding its long-term secrets
  (give each client only its own, out of band).

A simulation (``secagg simulate --enrolled``) enrols in memory instead; a deployment loads
the files: ``EnrolledRegistry.load(".../registry.json")`` and
``Identity.load(".../client-7.key", answers=FileStore(...))``. Flower nodes name them in
their node config (``secagg-key-file``, ``secagg-registry``; the answers they gave are
remembered under ``secagg-state-dir``): see :mod:`fl.flower.enrolment`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fl.cli._common import add_json_flag, emit_json, stderr_console
from protocols.secagg.enrolled_keys import enroll_clients
from secagg.errors import ConfigError
from secagg.rng import Csprng

HELP = "enrol clients for the enrolled mode: write a registry and one 0600 key file per client"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clients", type=int, required=True, help="number of clients (ids 0..N-1)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for registry.json and client-<id>.key (must be empty or new)")
    add_json_flag(p)


def run(args: argparse.Namespace) -> int:
    if args.clients < 1:
        raise ConfigError(f"--clients must be >= 1, got {args.clients}")
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty folder; choose a new one "
                          "(enrolment never overwrites keys)")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    registry, identities = enroll_clients(args.clients, Csprng())  # OS entropy
    for u, ident in identities.items():
        ident.save(out / f"client-{u}.key")
    registry.save(out / "registry.json")
    os.chmod(out / "registry.json", 0o644)
    stderr_console().print(f"enrolled {args.clients} clients into {out}/")
    doc = {"clients": args.clients, "registry": str(out / "registry.json"),
           "key_files": [str(out / f"client-{u}.key") for u in sorted(identities)]}
    if args.json:
        emit_json(doc)
    else:
        print(f"registry: {doc['registry']}")
        print(f"key files: {out}/client-<0..{args.clients - 1}>.key (mode 0600)")
    return 0
