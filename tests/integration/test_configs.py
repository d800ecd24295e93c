"""The shipped configs: nginx-conf/gateway.conf.template, rendered by
scripts/render-conf.sh exactly as `make run` renders it, passes `nginx -t`
with the module loaded, and every snippet parses on its own.

render_shipped() is also what test_stack.py runs, so the stack tests
exercise the shipped file, never a hand-written copy of it.
"""

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from harness.nginx import MODULE, NGINX, asan_env, free_port, private_dir

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RENDER = os.path.join(REPO, "scripts", "render-conf.sh")
TEMPLATE = os.path.join(REPO, "nginx-conf", "gateway.conf.template")
SNIPPETS = sorted(glob.glob(os.path.join(REPO, "nginx-conf", "snippets",
                                         "*.conf")))


TEMPLATE_VARS = ("AGW_MODULE", "AGW_LISTEN", "AGW_SIM1", "AGW_SIM2",
                 "AGW_SIM3", "AGW_USER", "AGW_ERROR_LOG", "AGW_ACCESS_LOG",
                 "AGW_WORKERS", "AGW_CACHE", "AGW_REDIS", "AGW_REDIS_DIRECTIVE",
                 "AGW_REAL_IP_FROM", "AGW_CACHEZ_ALLOW")


def render_shipped(outdir, **env):
    """Render the shipped template into OUTDIR/nginx.conf (+ snippets/).
    Keyword arguments are AGW_* variables (AGW_ prefix implied); those not
    given keep render-conf.sh's defaults, except the module, which is the
    one under test (the ASan build in `make test-asan`)."""
    full = {k: v for k, v in os.environ.items()
            if k not in TEMPLATE_VARS}
    full["AGW_MODULE"] = MODULE
    full.update({"AGW_" + k: str(v) for k, v in env.items()})
    out = os.path.join(outdir, "nginx.conf")
    p = subprocess.run([RENDER, out], capture_output=True, text=True, env=full)
    assert p.returncode == 0, "render-conf.sh failed:\n" + p.stderr
    return out


def nginx_t(prefix, conf):
    """nginx -t the way scripts/run.sh does: (returncode, output)."""
    env = asan_env()
    if env.get("LD_PRELOAD"):
        env["ASAN_OPTIONS"] = "log_path=%s/asan:detect_leaks=0" % prefix
    p = subprocess.run([NGINX, "-t", "-p", prefix + "/", "-c", conf,
                        "-e", os.path.join(prefix, "error.log")],
                       capture_output=True, text=True, env=env)
    return p.returncode, p.stdout + p.stderr


def read(path):
    with open(path) as f:
        return f.read()


