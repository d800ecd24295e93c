/*
 * ai-sim: "stream": true chat completions as server-sent events.
 *
 * Each token is written as its own chunk when its timer fires, so a
 * client (or nginx with X-Accel-Buffering: no) sees tokens arrive at the
 * pace of the latency model, not all at once at the end.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"


#define SIM_STREAM_SUFFIX      ",\"finish_reason\":null}]}\n\n"
#define SIM_STREAM_LAST        "{},\"finish_reason\":\"length\"}]}\n\n"
#define SIM_STREAM_DONE        "data: [DONE]\n\n"


static void sim_stream_tick(sim_req_t *r);


/* a JSON string literal for s, quotes included, malloc()ed by cJSON */
static char *
sim_stream_quote(const char *s)
{
    char   *out;
    cJSON  *str;

    str = cJSON_CreateString(s);
    if (str == NULL) {
        return NULL;
    }

    out = cJSON_PrintUnformatted(str);
    cJSON_Delete(str);

    return out;
}


/*
 * Every chunk shares everything up to the delta, so it is rendered once
 * per stream: "data: {...,\"choices\":[{\"index\":0,\"delta\":".
 */
static char *
sim_stream_prefix(sim_ctx_t *ctx, const char *model, uint64_t hash)
{
    int         n;
    char       *prefix, *qmodel, *qid;
    long long   created;

    qmodel = sim_stream_quote(model);
    qid = sim_stream_quote(ctx->conf.id);

    if (qmodel == NULL || qid == NULL) {
        cJSON_free(qmodel);
        cJSON_free(qid);
        return NULL;
    }

    created = (long long) time(NULL);

    n = snprintf(NULL, 0,
                 "data: {\"id\":\"chatcmpl-%016" PRIx64 "\","
                 "\"object\":\"chat.completion.chunk\",\"created\":%lld,"
                 "\"model\":%s,\"server_id\":%s,"
                 "\"choices\":[{\"index\":0,\"delta\":",
                 hash, created, qmodel, qid);

    prefix = (n > 0) ? malloc((size_t) n + 1) : NULL;

    if (prefix != NULL) {
        snprintf(prefix, (size_t) n + 1,
                 "data: {\"id\":\"chatcmpl-%016" PRIx64 "\","
                 "\"object\":\"chat.completion.chunk\",\"created\":%lld,"
                 "\"model\":%s,\"server_id\":%s,"
                 "\"choices\":[{\"index\":0,\"delta\":",
                 hash, created, qmodel, qid);
    }

    cJSON_free(qmodel);
    cJSON_free(qid);

    return prefix;
}


int
sim_stream_start(sim_ctx_t *ctx, struct evhttp_request *req,
    const char *model, uint64_t hash, unsigned prompt_tokens,
    unsigned max_tokens)
{
    double             factor;
    sim_req_t         *r;
    struct evkeyvalq  *headers;

    r = sim_req_create(ctx, req, sim_stream_tick);
    if (r == NULL) {
        return -1;
    }

    r->prefix = sim_stream_prefix(ctx, model, hash);
    r->chunk = evbuffer_new();

    if (r->prefix == NULL || r->chunk == NULL) {
        sim_req_finalize(r);
        return -1;
    }

    /* the same words, in the same order, as the non-stream answer */
    sim_rng_seed(&r->words, hash);
    r->left = max_tokens;
    r->total_tokens = (long) prompt_tokens + max_tokens;

    /* one jitter factor per request, as for the non-stream latency */
    factor = sim_jitter(ctx);
    r->tpot_ms = ctx->conf.tpot_ms * factor;

    if (sim_req_schedule(r, ctx->conf.ttft_ms * factor) != 0) {
        sim_req_finalize(r);
        return -1;
    }

    sim_http_add_common_headers(ctx, req, "text/event-stream",
                                r->total_tokens);

    headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Cache-Control", "no-cache");
    evhttp_add_header(headers, "X-Accel-Buffering", "no");

    evhttp_send_reply_start(req, 200, "OK");

    return 0;
}


static void
sim_stream_tick(sim_req_t *r)
{
    int                     ok;
    size_t                  n;
    const char             *word;
    struct evbuffer        *buf;
    struct evhttp_request  *req;

    buf = r->chunk;
    req = r->req;
    ok = 1;

    if (r->sent == 0) {
        /* OpenAI opens with the role and an empty content */
        ok &= evbuffer_add_printf(buf, "%s{\"role\":\"assistant\","
                                  "\"content\":\"\"}" SIM_STREAM_SUFFIX,
                                  r->prefix) >= 0;
    }

    /* vocabulary words need no JSON escaping */
    word = sim_model_word(&r->words, &n);

    ok &= evbuffer_add_printf(buf, "%s{\"content\":\"%s%.*s\"}"
                              SIM_STREAM_SUFFIX,
                              r->prefix, (r->sent > 0) ? " " : "",
                              (int) n, word) >= 0;

    r->sent++;
    r->left--;

    if (r->left == 0 || !ok) {
        evbuffer_add_printf(buf, "%s" SIM_STREAM_LAST SIM_STREAM_DONE,
                            r->prefix);

        evhttp_send_reply_chunk(req, buf);

        /* our state goes first: ending the reply may free the request */
        sim_req_finalize(r);
        evhttp_send_reply_end(req);
        return;
    }

    evhttp_send_reply_chunk(req, buf);

    /* without a connection evhttp leaves the data in place */
    evbuffer_drain(buf, evbuffer_get_length(buf));

    if (sim_req_schedule(r, r->tpot_ms) != 0) {
        sim_req_finalize(r);
        evhttp_send_reply_end(req);
    }
}
