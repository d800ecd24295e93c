#!/usr/bin/env python3
"""nginx's own test suite against the packaged nginx, three ways, compared
file by file and subtest by subtest (make test-nginx; issue 19).

    stock    /usr/sbin/nginx as Debian ships it: the baseline (about 57
             files fail on 1.22.1 without our module: they test newer nginx)
    loaded   the same with `load_module` of our module and no directive
    active   loaded, and active on every request: a passing request zone
             and token zone with headers off at http level
             (TEST_NGINX_GLOBALS_HTTP)

A module must be invisible until configured, and a passing limiter must
change no answer.  Any file or subtest whose result differs from the stock
run fails the run and is printed.  nginx-tests has timing-sensitive files;
a file that differs is run again, alone, in both modes (twice), and counts
as a difference only if the two modes never agree: a file that flips in
both is reported as flaky, not as ours.

    scripts/nginx_tests.py --suite ../shared/nginx-tests \\
        --module build/ngx_ai_gateway_module.so --out build/nginx-tests
"""

import argparse
import concurrent.futures
import os
import pwd
import re
import shutil
import subprocess
import sys
import time

NGINX = "/usr/sbin/nginx"
# Debian builds seven modules as =dynamic: the suite loads them from here
MODULES = "/usr/lib/nginx/modules"

# on every request, changing no answer: a request zone and a token zone
# that always pass and write no header (the token zone estimates, reads
# the bodies that can be inference requests and settles every answer)
ACTIVE_HTTP = ("ai_gateway_limit_zone agw_everywhere zone=agw_everywhere:1m "
               "rate=1000000r/s burst=1000000; "
               "ai_gateway_limit_zone agw_tokens zone=agw_tokens:1m "
               "rate=1000000000t/s burst=1000000000; "
               "ai_gateway_limit zone=agw_everywhere; "
               "ai_gateway_limit zone=agw_tokens; "
               "ai_gateway_limit_headers off;")

TAP_RE = re.compile(r"^(not ok|ok) (\d+)\b(.*)$")
PLAN_RE = re.compile(r"^1\.\.(\d+)(.*)$")


def modes(module, active_http):
    load = "load_module %s;" % module
    return {
        "stock": {},
        "loaded": {"TEST_NGINX_GLOBALS": load},
        "active": {"TEST_NGINX_GLOBALS": load,
                   "TEST_NGINX_GLOBALS_HTTP": active_http},
    }


def as_user():
    """The suite runs as nobody when we are root: workers of a root master
    run as nobody and could not read the test's temp directories."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "nobody", "--"]


def outcome(tap, rc):
    """What a file's run says: its exit status, its plan, and each
    subtest's verdict (skips and TODOs kept apart from passes)."""
    plan, tests = None, {}
    for line in tap.splitlines():
        m = PLAN_RE.match(line)
        if m and plan is None:
            plan = (int(m.group(1)), "skip" if "SKIP" in m.group(2) else "")
            continue
        m = TAP_RE.match(line)
        if m:
            verdict, num, rest = m.group(1), int(m.group(2)), m.group(3)
            if "# skip" in rest.lower():
                verdict = "skip"
            elif "# todo" in rest.lower():
                verdict += " (todo)"
            tests[num] = verdict
    return (rc, plan, tuple(sorted(tests.items())))


