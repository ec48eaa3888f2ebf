"""A real Flower deployment on this machine: one SuperLink and N SuperNodes on 127.0.0.1.

:class:`LocalDeployment` starts ``flower-superlink --insecure`` and ``flower-supernode
--insecure`` processes exactly as one would by hand, only bound to 127.0.0.1 on free ports,
with a private ``FLWR_HOME`` in a temporary folder (nothing under ``~/.flwr`` is read or
written), then submits the app with ``flwr run`` and stops everything afterwards::

    with LocalDeployment(3) as dep:
        dep.run({"protocol": "secagg+", "dim": 100, "rounds": 2, "seed": 7}, timeout=300)

What it runs, per process (Flower 1.41 serves the Fleet, Control and Runtime APIs of the
SuperLink on one HTTP port)::

    flower-superlink --insecure --host 127.0.0.1 --port P --disable-runtime-dependency-installation
    flower-supernode --insecure --superlink 127.0.0.1:P --host 127.0.0.1 --port Q_i \\
                     --node-config "partition-id=i num-partitions=N secagg-loopback=true"
    flwr run APP_DIR local --run-config RUN.toml --stream
    # with FLWR_HOME/config.toml naming the connection: [superlink.local] 127.0.0.1:P

Cleanup is not optional: every process starts in its own session, under a small launcher that
asks Linux to SIGTERM it if this process dies (``PR_SET_PDEATHSIG``); :meth:`stop` (also run
by ``with``, at interpreter exit and by the garbage collector) sends SIGTERM to each process
group and to every descendant it finds (Flower's SuperExec and app processes), waits a
bounded time, then SIGKILLs what is left. Every wait has a timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

import tomli_w

from fl.flower.settings import RUN_CONFIG
from secagg.errors import ConfigError, SecAggError

__all__ = ["DEMO_COMPONENTS", "EXAMPLE_COMPONENTS", "DeploymentError", "LocalDeployment",
           "example_app", "free_port", "tool_path", "write_app"]

HOST = "127.0.0.1"
APP_NAME = "secagg-flower"
CONNECTION = "local"

# Runs before the real command: die with the parent (Linux), then exec.
_LAUNCHER = (
    "import os, signal, sys\n"
    "try:\n"
    "    import ctypes\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)\n"
    "except Exception:\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


class DeploymentError(SecAggError):
    """A Flower process did not start, or a run failed or timed out (with the log tail)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


#: the components of the bundled demo app, and of the example training app.
DEMO_COMPONENTS = {"serverapp": "fl.flower.server_app:app",
                   "clientapp": "fl.flower.client_app:app"}
EXAMPLE_COMPONENTS = {"serverapp": "fl.flower.example.server_app:app",
                      "clientapp": "fl.flower.example.client_app:app"}


