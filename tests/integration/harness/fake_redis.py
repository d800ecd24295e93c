"""A scripted Redis on loopback, for what a real redis-server will not do:
answer MOVED to an address of the test's choice, or name nodes that are
other fakes.  FakeRedis parses the RESP commands a client sends, records
each (as a list of bytes), and answers with what its `answer(args)`
returns (RESP bytes, see the encoders below); the default answers the
handshake (AUTH, SELECT, PING), MULTI/EXEC and reads as an empty cache.
It counts the connections it accepted and those the client closed."""

import socket
import threading


def simple(s):
    return b"+" + s.encode() + b"\r\n"


def error(s):
    return b"-" + s.encode() + b"\r\n"


def integer(n):
    return b":%d\r\n" % n


def bulk(b):
    if b is None:
        return b"$-1\r\n"
    if isinstance(b, str):
        b = b.encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def array(items):
    out = b"*%d\r\n" % len(items)
    for i in items:
        if isinstance(i, int):
            out += integer(i)
        elif isinstance(i, (list, tuple)):
            out += array(i)
        elif isinstance(i, bytes) and i[:1] in b"+-:$*" and i.endswith(b"\r\n"):
            out += i
        else:
            out += bulk(i)
    return out


def cluster_slots(*ranges):
    """CLUSTER SLOTS: ranges of (first, last, port), all on 127.0.0.1."""
    return array([[first, last, ["127.0.0.1", port, "id%d" % port]]
                  for first, last, port in ranges])


def parse(buf):
    """One RESP array of bulk strings from buf: (args, rest), or (None, buf)
    if it is not all there yet."""
    if not buf.startswith(b"*"):
        # an inline command (redis-cli style)
        if b"\r\n" not in buf:
            return None, buf
        line, rest = buf.split(b"\r\n", 1)
        return line.split(), rest
    end = buf.find(b"\r\n")
    if end < 0:
        return None, buf
    n = int(buf[1:end])
    pos = end + 2
    args = []
    for _ in range(n):
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None, buf
        size = int(buf[pos + 1:end])
        start = end + 2
        if len(buf) < start + size + 2:
            return None, buf
        args.append(buf[start:start + size])
        pos = start + size + 2
    return args, buf[pos:]


class FakeRedis:
    def __init__(self, answer=None):
        self.commands = []
        self.accepted = 0
        self.closed = 0
        self.lock = threading.Lock()
        self.answer = answer or self.default
        self.in_multi = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.running = True
        threading.Thread(target=self.serve, daemon=True).start()

    def default(self, args, conn):
        name = args[0].upper()
        if name in (b"AUTH", b"SELECT", b"ASKING"):
            return simple("OK")
        if name == b"PING":
            return simple("PONG")
        if name == b"MULTI":
            self.in_multi[conn] = 0
            return simple("OK")
        if name == b"EXEC":
            n = self.in_multi.pop(conn, 0)
            return array([integer(1)] * n)
        if name == b"DISCARD":
            self.in_multi.pop(conn, None)
            return simple("OK")
        if conn in self.in_multi:
            self.in_multi[conn] += 1
            return simple("QUEUED")
        if name == b"HMGET":                 # no such key: every value nil
            return array([None] * (len(args) - 2))
        if name in (b"HGETALL", b"SCAN"):
            return array([b"0", []]) if name == b"SCAN" else array([])
        return error("ERR unknown command in the fake")

    def names(self):
        """The commands received, by name."""
        with self.lock:
            return [c[0].upper().decode() for c in self.commands]

    def serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(conn)
            threading.Thread(target=self.client, args=(conn,),
                             daemon=True).start()

    def client(self, conn):
        buf = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                while True:
                    args, buf = parse(buf)
                    if args is None:
                        break
                    with self.lock:
                        self.commands.append(args)
                    reply = self.answer(args, conn)
                    if reply:
                        conn.sendall(reply)
        except OSError:
            pass
        finally:
            with self.lock:
                self.closed += 1
            try:
                conn.close()
            except OSError:
                pass

    def open_connections(self):
        with self.lock:
            return self.accepted - self.closed

    def stop(self):
        self.running = False
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass


class SlowStart:
    """A proxy in front of a real Redis whose first answer on each
    connection (the handshake's) comes `delay` seconds late, as from a
    loaded host; everything after passes at once."""

    def __init__(self, port, delay):
        self.target = port
        self.delay = delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [conn, up]
            threading.Thread(target=self.pipe, args=(conn, up, 0),
                             daemon=True).start()
            threading.Thread(target=self.pipe, args=(up, conn, self.delay),
                             daemon=True).start()

    @staticmethod
    def pipe(src, dst, delay):
        import time
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if delay:
                    time.sleep(delay)
                    delay = 0
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
