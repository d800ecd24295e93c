#!/usr/bin/env bash
# Static checks of the Docker images, compose.yaml and the k6 scenarios,
# fast and without an engine (make test-docker runs the images for real;
# no k6 binary exists on the build machine).
#
#   scripts/check-static.sh [ROOT]        ROOT: a checkout (default: this one)
#
# CHECK_STATIC_ONLY=compose,docker,k6,dashboard (any of them) runs only
# those parts.
#
#   compose  `docker-compose config -q` (Debian's docker-compose, v1) accepts
#            compose.yaml; every build context and Dockerfile exists; every
#            built service has a healthcheck; depends_on names services;
#            the k6 service's default script exists
#   docker   every Dockerfile (compose's and docker/*.Dockerfile): FROM only
#            debian:12 / debian:12-slim (or a stage); every COPY source exists
#            in the context and is not excluded by .dockerignore; every
#            script copied or run is executable; every `make` target exists
#            (make -n); every apt package exists in Debian 12 (apt-cache,
#            on a Debian 12 host); every shared library that a built
#            artifact (build/ai-sim, build/*.so) needs comes from a package
#            its final stage installs (on a Debian 12 host, when built)
#   k6       `node --check` on every k6/*.js and k6/lib/*.js (as ES modules);
#            then each scenario is imported with the k6 modules stubbed: it
#            must export options (with thresholds on known metrics), a
#            default function and handleSummary; handleSummary must return
#            stdout text and $SUMMARY_DIR/<name>-summary.json; every exec
#            function runs once against SPEC-shaped fake answers and all its
#            checks must pass
#   dashboard  `node --check` on nginx-conf/dashboard/*.js; package.json
#            pins uPlot to one exact version and package-lock.json holds
#            that version with its integrity hash and nothing else; the
#            page loads only files of this nginx (/dashboard/..., each one
#            in nginx-conf/dashboard/ or copied by install-dashboard.sh),
#            and no file of the page names another host
#
# Needs: docker-compose, python3-yaml (with it), nodejs, make, apt-cache.
# Exit status: 0 all good, 1 a check failed, 2 a tool is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "${1:-$here/..}" && pwd)
python=/usr/bin/python3

missing=()
command -v docker-compose >/dev/null || missing+=("docker-compose (apt-get install docker-compose)")
command -v node >/dev/null || missing+=("node (apt-get install nodejs)")
command -v make >/dev/null || missing+=("make (apt-get install make)")
[ -x "$python" ] || missing+=("/usr/bin/python3 (apt-get install python3)")
if [ -x "$python" ] && ! "$python" -c 'import yaml' 2>/dev/null; then
    missing+=("python3-yaml (apt-get install python3-yaml)")
