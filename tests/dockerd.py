"""A private dockerd for the container tier: own paths, own bridge, stopped by its PID.

Never touches a daemon's default paths (another engineer's or the system's daemon may own them).
The data root persists between runs (in ``~/.cache`` by default) so the base image and the
examples' layers are built once per machine; a second concurrent run that finds the data root
locked gets a throw-away one instead.

    python -m tests.dockerd start [STATE_DIR]   prints ``unix://...`` once the daemon answers
    python -m tests.dockerd stop unix://...      stops the daemon that answers there
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hatchway-test-docker"


@dataclass
class Dockerd:
    """A running private daemon."""

    state: Path
    run_dir: Path
    bridge: str
    pid: int
    host: str
    lock_fd: int | None = None

    def stop(self, timeout: float = 30.0) -> None:
        stop_daemon(self.state, self.run_dir, self.bridge, self.pid, timeout)
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def docker_available() -> str | None:
    """Why no daemon can be started here, or None if it can."""
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (apt-get install docker.io)"
    if os.geteuid() != 0:
        return "starting a private dockerd needs root"
    return None


def ensure_installed() -> str | None:
    """Install docker.io if it is missing and we may; returns why not, or None."""
    if shutil.which("dockerd") is not None:
        return docker_available()
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "dockerd is not installed and cannot be installed here (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "docker.io", "debootstrap"]):
        if subprocess.run(argv, env=env, capture_output=True, check=False).returncode != 0:
            return f"{' '.join(argv)} failed"
    return docker_available()


def _names(state: Path) -> tuple[Path, str]:
    tag = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:8]
    # unix socket paths are limited to ~107 bytes: keep the run dir short
    return Path(tempfile.gettempdir()) / f"hwd-{tag}", f"hwd{tag}"


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200-250.x that no interface or route of this host uses."""
    used = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=False)
    taken = set()
    for line in used.stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            taken.add(ipaddress.ip_network(first, strict=False))
    seed = int(hashlib.sha256(f"{os.getpid()}{time.time()}".encode()).hexdigest(), 16)
    for i in range(2000):
        n = (seed + i) % (51 * 256)
        candidate = ipaddress.ip_network(f"10.{200 + n // 256}.{n % 256}.0/24")
        if not any(candidate.overlaps(t) for t in taken if t.prefixlen > 0):
            return candidate
    raise RuntimeError("no free 10.x subnet for the docker bridge")


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True)


def _ping(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(2)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in conn.recv(256)
    except OSError:
        return False


def start(state: Path = DEFAULT_STATE, timeout: float = 60.0) -> Dockerd:
    """Start a daemon keeping its data under ``state`` (or a temporary one if that is in use)."""
    state.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(state / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        state = Path(tempfile.mkdtemp(prefix="hatchway-docker-"))
        (state / ".temporary").touch()
        lock_fd = os.open(state / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    run_dir, bridge = _names(state)
    run_dir.mkdir(parents=True, exist_ok=True)
    sock = run_dir / "docker.sock"
    pidfile = run_dir / "docker.pid"
    _stale(state, run_dir, bridge)
    subnet = _free_subnet()
    _run("ip", "link", "add", bridge, "type", "bridge")
    _run("ip", "addr", "add", f"{next(subnet.hosts())}/{subnet.prefixlen}", "dev", bridge)
    _run("ip", "link", "set", bridge, "up")
    log = (state / "dockerd.log").open("ab")
    proc = subprocess.Popen(
        [
            "dockerd",
            "--storage-driver=overlay2",
            "--iptables=false",
            "--ip6tables=false",
            f"--bridge={bridge}",
            f"--data-root={state / 'data'}",
            f"--exec-root={run_dir / 'exec'}",
            f"--pidfile={pidfile}",
            f"--host=unix://{sock}",
            "--log-level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        pass_fds=(lock_fd,),  # the daemon holds the data root's lock for as long as it lives
    )
    log.close()
    deadline = time.monotonic() + timeout
    while not _ping(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_daemon(state, run_dir, bridge, proc.pid, 10)
            tail = (state / "dockerd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"dockerd did not start:\n{tail}")
        time.sleep(0.1)
    (run_dir / "state").write_text(str(state))
    return Dockerd(state, run_dir, bridge, proc.pid, f"unix://{sock}", lock_fd)


def _stale(state: Path, run_dir: Path, bridge: str) -> None:
    """Clean up after a daemon of the same state dir that was not stopped (a killed CI run)."""
    pidfile = run_dir / "docker.pid"
    with contextlib.suppress(OSError, ValueError):
        stop_daemon(state, run_dir, bridge, int(pidfile.read_text()), 20)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


def stop_daemon(state: Path, run_dir: Path, bridge: str, pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    # network namespaces and layers a stopped daemon may leave mounted
    _unmount_under(run_dir)
    shutil.rmtree(run_dir / "exec", ignore_errors=True)
    if (state / ".temporary").exists():  # a throw-away data root (the cached one was in use)
        _unmount_under(state)
        shutil.rmtree(state, ignore_errors=True)


def _unmount_under(path: Path) -> None:
    """Unmount every mount point below ``path``, deepest first."""
    prefix = str(path.resolve()) + "/"
    try:
        with open("/proc/self/mounts", encoding="utf-8") as handle:
            points = [line.split()[1] for line in handle if line.split()[1].startswith(prefix)]
    except OSError:
        return
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def stop_host(host: str) -> None:
    """Stop the daemon started by :func:`start` that listens at ``host``."""
    run_dir = Path(host.removeprefix("unix://")).parent
    try:
        state = Path((run_dir / "state").read_text())
        pid = int((run_dir / "docker.pid").read_text())
    except (OSError, ValueError):
        return
    stop_daemon(state, run_dir, _names(state)[1], pid, 30)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "start"
    state = Path(argv[1]) if len(argv) > 1 else DEFAULT_STATE
    if command == "start":
        why = ensure_installed()
        if why:
            print(why, file=sys.stderr)
            return 1
        daemon = start(state)
        print(daemon.host)
        return 0
    if command == "stop":
        if len(argv) < 2 or not argv[1].startswith("unix://"):
            print("usage: python -m tests.dockerd stop unix://.../docker.sock", file=sys.stderr)
            return 2
        stop_host(argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
