"""The settings and the records of a training run: what ``secagg run`` takes and reports.

:class:`RunConfig` holds every setting (its defaults are the CLI's); :class:`RoundRecord`
and :class:`RunResult` hold only aggregates (principle 3), and :class:`RunObserver` is the
progress interface. The loop itself is :mod:`fl.training.loop`.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Protocol

from secagg.errors import ConfigError

__all__ = [
    "DEFAULT_EPSILON",
    "DEFAULT_LR",
    "DP_NOISED",
    "DP_NOISED_SUFFIX",
    "RoundRecord",
    "RunConfig",
    "RunObserver",
    "RunResult",
    "SPLITS",
    "SilentObserver",
]

#: Epsilon budget used when DP is on and neither ``epsilon`` nor ``noise_multiplier`` is set.
DEFAULT_EPSILON = 3.0
#: Local learning rate per dataset when ``RunConfig.lr`` is ``None`` (others: 0.5).
DEFAULT_LR: dict[str, float] = {"breast_cancer": 1.0, "digits": 0.5, "synthetic": 0.5,
                                 "diabetes": 1.0}
#: The :class:`RoundRecord` fields that carry DP noise in a DP run, and the suffix their names
#: take in the JSON and CSV reports then (:meth:`RoundRecord.to_json`).
DP_NOISED: tuple[str, ...] = ("train_loss", "train_accuracy")
DP_NOISED_SUFFIX = "_dp_noised"
#: Values accepted for ``RunConfig.split``.
SPLITS: tuple[str, ...] = ("iid", "dirichlet")


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; defaults are those of ``secagg run``.

    Attributes:
        protocol: a name from ``protocols.names()``.
        clients: number of clients; the training set is split among them.
        rounds: number of FedAvg rounds.
        dataset: one of :data:`fl.training.data.DATASETS`.
        split: ``"iid"`` or ``"dirichlet"`` (label skew ``alpha``).
        dropout: fraction of each cohort that drops out during the protocol, in ``[0, 1)``.
        engine: ``"simulation"``, or another registered engine (:mod:`fl.engines`).
        dp: differential privacy on every released aggregate.
        dp_mode: ``"central"`` (the decoding party noises the sum) or ``"distributed"`` (every
            client noises before masking; secagg and secagg+ only). See :mod:`fl.privacy.rounds`.
        epsilon: the budget at ``delta``. With ``noise_multiplier=None`` the noise is
            calibrated so that all ``rounds`` fit it (``None``: :data:`DEFAULT_EPSILON`).
        delta: the delta at which epsilon is reported.
        noise_multiplier: noise std / one client's L2 sensitivity; ``None`` calibrates.
        accountant: ``"rdp"`` or ``"pld"``.
        sampling_rate: Poisson sampling rate of clients per round (1: everyone).
        cohort: fixed-size sampling of this many clients per round instead (accounted
            without amplification, which is an upper bound).
        clip: L2 clip of each client's model update.
        max_weight: cap on a client's weight (its example count); ``None``: the mean
            shard size, ``n_train // clients``.
        lr, epochs, batch_size: local SGD; ``lr=None`` takes :data:`DEFAULT_LR`.
        server_lr: FedAvg server learning rate.
        frac_bits: fixed-point fraction bits of the encoding.
        seed: seeds data split, model, sampling, training and every CSPRNG (experiments
            only: seeded DP noise protects nobody). ``None``: OS entropy.
        ledger_path: JSON file that carries the privacy ledger across runs.
        model: a kind from :data:`fl.training.model.MODEL_KINDS`; ``None``: the dataset's default.
        k_anonymity: every client makes its own records ``k``-anonymous over the
            quasi-identifiers before training (:mod:`fl.training.anonymity`); ``None``: off.
        quasi_identifiers: the QI columns (names or numbers); ``None``: the dataset's
            default (:data:`fl.training.anonymity.DEFAULT_QUASI_IDENTIFIERS`).
        bolt_on_l2: ``dp_mode="bolt-on"``: L2 regularisation ``lambda`` of the local loss
            (> 0: the strongly convex bound; 0: the convex bound with constant step ``lr``).
        bolt_on_norm: ``dp_mode="bolt-on"``: each record's features are clipped to this L2
            norm (the Lipschitz constant follows from it). See :mod:`fl.privacy.bolt_on`.
        enrolled: secagg/secagg+ in the enrolled mode (long-term keys, two exchanges per
            round); the simulation engine enrols the cohort in memory.
    """

    protocol: str = "secagg+"
    clients: int = 20
    rounds: int = 5
    dataset: str = "breast_cancer"
    split: str = "iid"
    alpha: float = 0.5
    dropout: float = 0.0
    engine: str = "simulation"
    dp: bool = True
    dp_mode: str = "central"
    epsilon: float | None = None
    delta: float = 1e-5
    noise_multiplier: float | None = None
    accountant: str = "rdp"
    sampling_rate: float = 1.0
    cohort: int | None = None
    clip: float = 1.0
    max_weight: float | None = None
    lr: float | None = None
    epochs: int = 5
    batch_size: int = 32
    server_lr: float = 1.0
    frac_bits: int = 16
    seed: int | None = None
    ledger_path: str | None = None
    model: str | None = None
    k_anonymity: int | None = None
    quasi_identifiers: tuple[str, ...] | None = None
    bolt_on_l2: float = 0.2
    bolt_on_norm: float = 1.0
    enrolled: bool = False


