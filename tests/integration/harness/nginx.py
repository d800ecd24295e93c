"""nginx under test: renders a config into a private temp prefix, runs the
packaged /usr/sbin/nginx with the module loaded, and checks its log.

Shaped after NGINX Unit's test fixtures and nginx-tests' %%TEST_GLOBALS%%:
every path nginx writes (pid, logs, *_temp_path) lives inside the prefix, so
tests never touch /var and never collide with each other.
"""

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
NGINX = os.environ.get("AGW_NGINX", "/usr/sbin/nginx")

# The sanitizer run builds the module with -fsanitize=address into
# build/asan/ and preloads libasan into the (uninstrumented) nginx binary.
SANITIZE = os.environ.get("AGW_SANITIZE", "")
# AGW_CORE_DIR=/tmp/cores: workers that crash dump core there (a directory
# nobody can write to), for gdb; off by default
CORE = ("worker_rlimit_core 2g; working_directory %s;\n"
        % os.environ["AGW_CORE_DIR"] if os.environ.get("AGW_CORE_DIR")
        else "")
MODULE = os.environ.get(
    "AGW_MODULE",
    os.path.join(REPO, "build", "asan" if SANITIZE else "",
                 "ngx_ai_gateway_module.so"))

ALERT_RE = re.compile(r"\[(alert|emerg|crit)\]|Sanitizer|runtime error:")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def private_dir(prefix):
    """A temp dir nginx's unprivileged workers can enter (pytest's own
    tmp_path is 0700 under root, which workers running as nobody cannot)."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


def asan_env():
    env = dict(os.environ)
    if SANITIZE:
        libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"],
                                 capture_output=True, text=True).stdout.strip()
        env["LD_PRELOAD"] = libasan
    return env


WORKER_CONNECTIONS = 4096

LEAK_RE = re.compile(r"^(Direct|Indirect) leak of (\d+) byte\(s\) in (\d+) "
                     r"object\(s\) allocated from:\n((?:    #\d+ .*\n)+)",
                     re.M)


def nginx_connection_arrays_only(report):
    """A worker's LeakSanitizer report that holds nothing but nginx's own
    connection, read event and write event arrays (three blocks sized by
    worker_connections, from ngx_alloc in the nginx binary), which a worker
    keeps until it exits and never frees: not the module's.  Any other leak
    record, or any memory error, keeps the report."""
    if "ERROR: LeakSanitizer" not in report or "ERROR: AddressSanitizer" in report:
        return False
    records = LEAK_RE.findall(report)
    if not records:
        return False
    for _, size, objects, stack in records:
        frames = stack.strip().splitlines()
        if (objects != "3" or int(size) % WORKER_CONNECTIONS
                or len(frames) != 2
                or "ngx_alloc (/usr/sbin/nginx" not in frames[1]):
            return False
    return True


class Nginx:
    """One nginx instance. `http` is the body of the http{} block; the
    harness adds load_module, pid, logs, temp paths and events{}."""

    def __init__(self, http, main="", workers=1, port=None, env=None,
                 master=True, wrapper=(), level=None):
        self.port = port or free_port()
        self.dir = private_dir("agw-nginx-")
        for sub in ("logs", "temp"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.chmod(os.path.join(self.dir, "temp"), 0o777)
        # the workers run as nobody: a sanitizer report of theirs must be
        # able to land in logs/ (asan.PID), where alerts() looks for it
        os.chmod(os.path.join(self.dir, "logs"), 0o777)
        self.workers = workers
        # master=False: one process serving requests, e.g. under callgrind
        # (`wrapper`) for instruction counts per request
        self.master = master
        self.wrapper = list(wrapper)
        self.main = main
        self.http = http
        # error_log level: "info" unless the test or AGW_LOG_LEVEL says
        self.level = level or os.environ.get("AGW_LOG_LEVEL", "info")
        self.env = asan_env()
        if SANITIZE:
            self.env["ASAN_OPTIONS"] = (
                "log_path=%s/logs/asan:detect_leaks=1:abort_on_error=0"
                % self.dir)
        self.env.update(env or {})
        self.proc = None
        self.skip_alerts = []
        self.write_conf()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def conf_path(self):
        return os.path.join(self.dir, "nginx.conf")

    @property
    def error_log(self):
        return os.path.join(self.dir, "logs", "error.log")

    def render(self, http=None):
        http = self.http if http is None else http
        return """
load_module {module};
worker_processes {workers};
daemon off;
master_process {master};
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log {level};
user nobody nogroup;
{core}{main}
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/logs/access.log;
    client_body_temp_path {dir}/temp/client_body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;
{http}
}}
""".format(module=MODULE, workers=self.workers, dir=self.dir,
           level=self.level,
           master="on" if self.master else "off",
           core=CORE, main=self.main, http=http.replace("%%PORT%%", str(self.port)))

    def write_conf(self, http=None):
        if http is None and self.http is None:
            return          # a complete config is put in place by a subclass
        with open(self.conf_path, "w") as f:
            f.write(self.render(http))

    def test_config(self):
        """nginx -t on the current config: (returncode, output).  Errors go
        to the output only, not into the log that teardown scans."""
        env = dict(self.env)
        if SANITIZE:
            # "nginx -t" exits without freeing its configuration pool
            env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"].replace(
                "detect_leaks=1", "detect_leaks=0")
        p = subprocess.run([NGINX, "-t", "-p", self.dir + "/", "-c",
                            self.conf_path, "-e", "stderr"],
                           capture_output=True, text=True, env=env)
        return p.returncode, p.stdout + p.stderr

    def start(self):
        self.proc = subprocess.Popen(
            self.wrapper + [NGINX, "-p", self.dir + "/", "-c",
                            self.conf_path, "-e", self.error_log],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env)
        if not wait_port(self.port, timeout=60 if self.wrapper else 10,
                         proc=self.proc):
            out = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError("nginx did not start: %s\n%s" % (out, self.log()))
        return self

    def worker_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)],
                             capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]

    def reload(self, http=None, timeout=10.0):
        """Rewrite the config (if given), send HUP and wait until the old
        workers are gone and new ones are up."""
        if http is not None:
            self.write_conf(http)
        old = set(self.worker_pids())
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = set(self.worker_pids())
            if now and not (now & old) and len(now) >= self.workers:
                return
            time.sleep(0.05)
        raise RuntimeError("reload did not replace the workers")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # workers that hang (a test that failed by deadlocking them)
            # would outlive a killed master: kill them first
            for pid in self.worker_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.kill()
            self.proc.wait()

    def log(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def alerts(self):
        """Lines that must never appear: alerts, emergencies, crashes and
        sanitizer reports (ASan writes its own files under logs/)."""
        bad = [l for l in self.log().splitlines()
               if ALERT_RE.search(l)
               and not any(re.search(s, l) for s in self.skip_alerts)]
        for path in glob.glob(os.path.join(self.dir, "logs", "asan*")):
            with open(path, errors="replace") as f:
                report = f.read()
            if not nginx_connection_arrays_only(report):
                bad.append("%s:\n%s" % (path, report))
        return bad

    def cleanup(self, keep=False):
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