fi
if [ ${#missing[@]} -gt 0 ]; then
    printf 'check-static: missing tool: %s\n' "${missing[@]}" >&2
    exit 2
fi

failed=0
step() { printf 'check-static: %s\n' "$*"; }
want() { case ",${CHECK_STATIC_ONLY:-compose,docker,k6,dashboard}," in *,"$1",*) return 0 ;; esac; return 1; }

# ---- compose: the v1 parser, then the cross-references --------------------

if want compose; then
step "compose: docker-compose config -q"
if ! (cd "$root" && docker-compose -f compose.yaml config -q); then
    echo "check-static: FAIL: compose.yaml rejected by docker-compose config" >&2
    failed=1
fi
fi

# ---- compose cross-references + Dockerfiles (python, stdlib + yaml) -------

if want docker; then
step "compose + Dockerfiles: paths, targets, packages, scripts, libraries"
if ! "$python" - "$root" <<'PY'
import fnmatch
import glob
import os
import re
import shlex
import subprocess
import sys

import yaml

root = sys.argv[1]
errors = []


def err(msg):
    errors.append(msg)
    print("check-static: FAIL: " + msg, file=sys.stderr)


def rel(p):
    return os.path.relpath(p, root)


# -- compose.yaml -----------------------------------------------------------

with open(os.path.join(root, "compose.yaml")) as f:
    compose = yaml.safe_load(f)
services = compose.get("services") or {}
dockerfiles = {}   # path -> context

for name, svc in services.items():
    build = svc.get("build")
    if build is not None:
        if isinstance(build, str):
            build = {"context": build}
        ctx = os.path.normpath(os.path.join(root, build.get("context", ".")))
        df = os.path.normpath(os.path.join(ctx, build.get("dockerfile", "Dockerfile")))
        if not os.path.isdir(ctx):
            err("compose service %s: build context %s does not exist" % (name, rel(ctx)))
        elif not os.path.isfile(df):
            err("compose service %s: Dockerfile %s does not exist" % (name, rel(df)))
        else:
            dockerfiles[df] = ctx
        if not svc.get("healthcheck"):
            err("compose service %s: no healthcheck" % name)
    elif not svc.get("profiles"):
        err("compose service %s: neither built here nor under a profile"
            " (only Debian-based images are built by `up`)" % name)
    deps = svc.get("depends_on") or {}
    for dep in (deps if isinstance(deps, (list, dict)) else []):
        if dep not in services:
            err("compose service %s: depends_on unknown service %s" % (name, dep))
    # a bind-mounted scripts directory + the default command's script
    mounts = {}
    for v in svc.get("volumes") or []:
        if isinstance(v, str) and v.startswith("./"):
            src, dst = v.split(":")[:2]
            mounts[dst.rstrip("/")] = os.path.join(root, src)
            if not os.path.exists(os.path.join(root, src)) and not src.startswith("./build"):
                err("compose service %s: volume source %s does not exist" % (name, src))
    cmd = svc.get("command") or []
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    for arg in cmd:
        for dst, src in mounts.items():
            if arg.startswith(dst + "/") and not os.path.exists(src + arg[len(dst):]):
                err("compose service %s: command names %s, not in %s"
                    % (name, arg, rel(src)))

for df in glob.glob(os.path.join(root, "docker", "*.Dockerfile")):
    dockerfiles.setdefault(os.path.normpath(df), root)

# -- .dockerignore ----------------------------------------------------------

ignore = []       # (pattern, True for a "!" exception), in file order
di = os.path.join(root, ".dockerignore")
if os.path.isfile(di):
    for line in open(di):
        line = line.strip()
        if line and not line.startswith("#"):
            ignore.append((line.lstrip("!").rstrip("/"), line.startswith("!")))


def ignore_matches(pat, path):
    p = pat[3:] if pat.startswith("**/") else pat
    parts = path.split("/")
    for i in range(len(parts)):
        if fnmatch.fnmatch("/".join(parts[: i + 1]), pat) or \
                fnmatch.fnmatch(parts[i], p) and pat.startswith("**/"):
            return True
    return False


def ignored(path):
    # as Docker reads it: the last pattern that matches decides
    out = False
    for pat, exception in ignore:
        if ignore_matches(pat, path):
            out = not exception
    return out


def sent_build_files():
    """The files of build/ a "!" line of .dockerignore sends: what `make`
    makes on the host for an image to copy (build/ itself is excluded)."""
    return [pat for pat, exception in ignore
            if exception and pat.startswith("build/")]


# -- Debian packages --------------------------------------------------------

def os_release():
    try:
        return dict(l.rstrip("\n").split("=", 1) for l in open("/etc/os-release") if "=" in l)
    except OSError:
        return {}


osr = os_release()
on_bookworm = osr.get("VERSION_CODENAME", "").strip('"') == "bookworm"
if not on_bookworm:
    print("check-static: note: not a Debian 12 host: apt package names and"
          " shared libraries of the images are not checked")


def apt_known(pkgs):
    """The subset of pkgs apt knows (one apt-cache call: it is slow)."""
    if not pkgs:
        return set()
    r = subprocess.run(["apt-cache", "show", "--no-all-versions"] + sorted(pkgs),
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return {l.split(":", 1)[1].strip() for l in r.stdout.splitlines()
            if l.startswith("Package:")}


apt_wanted = []   # (location, package)


def apt_closure(pkgs):
    if not pkgs:
        return set()
    r = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends",
                        "--no-suggests", "--no-conflicts", "--no-breaks",
                        "--no-replaces", "--no-enhances"] + sorted(pkgs),
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = set(pkgs)
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("Depends:") or line.startswith("PreDepends:"):
            out.add(line.split(":", 1)[1].strip().strip("<>").split(":")[0])
        elif line and not line.startswith("|") and ":" not in line:
            out.add(line.strip("<>"))
    return out


def needed_packages(path):
    """Debian packages of the shared libraries an ELF file needs."""
    r = subprocess.run(["ldd", path], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    pkgs = set()
    for line in r.stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if not m:
            continue
        if m.group(2) == "not":
            err("%s: %s not found on this host" % (rel(path), m.group(1)))
            continue
        lib = os.path.realpath(m.group(2))
        q = subprocess.run(["dpkg", "-S", lib], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        if q.returncode != 0:
            # merged /usr: try the other spelling
            alt = lib[4:] if lib.startswith("/usr/") else "/usr" + lib
            q = subprocess.run(["dpkg", "-S", alt], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        if q.returncode == 0:
            pkgs.add((q.stdout.split(":")[0].strip(), m.group(1)))
        else:
            err("%s: %s (%s) belongs to no Debian package" % (rel(path), m.group(1), lib))
    return pkgs


# -- Dockerfiles ------------------------------------------------------------

def instructions(path):
    """[(lineno, INSTRUCTION, args)] with continuation lines joined."""
    out, buf, start = [], "", 0
    for n, line in enumerate(open(path), 1):
        s = line.rstrip("\n")
        if not buf and (not s.strip() or s.lstrip().startswith("#")):
            continue
        if buf and s.lstrip().startswith("#"):
            continue
        if not buf:
            start = n
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        word, _, rest = buf.strip().partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    return out


def shell_segments(cmd):
    return [s.strip() for s in re.split(r"&&|\|\||;|\|", cmd) if s.strip()]


def exec_form(args):
    if args.startswith("["):
        import json
        try:
            return json.loads(args)
        except ValueError:
            return None
    return None


make_targets_checked = {}


def make_target_ok(target):
    if target not in make_targets_checked:
        r = subprocess.run(["make", "-C", root, "-n", "--", target],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        make_targets_checked[target] = (r.returncode == 0, r.stderr.strip())
    return make_targets_checked[target]


def installed_by_make():
    """vendor/FILE names scripts/install-dashboard.sh installs."""
    text = open(os.path.join(root, "scripts", "install-dashboard.sh")).read()
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("cp ") and "/vendor" in line:
            words = shlex.split(line.replace('"', ""))
            dst = words[-1]
            srcs = [os.path.basename(w) for w in words[1:-1]]
            if dst.rstrip("/").endswith("/vendor"):
                names.update("vendor/" + n for n in srcs)
            else:
                names.add("vendor/" + os.path.basename(dst))
    return names


def is_script(path):
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


for df, ctx in sorted(dockerfiles.items()):
    where = rel(df)
    stages = []           # names
    stage_pkgs = []       # apt packages per stage
    copies_from = []      # (stage index, src) of COPY --from
    workdir = "/"
    for lineno, ins, args in instructions(df):
        at = "%s:%d" % (where, lineno)
        if ins == "FROM":
            parts = args.split()
            image = parts[0]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            if image not in stages and image not in ("debian:12", "debian:12-slim"):
                err("%s: FROM %s: images build FROM debian:12 or debian:12-slim only" % (at, image))
            stages.append(name or "#%d" % len(stages))
            stage_pkgs.append(set())
            workdir = "/"
            continue
        if not stages:
            continue
        if ins == "WORKDIR":
            workdir = os.path.join(workdir, args)
        elif ins in ("COPY", "ADD"):
            words = shlex.split(args)
            opts = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            srcs = paths[:-1]
            frm = [o.split("=", 1)[1] for o in opts if o.startswith("--from=")]
            if frm:
                if frm[0] not in stages:
                    err("%s: COPY --from=%s: no such stage" % (at, frm[0]))
                for s in srcs:
                    copies_from.append((len(stages) - 1, s))
                continue
            for s in srcs:
                s_rel = os.path.normpath(s).lstrip("/")
                if s_rel.startswith("build/") and ctx == root:
                    # `make`'s output, absent from a fresh checkout (the
                    # Dockerfile says what to run when it is missing): it
                    # must be a file .dockerignore lets through, which make
                    # installs (install-dashboard.sh, so far the only one)
                    sent = [f for f in sent_build_files() if fnmatch.fnmatch(f, s_rel)]
                    if not sent:
                        err("%s: %s %s: .dockerignore sends no file of build/ it names"
                            " (a \"!build/...\" line)" % (at, ins, s))
                    for f in sent:
                        if not f.startswith("build/dashboard/vendor/") or \
                                "vendor/" + os.path.basename(f) not in installed_by_make():
                            err("%s: %s %s: %s is not made by `make`" % (at, ins, s, f))
                    continue
                matches = glob.glob(os.path.join(ctx, s_rel)) if s_rel != "." else [ctx]
                if not matches:
                    err("%s: %s %s: no such file in the build context" % (at, ins, s))
                    continue
                if s_rel != "." and ignored(s_rel):
                    err("%s: %s %s: excluded by .dockerignore" % (at, ins, s))
                for m in matches:
                    if os.path.isfile(m) and is_script(m) and not os.access(m, os.X_OK):
                        err("%s: %s %s: a script that is not executable (chmod +x)" % (at, ins, s))
        elif ins == "RUN":
            cmd = args
            for seg in shell_segments(cmd):
                try:
                    words = shlex.split(seg)
                except ValueError:
                    words = seg.split()
                # leading VAR=value assignments
                while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
                    words = words[1:]
                if words and words[0] == "!":
                    words = words[1:]
                if not words:
                    continue
                prog = words[0]
                if prog == "make":
                    targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
                    for t in targets:
                        ok, why = make_target_ok(t)
                        if not ok:
                            err("%s: make %s: no such target in the Makefile (%s)" % (at, t, why))
                elif prog == "apt-get" and "install" in words:
                    for w in words[words.index("install") + 1:]:
                        if w.startswith("-") or w.startswith("$") or ">" in w:
                            continue
                        pkg = w.split("=", 1)[0]
                        stage_pkgs[-1].add(pkg)
                        apt_wanted.append((at, pkg))
                elif "/" in prog and not prog.startswith("/"):
                    # a script of the repository run from WORKDIR (the context)
                    local = os.path.join(ctx, os.path.normpath(prog))
                    if not os.path.isfile(local):
                        err("%s: runs %s: not in the build context" % (at, prog))
                    elif not os.access(local, os.X_OK):
                        err("%s: runs %s: not executable (chmod +x)" % (at, prog))
        elif ins in ("ENTRYPOINT", "CMD", "HEALTHCHECK"):
            pass

    # shared libraries of what the final stage copies out of a build stage
    if on_bookworm and stages:
        final = len(stages) - 1
        base = {"libc6", "libgcc-s1", "libcrypt1", "zlib1g", "libzstd1",
                "liblzma5", "libbz2-1.0", "libselinux1", "libpcre2-8-0"}
        allowed = None
        for st, src in copies_from:
            if st != final or "/build/" not in src:
                continue
            local = os.path.join(root, "build", src.split("/build/", 1)[1])
            if not os.path.isfile(local):
                continue
            with open(local, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
            if allowed is None:
                allowed = apt_closure(stage_pkgs[final]) | base
            for pkg, lib in sorted(needed_packages(local)):
                if pkg not in allowed:
                    err("%s: final stage runs %s, which needs %s from package %s;"
                        " install it in that stage" % (where, rel(local), lib, pkg))

if on_bookworm:
    known = apt_known({p for _, p in apt_wanted})
    for at, pkg in apt_wanted:
        if pkg not in known:
            err("%s: apt package %s does not exist in Debian 12"
                " (or run apt-get update)" % (at, pkg))

sys.exit(1 if errors else 0)
PY
then
    failed=1
fi
fi

# ---- k6: syntax, exports, thresholds, summaries, checks ----------------------

if want k6; then
step "k6: node --check and a stubbed run of every scenario"
k6tmp=$(mktemp -d)
trap 'rm -rf "$k6tmp"' EXIT

shopt -s nullglob
k6_files=("$root"/k6/*.js "$root"/k6/lib/*.js)
shopt -u nullglob

if [ ${#k6_files[@]} -eq 0 ]; then
    echo "check-static: FAIL: no k6 scripts under $root/k6" >&2
    failed=1
else
    mkdir -p "$k6tmp/k6/lib" "$k6tmp/stubs"
    printf '{"type":"module"}\n' > "$k6tmp/package.json"
    for f in "${k6_files[@]}"; do
        case $f in
            */lib/*) dest=$k6tmp/k6/lib/$(basename "$f") ;;
            *) dest=$k6tmp/k6/$(basename "$f") ;;
        esac
        # parsed as an ES module whatever node's default for .js is
        cp "$f" "$dest.check.mjs"
        if ! node --check "$dest.check.mjs"; then
            echo "check-static: FAIL: ${f#"$root"/}: JavaScript syntax error (above)" >&2
            failed=1
        fi
        rm -f "$dest.check.mjs"
        # the k6 modules -> stubs (same relative depth for k6/ and k6/lib/)
        sed -E "s#(from[[:space:]]*)['\"](k6(/[a-z/-]+)?)['\"]#\\1'$k6tmp/stubs/\\2.mjs'#" "$f" > "$dest"
    done

    mkdir -p "$k6tmp/stubs/k6"
    cat > "$k6tmp/stubs/k6.mjs" <<'JS'
export const state = { checkFailures: [], group: '' };
export function check(value, sets, tags) {
  let all = true;
  for (const [name, fn] of Object.entries(sets)) {
    let ok;
    try {
      ok = typeof fn === 'function' ? !!fn(value) : !!fn;
    } catch (e) {
      throw new Error(`check "${name}" threw: ${e.message}`);
    }
    if (!ok) {
      state.checkFailures.push(name);
      all = false;
    }
  }
  return all;
}
export function sleep() {}
export function group(name, fn) { return fn(); }
export function fail(msg) { throw new Error(msg); }
export default { check, sleep, group, fail };
JS
    cat > "$k6tmp/stubs/k6/metrics.mjs" <<'JS'
export const registry = {};
class Metric {
  constructor(type, name, isTime) {
    if (typeof name !== 'string' || !/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) {
      throw new Error(`bad metric name ${name}`);
    }
    this.type = type; this.name = name; this.isTime = !!isTime; this.samples = [];
    registry[name] = this;
  }
  add(v, tags) {
    if (typeof v !== 'number' && typeof v !== 'boolean') {
      throw new Error(`${this.name}.add(${v}): not a number or boolean`);
    }
    this.samples.push(v);
  }
}
export class Counter extends Metric { constructor(n, t) { super('counter', n, t); } }
export class Gauge extends Metric { constructor(n, t) { super('gauge', n, t); } }
export class Rate extends Metric { constructor(n, t) { super('rate', n, t); } }
export class Trend extends Metric { constructor(n, t) { super('trend', n, t); } }
export default { Counter, Gauge, Rate, Trend };
JS
    cat > "$k6tmp/stubs/k6/execution.mjs" <<'JS'
export default { vu: { idInTest: 1, iterationInScenario: 0 }, scenario: { name: 'default', iterationInTest: 0 }, test: { abort() {} } };
JS
    cat > "$k6tmp/stubs/k6/http.mjs" <<'JS'
// Fake answers shaped like SPEC 2.1/3/4: what the gateway sends back.
export const fake = { mode: 200, calls: [], callback: null };
const rl = { 'Ratelimit-Limit': '40', 'Ratelimit-Remaining': '39', 'Ratelimit-Reset': '1' };
function response(method, url, body, params) {
  fake.calls.push({ method, url, body, params });
  const timings = { blocked: 0, connecting: 0, tls_handshaking: 0, sending: 0.1, waiting: 40, receiving: 120, duration: 160 };
  let req = {};
  try { req = body ? JSON.parse(body) : {}; } catch (e) { throw new Error(`request body is not JSON: ${body}`); }
  if (fake.mode === 429) {
    return { status: 429, url, timings, headers: Object.assign({}, rl, {
      'Ratelimit-Remaining': '0', 'Retry-After': '1', 'Retry-After-Ms': '350',
      'Ratelimit-Scope': 'per_client', 'Content-Type': 'application/json' }),
      body: '{"error":"rate_limited","scope":"per_client","retry_after":1}' };
  }
  if (url.endsWith('/v1/chat/completions') && req.stream) {
    const chunk = (t) => `data: {"object":"chat.completion.chunk","choices":[{"delta":{"content":"${t}"}}]}\n\n`;
    return { status: 200, url, timings, headers: Object.assign({}, rl, {
      'Content-Type': 'text/event-stream', 'X-Cache': 'MISS', 'X-Server-Id': 'sim-1' }),
      body: chunk('a') + chunk('b') + 'data: [DONE]\n\n' };
  }
  const hit = fake.mode === 'hit';
  return { status: 200, url, timings, headers: Object.assign({}, rl, hit ? { Age: '3' } : {}, {
    'Content-Type': 'application/json', 'X-Cache': hit ? 'HIT' : 'MISS', 'X-Server-Id': 'sim-1' }),
    body: JSON.stringify({ id: 'infer-1', server_id: 'sim-1', model: 'sim-small', output: 'x y',
      usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 }, latency_ms: 50 }) };
}
function withJson(r) { r.json = () => JSON.parse(r.body); return r; }
export function request(m, url, body, params) { return withJson(response(m, url, body, params)); }
export function get(url, params) { return request('GET', url, null, params); }
export function post(url, body, params) { return request('POST', url, body, params); }
export function put(url, body, params) { return request('PUT', url, body, params); }
export function del(url, body, params) { return request('DELETE', url, body, params); }
export function expectedStatuses(...args) {
  for (const a of args) {
    if (!(Number.isInteger(a) || (a && Number.isInteger(a.min) && Number.isInteger(a.max)))) {
      throw new Error('expectedStatuses: integers or {min, max}');
    }
  }
  return { expectedStatuses: args };
}
export function setResponseCallback(cb) { fake.callback = cb; }
export default { request, get, post, put, del, expectedStatuses, setResponseCallback };
JS

    cat > "$k6tmp/harness.mjs" <<'JS'
import { pathToFileURL } from 'node:url';
import { basename } from 'node:path';
import * as k6 from './stubs/k6.mjs';
import { registry } from './stubs/k6/metrics.mjs';
import { fake } from './stubs/k6/http.mjs';

globalThis.__ENV = { SUMMARY_DIR: '/out' };
globalThis.__VU = 1;
globalThis.__ITER = 0;

const BUILTIN = new Set(['checks', 'data_received', 'data_sent', 'dropped_iterations',
  'group_duration', 'http_req_blocked', 'http_req_connecting', 'http_req_duration',
  'http_req_failed', 'http_req_receiving', 'http_req_sending', 'http_req_tls_handshaking',
  'http_req_waiting', 'http_reqs', 'iteration_duration', 'iterations', 'vus', 'vus_max']);

const sample = {
  root_group: { name: '', path: '', id: 'x', groups: [], checks: [
    { name: 'status 200', path: '::status 200', id: 'y', passes: 10, fails: 0 }] },
  options: { summaryTrendStats: ['avg', 'p(95)'], summaryTimeUnit: '', noColor: false },
  state: { isStdOutTTY: false, isStdErrTTY: false, testRunDurationMs: 1000 },
  metrics: {
    http_req_duration: { type: 'trend', contains: 'time', values: { avg: 1, 'p(95)': 2 },
      thresholds: { 'p(95)<500': { ok: true } } },
    http_reqs: { type: 'counter', contains: 'default', values: { count: 10, rate: 10 } },
    http_req_failed: { type: 'rate', contains: 'default', values: { rate: 0, passes: 0, fails: 10 },
      thresholds: { 'rate<0.01': { ok: true } } },
  },
};

let failures = 0;
function fail(file, msg) { failures++; console.error(`check-static: FAIL: ${file}: ${msg}`); }

for (const file of process.argv.slice(2)) {
  const name = basename(file, '.js');
  for (const k of Object.keys(registry)) delete registry[k];
  let mod;
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (e) {
    fail(name + '.js', `cannot be loaded: ${e.message}`);
    continue;
  }
  const where = `k6/${name}.js`;
  const o = mod.options;
  if (!o || typeof o !== 'object') { fail(where, 'exports no options object'); continue; }
  if (typeof mod.default !== 'function') fail(where, 'exports no default function');
  if (typeof mod.handleSummary !== 'function') fail(where, 'exports no handleSummary function');
  if (!o.thresholds || !Object.keys(o.thresholds).length) fail(where, 'options.thresholds is empty');
  for (const [key, list] of Object.entries(o.thresholds || {})) {
    const metric = key.replace(/\{.*\}$/, '');
    if (!BUILTIN.has(metric) && !registry[metric]) fail(where, `threshold on unknown metric ${metric}`);
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*(\{[^{}:]+:[^{}]+\})?$/.test(key)) fail(where, `threshold key ${key} is malformed`);
    const exprs = Array.isArray(list) ? list : [list];
    for (const t of exprs) {
      const expr = typeof t === 'string' ? t : t && t.threshold;
      if (!/^\s*(p\(\d+(\.\d+)?\)|avg|min|max|med|rate|count|value)\s*(<=|>=|===|==|!=|<|>)\s*-?[\d.]+\s*$/.test(expr || '')) {
        fail(where, `threshold ${key}: "${expr}" is not an aggregation compared with a number`);
      }
    }
  }
  const scenarios = o.scenarios || { default: {} };
  const execs = new Set();
  for (const [sname, sc] of Object.entries(scenarios)) {
    const ex = sc.exec || 'default';
    if (typeof mod[ex] !== 'function') fail(where, `scenario ${sname}: exec ${ex} is not an exported function`);
    else execs.add(ex);
  }
  // every exec function once against fake answers: nothing throws, all checks pass
  const modes = name === 'rate_limit' ? [200, 429] : name === 'cache' ? [200, 'hit'] : [200];
  for (const ex of execs) {
    for (const mode of modes) {
      fake.mode = mode; fake.calls.length = 0; k6.state.checkFailures.length = 0;
      try {
        mod[ex]();
      } catch (e) {
        fail(where, `${ex}() with a ${mode} answer threw: ${e.message}`);
        continue;
      }
      if (!fake.calls.length) fail(where, `${ex}() sent no request`);
      if (k6.state.checkFailures.length) {
        fail(where, `${ex}() with a ${mode} answer: checks failed: ${k6.state.checkFailures.join(', ')}`);
      }
    }
  }
  let out;
  try {
    out = mod.handleSummary(sample);
  } catch (e) {
    fail(where, `handleSummary threw: ${e.message}`);
    continue;
  }
  const path = `/out/${name}-summary.json`;
  if (!out || typeof out.stdout !== 'string' || !out.stdout.includes('thresholds')) {
    fail(where, 'handleSummary returns no text summary on stdout');
  }
  try {
    JSON.parse(out[path]);
  } catch (e) {
    fail(where, `handleSummary does not write JSON to ${path}`);
  }
}
process.exit(failures ? 1 : 0);
JS
    shopt -s nullglob
    scenarios=("$k6tmp"/k6/*.js)
    shopt -u nullglob
    if ! node "$k6tmp/harness.mjs" "${scenarios[@]}"; then
        failed=1
    fi
fi
fi

# ---- dashboard: syntax, uPlot pinned, nothing from another host ------------

if want dashboard; then
step "dashboard: node --check, uPlot pinned, local files only"
for f in "$root"/nginx-conf/dashboard/*.js; do
    if ! node --check "$f"; then
        echo "check-static: FAIL: ${f#"$root"/}: JavaScript syntax error (above)" >&2
        failed=1
    fi
done
if ! "$python" - "$root" <<'PY'
import json
import os
import re
import sys

root = sys.argv[1]
dash = os.path.join(root, "nginx-conf", "dashboard")
errors = 0


def err(msg):
    global errors
    errors += 1
    print("check-static: FAIL: nginx-conf/dashboard/" + msg, file=sys.stderr)


def read(name):
    with open(os.path.join(dash, name)) as f:
        return f.read()


pkg = json.loads(read("package.json"))
lock = json.loads(read("package-lock.json"))
deps = pkg.get("dependencies") or {}
if list(deps) != ["uplot"]:
    err("package.json: dependencies must be uplot alone (got %s)" % list(deps))
version = deps.get("uplot", "")
if not re.fullmatch(r"\d+\.\d+\.\d+", version):
    err("package.json: uplot \"%s\" is not one exact version" % version)
pkgs = lock.get("packages") or {}
if (pkgs.get("") or {}).get("dependencies") != deps:
    err("package-lock.json: out of step with package.json (npm install"
        " --package-lock-only)")
entry = pkgs.get("node_modules/uplot") or {}
if entry.get("version") != version or \
        not str(entry.get("integrity", "")).startswith("sha512-"):
    err("package-lock.json: no uplot %s with a sha512 integrity" % version)
extra = sorted(set(pkgs) - {"", "node_modules/uplot"})
if extra:
    err("package-lock.json: packages besides uplot: %s" % extra)

with open(os.path.join(root, "scripts", "install-dashboard.sh")) as f:
    installer = f.read()
html = read("index.html")
for link in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
    if link == "data:,":
        continue
    if not link.startswith("/dashboard/"):
        err("index.html: %s is not a file of this nginx (/dashboard/...)"
            % link)
        continue
    name = link[len("/dashboard/"):]
    if name.startswith("vendor/"):
        if os.path.basename(name) not in installer:
            err("index.html: %s: install-dashboard.sh does not install it"
                % link)
    elif not os.path.isfile(os.path.join(dash, name)):
        err("index.html: %s: no such file in nginx-conf/dashboard/" % link)
for name in sorted(os.listdir(dash)):
    if name.endswith((".html", ".js", ".css")):
        text = read(name)
        for m in re.finditer(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text,
                             re.I):
            err("%s: names another host (%s): the page loads nothing from"
                " outside this nginx" % (name, m.group(0)))
sys.exit(1 if errors else 0)
PY
then
    failed=1
fi
fi

if [ "$failed" -ne 0 ]; then
    echo "check-static: FAILED" >&2
    exit 1
fi
echo "check-static: all passed"
