"""bench.enrolled_ab: both modes run on the same inputs, give exact sums, and the ratios are
the ratios of the medians it reports."""

from __future__ import annotations

import pytest

from bench.enrolled_ab import main, run


@pytest.mark.parametrize("warm", [False, True])
def test_both_modes_run_exactly_and_the_ratios_are_of_the_medians(warm: bool) -> None:
    out = run("secagg+", 12, 16, rounds=2, warm=warm)
    assert set(out) == {"client_s", "enrolled_client_s", "client_ratio", "server_s",
                        "enrolled_server_s", "server_ratio"}
    assert all(out[k] > 0 for k in ("client_s", "enrolled_client_s", "server_s",
                                    "enrolled_server_s"))
    assert out["client_ratio"] == pytest.approx(out["enrolled_client_s"] / out["client_s"])
    assert out["server_ratio"] == pytest.approx(out["enrolled_server_s"] / out["server_s"])


def test_bad_arguments_are_one_usage_line() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["secagg+", "--clients", "3"])
    assert exc.value.code == 2
