"""The main table's rows (SPEC 5): each row a location body, and the one
nginx config that serves them all, each from its own server and port."""

import os

from harness.nginx import free_port

from benchlib.wrk import URL_SCRIPTS, post_script

KIB = "k" * 1024

HTTP = """
    access_log off;
    keepalive_requests 1000000;
    root {dir}/www;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    ai_gateway_cache_zone zone=bench:16m;
    proxy_cache_path {dir}/stock_cache levels=1:2 keys_zone=stock:16m;
    ai_gateway_limit_zone $binary_remote_addr zone=agw_pass:1m
                          rate=100000000r/s burst=100000000;
    ai_gateway_limit_zone $binary_remote_addr zone=agw_429:1m
                          rate=1r/m burst=1;
    limit_req_zone $binary_remote_addr zone=stock_pass:1m rate=100000000r/s;
    limit_req_zone $binary_remote_addr zone=stock_429:1m rate=1r/m;
    ai_gateway_limit_zone global zone=agw_global:1m
                          rate=100000000r/s burst=100000000;
    limit_req_zone global zone=stock_global:1m rate=100000000r/s;
    ai_gateway_limit_zone $binary_remote_addr zone=agw_tokens:1m
                          rate=100000000t/s burst=100000000;
    ai_gateway_model_price default input=0.15 output=0.60;
    ai_gateway_limit_zone $binary_remote_addr zone=agw_usd:1m
                          rate=1000000usd/m burst=1000000usd;
    limit_req_status 429;
    {redis_conf}

    upstream sim {{ server 127.0.0.1:{sim}; keepalive 64; }}
    upstream origin {{ server 127.0.0.1:%%PORT%%; keepalive 64; }}

    server {{
        listen 127.0.0.1:%%PORT%%;
        location = /origin {{ default_type text/plain; return 200 "{kib}"; }}
        location = /cachez {{ ai_gateway_cachez; }}
    }}
{servers}
"""

# Each row is its own server on its own port with one location at the same
# URI, so that parsing the request and finding the server and the location
# cost every row the same: only the location's body differs.
SERVER = """
    server {{
        listen 127.0.0.1:{port};
        location = /b {{ {body} }}
    }}"""

URI = "/b"

REDIS_ZONE = """ai_gateway_redis 127.0.0.1:{port} timeout=1s;
    ai_gateway_cache_zone zone=bench_near:16m;
    ai_gateway_limit_zone $binary_remote_addr zone=agw_redis:1m
                          rate=100000000r/s burst=100000000 redis;
    ai_gateway_limit_zone $binary_remote_addr zone=agw_lease:1m
                          rate=100000000r/s burst=100000000 redis lease=1000;"""

RETURN = 'default_type text/plain; return 200 "%s";' % KIB
STATIC = "alias {dir}/www/static.txt;"

ADD_HEADERS = (" add_header RateLimit-Limit 100000000;"
               " add_header RateLimit-Remaining 99999999;"
               " add_header RateLimit-Reset 1;"
               " add_header RateLimit-Policy '\"agw_pass\";q=100000000;w=1';"
               " add_header RateLimit '\"agw_pass\";r=99999999;t=1';")

