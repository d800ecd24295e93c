#!/usr/bin/env bash
# make test-docker: the compose stack (compose.yaml, profile "monitoring"
# included) built and brought up for real, checked from outside, taken down.
#
#   scripts/test-docker.sh
#
# 1. a Docker engine: the running one, or (as root, none answering) a
#    dockerd started here with the vfs storage driver and stopped at the
#    end, by its PID;
# 2. the base images debian:12 / debian:12-slim, made from the Debian
#    archive when missing and not pullable (scripts/docker-base-images.sh);
# 3. uPlot for /dashboard installed on the host (`make dashboard`: npm ci
#    against nginx-conf/dashboard/package-lock.json, through the host's npm
#    and its CA), which docker/nginx.Dockerfile copies from the context;
#    then `build` (intermediate containers removed even when a step fails)
#    and `up -d`, with `docker compose` (v2) or Debian's docker-compose
#    1.29, under its own project name, nginx on a free loopback port;
# 4. checks: every service healthy, MISS then HIT, a 429 burst with the
#    RateLimit headers (a forged X-Forwarded-For from the host does not
#    help: only loopback and the k6 container are trusted), gw:v1:* keys
#    with their TTL in the redis container, /cachez and /dashboard (403
#    from the host, 200 inside the nginx container, the page's and uPlot's
#    files byte for byte), Prometheus' ai_gateway_cache_hits_total equal
#    to /cachez's, the GenAI series and the four recording rules evaluated,
#    a replica stopped and the gateway still answering;
# 5. `down -v`: no container, network or volume of the project left; the
#    dangling images of the build removed (the build stage's package layer
#    is kept, tagged ai-gateway/build-deps:cache, so the next run reuses
#    it; AGW_DOCKER_KEEP=0 removes it and the ai-gateway/* images too).
#
# Each check prints PASS or FAIL; the last line is "N passed, N failed";
# the exit status is non-zero when anything failed.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

project=${AGW_DOCKER_PROJECT:-agwtest}
logdir=$repo/build/docker
mkdir -p "$logdir"

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() {   # check NAME COMMAND...: PASS when the command succeeds
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; return 1; fi
}
quiet() { "$@" > /dev/null 2>&1; }

dockerd_pid=
compose=()

finish() {
    trap - EXIT INT TERM
    if [ ${#compose[@]} -gt 0 ]; then
        "${compose[@]}" down -v --remove-orphans \
            > "$logdir/down.log" 2>&1
        local left
        left=$( (docker ps -aq --filter "label=com.docker.compose.project=$project"
                 docker network ls -q --filter "label=com.docker.compose.project=$project"
                 docker volume ls -q --filter "label=com.docker.compose.project=$project") \
                2>/dev/null)
        if [ -z "$left" ]; then
            pass "down -v leaves no container, network or volume"
        else
            fail "down -v left: $(echo "$left" | tr '\n' ' ')"
        fi
        prune_images
    fi
    if [ -n "$dockerd_pid" ]; then
        echo "test-docker: stopping the dockerd it started (pid $dockerd_pid)"
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 60); do
            kill -0 "$dockerd_pid" 2>/dev/null || break
            sleep 0.5
        done
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
trap finish EXIT
trap 'fail "interrupted"; exit 1' INT TERM

# The build stages' leaf images, and the images a rebuild replaced, are
# dangling (untagged) once the new images exist: remove those this run
# left (not anybody else's), keeping the slow package layer under a tag.
# The classic builder used here keeps no build cache besides these images.
dangling_before=
ours() {    # the dangling images that were not there before the run
    local img
    for img in $(docker images -q --no-trunc --filter dangling=true 2>/dev/null); do
        case " $dangling_before " in *" $img "*) ;; *) echo "$img" ;; esac
    done
}
prune_images() {
    local img layer
    for img in $(ours); do
        layer=$(docker history --no-trunc --format '{{.ID}} {{.CreatedBy}}' "$img" \
                    2>/dev/null | awk '/deps\.sh build/ && $1 != "<missing>" { print $1; exit }')
        if [ -n "$layer" ] && [ "${AGW_DOCKER_KEEP:-1}" != 0 ]; then
            docker tag "$layer" ai-gateway/build-deps:cache 2>/dev/null
        fi
    done
    for img in $(ours); do
        docker rmi "$img" > /dev/null 2>&1
    done
    if [ "${AGW_DOCKER_KEEP:-1}" = 0 ]; then
        docker rmi ai-gateway/build-deps:cache ai-gateway/nginx:dev \
            ai-gateway/ai-sim:dev ai-gateway/redis:dev \
            ai-gateway/prometheus:dev > /dev/null 2>&1
    fi
    if [ -z "$(ours)" ]; then
        pass "no dangling image of this run left"
    else
        fail "dangling images left: $(ours | tr '\n' ' ')"
    fi
}

