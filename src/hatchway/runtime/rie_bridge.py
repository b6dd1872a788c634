"""Reach a Lambda Runtime Interface Emulator in a container that has no network.

The local Lambda executor runs action containers with ``--network none`` (unless the action
asks for a network), so the emulator's TCP port cannot be reached from the host. This bridge is
the container's first process: it starts the emulator (which starts the Lambda runtime on the
first invocation), waits until the emulator listens, then relays every connection made to a
unix socket in a bind-mounted directory to the emulator. The socket appears (by an atomic rename)
only once the emulator accepts connections, so its existence means "ready". When the emulator
exits, so does the bridge, with its exit code.

    python3 -m hatchway.runtime.rie_bridge /hatchway/ctl/invoke.sock -- /rie /usr/local/bin/hatchway-lambda

Standard library only (it runs inside action images).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

EMULATOR_ADDRESS = ("127.0.0.1", 8080)
READY_SECONDS = 20.0


def _relay(client: socket.socket) -> None:
    """Copy bytes both ways between ``client`` and a new connection to the emulator."""
    try:
        upstream = socket.create_connection(EMULATOR_ADDRESS, timeout=5)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    peers = {client: upstream, upstream: client}
    selector = selectors.DefaultSelector()
    for sock in peers:
        selector.register(sock, selectors.EVENT_READ)
    open_ends = 2
    try:
        while open_ends:
            for key, _ in selector.select():
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(source)
                    with contextlib.suppress(OSError):
                        peers[source].shutdown(socket.SHUT_WR)
                    open_ends -= 1
                    continue
                peers[source].sendall(data)
    except OSError:
        pass
    finally:
        selector.close()
        client.close()
        upstream.close()


def _wait_listening(proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(EMULATOR_ADDRESS, timeout=0.5):
            return True
        time.sleep(0.01)
    return False


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: rie_bridge SOCKET -- EMULATOR [ARGS...]", file=sys.stderr)
        return 2
    path, command = argv[0], argv[2:]
    proc = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    if not _wait_listening(proc):
        proc.kill()
        print("the Lambda emulator did not start listening", file=sys.stderr)
        return proc.wait() or 1
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = Path(f"{path}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    server.bind(str(staging))
    staging.chmod(0o666)  # noqa: S103 - the gateway may run as another user than this container
    server.listen(64)
    staging.rename(path)

    def watch() -> None:
        code = proc.wait()
        with contextlib.suppress(OSError):
            Path(path).unlink()
        os._exit(code if code >= 0 else 128 - code)

    threading.Thread(target=watch, daemon=True).start()
    while True:
        client, _ = server.accept()
        threading.Thread(target=_relay, args=(client,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
