"""A PostgreSQL that stops answering: a TCP proxy on loopback that forwards each connection to the real server
through its start-up and authentication, then goes silent both ways at the client's first query, with its
sockets still open (as a stalled backend or a dead network path does: statement_timeout is the server's to
enforce, and the server never hears the query)."""

from __future__ import annotations

import selectors
import socket
import threading


class StallingProxy:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        self.stalled = 0  # connections that went silent
        self._thread = threading.Thread(target=self._accept, name="stalling-proxy", daemon=True)

    def __enter__(self) -> StallingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for s in self._sockets:
            s.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            threading.Thread(target=self._forward, args=(client, server), daemon=True).start()

    def _forward(self, client: socket.socket, server: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, server)
            selector.register(server, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.05):
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    except OSError:
                        return
                    if not data:
                        return
                    if key.fileobj is client and data[:1] in (b"Q", b"P"):
                        self.stalled += 1
                        self._stop.wait()  # silent, both sockets open, until the proxy closes
                        return
                    key.data.sendall(data)
