"""``secagg bench --deployment``: seconds per training round on one real Flower deployment.

One :class:`fl.flower.deploy.LocalDeployment` on 127.0.0.1 (a SuperLink and ``n``
SuperNodes, each training the example's model on its own partition), and on it, one after
the other, the same job (same model, same data, same local training, same ``n``) as:

(a) ``fedavg``: plain Flower FedAvg, no secure aggregation;
(b) ``flower-secagg+``: Flower 1.41's own ``SecAggPlusWorkflow`` + ``secaggplus_mod``, with
    ``num_shares`` = our secagg+ degree + 1 and the same reconstruction threshold;
(c) each secagg protocol through :class:`fl.flower.workflow.SecAggWorkflow` +
    ``secagg_mod`` (no DP: DP adds no messages). Names take the workflow's variants:
    ``secagg+:enrolled`` (two client messages per round), ``secagg+-active``. The nodes are
    enrolled once before the jobs (:func:`fl.flower.enrolment.enrol`, what ``secagg enroll``
    does), and the jobs that authenticate clients get the registry.

Every ServerApp marks the end of each round in its log (:mod:`fl.flower.example.baselines`);
a round's seconds are the time between consecutive marks (the first from the mark before
round 1), so the first round includes the strategy's own start-up. The figure per job is
the median over its rounds; ratios are (c)/(b) and (c)/(a) of medians from this one run.
Writes ``deployment.json``, ``deployment.csv`` and ``deployment.png`` into ``--out``; with
``--json`` prints the object, whose ``deployment`` has ``round_seconds`` (protocol ->
median s/round), ``flower_secaggplus_round_seconds`` and ``fedavg_round_seconds``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from secagg.errors import ConfigError

__all__ = ["parse_marks", "run_deployment", "summarise", "write_outputs"]

FEDAVG = "fedavg"
FLOWER = "flower-secagg+"
_MARK = re.compile(r"\[bench\] (start|round (\d+) end) (\d+\.\d+)")


def parse_marks(log: str) -> list[float]:
    """Seconds of each round from a run's ``[bench]`` marks (see the module docstring).

    Raises:
        ConfigError: no start mark, or rounds out of order.
    """
    start: float | None = None
    ends: dict[int, float] = {}
    for m in _MARK.finditer(log):
        if m.group(1) == "start":
            start = float(m.group(3))
        else:
            ends.setdefault(int(m.group(2)), float(m.group(3)))
    if start is None:
        raise ConfigError("the run's log has no [bench] start mark")
    out, prev = [], start
    for r in sorted(ends):
        out.append(ends[r] - prev)
        prev = ends[r]
    return out


def summarise(n: int, rounds: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """The ``deployment`` object from each job's seconds per round."""
    med = {k: (statistics.median(v) if v else None) for k, v in rounds.items()}
    fed, flw = med.get(FEDAVG), med.get(FLOWER)
    ours = {k: v for k, v in med.items() if k not in (FEDAVG, FLOWER)}
    ratios = {k: {"vs_flower_secaggplus": (v / flw if v and flw else None),
                  "vs_fedavg": (v / fed if v and fed else None)} for k, v in ours.items()}
    return {"clients": n, "round_seconds": ours, "flower_secaggplus_round_seconds": flw,
            "fedavg_round_seconds": fed, "ratios": ratios,
            "per_round_seconds": {k: list(v) for k, v in rounds.items()}}