def write_app(directory: str | os.PathLike[str],
              run_config: Mapping[str, Any] | None = None, *,
              components: Mapping[str, str] | None = None,
              defaults: Mapping[str, Any] | None = None) -> Path:
    """Write the Flower app project (a ``pyproject.toml``) that ``flwr run`` submits.

    The app holds no code: its components are ``fl.flower.server_app:app`` and
    ``fl.flower.client_app:app`` from the installed ``secagg`` package, which every host of
    the deployment must have (``pip install 'secagg[flower]'``). ``[tool.flwr.app.config]``
    lists every run-config key with its default (:data:`fl.flower.settings.RUN_CONFIG`),
    updated with ``run_config``. ``components`` and ``defaults`` name another app (e.g.
    :data:`EXAMPLE_COMPONENTS` with :data:`fl.flower.example.server_app.RUN_CONFIG`).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    config = dict(RUN_CONFIG if defaults is None else defaults)
    config.update(run_config or {})
    doc = {
        "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
        "project": {"name": APP_NAME, "version": "1.0.0",
                    "description": "secagg secure aggregation over Flower",
                    "license": "Apache-2.0", "dependencies": []},
        "tool": {"flwr": {"app": {
            "publisher": "secagg",
            "components": dict(components or DEMO_COMPONENTS),
            "config": config,
        }}},
    }
    (d / "pyproject.toml").write_bytes(tomli_w.dumps(doc).encode())
    return d


def tool_path(path: str) -> str:
    """``path`` with the folder of this interpreter's Flower executables in front.

    The SuperLink starts ``flower-superexec`` and the SuperNode ``flwr-clientapp`` by name,
    so they must be on the children's ``PATH`` even when this interpreter's ``bin`` (a venv
    that was never activated) is not on ours.
    """
    dirs = [str(Path(sys.executable).parent)]
    found = shutil.which("flower-superlink")
    if found:
        dirs.append(str(Path(found).parent))
    parts = [p for p in path.split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys([*dirs, *parts]))


def example_app(directory: str | os.PathLike[str],
                run_config: Mapping[str, Any] | None = None) -> Path:
    """Write the example training app (:mod:`fl.flower.example`) into ``directory``."""
    from fl.flower.example.server_app import RUN_CONFIG as EXAMPLE_CONFIG

    return write_app(directory, run_config, components=EXAMPLE_COMPONENTS,
                     defaults=EXAMPLE_CONFIG)


def _tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise ConfigError(f"{name} is not installed; pip install 'secagg[flower]' (flwr 1.41)")
    return found


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return kids
    for e in entries:
        if not e.isdigit():
            continue
        try:
            stat = Path(f"/proc/{e}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(e))
    return kids


def _descendants(pids: list[int]) -> list[int]:
    kids, out, todo = _children(), [], list(pids)
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _signal(pid: int, sig: int, group: bool = False) -> None:
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_all(procs: list[subprocess.Popen[bytes]], grace: float) -> None:
    live = [p for p in procs if p.poll() is None]
    extra = _descendants([p.pid for p in procs])
    for p in live:
        _signal(p.pid, signal.SIGTERM, group=True)
    for pid in extra:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        if p.poll() is None:
            _signal(p.pid, signal.SIGKILL, group=True)
    for pid in extra + _descendants([p.pid for p in procs]):
        _signal(pid, signal.SIGKILL)
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class LocalDeployment:
    """A SuperLink and ``num_nodes`` SuperNodes on 127.0.0.1 (see the module docstring).

    Args:
        num_nodes: SuperNodes to start; node ``i`` gets node config ``partition-id=i
            num-partitions=num_nodes secagg-loopback=true`` (a test node: it accepts the
            run's seed and job folder, see :mod:`fl.flower.client_app`), plus
            ``node_config(i)`` if given.
        workdir: where logs, ``FLWR_HOME``, the app and run configs go; a fresh private
            temporary folder (removed by :meth:`stop` unless ``keep``) by default.
        startup_timeout: seconds for the SuperLink to answer and every SuperNode to register.
        app: ``app(directory) -> directory``, writes the app ``flwr run`` submits (default:
            :func:`write_app`, the demo app).

    Raises:
        DeploymentError: from :meth:`start` or :meth:`run`, with the relevant log tail.
    """

    def __init__(self, num_nodes: int, *, workdir: str | os.PathLike[str] | None = None,
                 startup_timeout: float = 120.0, keep: bool = False,
                 node_config: Callable[[int], Mapping[str, Any]] | None = None,
                 log: Callable[[str], None] | None = None,
                 app: Callable[[Path], Path] | None = None) -> None:
        if num_nodes < 1:
            raise ConfigError(f"a deployment needs at least 1 SuperNode, got {num_nodes}")
        self.num_nodes = 0
        self._want = num_nodes
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="secagg-flower-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        self.startup_timeout = startup_timeout
        self.keep = keep
        self._node_config = node_config
        self._log = log
        self._write_app = app or write_app
        self.port = 0
        self.node_ids: dict[int, int] = {}
        self._node_cmd: dict[int, str] = {}
        self._node_proc: dict[int, subprocess.Popen[bytes]] = {}
        self._procs: list[subprocess.Popen[bytes]] = []
        self._files: list[Any] = []
        self._runs = 0
        # Runs at garbage collection or interpreter exit if stop() was never called.
        self._finalizer = weakref.finalize(self, _stop_all, self._procs, 5.0)

    # -- processes ---------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The environment of every Flower process of this deployment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_INTERNAL_")}
        env["PATH"] = tool_path(env.get("PATH", ""))
        env.update({"FLWR_HOME": str(self.workdir / "flwr-home"),
                    "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
                    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.05",
                    "PYTHONUNBUFFERED": "1"})
        return env

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        logf = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._files.append(logf)
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *cmd],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env, cwd=self.workdir, start_new_session=True,
        )
        self._procs.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 25) -> str:
        """The last ``lines`` lines of a process's log (``superlink``, ``supernode-0``, ...)."""
        try:
            text = (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def pids(self) -> list[int]:
        """Every process of this deployment now: those it started and their descendants."""
        mine = [p.pid for p in self._procs if p.poll() is None]
        return mine + _descendants(mine)

    def run_log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the latest ``flwr run``'s output."""
        return self.log_tail(f"run-{self._runs}", lines)

    def _fail(self, what: str, name: str) -> DeploymentError:
        return DeploymentError(f"{what}; last lines of {self.workdir / (name + '.log')}:\n"
                               f"{self.log_tail(name)}")

    def _superlink_ready(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://{HOST}:{self.port}/health", timeout=1.0) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> Self:
        """Start the SuperLink and the SuperNodes; return once every node has registered."""
        if self.port:
            return self
        home = self.workdir / "flwr-home"
        home.mkdir(exist_ok=True)
        self.port = free_port()
        (home / "config.toml").write_bytes(tomli_w.dumps({"superlink": {
            "default": CONNECTION,
            CONNECTION: {"address": f"{HOST}:{self.port}", "insecure": True}}}).encode())
        self._write_app(self.workdir / "app")
        sl = self._spawn("superlink", [
            _tool("flower-superlink"), "--insecure", "--host", HOST, "--port", str(self.port),
            "--disable-runtime-dependency-installation"])
        deadline = time.monotonic() + self.startup_timeout
        while not self._superlink_ready():
            if sl.poll() is not None or time.monotonic() > deadline:
                err = self._fail("the SuperLink did not start", "superlink")
                self.stop()
                raise err
            time.sleep(0.2)
        self.add_nodes(self._want)
        return self

    def add_nodes(self, k: int) -> None:
        """Start ``k`` more SuperNodes (partition ids continue) and wait until they register."""
        first = self.num_nodes
        for i in range(first, first + k):
            cfg: dict[str, Any] = {"partition-id": i, "num-partitions": max(self._want, first + k),
                                   "secagg-loopback": True,
                                   # the node's own memory of answered requests, kept with
                                   # the deployment (a restarted node i finds it again)
                                   "secagg-state-dir": str(self.workdir / f"node-{i}-state")}
            cfg.update(self._node_config(i) if self._node_config else {})
            node_cfg = " ".join(f"{key}={_toml_value(v)}" for key, v in cfg.items())
            self._start_node(i, node_cfg)
        self.num_nodes = first + k
        deadline = time.monotonic() + self.startup_timeout
        pattern = re.compile(r"SuperNode ID: (\d+)")
        for i in range(first, first + k):
            proc = self._procs[-(first + k - i)]
            while i not in self.node_ids:
                m = pattern.search(self.log_tail(f"supernode-{i}", 200))
                if m:
                    self.node_ids[i] = int(m.group(1))
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = self._fail(f"SuperNode {i} did not register", f"supernode-{i}")
                    self.stop()
                    raise err
                time.sleep(0.2)
        if self._log:
            self._log(f"Flower deployment up: SuperLink {HOST}:{self.port}, "
                      f"{self.num_nodes} SuperNodes")

    def _start_node(self, i: int, node_cfg: str) -> subprocess.Popen[bytes]:
        # Each SuperNode's own runtime API (what its ClientApp processes talk to) needs a
        # port of its own on a shared host: Flower's default, 9094, would collide.
        proc = self._spawn(f"supernode-{i}", [
            _tool("flower-supernode"), "--insecure", "--superlink", f"{HOST}:{self.port}",
            "--host", HOST, "--port", str(free_port()), "--node-config", node_cfg])
        self._node_cmd[i] = node_cfg
        self._node_proc[i] = proc
        return proc

    def kill_node(self, i: int) -> int:
        """SIGKILL SuperNode ``i`` and its ClientApp processes (a crash); returns its PID."""
        proc = self._node_proc[i]
        for pid in _descendants([proc.pid]):
            _signal(pid, signal.SIGKILL)
        _signal(proc.pid, signal.SIGKILL, group=True)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.node_ids.pop(i, None)
        return proc.pid

    def restart_node(self, i: int) -> None:
        """Start SuperNode ``i`` again (same node config) and wait until it registers."""
        pattern = re.compile(r"SuperNode ID: (\d+)")
        before = len(pattern.findall(self.log_tail(f"supernode-{i}", 100000)))
        proc = self._start_node(i, self._node_cmd[i])
        deadline = time.monotonic() + self.startup_timeout
        while True:
            found = pattern.findall(self.log_tail(f"supernode-{i}", 100000))
            if len(found) > before:
                self.node_ids[i] = int(found[-1])
                return
            if proc.poll() is not None or time.monotonic() > deadline:
                raise self._fail(f"SuperNode {i} did not register again", f"supernode-{i}")
            time.sleep(0.2)

    # -- runs --------------------------------------------------------------------------
    def start_run(self, run_config: Mapping[str, Any], *,
                  app_dir: Path | None = None) -> subprocess.Popen[bytes]:
        """Submit the app (``app_dir``, default the deployment's own) with ``flwr run ...
        --stream``; the process ends with the run."""
        if not self.port:
            raise ConfigError("start the deployment first")
        self._runs += 1
        name = f"run-{self._runs}"
        cfg = self.workdir / f"{name}.toml"
        cfg.write_bytes(tomli_w.dumps(dict(run_config)).encode())
        return self._spawn(name, [_tool("flwr"), "run", str(app_dir or self.workdir / "app"),
                                  CONNECTION,
                                  "--run-config", str(cfg), "--stream"])

    def run(self, run_config: Mapping[str, Any], *, timeout: float = 600.0,
            app_dir: Path | None = None) -> str:
        """Run the app to completion; returns its log (``flwr run --stream`` output).

        Raises:
            DeploymentError: the run did not finish within ``timeout`` seconds, or failed.
        """
        proc = self.start_run(run_config, app_dir=app_dir)
        name = f"run-{self._runs}"
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop_run(proc)
            raise self._fail(f"the run did not finish within {timeout:g}s", name) from None
        text = (self.workdir / f"{name}.log").read_text(errors="replace")
        if proc.returncode != 0 or "ServerApp raised an exception" in text:
            raise self._fail(f"the run failed (exit {proc.returncode})", name)
        return text

    def stop_run(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop a run early (``flwr stop``), then its ``flwr run`` process."""
        text = (self.workdir / f"run-{self._runs}.log").read_text(errors="replace")
        m = re.search(r"Successfully started run (\d+)", text)
        if m:
            try:
                subprocess.run([_tool("flwr"), "stop", m.group(1), CONNECTION], env=self.env,
                               cwd=self.workdir, timeout=30, capture_output=True, check=False)
            except subprocess.TimeoutExpired:
                pass
        _stop_all([proc], 5.0)

    def stop(self, grace: float = 10.0) -> None:
        """Stop every process (SIGTERM, then SIGKILL after ``grace`` seconds) and remove the
        work folder unless ``keep``. Safe to call twice."""
        _stop_all(self._procs, grace)
        for f in self._files:
            f.close()
        self._files.clear()
        if self._own_dir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.port = 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
