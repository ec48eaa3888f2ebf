"""Empirical privacy audit: canary clients, a membership attack, and an epsilon lower bound.

The run's DP claim (the ledger's epsilon at delta) is an upper bound, proved on paper. The
audit measures from below, in one training run (Andrew et al. 2023, "One-shot empirical
privacy estimation for federated learning"; Steinke, Nasr and Jagielski 2023):

1. draw ``m`` canary clients, each a fixed random direction of norm = the clip, and include
   each with probability 1/2 (the secret bits);
2. train with the real protocol and DP settings; the included canaries are ordinary clients
   of every round's secure sum (:mod:`fl.audit.canaries`);
3. score each canary by the sum over rounds of the cosine between the released aggregate and
   its direction; guess "in" for the top ``r/2`` scores, "out" for the bottom ``r/2``;
4. turn the number of correct guesses into the largest epsilon it rules out at 95%
   confidence (:mod:`fl.audit.bound`).

Without DP the guesses are almost all right and the bound is high, though never above
``logit(0.05^(1/r))`` (4.2 for ``r = 200`` guesses), whatever the true leak. With DP it must
stay below the accountant's epsilon; a lower bound above it would mean a bug in the noise,
the clipping or the accounting. Being a lower bound from one attack, it says nothing about
how much below the accounted epsilon the true leak is.
:mod:`fl.audit.report` writes the JSON, the canaries' scores and a histogram plot.
"""

from __future__ import annotations

from fl.audit.bound import binomial_tail, epsilon_lower_bound, max_advantage, p_value
from fl.audit.canaries import (
    AuditConfig,
    AuditPlan,
    AuditResult,
    CanaryEngine,
    plan_audit,
    run_audit,
)
from fl.audit.report import AUDIT_FILES, write_audit_report

__all__ = [
    "AUDIT_FILES",
    "AuditConfig",
    "AuditPlan",
    "AuditResult",
    "CanaryEngine",
    "binomial_tail",
    "epsilon_lower_bound",
    "max_advantage",
    "p_value",
    "plan_audit",
    "run_audit",
    "write_audit_report",
]
