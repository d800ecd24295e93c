/*
 * ai-sim: the replica's load in vLLM's words.
 *
 * Every answer carries ORCA's endpoint-load-metrics header in the text
 * form vLLM sends, and GET /metrics answers Prometheus text with vLLM's
 * metric names, so that a balancer or a scrape written for a vLLM fleet
 * reads ai-sim unchanged.
 */

#include <stdio.h>
#include <string.h>

#include <event2/keyvalq_struct.h>

#include "sim.h"


#define SIM_METRICS_TYPE     "text/plain; version=0.0.4; charset=utf-8"


/* vLLM's TTFT buckets (vllm/v1/metrics/loggers.py), in seconds */
static const double  sim_ttft_bounds[SIM_TTFT_BUCKETS] = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0
};


void
sim_metrics_observe_ttft(sim_ctx_t *ctx, uint64_t us)
{
    size_t  i;
    double  s;

    s = (double) us / 1000000.0;

    /* counted in its own bucket; above the last bound, in +Inf only */
    for (i = 0; i < SIM_TTFT_BUCKETS; i++) {
        if (s <= sim_ttft_bounds[i]) {
            ctx->ttft_buckets[i]++;
            break;
        }
    }

    ctx->ttft_count++;
    ctx->ttft_sum += s;
}


/*
 * kv_cache_usage_perc: with a prefix cache, the share of its blocks that
 * hold a running sequence's or a cached prompt's tokens (SPEC 8.1); with
 * slots but no cache, the share of the slots in use; with neither, 0 (an
 * unbounded server is never full).
 */
double
sim_metrics_kv_usage(sim_ctx_t *ctx)
{
    if (ctx->prefix.capacity > 0) {
        return sim_prefix_usage(&ctx->prefix);
    }

    if (ctx->slots.limit > 0) {
        return (double) ctx->slots.running / ctx->slots.limit;
    }

    return 0;
}


/*
 * A share as Python prints a float, which is how vLLM's header and
 * prometheus_client write it: "0.0", "0.25", "1.0"; six decimals at most,
 * never an exponent, so any parser of decimals reads it.
 */
static void
sim_metrics_share(double v, char *buf, size_t size)
{
    size_t  n;

    if (!(v > 0)) {
        v = 0;

    } else if (v > 1) {
        v = 1;
    }

    n = (size_t) snprintf(buf, size, "%.6f", v);

    while (n > 3 && buf[n - 1] == '0' && buf[n - 2] != '.') {
        buf[--n] = '\0';
    }
}


/*
 * As vLLM's --enable-server-load-tracking answers with
 * "endpoint-load-metrics-format: text"; the figures are taken when the
 * headers are made, so a stream's headers count the stream itself and a
 * JSON answer's count what runs and waits once it is done.
 */
void
sim_metrics_add_load_header(sim_ctx_t *ctx, struct evkeyvalq *headers)
{
    char  buf[192], share[16];

    sim_metrics_share(sim_metrics_kv_usage(ctx), share, sizeof(share));

    snprintf(buf, sizeof(buf),
             "TEXT named_metrics.num_requests_running=%u, "
             "named_metrics.num_requests_waiting=%u, "
             "named_metrics.kv_cache_usage_perc=%s",
             ctx->slots.running, ctx->slots.waiting, share);

    evhttp_remove_header(headers, "endpoint-load-metrics");
    evhttp_add_header(headers, "endpoint-load-metrics", buf);
}


static int
sim_metrics_family(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
    return evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n",
                               name, help, name, type);
}


/* GET /metrics: Prometheus text exposition format 0.0.4 */
void
sim_metrics_handler(sim_ctx_t *ctx, struct evhttp_request *req)
{
    int               ok;
    char              share[16];
    size_t            i;
    uint64_t          cumulative;
    struct evbuffer  *b;

#define SIM_LABELS  "{model_name=\"" SIM_MODEL_DEFAULT "\"}"
#define SIM_LE      "{model_name=\"" SIM_MODEL_DEFAULT "\",le=\""

    b = evbuffer_new();
    if (b == NULL) {
        sim_http_send_oom(ctx, req);
        return;
    }

    sim_metrics_share(sim_metrics_kv_usage(ctx), share, sizeof(share));

    ok = sim_metrics_family(b, "vllm:num_requests_running", "gauge",
                            "Number of requests in model execution "
                            "batches.") >= 0;
    ok &= evbuffer_add_printf(b, "vllm:num_requests_running" SIM_LABELS
                              " %u\n", ctx->slots.running) >= 0;

    ok &= sim_metrics_family(b, "vllm:num_requests_waiting", "gauge",
                             "Number of requests waiting to be "
                             "processed.") >= 0;
    ok &= evbuffer_add_printf(b, "vllm:num_requests_waiting" SIM_LABELS
                              " %u\n", ctx->slots.waiting) >= 0;

    ok &= sim_metrics_family(b, "vllm:kv_cache_usage_perc", "gauge",
                             "KV-cache usage. 1 means 100 percent "
                             "usage.") >= 0;
    ok &= evbuffer_add_printf(b, "vllm:kv_cache_usage_perc" SIM_LABELS
                              " %s\n", share) >= 0;

    ok &= sim_metrics_family(b, "vllm:prefix_cache_queries_total",
                             "counter", "Prefix cache queries, in terms "
                             "of number of queried tokens.") >= 0;
    ok &= evbuffer_add_printf(b, "vllm:prefix_cache_queries_total"
                              SIM_LABELS " %llu\n", (unsigned long long)
                              ctx->prefix.query_tokens) >= 0;

    ok &= sim_metrics_family(b, "vllm:prefix_cache_hits_total", "counter",
                             "Prefix cache hits, in terms of number of "
                             "cached tokens.") >= 0;
    ok &= evbuffer_add_printf(b, "vllm:prefix_cache_hits_total"
                              SIM_LABELS " %llu\n", (unsigned long long)
                              ctx->prefix.hit_tokens) >= 0;

    ok &= sim_metrics_family(b, "vllm:time_to_first_token_seconds",
                             "histogram", "Histogram of time to first "
                             "token in seconds.") >= 0;

    cumulative = 0;

    for (i = 0; i < SIM_TTFT_BUCKETS; i++) {
        cumulative += ctx->ttft_buckets[i];
        ok &= evbuffer_add_printf(b, "vllm:time_to_first_token_seconds"
                                  "_bucket" SIM_LE "%g\"} %llu\n",
                                  sim_ttft_bounds[i],
                                  (unsigned long long) cumulative) >= 0;
    }

    ok &= evbuffer_add_printf(b, "vllm:time_to_first_token_seconds_bucket"
                              SIM_LE "+Inf\"} %llu\n"
                              "vllm:time_to_first_token_seconds_sum"
                              SIM_LABELS " %.6f\n"
                              "vllm:time_to_first_token_seconds_count"
                              SIM_LABELS " %llu\n",
                              (unsigned long long) ctx->ttft_count,
                              ctx->ttft_sum,
                              (unsigned long long) ctx->ttft_count) >= 0;

#undef SIM_LABELS
#undef SIM_LE

    if (!ok) {
        evbuffer_free(b);
        sim_http_send_oom(ctx, req);
        return;
    }

    sim_http_add_common_headers(ctx, req, SIM_METRICS_TYPE, -1);
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}