# name, location body, ceiling row, stock peer row, status expected,
# connections (None: --connections); rows named Redis need redis-server
ROWS = [
    ("nginx return 200 (ceiling)", RETURN, None, None, 200),
    ("plain proxy to ai-sim", "proxy_pass http://sim/v1/models;",
     "nginx return 200 (ceiling)", None, 200),
    ("module shm-cache HIT",
     "ai_gateway_cache bench; proxy_pass http://origin/origin;",
     "nginx return 200 (ceiling)", "stock proxy_cache HIT", 200),
    ("module Redis-cache HIT",
     "ai_gateway_cache redis; proxy_pass http://origin/origin;",
     "nginx return 200 (ceiling)", "module shm-cache HIT", 200),
    # one request at a time: nothing to pipeline on the worker's connection
    ("module Redis-cache HIT, 1 connection",
     "ai_gateway_cache redis; proxy_pass http://origin/origin;",
     None, "module Redis-cache HIT", 200, 1),
    # the near cache (SPEC 7.4): a Redis entry kept in shared memory
    ("module near-cache HIT",
     "ai_gateway_cache redis; ai_gateway_cache_near bench_near ttl=3600s;"
     " proxy_pass http://origin/origin;",
     "nginx return 200 (ceiling)", "module shm-cache HIT", 200),
    ("stock proxy_cache HIT",
     "proxy_cache stock; proxy_cache_valid 200 1h; "
     "proxy_pass http://origin/origin;",
     "nginx return 200 (ceiling)", None, 200),
    ("static file (limiter ceiling)", STATIC, None, None, 200),
    ("module limiter, passing", STATIC + " ai_gateway_limit zone=agw_pass;",
     "static file (limiter ceiling)", "stock limit_req, passing", 200),
    ("module limiter, passing, headers off",
     STATIC + " ai_gateway_limit zone=agw_pass; ai_gateway_limit_headers off;",
     "static file (limiter ceiling)", "stock limit_req, passing", 200),
    ("stock limit_req, passing",
     STATIC + " limit_req zone=stock_pass burst=100000000 nodelay;",
     "static file (limiter ceiling)", None, 200),
    # the shipped config's shape: per client and global
    ("module limiter, 2 zones, passing",
     STATIC + " ai_gateway_limit zone=agw_pass;"
     " ai_gateway_limit zone=agw_global;",
     "static file (limiter ceiling)", "stock limit_req, 2 zones, passing",
     200),
    ("module limiter, 2 zones, passing, headers off",
     STATIC + " ai_gateway_limit zone=agw_pass;"
     " ai_gateway_limit zone=agw_global; ai_gateway_limit_headers off;",
     "static file (limiter ceiling)", "stock limit_req, 2 zones, passing",
     200),
    ("stock limit_req, 2 zones, passing",
     STATIC + " limit_req zone=stock_pass burst=100000000 nodelay;"
     " limit_req zone=stock_global burst=100000000 nodelay;",
     "static file (limiter ceiling)", None, 200),
    # what the five RateLimit headers cost without any limiter: the same
    # lines the limiter sends here, added by stock add_header
    ("static file + the limiter's five headers by add_header",
     STATIC + ADD_HEADERS, "static file (limiter ceiling)", None, 200),
    ("module Redis limiter, passing",
     STATIC + " ai_gateway_limit zone=agw_redis;",
     "static file (limiter ceiling)", "module limiter, passing", 200),
    # SPEC 7.4: a lease of 1000 tokens, one round trip per 1000 requests
    ("module Redis limiter, lease=1000, passing",
     STATIC + " ai_gateway_limit zone=agw_lease;",
     "static file (limiter ceiling)", "module limiter, passing", 200),
    # SPEC 7.1: a token zone reserves the estimate (no body here: the
    # default 256) and settles when the answer ends
    ("module token zone, passing",
     STATIC + " ai_gateway_limit zone=agw_tokens;",
     "static file (limiter ceiling)", "module limiter, passing", 200),
    # SPEC 8.4: a money zone prices a prompt's estimate by its model (a
    # request without a body costs nothing, so these two rows POST a chat
    # request, through the proxy, to compare a money zone and a token
    # zone on the same request; the answer says nothing: settled as
    # reserved)
    ("module token zone, POST",
     "ai_gateway_limit zone=agw_tokens; proxy_pass http://origin/origin;",
     None, None, 200),
    ("module money zone, POST",
     "ai_gateway_limit zone=agw_usd; proxy_pass http://origin/origin;",
     None, "module token zone, POST", 200),
    ("module limiter, 429 path", STATIC + " ai_gateway_limit zone=agw_429;",
     "static file (limiter ceiling)", "stock limit_req, 429 path", 429),
    ("stock limit_req, 429 path", STATIC + " limit_req zone=stock_429;",
     "static file (limiter ceiling)", None, 429),
]

ROWS = [r + (None,) * (6 - len(r)) for r in ROWS]


# the rows named ", POST" send this chat request (a wrk script written
# next to the docroot by render())
POST_BODY = ('{"model":"bench","max_tokens":16,"messages":'
             '[{"role":"user","content":"what does this cost"}]}')


def docroot(work):
    """work/www/static.txt, the 1 KiB file of the static rows."""
    os.makedirs(work + "/www")
    with open(work + "/www/static.txt", "w") as f:
        f.write(KIB)


def render(rows, work, sim_port, redis_conf):
    """The http{} body, and each row's URL on its own port."""
    urls, servers = {}, []
    lua = post_script(os.path.join(work, "post.lua"), POST_BODY)
    for name, body, _, _, _, _ in rows:
        port = free_port()
        urls[name] = "http://127.0.0.1:%d%s" % (port, URI)
        if name.endswith(", POST"):
            URL_SCRIPTS[urls[name]] = lua
        servers.append(SERVER.format(port=port, body=body.format(dir=work)))
    http = HTTP.format(dir=work, sim=sim_port, kib=KIB,
                       redis_conf=redis_conf, servers="".join(servers))
    return http, urls

