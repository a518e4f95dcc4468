"""Flower's own runtime on loopback: one SuperLink, N SuperNodes and ``flwr run``, as processes.

:class:`LocalFederation` is a context manager: it picks free ports, starts
``flower-superlink --insecure`` and one ``flower-supernode`` per client (node config
``partition-id=i num-partitions=N``), and on exit stops every process group it started (the
ServerApp and ClientApp subprocesses Flower spawns included), also after an error or a timeout.
Flower's configuration lives in ``FLWR_HOME`` inside the output folder, never in ``~/.flwr``;
Flower's update check and telemetry are off.
"""

import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from pathlib import Path


def free_ports(n):
    """``n`` distinct TCP ports free on 127.0.0.1 now (held together while they are picked)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def flower_command(name):
    """The path of one of Flower's console scripts (``flower-superlink``, ``flwr``, ...)."""
    here = Path(sysconfig.get_path("scripts")) / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"Flower's '{name}' command is not installed: pip install 'spearkit[flower]'")
    return found


def processes_with_home(home):
    """Ids of the live processes whose environment has ``FLWR_HOME=home`` (Linux ``/proc``): the
    processes of one :class:`LocalFederation`, including those Flower detaches from its group."""
    marker = f"FLWR_HOME={home}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:  # exited meanwhile, or not ours to read
            pass
    return found


def _signal(pid, sig, *, group=False):
    """Send ``sig`` to a process (or its process group) that may have exited already."""
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except ProcessLookupError:
        pass


def _wait_for_port(port, proc, log, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the SuperLink exited with code {proc.returncode}; see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"the SuperLink did not open port {port} within {timeout} s; see {log}")


class LocalFederation:
    """A SuperLink and ``n_nodes`` SuperNodes on 127.0.0.1, logs in ``workdir/logs``."""

    def __init__(self, workdir, n_nodes, *, startup_timeout=60.0):
        self.workdir = Path(workdir)
        self.n_nodes = int(n_nodes)
        self.startup_timeout = startup_timeout
        self.procs, self._logs = [], []
        self.port = None
        self.superlink_ready_s = None  # seconds from the SuperLink's start to its open port
        home = self.workdir / "flwr-home"
        self.env = {**os.environ, "FLWR_HOME": str(home), "FLWR_DISABLE_UPDATE_CHECK": "1",
                    "FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1",
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}

    def _start(self, args, log_name):
        log = open(self.workdir / "logs" / log_name, "w")  # noqa: SIM115 - closed with the process
        self._logs.append(log)
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def __enter__(self):
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        home = Path(self.env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        try:
            self.port, *node_ports = free_ports(1 + self.n_nodes)
            (home / "config.toml").write_text(
                f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{self.port}"\n'
                "insecure = true\n")
            link = self._start([flower_command("flower-superlink"), "--insecure", "--host", "127.0.0.1",
                                "--port", str(self.port), "--disable-runtime-dependency-installation"],
                               "superlink.log")
            t0 = time.monotonic()
            _wait_for_port(self.port, link, self.workdir / "logs" / "superlink.log", self.startup_timeout)
            self.superlink_ready_s = time.monotonic() - t0
            for i, node_port in enumerate(node_ports):
                self._start([flower_command("flower-supernode"), "--insecure", "--superlink",
                             f"127.0.0.1:{self.port}", "--host", "127.0.0.1", "--port", str(node_port),
                             "--node-config", f"partition-id={i} num-partitions={self.n_nodes}"],
                            f"supernode-{i}.log")
        except BaseException:
            self.stop()
            raise
        return self

    def run(self, app_dir, timeout, *, on_poll=None):
        """``flwr run APP_DIR --stream`` against this SuperLink, ``on_poll()`` called twice a second
        while it runs; returns its output (raises on failure or after ``timeout`` seconds)."""
        log_path = self.workdir / "logs" / "flwr-run.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen([flower_command("flwr"), "run", str(app_dir), "loopback", "--stream"],
                                    stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir,
                                    start_new_session=True)
            self.procs.append(proc)
            deadline = time.monotonic() + timeout
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the Flower run did not finish within {timeout:.0f} s; logs in "
                                       f"{self.workdir / 'logs'}")
                if on_poll is not None:
                    on_poll()
                time.sleep(0.5)
        output = log_path.read_text()
        if proc.returncode != 0:
            raise RuntimeError(f"'flwr run' failed (exit {proc.returncode}):\n{output}")
        return output

    def stop(self):
        """Stop every process group started (SIGTERM, then SIGKILL after 5 s), then any process
        left with this federation's ``FLWR_HOME``."""
        for proc in self.procs:
            _signal(proc.pid, signal.SIGTERM, group=True)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal(proc.pid, signal.SIGKILL, group=True)  # the group's ServerApp / ClientApp subprocesses
            proc.wait()
        self.procs = []
        for log in self._logs:
            log.close()
        self._logs = []
        deadline = time.monotonic() + 5
        while (left := [p for p in processes_with_home(self.env["FLWR_HOME"]) if p != os.getpid()]) \
                and time.monotonic() < deadline:
            for pid in left:
                _signal(pid, signal.SIGKILL)
            time.sleep(0.1)

    def __exit__(self, *exc):
        self.stop()
        return False

