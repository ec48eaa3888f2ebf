"""DP in training runs (named apart from :mod:`secagg.dp`, the mechanisms and accountants).

- :mod:`fl.privacy.rounds`: each round's noise (central or distributed), checked against the
  ledger before the round and charged after it (:class:`RoundPrivacy`), and the ledger file;
- :mod:`fl.privacy.bolt_on`: Bolt-on DP (output perturbation of a convex model trained by
  permutation SGD).

Light at import: neither module imports torch at module level.
"""

from __future__ import annotations

from fl.privacy.bolt_on import BoltOnSetup, bolt_on_privacy, plan_bolt_on
from fl.privacy.rounds import (
    DP_MODES,
    CentralDPHook,
    RoundPrivacy,
    load_ledger,
    round_privacy,
    save_ledger,
)

__all__ = [
    "DP_MODES",
    "BoltOnSetup",
    "CentralDPHook",
    "RoundPrivacy",
    "bolt_on_privacy",
    "load_ledger",
    "plan_bolt_on",
    "round_privacy",
    "save_ledger",
]
