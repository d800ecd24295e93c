/*
 * The response cache policy: configuration and per-request state shared by
 * cache.c (the module, its directives), cache_lookup.c (lookup, serving
 * HITs), cache_body.c (the request body digest), cache_capture.c and
 * cache_filter.c (capturing and storing MISSes), cache_wait.c (waiting on
 * another request's flight, stale entries) and cache_send.c (a body sent
 * a piece at a time from where it is kept in shared memory).
 */

#ifndef _NGX_HTTP_AI_GATEWAY_CACHE_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_CACHE_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"
#include "base/ngx_http_ai_gateway_event.h"
#include "base/ngx_http_ai_gateway_stats.h"
#include "flight/ngx_http_ai_gateway_flight.h"
#include "store/ngx_http_ai_gateway_store.h"
#include "agw_json.h"
#include "agw_key.h"
#include "agw_sha256.h"
#include "agw_sse.h"


typedef enum {
    NGX_HTTP_AI_GATEWAY_CACHE_NONE = 0,   /* not a cached location */
    NGX_HTTP_AI_GATEWAY_CACHE_BYPASS,
    NGX_HTTP_AI_GATEWAY_CACHE_MISS,
    NGX_HTTP_AI_GATEWAY_CACHE_HIT,
    NGX_HTTP_AI_GATEWAY_CACHE_COALESCED,  /* from another request's flight */
    NGX_HTTP_AI_GATEWAY_CACHE_STALE       /* expired, the upstream failed */
} ngx_http_ai_gateway_cache_status_e;


/* ai_gateway_cache_use_stale */
#define NGX_HTTP_AI_GATEWAY_STALE_ERROR     0x0002
#define NGX_HTTP_AI_GATEWAY_STALE_TIMEOUT   0x0004
#define NGX_HTTP_AI_GATEWAY_STALE_500       0x0008
#define NGX_HTTP_AI_GATEWAY_STALE_502       0x0010
#define NGX_HTTP_AI_GATEWAY_STALE_503       0x0020
#define NGX_HTTP_AI_GATEWAY_STALE_504       0x0040
#define NGX_HTTP_AI_GATEWAY_STALE_429       0x0080
#define NGX_HTTP_AI_GATEWAY_STALE_OFF       0x0001


typedef struct {
    ngx_http_ai_gateway_store_t       *store;     /* NULL: off */
    time_t                             ttl;       /* seconds */
    ngx_uint_t                         methods;   /* NGX_HTTP_GET|... */
    ngx_array_t                       *key;       /* complex values: the key
                                                     split at each variable,
                                                     each part a digest
                                                     field of its own */
    ngx_array_t                       *bypass;    /* complex values */
    ngx_flag_t                         authorized;
    ngx_array_t                       *credentials; /* ngx_str_t, lowercase
                                                     header names */
    off_t                              max_body;  /* bytes */
    ngx_http_ai_gateway_store_t       *near;      /* ai_gateway_cache_near */
    ngx_flag_t                         key_json;  /* canonical JSON bodies */
    ngx_array_t                       *key_ignore; /* agw_json_str_t: top-
                                                     level fields left out */

    /* single flight and stale on error (cache_wait.c) */
    ngx_flag_t                         lock;
    ngx_msec_t                         lock_timeout;
    ngx_shm_zone_t                    *flight;    /* where answers wait:
                                                     with a store, always */
    agw_digest_t                       flight_id; /* what coalesces with
                                                     what: the location,
                                                     its store, its key */
    ngx_str_t                          key_text;  /* as written */
    ngx_uint_t                         use_stale; /* STALE_* bits */
    time_t                             stale;     /* s past the TTL */
} ngx_http_ai_gateway_cache_conf_t;


/* the cache module's main configuration */
typedef struct {
    size_t                             lock_zone; /* the flight zone's size */
    ngx_uint_t                         locations; /* numbered as merged */
} ngx_http_ai_gateway_cache_main_conf_t;


