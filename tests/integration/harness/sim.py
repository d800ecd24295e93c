"""ai-sim under test: one replica on an ephemeral loopback port.

ai-sim is started with `--port 0` and prints `listening 127.0.0.1:PORT`
once it is bound, the way libevent's examples/http-server.c reports its
socket; we read that line instead of guessing a free port, so there is no
race with other processes grabbing the port in between.
"""

import json
import os
import selectors
import signal
import subprocess
import tempfile
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__),
                                    "..", "..", ".."))
BINARY = os.environ.get("AGW_AI_SIM", os.path.join(REPO, "build", "ai-sim"))


class Sim:
    """Sim(binary, sim_id, *extra_args, wrapper=None, start_timeout=None)

    `binary` None means $AGW_AI_SIM or <repo>/build/ai-sim.  `wrapper` is a
    command prefix such as ["valgrind", "--leak-check=full", ...]; the
    wrapped process's stderr (valgrind's report) is kept in a temp file and
    returned by output().
    """

    def __init__(self, binary=None, sim_id="sim-1", *extra_args,
                 wrapper=None, start_timeout=None):
        self.binary = binary or BINARY
        self.id = sim_id
        self.extra_args = [str(a) for a in extra_args]
        self.wrapper = list(wrapper or [])
        # valgrind needs seconds just to load the binary
        self.start_timeout = start_timeout or (60.0 if self.wrapper else 10.0)
        self.proc = None
        self.port = None
        self.url = None
        self.returncode = None
        self._stderr = None

    @property
    def argv(self):
        return self.wrapper + [self.binary, "--port", "0",
                               "--host", "127.0.0.1", "--id", self.id] \
            + self.extra_args

    def start(self):
        self._stderr = tempfile.TemporaryFile(prefix="ai-sim-stderr-")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=self._stderr)
        line = self._read_line(self.start_timeout)

        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError("ai-sim did not start (%r): %s\n%s"
                               % (line, " ".join(self.argv), self.output()))

        host, _, port = line[len("listening "):].rpartition(":")
        self.port = int(port)
        self.url = "http://%s:%d" % (host, self.port)
        return self

    def _read_line(self, timeout):
        """The first stdout line, or "" on EOF/timeout: never blocks past
        the deadline even if the process hangs before printing."""
        buf = b""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    break
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
        return buf.decode("utf-8", "replace").split("\n", 1)[0].strip()

    def stop(self, timeout=None):
        """SIGTERM, wait, and return the exit code (SIGKILL if hung)."""
        if self.proc is None:
            return self.returncode
        if timeout is None:
            timeout = 60.0 if self.wrapper else 10.0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        self.proc.stdout.close()
        self.proc = None
        return self.returncode

    def output(self):
        """Everything the process wrote to stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def healthz(self, timeout=10.0):
        with urllib.request.urlopen(self.url + "/healthz",
                                    timeout=timeout) as r:
            return json.loads(r.read())

    def requests_seen(self):
        """Requests ai-sim received, /healthz excepted: what reached this
        upstream (inference, /slow, /v1/models, 404s and 405s)."""
        return self.healthz()["requests"]

    def streams_cut(self):
        """Streams cut mid-way by --cut-rate or an X-Sim-Cut header."""
        return self.healthz()["cut"]

    def wait_idle(self, timeout=10.0):
        """Wait until nothing is in flight; returns the last /healthz."""
        deadline = time.monotonic() + timeout
        h = self.healthz()
        while h["inflight"] != 0 and time.monotonic() < deadline:
            time.sleep(0.02)
            h = self.healthz()
        return h

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
