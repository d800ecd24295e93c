/*
 * ai-sim: the inference server's scheduler, on the event loop.
 *
 * Each inference request (/infer, chat completions, streamed or not) is a
 * sequence: it enters the decode slots (sim_slots.c) and waits in their
 * FIFO queue while they are all taken; once it runs, the prefix cache
 * (sim_prefix.c) tells how many of its prompt tokens are already
 * computed, and its first token comes after
 *
 *     (--ttft-ms + uncached prompt tokens x --prefill-us-per-token
 *      + batch tokens x --decode-us-per-kv-token) x jitter
 *
 * then one token every (--tpot-ms + batch tokens x --decode-us-per-kv-token)
 * x jitter, the batch's tokens (sim_batch.c) taken as each step starts:
 * the prompts and generated tokens of every running sequence.  With
 * --kv-cache-tokens a sequence also waits until its prompt and max_tokens
 * fit beside the running ones (sim_slots.c).  After the first token its
 * blocks join the prefix cache; when it ends (answered, cut, or its
 * client gone) sim_req_finalize() calls sim_sched_leave(), which gives its
 * slot and its tokens to the oldest waiting sequences at once.
 * Everything runs on timers of the one event loop.
 */

#include <stddef.h>
#include <stdio.h>

#include "sim.h"


#define sim_req_of_slot(l)                                                    \
    ((sim_req_t *) ((char *) (l) - offsetof(sim_req_t, slot)))


static int sim_sched_start(sim_req_t *r);
static void sim_sched_prefilled(sim_req_t *r);
static void sim_sched_decode_tick(sim_req_t *r);


int
sim_sched_init(sim_ctx_t *ctx)
{
    sim_slots_init(&ctx->slots, ctx->conf.slots);
    sim_slots_set_token_limit(&ctx->slots, ctx->conf.kv_tokens);
    sim_batch_init(&ctx->batch, ctx->conf.decode_us);

    if (sim_prefix_cache_init(&ctx->prefix, ctx->conf.prefix_tokens) != 0) {
        fprintf(stderr, "ai-sim: cannot allocate a prefix cache of %llu "
                "tokens\n", (unsigned long long) ctx->conf.prefix_tokens);
        return -1;
    }

    return 0;
}


void
sim_sched_free(sim_ctx_t *ctx)
{
    sim_prefix_cache_free(&ctx->prefix);
}


/*
 * A JSON answer (/infer, a chat completion without "stream"): built now,
 * sent when the sequence has decoded its last token.  The sequence's
 * prompt moves into the request.
 */
void
sim_sched_reply(sim_ctx_t *ctx, struct evhttp_request *req, cJSON *reply,
    long total_tokens, unsigned completion_tokens, sim_prefix_seq_t *seq)
{
    double      factor;
    sim_req_t  *r;

    /* one jitter factor per request, drawn on arrival as it always was */
    factor = sim_jitter(ctx);

    r = sim_req_create(ctx, req, sim_sched_prefilled);
    if (r == NULL) {
        sim_prefix_seq_free(seq);
        cJSON_Delete(reply);
        sim_http_send_oom(ctx, req);
        return;
    }

    r->reply = reply;
    r->total_tokens = total_tokens;
    r->completion_tokens = completion_tokens;
    r->factor = factor;
    r->seq = *seq;
    sim_prefix_seq_init(seq, 0);

    if (sim_sched_enter(r) != 0) {
        sim_req_finalize(r);
        sim_http_send_oom(ctx, req);
    }
}


/* -1 when the timer cannot be armed; the caller answers and finalizes */
int
sim_sched_enter(sim_req_t *r)
{
    r->inference = 1;

    /* what it may hold in the KV cache: its prompt and all it may say */
    r->slot.tokens = sim_prefix_seq_tokens(&r->seq) + r->completion_tokens;

    if (sim_slots_enter(&r->ctx->slots, &r->slot) == SIM_SLOT_RUNNING) {
        return sim_sched_start(r);
    }

    return 0;
}