/* the leader's answer as a store copies it: from the flight's buffer */
typedef struct {
    ngx_http_ai_gateway_source_t       src;
    ngx_http_ai_gateway_flight_hold_t  hold;
} ngx_http_ai_gateway_cache_source_t;


typedef struct {
    ngx_http_ai_gateway_cache_status_e status;
    ngx_http_ai_gateway_store_t       *store;
    ngx_str_t                          key;       /* cache key text */
    agw_digest_t                       digest;    /* of key+body+creds */

    /* the request body, hashed as it arrives (cache_body.c) */
    agw_sha256_t                       body_sha;
    off_t                              body_size;
    off_t                              body_max;
    unsigned                           body_keyed:1;
    unsigned                           body_hashing:1;
    unsigned                           body_complete:1;
    unsigned                           body_json:1; /* key_json: keep a
                                                     copy, digest it once
                                                     complete */
    u_char                            *body_copy; /* key_json: the body */
    size_t                             body_copy_size; /* allocated */
    ngx_str_t                          model;     /* from the canonical
                                                     pass, if it ran */

    /* lookup progress across suspensions */
    unsigned                           started:1;
    unsigned                           waiting:1; /* body or store pending */
    unsigned                           done:1;

    /* HIT */
    ngx_http_ai_gateway_found_t        found;

    /* MISS: the response being captured for the store, into the flight */
    unsigned                           capture:1;
    unsigned                           shareable:1; /* too large to store,
                                                     not to share */
    u_char                            *headers;   /* agw headers blob */
    size_t                             headers_len;
    size_t                             headers_overhead; /* entry bytes
                                                     besides the body */
    size_t                             captured;  /* body bytes passed */
    time_t                             ttl;       /* this answer's, s */
    unsigned                           pipe:1;    /* read from the pipe */
    ngx_int_t                        (*input_filter_init)(void *data);
    ngx_event_pipe_input_filter_pt     pipe_input_filter;

    /* a stream: stored only once its terminal event went by, never if an
     * event reported an error */
    unsigned                           stream:1;
    unsigned                           terminal:1;
    unsigned                           stream_error:1;
    agw_sse_t                         *sse;

    /* single flight: leading one, or waiting on one (cache_wait.c) */
    ngx_http_ai_gateway_flight_t       flight;
    ngx_event_t                        wait;      /* posted when the flight
                                                     moves; its timer the
                                                     lock_timeout */
    ngx_http_request_t                *request;   /* the one waiting */
    ngx_msec_t                         wait_start;
    ngx_msec_t                         progress;  /* last byte read */
    off_t                              flight_length; /* -1: unknown */
    unsigned                           flight_headers:1; /* sent */
    unsigned                           orphan:1;  /* leader's client gone */
    ngx_http_event_handler_pt          client_read;

    /* a body sent a piece at a time (cache_send.c): a waiter's, from the
     * flight, or a large entry's, from the store */
    ngx_buf_t                         *piece;
    ngx_http_ai_gateway_found_t       *replay;    /* NULL: the flight */
    size_t                             sent;      /* body bytes read */

    /* stale on error: an expired entry kept while the upstream answers */
    unsigned                           has_stale:1;
    unsigned                           stale_sent:1;
    unsigned                           stale_upstream:1; /* replaces the
                                                     upstream's failure */
    ngx_http_ai_gateway_found_t        stale;
} ngx_http_ai_gateway_cache_ctx_t;


extern ngx_module_t  ngx_http_ai_gateway_cache_module;


/*
 * Steps of the dispatcher (core/): decide BYPASS, read and digest the body,
 * look the key up; answer a HIT from the store.  NGX_DECLINED to go on,
 * NGX_DONE while waiting (the cache resumes the phases itself), or a
 * status for nginx to finalize.
 */
