"""``secagg simulate --dp``: it reports the noise it added, and the sum deviates accordingly."""

from __future__ import annotations

import json

import pytest

import fl.cli


def _simulate(capsys, *argv: str) -> dict:
    assert fl.cli.main(["simulate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("protocol,mode", [("secagg+", "central"), ("secagg", "distributed"),
                                           ("plaintext", "central"), ("paillier", "central")])
def test_deviation_matches_the_reported_noise(capsys, protocol: str, mode: str) -> None:
    out = _simulate(capsys, "--protocol", protocol, "--clients", "8", "--dim", "6000",
                    "--dropout", "0.25", "--dp", mode, "--noise-multiplier", "0.5",
                    "--seed", "7")
    dp = out["dp"]
    assert dp["mode"] == mode and dp["noise_std"] > 0
    # 6000 coordinates: the sample std is within a few percent of the true one.
    assert dp["deviation_std"] == pytest.approx(dp["noise_std"], rel=0.08)
    assert abs(dp["deviation_mean"]) < 5 * dp["noise_std"] / 6000**0.5
    assert dp["epsilon"] > 0
    if mode == "distributed":  # the noise that survived: sqrt(s/n) of the target
        assert dp["noise_multiplier"] == pytest.approx(0.5 * (out["survivors"] / 8) ** 0.5)
        assert out["exact"] is True  # decoding is exact; the clients' noise is in the inputs
    else:
        assert dp["noise_multiplier"] == 0.5
        assert out["exact"] is None  # the decoder noised the sum on purpose


def test_distributed_needs_a_masking_protocol(capsys) -> None:
    assert fl.cli.main(["simulate", "--protocol", "paillier", "--dp", "distributed",
                        "--clients", "3", "--dim", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "secagg or secagg+" in err[0]
