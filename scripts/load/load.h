/*
 * agw-load: a load client for streamed chat completions on one libevent
 * loop (evhttp's client).  Shared types: the command line configuration,
 * one record per request, one connection, and the run's context.
 */

#ifndef _LOAD_H_INCLUDED_
#define _LOAD_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/buffer.h>


#define LOAD_MAX_TARGETS     64
#define LOAD_MAX_HEADERS     32                  /* -H */
#define LOAD_MAX_RECORDED    8                   /* response headers kept */
#define LOAD_MAX_CLASSES     8                   /* --mix */
#define LOAD_MAX_SOURCES     64                  /* --source */
#define LOAD_MAX_VALUES      254                 /* distinct header values */
#define LOAD_VALUE_OTHER     255                 /* past LOAD_MAX_VALUES */
#define LOAD_CHUNK_SHIFT     16                  /* records per chunk */
#define LOAD_TICK_US         10000               /* lag probe period */
#define LOAD_LAG_BUCKETS     1024                /* 1 ms each, last: more */
#define LOAD_SSE_HEAD        13                  /* "data: [DONE]\r" */
#define LOAD_SSE_LONG        (LOAD_SSE_HEAD + 1)


typedef struct load_ctx_s   load_ctx_t;
typedef struct load_conn_s  load_conn_t;


typedef enum {
    LOAD_ERR_NONE = 0,
    LOAD_ERR_CONNECT,                            /* no answer at all */
    LOAD_ERR_TIMEOUT,
    LOAD_ERR_EOF,                                /* closed mid-answer */
    LOAD_ERR_INVALID,                            /* malformed answer */
    LOAD_ERR_BUFFER,
    LOAD_ERR_CANCEL,                             /* stopped by a signal */
    LOAD_ERR_TOO_LONG,
    LOAD_ERR_NO_DONE,                            /* a stream without [DONE] */
    LOAD_ERR_COUNT
} load_err_e;


typedef enum {
    LOAD_PROMPTS_DISTINCT = 0,
    LOAD_PROMPTS_IDENTICAL,
    LOAD_PROMPTS_PREFIX
} load_prompts_e;


typedef struct {
    char                     *host;
    int                       port;
    char                     *path;              /* with the query */
    char                     *authority;         /* the Host header */
} load_target_t;


typedef struct {
    char                     *name;
    char                     *value;             /* {i} {u} {t} expanded */
    unsigned                  templated:1;
} load_header_t;


typedef struct {
    unsigned                  max_tokens;
    double                    weight;
    double                    cdf;               /* cumulative, 0..1 */
} load_class_t;


typedef struct {
    load_target_t             targets[LOAD_MAX_TARGETS];
    unsigned                  ntargets;
    char                     *sources[LOAD_MAX_SOURCES];
    unsigned                  nsources;

    unsigned                  connections;
    uint64_t                  requests;
    double                    rate;              /* starts/s, 0: none */
    double                    connect_rate;      /* connections/s, 0: none */
    double                    duration;          /* s, 0: none */
    double                    timeout;           /* s, inactivity */
    double                    hold_ms;           /* -1: until SIGUSR1 */
    unsigned                  hold:1;
    unsigned                  hold_pause:1;

    /* the bodies */
    char                     *body_file;
    char                     *body;              /* --body, read in */
    size_t                    body_len;
    load_prompts_e            prompts;
    unsigned                  groups;
    unsigned                  tenants;
    unsigned                  prefix_tokens;
    unsigned                  user_tokens;
    double                    zipf;
    unsigned                  max_tokens;
    load_class_t              classes[LOAD_MAX_CLASSES];
    unsigned                  nclasses;
    const char               *model;
    const char               *salt;
    uint64_t                  seed;
    unsigned                  stream:1;
    unsigned                  usage:1;

    load_header_t             headers[LOAD_MAX_HEADERS];
    unsigned                  nheaders;
    unsigned                  users;
    const char               *recorded[LOAD_MAX_RECORDED];
    unsigned                  nrecorded;

    const char               *json_path;
    const char               *csv_path;
    const char               *label;
} load_conf_t;


/*
 * One request.  Times are microseconds on the monotonic clock since the
 * run started; -1 until the moment happens.
 */