# ---- 1. the engine ------------------------------------------------------

if ! command -v docker >/dev/null; then
    fail "docker client installed (scripts/deps.sh docker)"
    exit 1
fi
if ! docker info > /dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ] || ! command -v dockerd >/dev/null; then
        fail "a Docker engine answers (none running, and not root to start one)"
        exit 1
    fi
    echo "test-docker: starting dockerd --storage-driver=vfs (log: $logdir/dockerd.log)"
    dockerd --storage-driver=vfs > "$logdir/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 1 120); do
        docker info > /dev/null 2>&1 && break
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.5
    done
fi
if ! check "Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))" \
        quiet docker info; then
    [ -n "$dockerd_pid" ] && tail -5 "$logdir/dockerd.log"
    exit 1
fi

# ---- 2. base images -----------------------------------------------------

check "base images debian:12, debian:12-slim" scripts/docker-base-images.sh || exit 1

# ---- 3. build, up -------------------------------------------------------

check "uPlot installed on the host (make dashboard: build/dashboard/vendor/)" \
    make --no-print-directory dashboard || exit 1

# a failed RUN step's container would keep its image from being removed:
# the classic builder (docker-compose 1.29) removes it only when told
build_opts=()
if docker compose version > /dev/null 2>&1; then
    compose=(docker compose -p "$project" -f compose.yaml --profile monitoring)
elif command -v docker-compose > /dev/null; then
    compose=(docker-compose -p "$project" -f compose.yaml --profile monitoring)
    build_opts=(--force-rm)
else
    fail "docker compose or docker-compose installed"
    exit 1
fi
echo "test-docker: ${compose[*]}"

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
export AGW_BIND=127.0.0.1
AGW_HTTP_PORT=$(free_port)
AGW_PROMETHEUS_PORT=$(free_port)
export AGW_HTTP_PORT AGW_PROMETHEUS_PORT
base=http://127.0.0.1:$AGW_HTTP_PORT

dangling_before=$(docker images -q --no-trunc --filter dangling=true 2>/dev/null | tr '\n' ' ')
start=$(date +%s)
if timeout 1200 "${compose[@]}" build "${build_opts[@]}" \
        > "$logdir/build.log" 2>&1; then
    pass "build ($(( $(date +%s) - start )) s)"
else
    tail -40 "$logdir/build.log"
    fail "build (log: $logdir/build.log)"
    exit 1
fi
start=$(date +%s)
if timeout 300 "${compose[@]}" up -d > "$logdir/up.log" 2>&1; then
    pass "up -d ($(( $(date +%s) - start )) s)"
else
    tail -40 "$logdir/up.log"
    fail "up -d (log: $logdir/up.log)"
    exit 1
fi

services=(redis sim-1 sim-2 sim-3 nginx prometheus)

