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
    def __init__(self, port=None, password=None, extra=()):
        self.port = port or free_port()
        self.password = password
        self.extra = list(extra)
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
        return argv + self.extra

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


class RedisCluster:
    """A real Redis Cluster on loopback: `masters` masters with `replicas`
    replicas each, every node a RedisServer with cluster-enabled on its
    own free port and a free cluster bus port (never port+10000, which may
    be taken), joined by `redis-cli --cluster create`."""

    def __init__(self, masters=3, replicas=0):
        self.nodes = [self._node() for _ in range(masters * (1 + replicas))]
        self.replicas = replicas

    @staticmethod
    def _node():
        bus = free_port()
        return RedisServer(extra=[
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "1000",
            "--cluster-port", str(bus),
            # a cluster with a slot not served still serves the others
            "--cluster-require-full-coverage", "no",
            "--cluster-replica-validity-factor", "0"])

    def add_master(self):
        """A new empty master, on a new port, joined to the cluster
        (`redis-cli --cluster add-node`): it owns no slot yet."""
        node = self._node().start()
        self.nodes.append(node)
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster",
             "add-node", "127.0.0.1:%d" % node.port,
             "127.0.0.1:%d" % self.seed.port],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            timeout=60)
        self.wait_ok()
        return node

    def node_id(self, node):
        nid = node.client().execute_command("CLUSTER", "MYID")
        return nid.decode() if isinstance(nid, bytes) else nid

    @property
    def seed(self):
        return self.nodes[0]

    def start(self):
        for n in self.nodes:
            n.start()
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "create"]
            + ["127.0.0.1:%d" % n.port for n in self.nodes]
            + ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            timeout=60)
        self.wait_ok()
        return self

    def wait_ok(self, timeout=30):
        """Every running node sees the cluster ok and all slots served."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(self._ok(n) for n in self.nodes
                       if n.proc is not None and n.proc.poll() is None):
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become ok")
            time.sleep(0.1)

    @staticmethod
    def _ok(node):
        info = node.client().execute_command("CLUSTER", "INFO")
        if isinstance(info, bytes):
            info = info.decode()
        return ("cluster_state:ok" in info
                and "cluster_slots_ok:16384" in info)

    def masters(self):
        """[(RedisServer, node id, [slot ranges])] of the serving masters."""
        out = []
        for entry in self.seed_client().execute_command("CLUSTER", "SLOTS"):
            port = int(entry[2][1])
            node = next(n for n in self.nodes if n.port == port)
            nid = entry[2][2]
            nid = nid.decode() if isinstance(nid, bytes) else nid
            out.append((node, nid, (int(entry[0]), int(entry[1]))))
        return out

    def seed_client(self):
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                return n.client()
        raise RuntimeError("no node running")

    def owner(self, key):
        """The RedisServer that serves key now."""
        slot = self.seed_client().execute_command("CLUSTER", "KEYSLOT", key)
        for node, _, (lo, hi) in self.masters():
            if lo <= slot <= hi:
                return node
        raise RuntimeError("slot %d not served" % slot)

    def keys(self, pattern="*"):
        out = []
        for node, _, _ in self.masters():
            out += node.client().keys(pattern)
        return out

    def cleanup(self):
        for n in self.nodes:
            n.cleanup()