typedef struct {
    int64_t                   start;
    int64_t                   headers;
    int64_t                   first_byte;
    int64_t                   first_event;       /* first "data:" line */
    int64_t                   last_event;
    int64_t                   end;
    uint64_t                  bytes;             /* body */
    uint32_t                  events;            /* "data:" lines */
    uint32_t                  conn;
    uint16_t                  status;
    uint16_t                  tenant;
    uint8_t                   klass;
    uint8_t                   error;             /* load_err_e */
    uint8_t                   values[LOAD_MAX_RECORDED];
    /* the start of the SSE line being read, across chunks */
    uint8_t                   lpos;
    char                      lhead[LOAD_SSE_HEAD];
    unsigned                  done:1;            /* "data: [DONE]" seen */
    unsigned                  stream:1;          /* text/event-stream */
    unsigned                  ended:1;           /* a whole answer */
    unsigned                  paused:1;
} load_rec_t;


struct load_conn_s {
    load_ctx_t               *ctx;
    struct evhttp_connection *evcon;
    struct event             *timer;             /* the next start */
    load_rec_t               *rec;               /* in flight, or NULL */
    uint32_t                  index;
    unsigned                  first:1;           /* no request yet */
};


/* distinct values of one recorded response header */
typedef struct {
    char                     *values[LOAD_MAX_VALUES + 1];
    unsigned                  nvalues;
} load_values_t;


struct load_ctx_s {
    load_conf_t               conf;
    struct event_base        *base;
    struct event             *sigusr1;
    struct event             *sigint;
    struct event             *sigterm;
    struct event             *release;           /* --hold-ms */
    struct event             *deadline;          /* --duration */
    struct event             *tick;              /* the loop's lag */
    int64_t                   tick_due;          /* us */
    uint64_t                  lag_hist[LOAD_LAG_BUCKETS];
    int64_t                   lag_max;           /* us */
    load_conn_t              *conns;
    load_rec_t              **chunks;            /* records, see load_rec */
    size_t                    nchunks;
    load_values_t             values[LOAD_MAX_RECORDED];
    int64_t                   t0_ns;             /* monotonic, run start */
    uint64_t                  next;              /* next request index */
    uint64_t                  finished;          /* ended or failed */
    uint64_t                  settled;           /* headers, or failed */
    uint64_t                  failed_early;      /* before headers */
    unsigned                  open;              /* headers, not ended */
    unsigned                  peak_open;
    int64_t                   all_open;          /* us, -1 */
    int64_t                   first_done;        /* us, -1 */
    uint64_t                  rng;               /* xorshift64* state */
    char                    **tenant_prompts;    /* --prompts prefix */
    double                   *tenant_cdf;        /* --zipf */
    unsigned                  stopping:1;
    unsigned                  released:1;
};


/*
 * The records live in chunks of 65,536, allocated as requests start: a
 * timed run with a huge -n costs only what it uses, and a record never
 * moves while its request is in flight.
 */
static inline load_rec_t *
load_rec(load_ctx_t *ctx, uint64_t i)
{
    return &ctx->chunks[i >> LOAD_CHUNK_SHIFT]
                       [i & ((1u << LOAD_CHUNK_SHIFT) - 1)];
}


/* load_args.c */
int load_parse_args(int argc, char **argv, load_conf_t *conf);
void load_conf_free(load_conf_t *conf);

/* load_conn.c */
int load_conn_init(load_ctx_t *ctx);
void load_conn_start_all(load_ctx_t *ctx);
void load_conn_release(load_ctx_t *ctx);
void load_conn_stop(load_ctx_t *ctx);
void load_conn_free_all(load_ctx_t *ctx);
int64_t load_now_us(load_ctx_t *ctx);

/* load_sse.c */
void load_sse_scan(load_rec_t *rec, const char *p, size_t n, int64_t now);

/* load_body.c */
int load_body_init(load_ctx_t *ctx);
void load_body_free(load_ctx_t *ctx);
int load_body_make(load_ctx_t *ctx, load_rec_t *rec, uint64_t index,
    struct evbuffer *out);
uint64_t load_rng_next(uint64_t *state);
double load_rng_uniform(uint64_t *state);

/* load_report.c */
int load_report_json(load_ctx_t *ctx, FILE *f, double wall_s);
int load_report_csv(load_ctx_t *ctx, FILE *f);
const char *load_err_name(unsigned err);


#endif /* _LOAD_H_INCLUDED_ */