healthy() {
    local svc id
    for svc in "${services[@]}"; do
        id=$("${compose[@]}" ps -q "$svc" 2>/dev/null)
        [ -n "$id" ] || return 1
        [ "$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] \
            || return 1
    done
}
deadline=$(( $(date +%s) + 180 ))
until healthy; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        "${compose[@]}" ps
        "${compose[@]}" logs --tail 20
        break
    fi
    sleep 2
done
check "every service healthy (${services[*]})" healthy || exit 1

# ---- 4. checks from outside ---------------------------------------------

# GET /cachez from inside the nginx container (loopback), no curl needed
cachez_inside() {
    "${compose[@]}" exec -T nginx bash -c \
        'exec 3<>/dev/tcp/127.0.0.1/8080 && printf "GET /cachez%s HTTP/1.0\r\n\r\n" "$1" >&3 && cat <&3' \
        _ "${1:-}"
}

# HTTP from the host: one line per check, PASS/FAIL counted below
http_checks() {
    /usr/bin/python3 - "$base" "$1" <<'PY'
import json, sys, time, urllib.request, urllib.error, uuid

base, what = sys.argv[1], sys.argv[2]

def req(method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(base + path, data=data, method=method,
                               headers=dict({"Content-Type": "application/json"},
                                            **(headers or {})))
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except Exception as e:      # refused, reset, timed out: status 0
        return 0, {}, repr(e).encode()

def out(ok, name):
    print(("PASS: " if ok else "FAIL: ") + name)

if what == "cache":
    s, h, b = req("GET", "/healthz")
    out(s == 200 and b'"ok":true' in b, "GET /healthz 200 from the host")
    prompt = {"prompt": "test-docker " + uuid.uuid4().hex, "max_tokens": 4}
    s1, h1, b1 = req("POST", "/infer", prompt)
    for _ in range(40):
        s2, h2, b2 = req("POST", "/infer", prompt)
        if h2.get("X-Cache") == "HIT":
            break
        time.sleep(0.05)
    out(s1 == 200 and h1.get("X-Cache") == "MISS", "first POST /infer is a MISS (%s %s)" % (s1, h1.get("X-Cache")))
    out(s2 == 200 and h2.get("X-Cache") == "HIT" and b2 == b1, "the same prompt again is a HIT with the same body")
elif what == "limit":
    # 80 at once, each claiming another client: from the host (the compose
    # network's gateway, a private address) the header must not be believed
    from concurrent.futures import ThreadPoolExecutor
    def one(i):
        return req("POST", "/infer", {"prompt": "burst %d" % i, "max_tokens": 1},
                   {"X-Forwarded-For": "198.51.100.%d" % (i % 250 + 1)})
    with ThreadPoolExecutor(max_workers=80) as pool:
        answers = list(pool.map(one, range(80)))
    statuses = [a[0] for a in answers]
    limited = next(((h, b) for s, h, b in answers if s == 429), None)
    out(429 in statuses, "a burst gets 429s despite a forged X-Forwarded-For per request (%d of 80)" % statuses.count(429))
    out(set(statuses) <= {200, 429}, "the burst gets only 200 or 429 (%s)" % sorted(set(statuses)))
    if limited:
        h, b = limited
        hl = {k.lower(): v for k, v in h.items()}
        need = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after")
        out(all(k in hl for k in need) and hl["ratelimit-remaining"] == "0",
            "the 429 carries %s (%s)" % (", ".join(need), {k: hl.get(k) for k in need}))
        out(b'"rate_limited"' in b, "the 429 body is the JSON error")
    s, h, b = req("GET", "/cachez")
    out(s == 403, "/cachez from the host is 403 (got %d)" % s)
    s, h, b = req("GET", "/cachez", headers={"X-Forwarded-For": "127.0.0.1"})
    out(s == 403, "/cachez with a forged X-Forwarded-For: 127.0.0.1 is 403 (got %d)" % s)
    s, h, b = req("GET", "/dashboard/")
    out(s == 403, "/dashboard/ from the host is 403, as /cachez (got %d)" % s)
elif what == "failover":
    time.sleep(2.5)     # the per-client bucket refills after the burst
    ok, ids = 0, set()
    for i in range(12):
        s, h, b = req("POST", "/infer", {"prompt": "failover %d %s" % (i, uuid.uuid4().hex), "max_tokens": 1})
        ok += s == 200
        ids.add(h.get("X-Server-Id"))
    out(ok == 12, "with sim-2 stopped, 12 of 12 requests answered (%d)" % ok)
    out("sim-2" not in ids and len(ids - {None}) >= 1, "answered by the live replicas only (%s)" % sorted(i for i in ids if i))
PY
}

# run_http NAME: the python checks above, their PASS/FAIL lines counted;
# a helper that crashes is a failure too, never a silently skipped check
run_http() {
    local out rc line
    out=$(http_checks "$1" 2>&1)
    rc=$?
    while IFS= read -r line; do
        echo "$line"
        case $line in
            PASS:*) passed=$((passed + 1)) ;;
            FAIL:*) failed=$((failed + 1)) ;;
        esac
    done <<< "$out"
    [ $rc -eq 0 ] || fail "HTTP checks '$1' ended with status $rc"
}

run_http cache

# gw:v1:* keys and their TTL (the template's ai_gateway_cache_ttl 300s)
keys=$("${compose[@]}" exec -T redis redis-cli --scan --pattern 'gw:v1:*' 2>/dev/null | tr -d '\r')
key=$(echo "$keys" | head -n1)
if [[ $key =~ ^gw:v1:[0-9a-f]{64}$ ]]; then
    pass "redis holds gw:v1:<sha256> keys ($(echo "$keys" | wc -l))"
    ttl=$("${compose[@]}" exec -T redis redis-cli ttl "$key" 2>/dev/null | tr -d '\r')
    if [ "${ttl:-0}" -gt 0 ] 2>/dev/null && [ "$ttl" -le 300 ]; then
        pass "the key's TTL is within the cache TTL (${ttl} s of 300)"
    else
        fail "the key's TTL is within the cache TTL (got '${ttl}')"
    fi
else
    fail "redis holds gw:v1:<sha256> keys (got '${keys:0:200}')"
fi

run_http limit

inside=$(cachez_inside "" | tr -d '\r')
status=$(echo "$inside" | head -n1)
json=$(echo "$inside" | sed -n '/^$/,$p' | tail -n +2)
hits=$(echo "$json" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["caches"]["redis"]["hits"]); assert list(d["caches"]) == ["redis"] and d["redis"]["connected"]' 2>/dev/null)
if [[ $status == *" 200 "* ]] && [ -n "$hits" ] && [ "$hits" -ge 1 ]; then
    pass "/cachez inside the nginx container: 200, redis cache only, connected, hits=$hits"
