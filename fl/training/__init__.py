"""One training run, in the order its data flows.

- :mod:`fl.training.config`: :class:`RunConfig` (every setting of ``secagg run``) and the
  records a run keeps (:class:`RoundRecord`, :class:`RunResult`: aggregates only);
- :mod:`fl.training.data`: the bundled datasets and their split into client shards;
  :mod:`fl.training.anonymity`: k-anonymising the shards' quasi-identifiers;
- :mod:`fl.training.model`: the models (:mod:`fl.training.linear`, numpy logistic regression, the
  tabular datasets' default; :mod:`fl.training.nets`, torch MLP and CNN), and a model's
  parameters as one vector;
- :mod:`fl.training.fedavg`: local training, evaluation, client weights and sampling, and the
  FedAvg step on the released sums;
- :mod:`fl.training.payload`: what one client puts into the secure sum, and how the released
  sum is read back (the one module that knows the layout);
- :mod:`fl.training.loop`: :func:`plan_run` checks the settings and builds the run,
  :func:`run_training` runs its rounds through an engine (:mod:`fl.engines`);
- :mod:`fl.training.report`: the report folder (JSON, CSV, plots) and the noise check.

Names are re-exported lazily: importing :mod:`fl.training` (or its light modules, such as
:mod:`fl.training.config`) does not import torch, and a run on the linear model never does.
"""

from __future__ import annotations

from fl import _lazy

_EXPORTS = {
    **dict.fromkeys(("DEFAULT_EPSILON", "DEFAULT_LR", "RoundRecord", "RunConfig", "RunObserver",
                     "RunResult", "SilentObserver"), "fl.training.config"),
    **dict.fromkeys(("DATASETS", "Dataset", "Shard", "load_dataset", "make_synthetic"),
                    "fl.training.data"),
    **dict.fromkeys(("ModelVector", "make_model", "num_params"), "fl.training.model"),
    **dict.fromkeys(("cap_weights", "evaluate", "fedavg_step", "local_train", "sample_clients"),
                    "fl.training.fedavg"),
    **dict.fromkeys(("client_vector", "read_sum", "vector_dim"), "fl.training.payload"),
    **dict.fromkeys(("RunPlan", "plan_run", "run_training"), "fl.training.loop"),
    **dict.fromkeys(("noise_check", "write_report"), "fl.training.report"),
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy("fl.training", _EXPORTS)
