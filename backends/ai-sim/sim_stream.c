/*
 * ai-sim: "stream": true chat completions as server-sent events.
 *
 * Each token is written as its own chunk when its timer fires, so a
 * client (or nginx with X-Accel-Buffering: no) sees tokens arrive at the
 * pace of the latency model, not all at once at the end.
 *
 * The events, as OpenAI sends them: a role chunk, one chunk per token,
 * a chunk with the finish_reason, with stream_options.include_usage a
 * chunk with "choices":[] and the usage (every other chunk then says
 * "usage":null), and "data: [DONE]".  A cut stream stops after some
 * token chunks and closes the connection without the last chunk of the
 * chunked encoding.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/bufferevent.h>

#include "sim.h"


#define SIM_STREAM_DELTA       "[{\"index\":0,\"delta\":"
#define SIM_STREAM_FINISH      "{},\"finish_reason\":\"length\"}]"
#define SIM_STREAM_DONE        "data: [DONE]\n\n"

/* what closes a delta chunk, with and without include_usage */
#define SIM_STREAM_SUFFIX      ",\"finish_reason\":null}]}\n\n"
#define SIM_STREAM_SUFFIX_U    ",\"finish_reason\":null}],\"usage\":null}\n\n"

/* a cut waits for what it already wrote to leave, at most this long */
#define SIM_STREAM_FLUSH_MS    1
#define SIM_STREAM_FLUSH_MAX   1000


static void sim_stream_tick(sim_req_t *r);
static void sim_stream_cut(sim_req_t *r);


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
 * Every chunk shares everything up to the choices, so it is rendered once
 * per stream: "data: {...,\"choices\":".
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
                 "\"model\":%s,\"server_id\":%s,\"choices\":",
                 hash, created, qmodel, qid);

    prefix = (n > 0) ? malloc((size_t) n + 1) : NULL;

    if (prefix != NULL) {
        snprintf(prefix, (size_t) n + 1,
                 "data: {\"id\":\"chatcmpl-%016" PRIx64 "\","
                 "\"object\":\"chat.completion.chunk\",\"created\":%lld,"
                 "\"model\":%s,\"server_id\":%s,\"choices\":",
                 hash, created, qmodel, qid);
    }

    cJSON_free(qmodel);
    cJSON_free(qid);

    return prefix;
}


