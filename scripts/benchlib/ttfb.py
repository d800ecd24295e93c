"""Streams through a token zone (SPEC 7.1), a section of make bench: the
time to the first event with and without the zone on the location."""

import statistics

from harness.nginx import Nginx
from harness.sim import Sim

from benchlib.stream_cache import stream_times

HTTP = """
    access_log off;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    ai_gateway_limit_zone $http_x_api_key zone=ttfb_tokens:1m
                          rate=100000000t/s burst=100000000;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 16; }}
    server {{
        listen 127.0.0.1:%%PORT%%;
        location /plain/ {{
            proxy_pass http://sim/;
            proxy_buffering off;
        }}
        location /tokens/ {{
            ai_gateway_limit zone=ttfb_tokens;
            proxy_pass http://sim/;
            proxy_buffering off;
        }}
    }}
"""

BODY = ('{"model":"sim-small","stream":true,"max_tokens":32,'
             '"stream_options":{"include_usage":true},'
             '"messages":[{"role":"user","content":"time to first event"}]}')


def first_event_ms(port, path):
    """One streamed chat through a token zone: ms to the first event and
    to the last."""
    first, last, _, _ = stream_times(port, BODY, path=path,
                                     headers="X-Api-Key: bench\r\n")
    return first, last


def lines(requests):
    """Time to the first streamed event through the gateway, with and
    without a token zone on the location, alternating request by request
    on one nginx (so both see the same machine), against an ai-sim whose
    first token takes 20 ms.  Settlement reads the stream as it passes:
    it must add nothing measurable to the first event."""
    sim = Sim(None, "sim-ttfb", "--ttft-ms", "20", "--tpot-ms", "1",
              "--jitter", "0").start()
    n = Nginx(HTTP.format(sim=sim.port), workers=1)
    got = {"/plain/v1/chat/completions": [], "/tokens/v1/chat/completions": []}
    try:
        n.start()
        paths = list(got)
        for i in range(requests + 10):
            for path in (paths if i % 2 else paths[::-1]):
                ms = first_event_ms(n.port, path)
                if i >= 10:           # the first ones warm up connections
                    got[path].append(ms)
    finally:
        n.stop()
        n.cleanup()
        sim.stop()
    plain = got["/plain/v1/chat/completions"]
    tokens = got["/tokens/v1/chat/completions"]

    def med(v, k):
        return statistics.median(x[k] for x in v)

    def p90(v, k):
        xs = sorted(x[k] for x in v)
        return xs[int(len(xs) * 0.9) - 1]

    print("ttfb: plain %.2f ms, token zone %.2f ms (medians)"
          % (med(plain, 0), med(tokens, 0)), flush=True)
    return [
        "",
        "Streams through a token zone: time to the first event and to the "
        "last, %d streamed chats each (32 tokens, `include_usage`), "
        "alternating request by request between a location with a token "
        "zone and the same location without, on one nginx, against an "
        "ai-sim whose first token takes 20 ms and each next one 1 ms:" %
        requests,
        "",
        "| location | first event, median ms | p90 ms | last event, median ms |",
        "| --- | ---: | ---: | ---: |",
        "| proxy, no limiter | %.2f | %.2f | %.2f |" % (
            med(plain, 0), p90(plain, 0), med(plain, 1)),
        "| proxy + token zone (reserve, read, settle) | %.2f | %.2f | %.2f |"
        % (med(tokens, 0), p90(tokens, 0), med(tokens, 1)),
        "",
        "Difference of the medians, first event: %+.2f ms." % (
            med(tokens, 0) - med(plain, 0)),
    ]

