"""A TCP fault proxy for tests: sits in front of a real server and misbehaves on demand.

Modes, switchable at any time with :meth:`FaultProxy.set_mode` (each switch restarts
the byte counts of open connections):

- ``pass``: relay both ways.
- ``refuse``: stop listening (clients get ECONNREFUSED) and reset open connections.
- ``reset_after``: relay, then reset (RST) a connection after ``bytes`` in either way.
- ``blackhole``: accept and swallow everything, answer nothing.
- ``slow``: relay the server's bytes at ``bps`` bytes per second.
- ``truncate_after``: relay ``bytes`` of the server's answer, then close cleanly (FIN).
- ``corrupt_after``: relay, but flip the bits of byte number ``bytes`` of the
  connection, in the server's answer (``side="upstream"``, the default) or in what the
  client sends (``side="client"``).
- ``respond``: answer the next request on a connection with the raw bytes ``data``
  and close it (canned HTTP errors such as S3's ``503 SlowDown``).

``accepted`` counts connections, so a test can prove how often a client tried.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_TICK_S = 0.05
_BUF = 64 * 1024


@dataclass(frozen=True)
class Mode:
    name: str = "pass"
    params: dict[str, Any] = field(default_factory=dict)
    generation: int = 0


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Relay:
    """One client connection and its upstream, relayed by one thread."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.count = 0
        self.generation = -1
        self.request = b""
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.upstream = socket.create_connection(self.proxy.target, timeout=5)
            self._loop()
        except OSError:
            pass
        finally:
            self.close(reset=self.proxy.mode.name in ("refuse", "reset_after"))

    def close(self, *, reset: bool = False) -> None:
        if self.done.is_set():
            return
        self.done.set()
        for sock in (self.client, self.upstream):
            if sock is not None:
                _reset(sock) if reset else sock.close()

    def _loop(self) -> None:
        assert self.upstream is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.client, selectors.EVENT_READ, "client")
            sel.register(self.upstream, selectors.EVENT_READ, "upstream")
            while not self.done.is_set() and not self.proxy.stopping.is_set():
                for key, _ in sel.select(_TICK_S):
                    if not self._move(key.data):
                        return

    def _mode(self) -> Mode:
        mode = self.proxy.mode
        if mode.generation != self.generation:
            self.generation, self.count, self.request = mode.generation, 0, b""
        return mode

    def _move(self, side: str) -> bool:
        """Relay one read from ``side``; False ends the connection."""
        source = self.client if side == "client" else self.upstream
        assert source is not None and self.upstream is not None
        data = source.recv(_BUF)
        if not data:
            return False
        mode = self._mode()
        if mode.name == "blackhole":
            return True
        if mode.name == "respond" and side == "client":
            return self._respond(data, mode.params["data"])
        if mode.name == "reset_after" and self.count + len(data) > mode.params["bytes"]:
            self.close(reset=True)
            return False
        if mode.name == "truncate_after" and side == "upstream":
            return self._truncate(data, mode.params["bytes"])
        if mode.name == "slow" and side == "upstream":
            return self._drip(data, mode.params["bps"])
        if mode.name == "corrupt_after" and side == mode.params.get("side", "upstream"):
            data = self._flip(data, mode.params["bytes"])
        self.count += len(data)
        (self.upstream if side == "client" else self.client).sendall(data)
        return True

    def _respond(self, data: bytes, answer: bytes) -> bool:
        self.request += data
        if b"\r\n\r\n" not in self.request:
            return True
        self.client.sendall(answer)
        return False

    def _truncate(self, data: bytes, limit: int) -> bool:
        room = max(0, limit - self.count)
        self.client.sendall(data[:room])
        self.count += min(room, len(data))
        return len(data) <= room

    def _flip(self, data: bytes, at: int) -> bytes:
        index = at - self.count
        if 0 <= index < len(data):
            data = data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]
        return data

    def _drip(self, data: bytes, bps: int) -> bool:
        piece = max(1, bps // 10)
        for start in range(0, len(data), piece):
            if self.proxy.stopping.wait(piece / bps) or self.done.is_set():
                return False
            self.client.sendall(data[start : start + piece])
        self.count += len(data)
        return True


class FaultProxy:
    """``127.0.0.1:port`` → ``target``, with switchable faults. Use start()/stop()."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode = Mode()
        self.accepted = 0
        self.port = 0
        self.stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._relays: list[_Relay] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> FaultProxy:
        self._listen()
        self._spawn(self._accept_loop, "proxy-accept")
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stopping.set()
        self._close_listener()
        for relay in list(self._relays):
            relay.close()
        deadline = time.monotonic() + timeout_s
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"fault proxy threads did not stop: {alive}")

    def set_mode(self, name: str, **params: Any) -> None:
        """Switch every connection, open or new, to mode ``name``."""
        with self._lock:
            self.mode = Mode(name, params, self.mode.generation + 1)
        if name == "refuse":
            self._close_listener()
            for relay in list(self._relays):
                relay.close(reset=True)
        elif self._listener is None:
            self._listen()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._listener = sock

    def _close_listener(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            sock.close()

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            sock = self._listener
            if sock is None:
                self.stopping.wait(_TICK_S)
                continue
            try:
                sock.settimeout(_TICK_S)
                client, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        self.accepted += 1
        client.settimeout(None)
        relay = _Relay(self, client)
        self._relays = [r for r in self._relays if not r.done.is_set()] + [relay]
        self._spawn(relay.run, f"proxy-relay-{self.accepted}")

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()
