"""A loopback TCP proxy whose live connections a test can cut (a broker 'network drop')."""

from __future__ import annotations

import contextlib
import socket
import threading


class DroppingProxy:
    """Forwards ``127.0.0.1:listen_port`` to ``127.0.0.1:target_port``; ``drop()`` resets every
    live connection, as a flaky network or a load balancer restart would; ``cut()`` also
    refuses new ones until ``restore()`` (an outage)."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.target_port = target_port
        self.down = False
        self._server = socket.create_server(("127.0.0.1", listen_port))
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def drop(self) -> int:
        """Reset all live connections; return how many were cut."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            conn.close()
        return len(conns)

    def cut(self) -> None:
        """Refuse new connections and reset the live ones."""
        self.down = True
        self.drop()

    def restore(self) -> None:
        """Forward new connections again."""
        self.down = False

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self.drop()