def test_shipped_config_passes_nginx_t():
    d = private_dir("agw-conf-")
    try:
        conf = render_shipped(d, LISTEN="127.0.0.1:%d" % free_port(),
                              SIM1="127.0.0.1:%d" % free_port(),
                              SIM2="127.0.0.1:%d" % free_port(),
                              SIM3="127.0.0.1:%d" % free_port(),
                              WORKERS=2)
        rc, out = nginx_t(d, conf)
        assert rc == 0, "nginx -t rejected the shipped config:\n" + out
        assert "syntax is ok" in out, out
        assert "[emerg]" not in out and "[alert]" not in out, out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_rendered_config_has_no_template_left_and_keeps_nginx_variables():
    d = private_dir("agw-conf-")
    try:
        text = read(render_shipped(d))
        assert "${" not in text, "unreplaced ${...} in the rendered config"
        code = re.sub(r"#.*", "", text)
        assert "AGW_" not in code, "an AGW_ name leaked into the config"
        # envsubst runs with an explicit list: nginx's own variables survive
        for var in ("$upstream_addr", "$upstream_response_time",
                    "$request_time", "$upstream_http_x_server_id"):
            assert var in text, "nginx variable %s was eaten" % var
        # the defaults are the local stack of `make run`
        assert "load_module %s;" % MODULE in text
        assert "listen 127.0.0.1:8080;" in text
        for port in (9001, 9002, 9003):
            assert "server 127.0.0.1:%d max_fails=1" % port in text
        assert "worker_processes auto;" in text
        assert "daemon off;" in text
        for name in ("realip.conf", "proxy-upstream.conf",
                     "cachez-access.conf"):
            assert os.path.isfile(os.path.join(d, "snippets", name)), \
                "render-conf.sh did not copy snippets/%s" % name
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_rendered_paths_are_relative_to_the_prefix():
    """Everything nginx writes lands under `nginx -p DIR/`, so a run
    directory (or a test's temp dir) holds it all; only load_module is
    absolute."""
    d = private_dir("agw-conf-")
    try:
        text = read(render_shipped(d))
        for m in re.finditer(r"^\s*(pid|\w+_temp_path|include)\s+(\S+);",
                             text, re.M):
            assert not m.group(2).startswith("/"), \
                "%s is absolute: %s" % (m.group(1), m.group(2))
        rc, out = nginx_t(d, os.path.join(d, "nginx.conf"))
        assert rc == 0, out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_render_user_line():
    d = private_dir("agw-conf-")
    try:
        text = read(render_shipped(d, USER=""))
        assert not re.search(r"^\s*user\s", text, re.M), \
            "AGW_USER=\"\" must leave no user directive"
        text = read(render_shipped(d, USER="user nobody nogroup;"))
        assert re.search(r"^user nobody nogroup;$", text, re.M)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_render_refuses_relative_module_and_bad_usage():
    d = private_dir("agw-conf-")
    try:
        env = dict(os.environ, AGW_MODULE="build/ngx_ai_gateway_module.so")
        p = subprocess.run([RENDER, os.path.join(d, "nginx.conf")],
                           capture_output=True, text=True, env=env)
        assert p.returncode != 0 and "absolute" in p.stderr, p.stderr
        assert not os.path.exists(os.path.join(d, "nginx.conf"))

        p = subprocess.run([RENDER], capture_output=True, text=True)
        assert p.returncode == 2 and "usage" in p.stderr, p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_every_snippet_parses(nginx_factory):
    assert SNIPPETS, "no nginx-conf/snippets/*.conf"
    for path in SNIPPETS:
        name = os.path.basename(path)
        # a proxied location is a context every snippet is valid in
        n = nginx_factory("""
    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            proxy_pass http://127.0.0.1:1;
            include snippets/""" + name + """;
        }
    }
""", start=False)
        os.makedirs(os.path.join(n.dir, "snippets"), exist_ok=True)
        shutil.copy(path, os.path.join(n.dir, "snippets", name))
        rc, out = n.test_config()
        assert rc == 0, "snippet %s does not parse:\n%s" % (name, out)


def test_cachez_restricted_to_loopback():
    """SPEC 2.1, issue 11: the shipped config answers /cachez on loopback
    only (test_stack.py checks it live through realip)."""
    text = read(os.path.join(REPO, "nginx-conf", "snippets",
                             "cachez-access.conf"))
    rules = re.findall(r"^\s*(allow|deny)\s+(\S+);", text, re.M)
    assert rules == [("allow", "127.0.0.0/8"), ("allow", "::1"),
                     ("deny", "all")], rules

    tpl = read(TEMPLATE)
    m = re.search(r"location = /cachez \{(.*?)\n        \}", tpl, re.S)
    assert m, "no location = /cachez in the template"
    assert "ai_gateway_cachez;" in m.group(1)
    assert "include snippets/cachez-access.conf;" in m.group(1)


def test_v1_location_streams_unbuffered():
    """SSE must pass token by token even from upstreams that do not send
    X-Accel-Buffering: no (ai-sim does, real servers often don't)."""
    tpl = read(TEMPLATE)
    m = re.search(r"location /v1/ \{(.*?)\n        \}", tpl, re.S)
    assert m, "no location /v1/ in the template"
    block = m.group(1)
    for line in ("proxy_buffering off;", "proxy_cache off;",
                 "include snippets/proxy-upstream.conf;"):
        assert line in block, "location /v1/ lacks " + line
    t = re.search(r"proxy_read_timeout (\d+)s;", block)
    assert t and int(t.group(1)) >= 60, "proxy_read_timeout too short"


def realip_rules(text):
    return re.findall(r"^\s*(set_real_ip_from|allow|deny)\s+(\S+);", text,
                      re.M)


