"""redis-server under test: a private instance on a free loopback port.

Never the system's 6379: each RedisServer binds 127.0.0.1 on a port from
free_port(), keeps nothing on disk (`--save '' --appendonly no`) and works
in its own temp directory.  stop() and start() again reuse the same port,
so a test can restart Redis under a running nginx.  pause()/resume() send
SIGSTOP/SIGCONT to this instance's own PID: a Redis that accepts
connections but answers nothing.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

from harness.nginx import free_port, wait_port

REDIS_SERVER = os.environ.get("AGW_REDIS_SERVER",
                              shutil.which("redis-server") or "redis-server")


def available():
    return shutil.which(REDIS_SERVER) is not None or os.path.exists(REDIS_SERVER)


class RedisServer:
    def __init__(self, port=None, password=None):
        self.port = port or free_port()
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="agw-redis-")
        self.proc = None

    @property
    def argv(self):
        argv = [REDIS_SERVER, "--port", str(self.port),
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--daemonize", "no",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if not wait_port(self.port, proc=self.proc):
            self.stop()
            raise RuntimeError("redis-server did not start on port %d"
                               % self.port)
        # the port accepts before the server answers: wait for PING
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        return self

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def client(self, **kwargs):
        import redis  # python3-redis
        kwargs.setdefault("socket_timeout", 5)
        return redis.Redis(host="127.0.0.1", port=self.port,
                           password=self.password, **kwargs)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