int
sim_stream_start(sim_ctx_t *ctx, struct evhttp_request *req,
    sim_stream_conf_t *sc)
{
    double             factor;
    sim_req_t         *r;
    struct evkeyvalq  *headers;

    r = sim_req_create(ctx, req, sim_stream_tick);
    if (r == NULL) {
        sim_prefix_seq_free(sc->seq);
        return -1;
    }

    r->seq = *sc->seq;
    sim_prefix_seq_init(sc->seq, 0);
    r->stream = 1;

    r->prefix = sim_stream_prefix(ctx, sc->model, sc->hash);
    r->chunk = evbuffer_new();

    if (r->prefix == NULL || r->chunk == NULL) {
        sim_req_finalize(r);
        return -1;
    }

    /* the same words, in the same order, as the non-stream answer */
    sim_rng_seed(&r->words, sc->hash);
    r->left = sc->max_tokens;
    r->prompt_tokens = sc->prompt_tokens;
    r->completion_tokens = sc->max_tokens;
    r->total_tokens = (long) sc->prompt_tokens + sc->max_tokens;
    /* a cut past the last token still loses the end of the stream */
    r->cut_after = (sc->cut_after > (long) sc->max_tokens)
                   ? (long) sc->max_tokens : sc->cut_after;
    r->include_usage = sc->include_usage;
    r->suffix = sc->include_usage ? SIM_STREAM_SUFFIX_U : SIM_STREAM_SUFFIX;

    /* one jitter factor per request, as for the non-stream latency */
    factor = sim_jitter(ctx);
    r->factor = factor;

    /* the first tick comes after the queue and the prefill */
    if (sim_sched_enter(r) != 0) {
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


/* the finish chunk, the usage chunk if asked for, and [DONE] */
static int
sim_stream_add_end(sim_req_t *r, struct evbuffer *buf)
{
    if (evbuffer_add_printf(buf, "%s" SIM_STREAM_DELTA SIM_STREAM_FINISH
                            "%s}\n\n", r->prefix,
                            r->include_usage ? ",\"usage\":null" : "") < 0)
    {
        return -1;
    }

    if (r->include_usage
        && evbuffer_add_printf(buf, "%s[],\"usage\":{\"prompt_tokens\":%u,"
                               "\"completion_tokens\":%u,"
                               "\"total_tokens\":%ld", r->prefix,
                               r->prompt_tokens, r->completion_tokens,
                               r->total_tokens) < 0)
    {
        return -1;
    }

    /* with a prefix cache, what it held of the prompt (sim_json.c) */

    if (r->include_usage && r->ctx->prefix.capacity
        && evbuffer_add_printf(buf, ",\"prompt_tokens_details\":"
                               "{\"cached_tokens\":%u}",
                               sim_json_cached_tokens(r->prompt_tokens,
                                                      r->hit_tokens,
                                                      r->seq_tokens))
           < 0)
    {
        return -1;
    }

    if (r->include_usage && evbuffer_add(buf, "}}\n\n", 4) != 0) {
        return -1;
    }

    return evbuffer_add(buf, SIM_STREAM_DONE, sizeof(SIM_STREAM_DONE) - 1);
}


static void
sim_stream_tick(sim_req_t *r)
{
    int                     ok;
    size_t                  n;
    const char             *word;
    struct evbuffer        *buf;
    struct evhttp_request  *req;

    if (r->cutting || r->cut_after == (long) r->sent) {
        sim_stream_cut(r);
        return;
    }

    buf = r->chunk;
    req = r->req;
    ok = 1;

    if (r->sent == 0) {
        sim_sched_first_token(r);

        /* OpenAI opens with the role and an empty content */
        ok &= evbuffer_add_printf(buf, "%s" SIM_STREAM_DELTA
                                  "{\"role\":\"assistant\","
                                  "\"content\":\"\"}%s",
                                  r->prefix, r->suffix) >= 0;
    }

    /* vocabulary words need no JSON escaping */
    word = sim_model_word(&r->words, &n);

    ok &= evbuffer_add_printf(buf, "%s" SIM_STREAM_DELTA
                              "{\"content\":\"%s%.*s\"}%s",
                              r->prefix, (r->sent > 0) ? " " : "",
                              (int) n, word, r->suffix) >= 0;

    r->sent++;
    r->left--;

    if ((r->left == 0 && r->cut_after < 0) || !ok) {
        (void) sim_stream_add_end(r, buf);

        evhttp_send_reply_chunk(req, buf);

        /* our state goes first: ending the reply may free the request */
        sim_req_finalize(r);
        evhttp_send_reply_end(req);
        return;
    }

    evhttp_send_reply_chunk(req, buf);

    /* without a connection evhttp leaves the data in place */
    evbuffer_drain(buf, evbuffer_get_length(buf));

    if (sim_req_schedule(r, sim_sched_decoded(r)) != 0) {
        sim_req_finalize(r);
        evhttp_send_reply_end(req);
    }
}


/*
 * A cut closes the connection as a crashed upstream would: no finish
 * chunk, no [DONE], no terminating chunk of the chunked encoding.  What
 * was already written leaves first, so that the client sees the events
 * before the end; freeing the connection would drop them otherwise.
 */
static void
sim_stream_cut(sim_req_t *r)
{
    sim_ctx_t                 *ctx;
    struct bufferevent        *bev;
    struct evhttp_connection  *evcon;

    ctx = r->ctx;
    evcon = r->evcon;
    r->cutting = 1;

    bev = (evcon != NULL) ? evhttp_connection_get_bufferevent(evcon) : NULL;

    if (bev != NULL
        && evbuffer_get_length(bufferevent_get_output(bev)) > 0
        && r->cut_waits++ < SIM_STREAM_FLUSH_MAX
        && sim_req_schedule(r, SIM_STREAM_FLUSH_MS) == 0)
    {
        return;
    }

    ctx->cut++;

    /* our state goes first: freeing the connection frees the request */
    sim_req_finalize(r);

    if (evcon != NULL) {
        evhttp_connection_free(evcon);
    }
}
