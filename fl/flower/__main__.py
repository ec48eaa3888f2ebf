"""``python -m fl.flower``: write the Flower app, or run a loopback demo.

    python -m fl.flower app DIR [--set key=value ...]
        Write DIR/pyproject.toml, the app that ``flwr run DIR <connection>`` submits
        (components fl.flower.server_app:app and fl.flower.client_app:app; run-config keys
        and defaults from fl.flower.settings, changed by --set).

    python -m fl.flower example DIR [--set key=value ...]
        Write DIR/pyproject.toml of the example training app (fl.flower.example: a torch
        model on breast_cancer, FedAvg through SecAggWorkflow, secagg_mod on the clients).

    python -m fl.flower demo [--nodes N] [--protocol P] [--rounds R] [--dim D] [--seed S]
        Start a SuperLink and N SuperNodes on 127.0.0.1, run the app in deployment mode
        (synthetic inputs), print the ServerApp's round summaries, stop everything.
"""

from __future__ import annotations

import argparse
import sys
import tomllib

from fl.flower.deploy import DeploymentError, LocalDeployment, example_app, write_app
from fl.flower.settings import RUN_CONFIG
from secagg.errors import ConfigError


def _value(text: str) -> object:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m fl.flower", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_app = sub.add_parser("app", help="write the Flower app project")
    p_app.add_argument("dir")
    p_app.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p_ex = sub.add_parser("example", help="write the example training app project")
    p_ex.add_argument("dir")
    p_ex.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p_demo = sub.add_parser("demo", help="run the app on a loopback deployment")
    p_demo.add_argument("--nodes", type=int, default=3)
    p_demo.add_argument("--protocol", default="secagg+")
    p_demo.add_argument("--rounds", type=int, default=2)
    p_demo.add_argument("--dim", type=int, default=100)
    p_demo.add_argument("--seed", default="")
    p_demo.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    try:
        if args.cmd in ("app", "example"):
            from fl.flower.example.server_app import RUN_CONFIG as EXAMPLE_CONFIG

            keys = RUN_CONFIG if args.cmd == "app" else EXAMPLE_CONFIG
            overrides = {}
            for item in args.set:
                key, sep, text = item.partition("=")
                if not sep or key not in keys:
                    raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of "
                                      f"{', '.join(keys)}")
                overrides[key] = _value(text)
            writer = write_app if args.cmd == "app" else example_app
            path = writer(args.dir, overrides)
            print(f"wrote {path / 'pyproject.toml'}; run it with: flwr run {path} <connection>")
            return 0
        with LocalDeployment(args.nodes, log=lambda s: print(s, file=sys.stderr)) as dep:
            log = dep.run({"protocol": args.protocol, "rounds": args.rounds, "dim": args.dim,
                           "seed": args.seed, "num-clients": args.nodes}, timeout=args.timeout)
        for line in log.splitlines():
            if "[secagg]" in line:
                print(line[line.index("[secagg]"):])
        return 0
    except (ConfigError, DeploymentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