@dataclass
class RoundRecord:
    """What one round released and cost; aggregates only.

    ``train_loss`` and ``train_accuracy`` are the weighted means decoded from the secure sum
    (noised under DP); ``test_*`` are measured by the server on the held-out set.
    ``epsilon`` is the ledger's epsilon after the round (``None`` without DP). ``error``
    says why a round released nothing (then the model is unchanged). ``train_noise_std``
    is the standard deviation the DP noise gives each decoded train metric (``None``
    without DP): read the train metrics against it.
    """

    round: int
    cohort: int
    contributors: int
    dropped: int
    test_accuracy: float
    test_loss: float
    train_loss: float | None
    train_accuracy: float | None
    epsilon: float | None
    seconds: float
    client_seconds: float
    server_seconds: float
    upload_bytes_per_client: int
    download_bytes_per_client: int
    error: str | None = None
    train_noise_std: float | None = None

    def to_json(self, dp_noised: bool = False) -> dict[str, Any]:
        """The record as a JSON object (a row of metrics.csv). With ``dp_noised`` (a DP
        run) the decoded train metrics are named for what they are: ``train_loss`` and
        ``train_accuracy`` become ``train_loss_dp_noised`` and ``train_accuracy_dp_noised``.
        """
        row = asdict(self)
        if not dp_noised:
            return row
        return {f"{k}{DP_NOISED_SUFFIX}" if k in DP_NOISED else k: v for k, v in row.items()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RoundRecord:
        """The record :meth:`to_json` wrote (either naming), ignoring keys it does not know.

        Raises:
            ConfigError: a required field is missing.
        """
        plain = {k[: -len(DP_NOISED_SUFFIX)] if k.endswith(DP_NOISED_SUFFIX) else k: v
                 for k, v in doc.items()}
        known = fields(cls)
        missing = [f.name for f in known if f.name not in plain
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ConfigError(f"not a round record: it lacks {', '.join(missing)}")
        names = {f.name for f in known}
        return cls(**{k: v for k, v in plain.items() if k in names})


@dataclass
class RunResult:
    """The outcome of :func:`run_training`: settings, per-round history, final figures."""

    config: RunConfig
    engine: str
    model_params: int
    noise_multiplier: float | None
    max_weight: float
    protocol_params: dict[str, int]
    initial_accuracy: float
    lr: float
    history: list[RoundRecord] = field(default_factory=list)
    seconds: float = 0.0
    #: :func:`fl.training.anonymity.summarise` of the clients' reports (``None``: k-anonymity off).
    anonymity: dict[str, Any] | None = None
    #: :meth:`fl.privacy.bolt_on.BoltOnSetup.summary` (``None`` unless ``dp_mode="bolt-on"``).
    bolt_on: dict[str, Any] | None = None
    #: Final accuracy of the same run without k-anonymity, when it was measured.
    baseline_accuracy: float | None = None

    @property
    def final_accuracy(self) -> float:
        """Held-out accuracy of the final model."""
        return self.history[-1].test_accuracy if self.history else self.initial_accuracy

    @property
    def epsilon(self) -> float | None:
        """Epsilon at ``delta`` after the run (``None`` without DP)."""
        if not self.config.dp:
            return None
        return self.history[-1].epsilon if self.history else 0.0

    @property
    def failed_rounds(self) -> int:
        """Rounds that released nothing."""
        return sum(1 for r in self.history if r.error is not None)

    def to_json(self, report_dir: str | None = None) -> dict[str, Any]:
        """The ``secagg run --json`` object (DESIGN.md, "Command line")."""
        cfg = self.config
        done = [r for r in self.history if r.error is None]
        n = max(len(self.history), 1)
        return {
            "protocol": cfg.protocol,
            "engine": self.engine,
            "dataset": cfg.dataset,
            "split": cfg.split,
            "rounds": len(self.history),
            "failed_rounds": self.failed_rounds,
            "clients": cfg.clients,
            "model_params": self.model_params,
            "initial_accuracy": self.initial_accuracy,
            "final_accuracy": self.final_accuracy,
            "dp": cfg.dp,
            "dp_mode": cfg.dp_mode if cfg.dp else None,
            "epsilon": self.epsilon,
            "delta": cfg.delta if cfg.dp else None,
            "epsilon_budget": (cfg.epsilon if cfg.epsilon is not None or cfg.noise_multiplier
                               is not None else DEFAULT_EPSILON) if cfg.dp else None,
            "noise_multiplier": self.noise_multiplier,
            "accountant": cfg.accountant if cfg.dp else None,
            "sampling_rate": cfg.sampling_rate,
            "cohort": cfg.cohort,
            "dropout": cfg.dropout,
            "clip": cfg.clip,
            "max_weight": self.max_weight,
            "lr": self.lr,
            "epochs": cfg.epochs,
            "protocol_params": self.protocol_params,
            "seed": cfg.seed,
            "seconds": self.seconds,
            "seconds_per_round": sum(r.seconds for r in self.history) / n,
            "bytes_per_client": (
                sum(r.upload_bytes_per_client + r.download_bytes_per_client for r in done)
                / len(done) if done else 0.0
            ),
            "report_dir": report_dir,
            "model": cfg.model,
            "k_anonymity": self.anonymity,
            "baseline_accuracy": self.baseline_accuracy,
            "bolt_on": self.bolt_on,
            "history": [r.to_json(dp_noised=cfg.dp) for r in self.history],
        }


class RunObserver(Protocol):
    """Progress callbacks; :mod:`fl.cli.run` draws progress bars with them."""

    def round_started(self, round_: int, cohort: int) -> None:
        """Round ``round_`` (1-based) begins with ``cohort`` clients."""

    def client_trained(self) -> None:
        """One cohort member finished local training."""

    def round_finished(self, record: RoundRecord) -> None:
        """The round is over; ``record`` holds what it released."""


class SilentObserver:
    """A :class:`RunObserver` that shows nothing."""

    def round_started(self, round_: int, cohort: int) -> None:
        pass

    def client_trained(self) -> None:
        pass

    def round_finished(self, record: RoundRecord) -> None:
        pass