ngx_int_t ngx_http_ai_gateway_cache_lookup(ngx_http_request_t *r);
ngx_int_t ngx_http_ai_gateway_cache_serve(ngx_http_request_t *r);


/* cache_body.c */
ngx_int_t ngx_http_ai_gateway_cache_body_init(ngx_conf_t *cf);
ngx_int_t ngx_http_ai_gateway_cache_read_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, off_t max);
ngx_int_t ngx_http_ai_gateway_cache_body_digest(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, agw_digest_t *digest);
/* the model the request names, as recorded with its entry; may be empty */
ngx_int_t ngx_http_ai_gateway_cache_body_model(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_str_t *model);

/* cache_lookup.c, for the body reader: carry on once the body is in */
ngx_int_t ngx_http_ai_gateway_cache_lookup_key(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx);

/* cache_lookup.c: entries kept past their TTL for stale answers (shm) */
ngx_flag_t ngx_http_ai_gateway_cache_keeps_stale(
    ngx_http_ai_gateway_store_t *store);

/* cache_filter.c */
ngx_int_t ngx_http_ai_gateway_cache_filter_init(ngx_conf_t *cf);
/* with proxy buffering, the body is copied as the upstream's pipe reads it */
ngx_int_t ngx_http_ai_gateway_cache_input_filter_init(void *data);

/* cache_capture.c: may the answer be stored, for how long; capture it */
void ngx_http_ai_gateway_cache_start_capture(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx);

/* cache_wait.c: single flight and stale entries */
char *ngx_http_ai_gateway_cache_use_stale(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_ai_gateway_cache_lock_zone(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
/* at merge: the flight zone, and what the location's flights are */
ngx_int_t ngx_http_ai_gateway_cache_flight_conf(ngx_conf_t *cf,
    ngx_http_ai_gateway_cache_conf_t *conf);
ngx_int_t ngx_http_ai_gateway_cache_init_process(ngx_cycle_t *cycle);
void ngx_http_ai_gateway_cache_exit_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_ai_gateway_cache_join(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx);
ngx_int_t ngx_http_ai_gateway_cache_serve_coalesced(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx);
ngx_int_t ngx_http_ai_gateway_cache_set_headers(ngx_http_request_t *r,
    const u_char *headers, size_t len);
/* the store's copy of a leader's answer, through its flight */
void ngx_http_ai_gateway_cache_source(ngx_http_ai_gateway_cache_ctx_t *ctx,
    ngx_http_ai_gateway_cache_source_t *cs);

/*
 * cache_send.c: the body, from the flight (replay NULL) or from a found
 * entry read in pieces, sent as the client takes it; the request is
 * finalized at its end.  Called again on each wake-up and write event.
 */
void ngx_http_ai_gateway_cache_send(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx);
ngx_int_t ngx_http_ai_gateway_cache_send_start(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_http_ai_gateway_found_t *replay);
/* a found entry's whole body in r's pool (a stale answer to a failure) */
ngx_int_t ngx_http_ai_gateway_cache_read_all(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_http_ai_gateway_found_t *found);

/* cache_stale.c: a failure the location's use_stale lists; its headers */
ngx_flag_t ngx_http_ai_gateway_cache_stale_applies(ngx_http_request_t *r);
ngx_int_t ngx_http_ai_gateway_cache_stale_header(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx);

extern ngx_str_t  ngx_http_ai_gateway_cache_status_names[];


/* will this request be answered from the cache?  (the dispatcher asks) */

static ngx_inline ngx_flag_t
ngx_http_ai_gateway_cache_is_hit(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_ai_gateway_cache_module);

    /*
     * a coalesced answer, decided before the limiter, costs as a HIT, and
     * so does a waiter's stale answer (the leader's is decided later)
     */
    return ctx && (ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_HIT
                   || ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_COALESCED
                   || ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_STALE);
}


#endif /* _NGX_HTTP_AI_GATEWAY_CACHE_H_INCLUDED_ */
