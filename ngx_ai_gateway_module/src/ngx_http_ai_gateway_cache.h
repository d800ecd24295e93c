/*
 * The response cache policy: configuration and per-request state shared by
 * cache.c (directives, lookup, serving HITs), cache_body.c (the request
 * body digest) and cache_filter.c (capturing and storing MISSes).
 */

#ifndef _NGX_HTTP_AI_GATEWAY_CACHE_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_CACHE_H_INCLUDED_


#include "ngx_http_ai_gateway_module.h"
#include "ngx_http_ai_gateway_store.h"
#include "agw_json.h"
#include "agw_key.h"
#include "agw_sha256.h"


typedef enum {
    NGX_HTTP_AI_GATEWAY_CACHE_NONE = 0,   /* not a cached location */
    NGX_HTTP_AI_GATEWAY_CACHE_BYPASS,
    NGX_HTTP_AI_GATEWAY_CACHE_MISS,
    NGX_HTTP_AI_GATEWAY_CACHE_HIT
} ngx_http_ai_gateway_cache_status_e;


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
} ngx_http_ai_gateway_cache_conf_t;


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

    /* MISS: the response being captured for the store */
    unsigned                           capture:1;
    u_char                            *headers;   /* agw headers blob */
    size_t                             headers_len;
    size_t                             headers_overhead; /* entry bytes
                                                     besides the body */
    ngx_buf_t                         *body;      /* grows up to max */
    time_t                             ttl;       /* this answer's, s */
    unsigned                           pipe:1;    /* read from the pipe */
    ngx_int_t                        (*input_filter_init)(void *data);
    ngx_event_pipe_input_filter_pt     pipe_input_filter;
} ngx_http_ai_gateway_cache_ctx_t;


/* cache_body.c */
ngx_int_t ngx_http_ai_gateway_cache_body_init(ngx_conf_t *cf);
ngx_int_t ngx_http_ai_gateway_cache_read_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, off_t max);
ngx_int_t ngx_http_ai_gateway_cache_body_digest(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, agw_digest_t *digest);
/* the model the request names, as recorded with its entry; may be empty */
ngx_int_t ngx_http_ai_gateway_cache_body_model(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_str_t *model);

/* cache_purge.c: ai_gateway_cache_purge */
char *ngx_http_ai_gateway_cache_purge(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* cache.c, for the body reader: carry on once the body is in */
ngx_int_t ngx_http_ai_gateway_cache_lookup_key(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx);

/* cache_filter.c */
ngx_int_t ngx_http_ai_gateway_cache_filter_init(ngx_conf_t *cf);

extern ngx_str_t  ngx_http_ai_gateway_cache_status_names[];


#endif /* _NGX_HTTP_AI_GATEWAY_CACHE_H_INCLUDED_ */