def write_outputs(result: dict[str, Any], out: Path, plots: bool = True) -> list[Path]:
    """``deployment.json``, ``deployment.csv`` and (unless ``plots`` is False) a bar plot."""
    out.mkdir(parents=True, exist_ok=True)
    dep = result["deployment"]
    files = [out / "deployment.json", out / "deployment.csv"]
    files[0].write_text(json.dumps(result, indent=1) + "\n")
    with files[1].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["job", "clients", "median_round_seconds", "vs_flower_secaggplus",
                    "vs_fedavg", "rounds"])
        for job, secs in dep["per_round_seconds"].items():
            r = dep["ratios"].get(job, {})
            med = statistics.median(secs) if secs else ""
            w.writerow([job, dep["clients"], med, r.get("vs_flower_secaggplus", ""),
                        r.get("vs_fedavg", ""), len(secs)])
    if plots:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        jobs = [j for j, s in dep["per_round_seconds"].items() if s]
        fig = Figure(figsize=(6, 3.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.bar(jobs, [statistics.median(dep["per_round_seconds"][j]) for j in jobs])
        ax.set_ylabel("median seconds per round")
        ax.set_title(f"one loopback Flower deployment, n = {dep['clients']}")
        fig.tight_layout()
        files.append(out / "deployment.png")
        fig.savefig(files[-1])
    return files


def run_deployment(n: int, protocol_names: Sequence[str], rounds: int = 3, *,
                   timeout: float = 1800.0, log: Any = None) -> dict[str, Any]:
    """Run (a), (b) and (c) on one deployment of ``n`` SuperNodes; returns the result object.

    Raises:
        ConfigError: bad numbers or protocol names.
        DeploymentError: a process did not start or a run failed.
    """
    from functools import partial

    import protocols
    from fl.flower import enrolment
    from fl.flower.deploy import LocalDeployment, write_app
    from fl.flower.example.baselines import RUN_CONFIG
    from fl.flower.workflow import parse_protocol
    from protocols.secagg.config import SecAggConfig

    if n < 2 or rounds < 1:
        raise ConfigError(f"--deployment needs --clients >= 2 and rounds >= 1, got {n}, {rounds}")
    needs = {}
    for name in protocol_names:
        spec, active, enrolled = parse_protocol(name)
        variant = {k: True for k, on in (("active", active), ("enrolled", enrolled)) if on}
        needs[name] = enrolment.needs_enrolment(spec, **variant)
    plus = cast(SecAggConfig, protocols.get("secagg+").make_config(n, 8))
    shares, threshold = min(n, int(plus.degree) + 1), int(plus.threshold)
    base = "fl.flower.example"
    apps = {
        FEDAVG: (f"{base}.baselines:fedavg_server", f"{base}.baselines:fedavg_client"),
        FLOWER: (f"{base}.baselines:secaggplus_server", f"{base}.baselines:secaggplus_client"),
    }
    times: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="secagg-bench-deployment-"))
    try:
        registry = str(enrolment.enrol(workdir / "enrolment", n))
        with LocalDeployment(n, log=log, workdir=workdir / "flower",
                             node_config=partial(enrolment.node_config, workdir / "enrolment")) as dep:
            jobs: list[tuple[str, dict[str, int | str]]] = [(FEDAVG, {}), (FLOWER, {"num-shares": shares,
                                            "reconstruction-threshold": threshold})]
            jobs += [(p, {"protocol": p, "registry": registry if needs[p] else ""})
                     for p in protocol_names]
            for job, extra in jobs:
                server, client = apps.get(job, (f"{base}.baselines:secagg_server",
                                                f"{base}.client_app:app"))
                app_dir = write_app(dep.workdir / f"app-{len(times)}",
                                    components={"serverapp": server, "clientapp": client},
                                    defaults=RUN_CONFIG)
                cfg = {"num-server-rounds": rounds, "min-nodes": n, **extra}
                if log:
                    log(f"deployment bench: {job}, {rounds} rounds on {n} SuperNodes")
                text = dep.run(cfg, timeout=timeout, app_dir=app_dir)
                times[job] = parse_marks(text)
                if log:
                    log(f"  {job}: " + ", ".join(f"{s:.2f}" for s in times[job]) + " s/round")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"command": "secagg bench --deployment", "argv": sys.argv[1:],
            "machine": {"cpus": os.cpu_count(), "loadavg": list(os.getloadavg())},
            "settings": {"rounds": rounds, "num_shares": shares, "threshold": threshold,
                         "model": "fl.flower.example (breast_cancer, logistic regression)"},
            "deployment": summarise(n, times), "wall_seconds": time.perf_counter() - t0}
