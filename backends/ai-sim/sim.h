/*
 * ai-sim: an OpenAI-compatible inference simulator on one libevent loop.
 *
 * Shared types: the command line configuration, the process context and
 * the state of one request that waits on a timer (delayed or streamed).
 */

#ifndef _SIM_H_INCLUDED_
#define _SIM_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/buffer.h>
#include <cjson/cJSON.h>

#include "sim_batch.h"
#include "sim_model.h"
#include "sim_prefix.h"
#include "sim_slots.h"


#define SIM_SERVICE          "ai-sim"
#define SIM_SLOW_DELAY_MS    120
#define SIM_HTTP_TIMEOUT     300                 /* s, a request in flight */
#define SIM_IDLE_TIMEOUT     10                  /* s, --idle-timeout */
#define SIM_MAX_HEADERS      (64 * 1024)         /* bytes */
#define SIM_BACKLOG          65535               /* somaxconn caps it */

/* vLLM's buckets of vllm:time_to_first_token_seconds */
#define SIM_TTFT_BUCKETS     22


typedef struct sim_ctx_s     sim_ctx_t;
typedef struct sim_accept_s  sim_accept_t;
typedef struct sim_req_s     sim_req_t;

typedef void (*sim_req_handler_pt)(sim_req_t *r);


typedef struct {
    const char               *host;
    const char               *id;
    int                       port;
    double                    ttft_ms;
    double                    tpot_ms;
    double                    jitter;            /* 0..1 */
    size_t                    max_body;          /* bytes */
    double                    fail_rate;         /* 0..1 */
    double                    cut_rate;          /* 0..1 */
    double                    idle_timeout;      /* s */
    unsigned                  slots;             /* 0: no limit */
    double                    prefill_us;        /* per uncached token */
    uint64_t                  prefix_tokens;     /* 0: no prefix cache */
    double                    decode_us;         /* per KV token a step */
    uint64_t                  kv_tokens;         /* 0: no KV admission */
    uint64_t                  seed;
    unsigned                  seed_set:1;
} sim_conf_t;


struct sim_ctx_s {
    sim_conf_t                conf;
    struct event_base        *base;
    struct evhttp            *http;
    uint64_t                  start_ms;          /* monotonic */
    uint64_t                  requests;          /* all but /healthz */
    uint64_t                  cut;               /* streams cut mid-way */
    unsigned                  inflight;
    sim_req_t                *inflight_head;
    sim_rng_t                 rng;               /* jitter, failures */
    sim_rng_t                 cut_rng;           /* --cut-rate only */
    sim_accept_t             *accept;

    /* the inference server's state: sim_sched.c, sim_metrics.c */
    sim_slots_t               slots;
    sim_batch_t               batch;
    sim_prefix_cache_t        prefix;
    uint64_t                  ttft_buckets[SIM_TTFT_BUCKETS];
    uint64_t                  ttft_count;
    double                    ttft_sum;          /* s */
    unsigned                  stopping:1;
};


/*
 * One request waiting on a timer.  It is linked into ctx->inflight_head so
 * that shutdown can free whatever is still pending, and registered as the
 * connection's close callback so that a client going away mid-stream
 * stops the timer before the request memory disappears.
 *
 * An inference request is also a sequence of the batch (sim_sched.c): it
 * waits for a decode slot, prefills the prompt tokens the prefix cache
 * does not hold, then decodes; it gives its slot back in
 * sim_req_finalize(), however it ends.
 */
struct sim_req_s {
    sim_req_t                *prev;
    sim_req_t                *next;
    sim_ctx_t                *ctx;
    struct evhttp_request    *req;
    struct evhttp_connection *evcon;
    struct event             *timer;
    sim_req_handler_pt        handler;
    uint64_t                  start_ms;          /* monotonic */
    uint64_t                  start_us;          /* the same, finer */
    long                      total_tokens;      /* -1: no header */

    /* a sequence of the batch */
    sim_slot_link_t           slot;
    sim_prefix_seq_t          seq;
    double                    factor;            /* jitter, all phases */
    uint64_t                  hit_tokens;        /* of the prompt, found in
                                                    the prefix cache */
    uint64_t                  seq_tokens;        /* of the prompt, looked
                                                    up there */
    uint64_t                  kv_held;           /* in ctx->batch */
    unsigned                  inference:1;       /* holds or awaits a slot */
    unsigned                  first_token:1;     /* TTFT observed */
    unsigned                  stream:1;

    /* a delayed JSON answer; "latency_ms" is added when it is sent */
    cJSON                    *reply;

    /* streaming */
    sim_rng_t                 words;
    unsigned                  left;              /* tokens still to send */
    unsigned                  sent;
    unsigned                  prompt_tokens;
    unsigned                  completion_tokens;
    long                      cut_after;         /* content events; -1 */
    unsigned                  cut_waits;         /* ticks spent flushing */
    char                     *prefix;            /* "data: {...\"choices\":" */
    const char               *suffix;            /* closes a delta chunk */
    struct evbuffer          *chunk;
    unsigned                  include_usage:1;
    unsigned                  cutting:1;
};