else
    fail "/cachez inside the nginx container (status '$status', body '${json:0:300}')"
fi

# /dashboard inside the container: the page, the dashboard's own script and
# uPlot, each answered 200 with the very bytes of the checkout's file (uPlot
# as `make dashboard` installed it on the host and the image copied it)
dashboard_file() {  # dashboard_file PATH HOST-FILE: the body is the file's
    "${compose[@]}" exec -T nginx bash -c \
        'exec 3<>/dev/tcp/127.0.0.1/8080 && printf "GET %s HTTP/1.0\r\n\r\n" "$1" >&3 && cat <&3' \
        _ "$1" 2>/dev/null \
    | /usr/bin/python3 -c '
import sys
raw = sys.stdin.buffer.read()
head, _, body = raw.partition(b"\r\n\r\n")
status = head.split(b"\r\n", 1)[0].decode(errors="replace")
same = body == open(sys.argv[1], "rb").read()
print("%s, %d bytes%s" % (status, len(body), "" if same else ", NOT the file"))
sys.exit(0 if " 200 " in status and same else 1)' "$2"
}
for pair in /dashboard/:nginx-conf/dashboard/index.html \
            /dashboard/dashboard.js:nginx-conf/dashboard/dashboard.js \
            /dashboard/vendor/uPlot.iife.min.js:build/dashboard/vendor/uPlot.iife.min.js \
            /dashboard/vendor/uPlot.min.css:build/dashboard/vendor/uPlot.min.css; do
    path=${pair%%:*}
    file=${pair#*:}
    if got=$(dashboard_file "$path" "$file"); then
        pass "GET $path inside the nginx container: $file ($got)"
    else
        fail "GET $path inside the nginx container: $file (got '$got')"
    fi
done

# Prometheus scrapes every 5 s: its latest sample must reach /cachez's figure
prom=
deadline=$(( $(date +%s) + 45 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
    prom=$(curl -s "http://127.0.0.1:$AGW_PROMETHEUS_PORT/api/v1/query?query=ai_gateway_cache_hits_total" \
           | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(" ".join(x["value"][1] for x in r if x["metric"].get("cache") == "redis"))' 2>/dev/null)
    [ "$prom" = "$hits" ] && break
    sleep 2
done
if [ -n "$hits" ] && [ "$prom" = "$hits" ]; then
    pass "Prometheus: ai_gateway_cache_hits_total{cache=\"redis\"} = $prom, as /cachez says"
else
    fail "Prometheus: ai_gateway_cache_hits_total{cache=\"redis\"} = '$prom', /cachez says '$hits'"
fi

# the GenAI metrics (SPEC 8.3) reach Prometheus, and its recording rules
# (docker/prometheus-rules.yml) are loaded and evaluated without error,
# one of them with a value: the cache's hit ratio, which the checks above
# fed
rules_state() {     # "<rules loaded> <of them healthy and evaluated>"
    curl -s "http://127.0.0.1:$AGW_PROMETHEUS_PORT/api/v1/rules" \
    | /usr/bin/python3 -c '
import json, sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
ok = [r for r in rules if r.get("health") == "ok"
      and not r.get("lastEvaluation", "0001").startswith("0001")]
print(len(rules), len(ok))' 2>/dev/null
}
genai=
deadline=$(( $(date +%s) + 60 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
    genai=$(curl -s "http://127.0.0.1:$AGW_PROMETHEUS_PORT/api/v1/query?query=sum(gen_ai_server_request_duration_seconds_count)" \
            | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null)
    rules=$(rules_state)
    ratio=$(curl -s "http://127.0.0.1:$AGW_PROMETHEUS_PORT/api/v1/query?query=ai_gateway:cache_hit_ratio:rate5m" \
            | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null)
    [ -n "$genai" ] && [ "${genai%%.*}" -ge 1 ] 2>/dev/null && [ "$rules" = "4 4" ] \
        && [ -n "$ratio" ] && break
    sleep 2
done
if [ -n "$genai" ] && [ "${genai%%.*}" -ge 1 ] 2>/dev/null; then
    pass "Prometheus: gen_ai_server_request_duration_seconds_count sums to $genai"
else
    fail "Prometheus: gen_ai_server_request_duration_seconds_count sums to '$genai' (want >= 1)"
fi
if [ "$rules" = "4 4" ] && [ -n "$ratio" ]; then
    pass "Prometheus: 4 recording rules loaded and evaluated without error; ai_gateway:cache_hit_ratio:rate5m = $ratio"
else
    fail "Prometheus: recording rules (loaded, healthy and evaluated) '$rules', want '4 4'; ai_gateway:cache_hit_ratio:rate5m '$ratio'"
fi

check "stop the sim-2 container" quiet "${compose[@]}" stop sim-2
run_http failover

exit 0
