"""A scripted Redis on loopback, for what a real redis-server will not do:
answer MOVED to an address of the test's choice, or name nodes that are
other fakes.  FakeRedis parses the RESP commands a client sends, records
each (as a list of bytes), and answers with what its `answer(args)`
returns (RESP bytes, see the encoders below); the default answers the
handshake (AUTH, SELECT, PING), MULTI/EXEC and reads as an empty cache.
It counts the connections it accepted and those the client closed."""

import socket
import threading


# A thread blocked in accept() or recv() on a socket that another thread
# closes is not woken on Linux: it stays in the call on the old socket,
# and a call it makes next can land on whatever the process opened since
# under the same descriptor number (seen: a stopped fake answering
# "-ERR unknown command" to nginx on a later test's upstream connection,
# which nginx passed to the client as an HTTP/0.9 body).  So stop() only
# shuts the sockets down, which wakes every call on them, waits for the
# threads to end, and closes the sockets after: no thread of a stopped
# fake is left to use a descriptor, and no socket is closed while a
# thread may still be entering a call on it.

def start_thread(target, *args):
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def shut(sock):
    """Wakes every thread blocked on the socket: recv() reads the end,
    accept() fails (Linux answers EINVAL on a listener shut down)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def stop_threads(sockets, threads, timeout=10.0):
    for sock in list(sockets):
        shut(sock)
    stuck = 0
    for t in list(threads):
        t.join(timeout)
        stuck += t.is_alive()
    # a thread that did not end may still enter a call on its socket:
    # those stay open rather than have their numbers reused under it
    assert not stuck, "%d of a fake's threads did not end" % stuck
    for sock in list(sockets):
        sock.close()


class Served:
    """What a fake server owns: its listening socket, the connections it
    accepted (or opened for them) and the threads that serve them.
    stop() ends them all as said above."""

    def __init__(self, listener):
        self.listener = listener
        self.lock = threading.Lock()
        self.running = True
        self.conns = []
        self.threads = []

    def adopt(self, conns, *jobs):
        """Connections of one client and the threads, (target, args), that
        serve them; False, the connections closed, once stop() has taken
        its list."""
        with self.lock:
            if not self.running:
                for conn in conns:
                    conn.close()
                return False
            self.conns += conns
            self.threads += [start_thread(target, *args)
                             for target, args in jobs]
            return True

    def stop(self):
        with self.lock:
            self.running = False
            sockets = [self.listener] + self.conns
            threads = list(self.threads)
        stop_threads(sockets, threads)


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


def listener():
    """A listening socket on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


class FakeRedis(Served):
    def __init__(self, answer=None):
        super().__init__(listener())
        self.commands = []
        self.accepted = 0
        self.closed = 0
        self.answer = answer or self.default
        self.in_multi = {}
        self.port = self.listener.getsockname()[1]
        self.threads.append(start_thread(self.serve))

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
                conn, _ = self.listener.accept()
            except OSError:
                return
            if not self.adopt([conn], (self.client, (conn,))):
                return
            with self.lock:
                self.accepted += 1

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
            shut(conn)                          # the client sees the end
            with self.lock:
                self.closed += 1

    def open_connections(self):
        with self.lock:
            return self.accepted - self.closed



class SlowStart(Served):
    """A proxy in front of a real Redis whose first answer on each
    connection (the handshake's) comes `delay` seconds late, as from a
    loaded host; everything after passes at once."""

    def __init__(self, port, delay):
        super().__init__(listener())
        self.target = port
        self.delay = delay
        self.port = self.listener.getsockname()[1]
        self.threads.append(start_thread(self.serve))

    def serve(self):
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            if not self.adopt([conn, up], (self.pipe, (conn, up, 0)),
                              (self.pipe, (up, conn, self.delay))):
                return

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
            shut(src)
            shut(dst)