/* a slot is ours: the prefix cache decides how long the prefill takes */
static int
sim_sched_start(sim_req_t *r)
{
    double      prefill_ms, delay_ms;
    uint64_t    tokens, hit;
    sim_ctx_t  *ctx;

    ctx = r->ctx;

    hit = sim_prefix_lookup(&ctx->prefix, &r->seq);
    tokens = sim_prefix_seq_tokens(&r->seq);

    /* usage.prompt_tokens_details.cached_tokens, as vLLM and OpenAI say */
    r->hit_tokens = hit;
    r->seq_tokens = tokens;

    prefill_ms = (double) (tokens - hit) * ctx->conf.prefill_us / 1000.0;

    /*
     * The prefill shares its step with the running decodes: the step
     * reads their KV tokens, as each decode step does; then the prompt's
     * own tokens are held by the batch.
     */
    delay_ms = sim_batch_step_ms(&ctx->batch, ctx->conf.ttft_ms + prefill_ms)
               * r->factor;

    r->kv_held = tokens;
    sim_batch_hold(&ctx->batch, tokens);

    return sim_req_schedule(r, delay_ms);
}


/*
 * A token was decoded: it joins the batch's KV cache; the delay to the
 * next token is one step of the batch as it is now, in ms.
 */
double
sim_sched_decoded(sim_req_t *r)
{
    sim_ctx_t  *ctx;

    ctx = r->ctx;

    r->kv_held++;
    sim_batch_hold(&ctx->batch, 1);

    return sim_batch_step_ms(&ctx->batch, ctx->conf.tpot_ms) * r->factor;
}


/* the first token exists: TTFT as the client sees it, queue included */
void
sim_sched_first_token(sim_req_t *r)
{
    sim_ctx_t  *ctx;

    if (r->first_token) {
        return;
    }

    ctx = r->ctx;
    r->first_token = 1;

    sim_metrics_observe_ttft(ctx, sim_now_us() - r->start_us);
    sim_prefix_commit(&ctx->prefix, &r->seq);
}


/* a JSON answer after its prefill: the decode, then the answer */
static void
sim_sched_prefilled(sim_req_t *r)
{
    sim_ctx_t              *ctx;
    struct evhttp_request  *req;

    ctx = r->ctx;
    req = r->req;

    sim_sched_first_token(r);

    if (sim_json_usage_cached(ctx, r->reply, r->hit_tokens, r->seq_tokens)
        != 0)
    {
        sim_req_finalize(r);
        sim_http_send_oom(ctx, req);
        return;
    }

    if (ctx->conf.decode_us > 0) {
        /* each step's time depends on the batch: one timer a token */
        r->left = r->completion_tokens;
        sim_sched_decode_tick(r);
        return;
    }

    r->handler = sim_reply_with_latency;

    if (sim_req_schedule(r, r->completion_tokens * ctx->conf.tpot_ms
                            * r->factor) != 0)
    {
        sim_req_finalize(r);
        sim_http_send_oom(ctx, req);
    }
}


/* a JSON answer's decode, a step at a time; then the answer */
static void
sim_sched_decode_tick(sim_req_t *r)
{
    sim_ctx_t              *ctx;
    struct evhttp_request  *req;

    if (r->left == 0) {
        sim_reply_with_latency(r);
        return;
    }

    ctx = r->ctx;
    req = r->req;

    r->left--;
    r->handler = sim_sched_decode_tick;

    /* the token made last (the prefill's first) joins the batch */
    if (sim_req_schedule(r, sim_sched_decoded(r)) != 0) {
        sim_req_finalize(r);
        sim_http_send_oom(ctx, req);
    }
}


/* a queued request whose timer cannot be armed ends now */
static void
sim_sched_fail(sim_req_t *r)
{
    int                     stream;
    sim_ctx_t              *ctx;
    struct evhttp_request  *req;

    ctx = r->ctx;
    req = r->req;
    stream = r->stream;

    sim_req_finalize(r);

    if (stream) {
        /* the headers are out: end the chunked answer early */
        evhttp_send_reply_end(req);

    } else {
        sim_http_send_oom(ctx, req);
    }
}


void
sim_sched_leave(sim_req_t *r)
{
    sim_ctx_t        *ctx;
    sim_slot_link_t  *l;

    if (!r->inference) {
        return;
    }

    ctx = r->ctx;
    r->inference = 0;

    sim_prefix_release(&ctx->prefix, &r->seq);
    sim_slots_leave(&ctx->slots, &r->slot);
    sim_batch_release(&ctx->batch, r->kv_held);
    r->kv_held = 0;

    if (ctx->stopping) {
        return;
    }

    while ((l = sim_slots_next(&ctx->slots)) != NULL) {
        if (sim_sched_start(sim_req_of_slot(l)) != 0) {
            sim_sched_fail(sim_req_of_slot(l));
        }
    }
}
