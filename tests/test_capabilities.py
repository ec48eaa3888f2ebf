"""Protocols declare what they support on ProtocolSpec; drivers ask instead of probing.

For every registered protocol: the minimum cohort is 2, every keyword of the one keyword set
is accepted by ``make_config`` (None meaning "not given"), a keyword the protocol does not
support is a one-line ConfigError (never a TypeError), the stages are the message classes of
its client transition table, and ``graph_params`` agrees with the config.
"""

from __future__ import annotations

import pytest

import protocols
from protocols.base import CONFIG_KEYWORDS, GraphParams, Message, ProtocolSpec, stages_of
from secagg import wire
from secagg.dp import DistributedDiscreteGaussian
from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError

NAMES = protocols.names()


@pytest.mark.parametrize("name", NAMES)
def test_no_sum_of_fewer_than_two_is_ever_released(name: str) -> None:
    assert protocols.get(name).min_cohort == 2


@pytest.mark.parametrize("name", NAMES)
def test_every_keyword_is_accepted_when_not_given(name: str) -> None:
    spec = protocols.get(name)
    config = spec.make_config(4, 3, **{k: None for k in CONFIG_KEYWORDS})
    assert (config.n_clients, config.dim) == (4, 3)
    assert config.client_noise is None


@pytest.mark.parametrize("name", NAMES)
def test_unsupported_keywords_are_a_config_error_naming_them(name: str) -> None:
    spec = protocols.get(name)
    probes = {"threshold": 2, "degree": 2, "active": True, "workers": 1, "corruption": 0.2}
    for key, value in probes.items():
        if key in spec.keywords:
            continue
        with pytest.raises(ConfigError, match=repr(key)) as info:
            spec.make_config(4, 3, **{key: value})
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown config keyword 'thresh'"):
        spec.make_config(4, 3, thresh=2)


@pytest.mark.parametrize("name", NAMES)
def test_distributed_dp_support_is_what_the_config_does(name: str) -> None:
    spec = protocols.get(name)
    noise = DistributedDiscreteGaussian(1.0, 100.0, 4)
    if spec.supports_distributed_dp:
        config = spec.make_config(4, 3, client_noise=noise)
        assert config.client_noise is noise
    else:
        with pytest.raises(ConfigError, match="client_noise"):
            spec.make_config(4, 3, client_noise=noise, encoding=EncodingConfig(max_clients=4))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("active", [False, True])
def test_client_stages_are_the_message_classes_of_the_client_table(name: str,
                                                                   active: bool) -> None:
    spec = protocols.get(name)
    if active and "active" not in spec.keywords:
        pytest.skip(f"{name} has no active variant")
    config = spec.make_config(5, 2, active=active)
    stages = spec.client_stages(config)
    kinds = [kind for (_, kind) in spec.client_table(config)]
    assert [cls.KIND for cls in stages] == kinds
    registered = set(wire.registered().values())
    assert all(issubclass(cls, Message) and cls in registered for cls in stages)
    assert stages_of(spec, config) == tuple(k.name for k in kinds)


@pytest.mark.parametrize("name", NAMES)
def test_graph_params_agree_with_the_config(name: str) -> None:
    spec = protocols.get(name)
    config = spec.make_config(7, 2)
    params = spec.graph_params(config)
    assert isinstance(params, GraphParams)
    if "threshold" in spec.keywords:
        assert params == GraphParams(config.threshold, config.degree)  # type: ignore[attr-defined]
        given = spec.make_config(7, 2, threshold=3, degree=6)
        assert spec.graph_params(given).as_dict() == {"threshold": 3, "degree": 6}
    else:
        assert params.as_dict() == {}


@pytest.mark.parametrize("name", NAMES)
def test_a_decoder_that_releases_any_survivors_is_told_the_planned_ones(name: str) -> None:
    spec = protocols.get(name)
    # HE's decryptor decrypts whatever sum it is handed; the masking protocols' threshold
    # (and plaintext's trusted server) bound the release themselves
    assert spec.releases_any_survivors is (name in ("ckks", "paillier"))
    if spec.releases_any_survivors:
        assert spec.planned_min_clients(10, 0.2) == 8
        assert spec.planned_min_clients(10, 0.0) == 10
        assert spec.planned_min_clients(2, 0.5) == spec.min_cohort >= 2
    else:
        assert spec.planned_min_clients(10, 0.2) is None


def test_a_spec_must_declare_consistent_capabilities() -> None:
    base = protocols.get("plaintext")
    with pytest.raises(ConfigError, match="min_cohort"):
        ProtocolSpec(**{**_fields(base), "min_cohort": 1})
    with pytest.raises(ConfigError, match="supports_distributed_dp"):
        ProtocolSpec(**{**_fields(base), "supports_distributed_dp": True})
    with pytest.raises(ConfigError, match="unknown config keywords"):
        ProtocolSpec(**{**_fields(base), "keywords": frozenset({"nope"})})


def test_a_config_cannot_claim_noise_its_clients_never_add() -> None:
    from protocols.base import RoundConfig

    with pytest.raises(ConfigError, match="no distributed DP"):
        RoundConfig(n_clients=3, dim=2, client_noise=DistributedDiscreteGaussian(1.0, 1.0, 3))


def _fields(spec: ProtocolSpec) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


@pytest.mark.parametrize("name", NAMES)
def test_no_protocol_releases_a_sum_of_one_client(name: str) -> None:
    import numpy as np

    from secagg.errors import DropoutError

    spec = protocols.get(name)
    n, dim = 3, 4
    config = spec.make_config(n, dim, **({"threshold": 2} if "threshold" in spec.keywords
                                         else {}))
    inputs = [np.full(dim, 0.1 * (u + 1)) for u in range(n)]
    with pytest.raises(DropoutError):
        protocols.aggregate(spec, config, inputs, drop_at={0: 0, 1: 0})
    # Two survivors are released (the floor is 2, not more).
    result = protocols.aggregate(spec, config, inputs, drop_at={0: 0})
    assert result.contributors == (1, 2)