def test_realip_trusts_loopback_only_by_default():
    """Issue 11 item 14: X-Forwarded-For from a private network is not
    believed, or any host there picks a fresh address (and per-client
    bucket) per request.  The old snippet trusted 10/8, 172.16/12,
    192.168/16 and fc00::/7."""
    snippet = read(os.path.join(REPO, "nginx-conf", "snippets", "realip.conf"))
    trusted = [v for k, v in realip_rules(snippet) if k == "set_real_ip_from"]
    assert trusted == ["127.0.0.0/8", "::1"], trusted
    assert re.search(r"^real_ip_recursive on;", snippet, re.M)

    d = private_dir("agw-conf-")
    try:
        text = read(render_shipped(d))
        # nothing but the snippet's lines: no proxy trusted by default
        assert [r for r in realip_rules(text)
                if r[0] == "set_real_ip_from"] == [], text
        text = read(os.path.join(d, "snippets", "realip.conf"))
        assert [v for k, v in realip_rules(text)
                if k == "set_real_ip_from"] == ["127.0.0.0/8", "::1"]
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_render_trusted_proxies_and_scrapers():
    """AGW_REAL_IP_FROM names the load balancers, AGW_CACHEZ_ALLOW the
    scrapers: one line per address, placed before /cachez's deny all;
    anything but an address is refused."""
    d = private_dir("agw-conf-")
    try:
        text = read(render_shipped(d, REAL_IP_FROM="10.0.3.17 fd00::5",
                                   CACHEZ_ALLOW="172.30.42.9/32"))
        assert "set_real_ip_from 10.0.3.17; set_real_ip_from fd00::5;" in text
        cachez = re.search(r"location = /cachez \{(.*?)\n        \}", text,
                           re.S).group(1)
        assert cachez.index("allow 172.30.42.9/32;") < \
            cachez.index("include snippets/cachez-access.conf;"), cachez
        rc, out = nginx_t(d, os.path.join(d, "nginx.conf"))
        assert rc == 0, out

        env = {k: v for k, v in os.environ.items() if k not in TEMPLATE_VARS}
        env.update(AGW_MODULE=MODULE, AGW_REAL_IP_FROM="10.0.0.1;deny")
        p = subprocess.run([RENDER, os.path.join(d, "bad.conf")], env=env,
                           capture_output=True, text=True)
        assert p.returncode != 0 and "AGW_REAL_IP_FROM" in p.stderr, p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def http_over_unix(path, request):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(path)
        s.sendall(request.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return int(data.split(b" ", 2)[1])


def test_forged_forwarded_for_from_a_non_loopback_source(nginx_factory):
    """A live client that is not loopback: nginx listening on a unix socket
    (its clients are "unix:", which the shipped realip does not trust).
    Its forged X-Forwarded-For: 127.0.0.1 does not open /cachez, and 60
    requests each "from" another address still share one per-client bucket
    (burst 40), so 429s come.  (No non-loopback IP source can be made on
    the test machine; test-docker checks the same from a private address,
    the compose network's gateway.)"""
    n = nginx_factory(None, start=False)
    sock = os.path.join(n.dir, "gw.sock")
    render_shipped(n.dir, LISTEN="unix:" + sock, ERROR_LOG="logs/error.log",
                   ACCESS_LOG="logs/access.log", WORKERS=1,
                   SIM1="127.0.0.1:1", SIM2="127.0.0.1:2", SIM3="127.0.0.1:3")
    env = n.env
    p = subprocess.Popen([NGINX, "-p", n.dir + "/", "-c", n.conf_path,
                          "-e", n.error_log], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            assert time.monotonic() < deadline and p.poll() is None, \
                "nginx did not start:\n" + read(n.error_log)
            time.sleep(0.05)
        req = ("GET %s HTTP/1.0\r\nHost: gw\r\n"
               "X-Forwarded-For: %s\r\n\r\n")
        assert http_over_unix(sock, req % ("/healthz", "127.0.0.1")) == 200
        assert http_over_unix(sock, req % ("/cachez", "127.0.0.1")) == 403
        statuses = [http_over_unix(sock, req % ("/infer", "127.0.%d.%d"
                                                % (i // 250, i % 250 + 1)))
                    for i in range(60)]
        assert 429 in statuses, statuses
    finally:
        p.send_signal(signal.SIGQUIT)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
