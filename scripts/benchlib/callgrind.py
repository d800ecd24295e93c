"""Instructions per request under valgrind's callgrind: the figure that
does not move with the load on the machine."""

import glob
import os
import re
import shutil
import subprocess

from harness.nginx import Nginx, private_dir

from benchlib.wrk import wrk


def instructions_per_request(http, names, urls, seconds, script=None,
                             connections=4):
    """The same config in one nginx process under callgrind: instructions
    executed per request for each row of names (urls: each one's URL).
    Unlike requests/s these counts do not depend on what else the machine
    is doing; rerunning gives the same figures within a fraction of a
    percent.  With one connection every request is one turn of the event
    loop, and the figure repeats to a few instructions; with several, how
    many requests one epoll_wait() returns varies from run to run, and
    with it the loop's share of each request (about 1%)."""
    out = private_dir("agw-callgrind-")
    n = Nginx(http, master=False, wrapper=[
        "valgrind", "--tool=callgrind", "--instr-atstart=no",
        "--log-file=%s/valgrind.log" % out,
        "--callgrind-out-file=%s/callgrind.out" % out])
    counts = {}
    try:
        n.start()
        pid = str(n.proc.pid)
        for name in names:
            url = urls[name]
            subprocess.run(["wrk", "-t1", "-c1", "-d1s"]
                           + (["-s", script] if script else []) + [url],
                           capture_output=True)
            for args in (["-z"], ["-i", "on"]):
                subprocess.run(["callgrind_control"] + args + [pid],
                               capture_output=True, check=True)
            _, total, _, _, _ = wrk(url, seconds, connections, script)
            for args in (["-i", "off"], ["-d", "row"]):
                subprocess.run(["callgrind_control"] + args + [pid],
                               capture_output=True, check=True)
            dumps = sorted(glob.glob(out + "/callgrind.out.*"),
                           key=os.path.getmtime)
            with open(dumps[-1]) as f:
                ir = int(re.search(r"^totals: (\d+)", f.read(), re.M)
                         .group(1))
            counts[name] = ir / total if total else 0
    finally:
        n.stop()
        n.cleanup()
        shutil.rmtree(out, ignore_errors=True)
    return counts
