"""A scripted upstream for the tests of streams and flights: an HTTP server
on a free loopback port whose every answer is a script the test sets,
a status, headers and body pieces each sent after a pause, then the
connection closed (the end of a close-delimited body, as a stream's).

    up = Scripted().start()
    up.script = lambda path, body: Answer(200, {"Content-Type": "..."},
                                          [(0.5, b"data: ..."), ...])
    up.requests          # how many answers were asked for

"""

import http.server
import socketserver
import threading
import time


class Answer:
    def __init__(self, status=200, headers=None, pieces=(), length=None,
                 delay=0.0):
        self.delay = delay              # seconds before the status line
        self.status = status
        self.headers = dict(headers or {})
        self.pieces = list(pieces)      # (seconds before, bytes)
        self.length = length            # Content-Length, or close-delimited


def sse(*events):
    """SSE text of the events: each a data string, or (type, data)."""
    out = b""
    for ev in events:
        if isinstance(ev, tuple):
            out += b"event: %s\n" % ev[0].encode()
            ev = ev[1]
        out += b"data: %s\n\n" % (ev.encode() if isinstance(ev, str) else ev)
    return out


def stream(*pieces, status=200):
    """A text/event-stream answer of (pause, bytes) pieces."""
    return Answer(status, {"Content-Type": "text/event-stream",
                           "Cache-Control": "no-cache"}, pieces)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


class Scripted:
    def __init__(self):
        self.script = lambda path, body: Answer(200, {}, [(0, b"ok")])
        self.requests = 0
        self.bodies = []
        self._lock = threading.Lock()
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with up._lock:
                    up.requests += 1
                    up.bodies.append(body)
                a = up.script(self.path, body)
                if a.delay:
                    time.sleep(a.delay)
                self.send_response_only(a.status)
                for k, v in a.headers.items():
                    self.send_header(k, v)
                if a.length is not None:
                    self.send_header("Content-Length", str(a.length))
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.flush()
                    for pause, data in a.pieces:
                        if pause:
                            time.sleep(pause)
                        self.wfile.write(data)
                        self.wfile.flush()
                except OSError:
                    pass
                self.close_connection = True

            do_GET = _answer
            do_POST = _answer

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def start(self):
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
