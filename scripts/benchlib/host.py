"""The machine the benches run on: processes' CPU time, what runs where,
ai-sim replicas without latency."""

import datetime
import os
import platform
import subprocess

from harness.sim import Sim

from benchlib import REPO

# the C load client of the stream benches (scripts/load/README.md)
LOAD = os.environ.get("AGW_LOAD", os.path.join(REPO, "build", "agw-load"))

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid, gone=None):
    """utime + stime of pid from /proc/PID/stat, in seconds.  gone: what a
    process that no longer exists used (None: the error is raised)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        if gone is None:
            raise
        return gone
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def fast_sim(name):
    """An ai-sim that answers at once: no first-token time, no per-token
    time, no jitter; started."""
    return Sim(None, name, "--ttft-ms", "0", "--tpot-ms", "0",
               "--jitter", "0").start()


def today():
    return datetime.date.today().isoformat()


def machine():
    """"x86_64, 2 cores, Linux-..." """
    return "%s, %d cores, %s" % (platform.machine(), os.cpu_count(),
                                 platform.platform())


def nginx_version():
    """nginx -v of the packaged nginx, "nginx version: nginx/1.22.1" """
    return subprocess.run(["/usr/sbin/nginx", "-v"], capture_output=True,
                          text=True).stderr.strip()
