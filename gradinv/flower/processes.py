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


def free_port():
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        self.procs = []
        self.port = None
        self.superlink_ready_s = None  # seconds from the SuperLink's start to its open port
        home = self.workdir / "flwr-home"
        self.env = {**os.environ, "FLWR_HOME": str(home), "FLWR_DISABLE_UPDATE_CHECK": "1",
                    "FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1",
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}

    def _start(self, args, log_name):
        log = open(self.workdir / "logs" / log_name, "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir,
                                start_new_session=True)
        proc.log = log
        self.procs.append(proc)
        return proc

    def __enter__(self):
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        home = Path(self.env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        try:
            self.port = free_port()
            (home / "config.toml").write_text(
                f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{self.port}"\n'
                "insecure = true\n")
            link = self._start([flower_command("flower-superlink"), "--insecure", "--host", "127.0.0.1",
                                "--port", str(self.port), "--disable-runtime-dependency-installation"],
                               "superlink.log")
            t0 = time.monotonic()
            _wait_for_port(self.port, link, self.workdir / "logs" / "superlink.log", self.startup_timeout)
            self.superlink_ready_s = time.monotonic() - t0
            for i in range(self.n_nodes):
                self._start([flower_command("flower-supernode"), "--insecure", "--superlink",
                             f"127.0.0.1:{self.port}", "--host", "127.0.0.1", "--port", str(free_port()),
                             "--node-config", f"partition-id={i} num-partitions={self.n_nodes}"],
                            f"supernode-{i}.log")
        except BaseException:
            self.stop()
            raise
        return self

    def run(self, app_dir, timeout):
        """``flwr run APP_DIR --stream`` against this SuperLink; returns its output (raises on
        failure or after ``timeout`` seconds)."""
        cmd = [flower_command("flwr"), "run", str(app_dir), "loopback", "--stream"]
        try:
            done = subprocess.run(cmd, env=self.env, cwd=self.workdir, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise TimeoutError(f"the Flower run did not finish within {timeout} s; logs in "
                               f"{self.workdir / 'logs'}") from e
        (self.workdir / "logs" / "flwr-run.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"'flwr run' failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout

    def stop(self):
        """Stop every process group started (SIGTERM, then SIGKILL after 5 s), then any process
        left with this federation's ``FLWR_HOME``."""
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            try:  # children of the group (ServerApp / ClientApp subprocesses) that outlived it
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.log.close()
        self.procs = []
        deadline = time.monotonic() + 5
        while (left := [p for p in processes_with_home(self.env["FLWR_HOME"]) if p != os.getpid()]) \
                and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def __exit__(self, *exc):
        self.stop()
        return False

