"""A TCP proxy on loopback that can hold a connection's replies: the test
says which request to watch for (bytes the client sends) and for how long
to hold what the server answers on that connection, once.  Enough to put
a Redis reply late on one worker's connection while another worker's
commands go through (a purge racing a lookup)."""

import select
import socket
import time

from harness.fake_redis import Served, listener, shut, start_thread


class HoldingProxy(Served):
    def __init__(self, port):
        super().__init__(listener())
        self.target = ("127.0.0.1", port)
        self.port = self.listener.getsockname()[1]
        self.watch = None           # bytes that arm a hold
        self.seconds = 0.0
        self.held = 0               # holds that happened

    def start(self):
        self.threads.append(start_thread(self._accept))
        return self

    def hold_next(self, watch, seconds):
        with self.lock:
            self.watch = watch
            self.seconds = seconds

    def _accept(self):
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            if not self.adopt([client, server],
                              (self._pipe, (client, server))):
                return

    def _pipe(self, client, server):
        until = 0.0
        pending = b""
        try:
            while True:
                r, _, _ = select.select([client, server], [], [], 0.02)
                now = time.monotonic()
                if pending and now >= until:
                    client.sendall(pending)
                    pending = b""
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        with self.lock:
                            if self.watch and self.watch in data:
                                until = time.monotonic() + self.seconds
                                self.watch = None
                                self.held += 1
                        server.sendall(data)
                    elif now < until or pending:
                        pending += data
                    else:
                        client.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            shut(client)                        # both peers see the end
            shut(server)