def run_file(suite, name, env, logdir, timeout):
    t0 = time.monotonic()
    try:
        p = subprocess.run(as_user() + ["perl", name], cwd=suite, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        rc, out = p.returncode, p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        rc = "timeout"
        out = (e.stdout or b"").decode(errors="replace")
    if logdir:
        with open(os.path.join(logdir, name + ".tap"), "w") as f:
            f.write(out)
    return name, outcome(out, rc), out, time.monotonic() - t0


def run_mode(suite, files, extra, logdir, jobs, timeout):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("TEST_NGINX_"):
            del env[k]
    env.update({"TEST_NGINX_BINARY": NGINX, "TEST_NGINX_MODULES": MODULES})
    env.update(extra)
    os.makedirs(logdir, exist_ok=True)
    results, texts = {}, {}
    # the largest files first, so that the run does not end on a straggler
    order = sorted(files, key=lambda n: -os.path.getsize(
        os.path.join(suite, n)))
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for name, res, out, _ in pool.map(
                lambda n: run_file(suite, n, env, logdir, timeout), order):
            results[name], texts[name] = res, out
    return results, texts, env


def describe(a, b):
    """The subtests whose verdicts differ between two outcomes."""
    da, db = dict(a[2]), dict(b[2])
    lines = []
    if a[0] != b[0]:
        lines.append("exit status %s -> %s" % (a[0], b[0]))
    if a[1] != b[1]:
        lines.append("plan %s -> %s" % (a[1], b[1]))
    for num in sorted(set(da) | set(db)):
        if da.get(num) != db.get(num):
            lines.append("test %d: %s -> %s" % (num, da.get(num, "not run"),
                                                db.get(num, "not run")))
    return lines


def prepare(args):
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    suite = os.path.join(out, "suite")
    shutil.copytree(args.suite, suite)
    module = os.path.join(out, "ngx_ai_gateway_module.so")
    shutil.copy(args.module, module)
    os.chmod(module, 0o644)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for root, dirs, names in os.walk(out):
            for n in dirs + names:
                os.chown(os.path.join(root, n), nobody.pw_uid, nobody.pw_gid)
        os.chown(out, nobody.pw_uid, nobody.pw_gid)
    return out, suite, module


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", required=True)
    ap.add_argument("--module", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=300,
                    help="seconds a file may take")
    ap.add_argument("--modes", default="stock,loaded,active")
    ap.add_argument("--active-http", default=ACTIVE_HTTP,
                    help="the http-level directives of the active mode")
    ap.add_argument("files", nargs="*", help="only these .t files")
    args = ap.parse_args()

    out, suite, module = prepare(args)
    files = args.files or sorted(f for f in os.listdir(suite)
                                 if f.endswith(".t"))
    wanted = args.modes.split(",")
    table = modes(module, args.active_http)

    results, envs = {}, {}
    for mode in wanted:
        t0 = time.monotonic()
        results[mode], _, envs[mode] = run_mode(
            suite, files, table[mode], os.path.join(out, mode), args.jobs,
            args.timeout)
        failing = sum(1 for r in results[mode].values()
                      if r[0] != 0 or any(v.startswith("not ok") and
                                          "todo" not in v for _, v in r[2]))
        print("nginx-tests %-6s: %d files, %d failing, %.0f s"
              % (mode, len(files), failing, time.monotonic() - t0),
              flush=True)

    base = results["stock"]
    differences, flaky = [], []
    for mode in wanted:
        if mode == "stock":
            continue
        for name in files:
            if results[mode][name] == base[name]:
                continue
            # again, alone, twice in each mode: a difference counts only
            # when the two modes never agree
            seen = {"stock": {base[name]}, mode: {results[mode][name]}}
            for _ in range(2):
                for m in ("stock", mode):
                    _, res, _, _ = run_file(suite, name, envs[m], None,
                                            args.timeout)
                    seen[m].add(res)
            if seen["stock"] & seen[mode]:
                flaky.append((mode, name))
                continue
            a, b = sorted(seen["stock"])[0], results[mode][name]
            differences.append((mode, name, describe(a, b)))

    for mode, name in flaky:
        print("nginx-tests %-6s: %s flips in both modes (timing), "
              "not counted" % (mode, name))
    for mode, name, lines in differences:
        print("nginx-tests %-6s: %s differs from stock:" % (mode, name))
        for line in lines:
            print("    " + line)
        print("    output: %s" % os.path.join(out, mode, name + ".tap"))

    if differences:
        print("nginx-tests: FAILED: %d file(s) differ from the stock run"
              % len(differences))
        return 1
    print("nginx-tests: %s identical to stock over %d files"
          % (", ".join(m for m in wanted if m != "stock"), len(files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
