"""Every client core checks the round config it is given against its own ClientPolicy
(issue 13): a config weaker than the policy is refused with a PolicyError naming the setting,
before the client does anything; the registry is pinned by fingerprint.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import Router

import protocols
from protocols.policy import ClientPolicy
from protocols.secagg import ClientRegistry
from secagg import sign
from secagg.errors import ConfigError, PolicyError
from secagg.rng import Csprng

DIM = 16


def _policy_client(policy: ClientPolicy, name: str = "secagg", **kw: object):
    spec = protocols.get(name)
    cfg = spec.make_config(8, DIM, **kw)
    cfg, creds = spec.provision(cfg, Csprng.from_seed("policy"))
    return spec.client(cfg, 0, Csprng.from_seed("p0"), policy=policy, **creds.get(0, {}))


WEAK_CONFIGS: dict[str, tuple[ClientPolicy, str, dict[str, object], str]] = {
    "t = 2 from the server": (ClientPolicy(min_threshold=3), "secagg", {"threshold": 2},
                              "threshold"),
    "t below half the neighbourhood": (ClientPolicy(min_threshold_fraction=0.5), "secagg+",
                                       {"degree": 4, "threshold": 2}, "min_threshold_fraction"),
    "a small cohort": (ClientPolicy(min_cohort=10), "secagg", {}, "min_cohort"),
    "a protocol not allowed": (ClientPolicy(protocols=("secagg+",)), "secagg", {}, "protocol"),
    "passive where active is required": (ClientPolicy(require_active=True), "secagg", {},
                                         "require_active"),
    "corruption assumed away": (ClientPolicy(min_corruption=0.2), "secagg", {"corruption": 0.0},
                                "min_corruption"),
    "a low release floor": (ClientPolicy(min_contributors=4), "secagg", {}, "min_contributors"),
    "no client noise": (ClientPolicy(min_noise_multiplier=0.5), "secagg", {},
                        "min_noise_multiplier"),
}


@pytest.mark.parametrize("case", WEAK_CONFIGS)
def test_a_config_weaker_than_the_clients_policy_is_refused(case: str) -> None:
    policy, name, kw, setting = WEAK_CONFIGS[case]
    with pytest.raises(PolicyError, match=setting):
        _policy_client(policy, name, **kw)


def test_too_little_distributed_noise_is_refused() -> None:
    from secagg.dp import DistributedDiscreteGaussian

    enc = protocols.get("secagg").make_config(8, DIM).encoding
    noise = DistributedDiscreteGaussian(0.2, enc.l2_sensitivity(DIM), 8)
    with pytest.raises(PolicyError, match="min_noise_multiplier=1"):
        _policy_client(ClientPolicy(min_noise_multiplier=1.0), client_noise=noise)
    _policy_client(ClientPolicy(min_noise_multiplier=0.01), client_noise=noise)
    # A server that understates the sensitivity does not make its noise look larger.
    cheat = DistributedDiscreteGaussian(2.0, enc.l2_sensitivity(DIM) / 50, 8)
    with pytest.raises(PolicyError, match="min_noise_multiplier"):
        _policy_client(ClientPolicy(min_noise_multiplier=1.0), client_noise=cheat)


def test_a_substituted_registry_is_refused_by_a_pinned_fingerprint() -> None:
    spec = protocols.get("secagg")
    cfg = spec.make_config(8, DIM, active=True)
    cfg, creds = spec.provision(cfg, Csprng.from_seed("real"))
    pin = ClientPolicy(require_active=True, registry_fingerprint=cfg.registry.fingerprint())
    spec.client(cfg, 0, Csprng.from_seed(0), policy=pin, **creds[0])  # the real one: fine
    # The server keeps client 0's true key and swaps in its own keys for everyone else.
    _, fake_creds = spec.provision(spec.make_config(8, DIM, active=True), Csprng.from_seed("s"))
    fake = ClientRegistry({0: cfg.registry.keys[0],
                           **{u: sign.verify_key(fake_creds[u]["signing_key"])
                              for u in range(1, 8)}})
    evil = dataclasses.replace(cfg, registry=fake)
    spec.client(evil, 0, Csprng.from_seed(0), **creds[0])  # without a pin it cannot tell
    with pytest.raises(PolicyError, match="registry"):
        spec.client(evil, 0, Csprng.from_seed(0), policy=pin, **creds[0])


def test_a_round_under_a_strict_policy_is_exact() -> None:
    spec = protocols.get("secagg+")
    cfg = spec.make_config(12, DIM, active=True, degree=6, threshold=5)
    cfg, creds = spec.provision(cfg, Csprng.from_seed("strict"))
    policy = ClientPolicy(protocols=("secagg+",), min_cohort=12, min_threshold=5,
                          min_threshold_fraction=0.7, require_active=True, min_corruption=0.1,
                          registry_fingerprint=cfg.registry.fingerprint())
    router = Router(spec, cfg, Csprng.from_seed("strict/roles"), [np.full(DIM, 0.02)] * 12,
                    credentials=creds, client_kwargs={"policy": policy})
    encoded = list(router.encoded)
    assert router.run().contributors == tuple(range(12))  # every client took part
    assert np.array_equal(router.server.result().int_sum,
                          sum(cfg.encoding.centre(e) for e in encoded))


def test_policy_from_settings() -> None:
    p = ClientPolicy.from_settings({"policy-protocols": "secagg, secagg+",
                                    "policy-min-cohort": "10", "policy-require-active": "true",
                                    "policy-min-threshold-fraction": 0.6})
    assert p == ClientPolicy(protocols=("secagg", "secagg+"), min_cohort=10,
                             require_active=True, min_threshold_fraction=0.6)
    with pytest.raises(ConfigError, match="policy-min-cohort"):
        ClientPolicy.from_settings({"policy-min-cohort": "ten"})
    with pytest.raises(ConfigError, match="min_cohort"):
        ClientPolicy(min_cohort=1)




def test_a_plaintext_client_checks_its_policy_too() -> None:
    spec = protocols.get("plaintext")
    cfg = spec.make_config(4, 2)
    with pytest.raises(PolicyError, match="not allowed"):
        spec.client(cfg, 0, Csprng.from_seed(0), policy=ClientPolicy(protocols=("secagg+",)))
    with pytest.raises(PolicyError, match="min_cohort"):
        spec.client(cfg, 0, Csprng.from_seed(0), policy=ClientPolicy(min_cohort=5))
    spec.client(cfg, 0, Csprng.from_seed(0), policy=ClientPolicy(protocols=("plaintext",)))


def test_out_of_band_enrolment_files_drive_a_pinned_active_round(tmp_path) -> None:
    from protocols.secagg import enroll_files, load_signing_key

    registry = enroll_files(6, tmp_path / "enrol", Csprng.from_seed("oob"))
    loaded = ClientRegistry.load(tmp_path / "enrol" / "registry.json")
    assert loaded == registry
    assert oct((tmp_path / "enrol" / "client-3.key").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ConfigError, match="client 3's, not client 2's"):
        load_signing_key(tmp_path / "enrol" / "client-3.key", client=2)
    with pytest.raises(ConfigError, match="exists"):
        enroll_files(6, tmp_path / "enrol", Csprng.from_seed("again"))
    # Each node: its own key file, the registry file, and a policy pinning that registry.
    spec = protocols.get("secagg")
    cfg = spec.make_config(6, DIM, active=True, registry=registry)
    nodes = {}
    for u in range(6):
        node_registry = ClientRegistry.load(tmp_path / "enrol" / "registry.json")
        policy = ClientPolicy(require_active=True, registry_fingerprint=node_registry.fingerprint())
        _, seed = load_signing_key(tmp_path / "enrol" / f"client-{u}.key", client=u)
        nodes[u] = {"policy": policy, "signing_key": seed}
    router = Router(spec, cfg, Csprng.from_seed("oob/roles"), [np.full(DIM, 0.01)] * 6,
                    credentials=nodes)
    encoded = list(router.encoded)
    assert router.run().contributors == tuple(range(6))
    assert np.array_equal(router.server.result().int_sum,
                          sum(cfg.encoding.centre(e) for e in encoded))