/* sim_accept.c */
int sim_accept_init(sim_ctx_t *ctx, int fd);
void sim_accept_free(sim_ctx_t *ctx);

/* sim_http.c */
int sim_http_init(sim_ctx_t *ctx, int fd);
void sim_http_set_idle(sim_ctx_t *ctx, struct evhttp_connection *evcon);
void sim_http_add_common_headers(sim_ctx_t *ctx, struct evhttp_request *req,
    const char *content_type, long total_tokens);
void sim_http_send_body(sim_ctx_t *ctx, struct evhttp_request *req,
    int status, const char *reason, const char *body, size_t len,
    long total_tokens);
void sim_http_send_json(sim_ctx_t *ctx, struct evhttp_request *req,
    int status, const char *reason, cJSON *json, long total_tokens);
void sim_http_send_error(sim_ctx_t *ctx, struct evhttp_request *req,
    int status, const char *reason, const char *type, const char *message);
void sim_http_send_bad_request(sim_ctx_t *ctx, struct evhttp_request *req,
    const char *message);
void sim_http_send_oom(sim_ctx_t *ctx, struct evhttp_request *req);
void sim_http_send_injected(sim_ctx_t *ctx, struct evhttp_request *req);
int sim_http_check_body_size(sim_ctx_t *ctx, struct evhttp_request *req);

/* sim_req.c */
uint64_t sim_now_ms(void);
uint64_t sim_now_us(void);
double sim_jitter(sim_ctx_t *ctx);
sim_req_t *sim_req_create(sim_ctx_t *ctx, struct evhttp_request *req,
    sim_req_handler_pt handler);
int sim_req_schedule(sim_req_t *r, double delay_ms);
void sim_req_finalize(sim_req_t *r);
void sim_req_free_all(sim_ctx_t *ctx);
void sim_req_delay_reply(sim_ctx_t *ctx, struct evhttp_request *req,
    cJSON *reply, long total_tokens, sim_req_handler_pt handler,
    double delay_ms);
void sim_reply_with_latency(sim_req_t *r);
void sim_reply_plain(sim_req_t *r);

/* sim_sched.c */
int sim_sched_init(sim_ctx_t *ctx);
void sim_sched_free(sim_ctx_t *ctx);
void sim_sched_reply(sim_ctx_t *ctx, struct evhttp_request *req,
    cJSON *reply, long total_tokens, unsigned completion_tokens,
    sim_prefix_seq_t *seq);
int sim_sched_enter(sim_req_t *r);
void sim_sched_first_token(sim_req_t *r);
double sim_sched_decoded(sim_req_t *r);
void sim_sched_leave(sim_req_t *r);

/* sim_metrics.c */
void sim_metrics_observe_ttft(sim_ctx_t *ctx, uint64_t us);
double sim_metrics_kv_usage(sim_ctx_t *ctx);
void sim_metrics_add_load_header(sim_ctx_t *ctx,
    struct evkeyvalq *headers);
void sim_metrics_handler(sim_ctx_t *ctx, struct evhttp_request *req);

/* routes: sim_status.c, sim_infer.c, sim_chat.c */
void sim_healthz_handler(sim_ctx_t *ctx, struct evhttp_request *req);
void sim_models_handler(sim_ctx_t *ctx, struct evhttp_request *req);
void sim_infer_handler(sim_ctx_t *ctx, struct evhttp_request *req);
void sim_slow_handler(sim_ctx_t *ctx, struct evhttp_request *req);
void sim_chat_handler(sim_ctx_t *ctx, struct evhttp_request *req);
int sim_fail(sim_ctx_t *ctx);

/* sim_stream.c */
typedef struct {
    const char               *model;
    uint64_t                  hash;
    unsigned                  prompt_tokens;
    unsigned                  max_tokens;
    long                      cut_after;         /* content events; -1 */
    sim_prefix_seq_t         *seq;               /* moved into the stream */
    unsigned                  include_usage:1;
} sim_stream_conf_t;

int sim_stream_start(sim_ctx_t *ctx, struct evhttp_request *req,
    sim_stream_conf_t *sc);

/* sim_json.c */
cJSON *sim_json_parse_body(struct evhttp_request *req, const char **err);
int sim_json_get_max_tokens(cJSON *root, unsigned *max_tokens,
    const char **err);
int sim_json_get_model(cJSON *root, const char **model, const char **err);
int sim_json_get_include_usage(cJSON *root, int *include_usage,
    const char **err);
char *sim_json_print(cJSON *json, size_t *len);
cJSON *sim_json_usage(unsigned prompt_tokens, unsigned completion_tokens);
unsigned sim_json_cached_tokens(unsigned prompt_tokens, uint64_t hit,
    uint64_t seq);
int sim_json_usage_cached(sim_ctx_t *ctx, cJSON *reply, uint64_t hit,
    uint64_t seq);


#endif /* _SIM_H_INCLUDED_ */
