/*
 * The GenAI metrics (SPEC 8.3): what is measured (metrics.c) and how
 * /cachez shows it (metrics_show.c).  The metrics are their own nginx
 * module in the .so, after the core, whose answer reader they ask.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_METRICS_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_METRICS_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"
#include "base/ngx_http_ai_gateway_histogram.h"


/* the sets of histograms and their labels' dictionaries */
enum {
    NGX_HTTP_AI_GATEWAY_METRICS_SERVER = 0,  /* answers from upstream:
                                                model, operation, peer */
    NGX_HTTP_AI_GATEWAY_METRICS_REQUESTS,    /* every answer: model,
                                                cache status */
    NGX_HTTP_AI_GATEWAY_METRICS_SETS
};

enum {
    NGX_HTTP_AI_GATEWAY_METRICS_TTFT = 0,    /* the server set's */
    NGX_HTTP_AI_GATEWAY_METRICS_TPOT,
    NGX_HTTP_AI_GATEWAY_METRICS_DURATION,
    NGX_HTTP_AI_GATEWAY_METRICS_INPUT,       /* tokens */
    NGX_HTTP_AI_GATEWAY_METRICS_OUTPUT,
    NGX_HTTP_AI_GATEWAY_METRICS_HISTS
};

enum {
    NGX_HTTP_AI_GATEWAY_METRICS_MODEL = 0,   /* dictionaries */
    NGX_HTTP_AI_GATEWAY_METRICS_OPERATION,
    NGX_HTTP_AI_GATEWAY_METRICS_PEER,
    NGX_HTTP_AI_GATEWAY_METRICS_CACHE,
    NGX_HTTP_AI_GATEWAY_METRICS_DICTS
};

/* the most buckets a histogram of the sets has: time to first token's */
#define NGX_HTTP_AI_GATEWAY_METRICS_BUCKETS  17

/* cache statuses, as the cache module numbers them (cache/) */
#define NGX_HTTP_AI_GATEWAY_METRICS_CACHES  6


/*
 * a worker's last model and peer values, found by their bytes without a
 * hash or a check (metrics.c)
 */
#define NGX_HTTP_AI_GATEWAY_METRICS_RECENT      8
#define NGX_HTTP_AI_GATEWAY_METRICS_RECENT_LEN  64

typedef struct {
    ngx_http_ai_gateway_label_t        *label;
    ngx_uint_t                          dict;
    size_t                              len;
    u_char                              name[
                                       NGX_HTTP_AI_GATEWAY_METRICS_RECENT_LEN];
} ngx_http_ai_gateway_metrics_recent_t;


typedef struct {
    ngx_flag_t                          enable;   /* ai_gateway_metrics */
} ngx_http_ai_gateway_metrics_loc_conf_t;


typedef struct {
    ngx_uint_t                          models;   /* ai_gateway_metrics_
                                                     models */
    ngx_array_t                         peers;    /* ngx_str_t: every
                                                     address of the
                                                     upstreams */
    ngx_http_ai_gateway_hist_t         *hist;

    /* the fixed values, found once by each worker */
    ngx_http_ai_gateway_label_t        *operation[AGW_METRICS_OPS];
    ngx_http_ai_gateway_label_t        *cache[
                                           NGX_HTTP_AI_GATEWAY_METRICS_CACHES];
    ngx_http_ai_gateway_label_t        *none;     /* no model, no peer */

    ngx_http_ai_gateway_metrics_recent_t  recent[
                                           NGX_HTTP_AI_GATEWAY_METRICS_RECENT];
    ngx_uint_t                          next;     /* the recent one to
                                                     replace */
} ngx_http_ai_gateway_metrics_main_conf_t;


extern ngx_module_t  ngx_http_ai_gateway_metrics_module;

extern const char   *ngx_http_ai_gateway_metrics_cache_names[];


/* metrics_show.c: what /cachez shows, as it is now */

typedef struct ngx_http_ai_gateway_metrics_view_s
    ngx_http_ai_gateway_metrics_view_t;

/* NULL on allocation failure */
ngx_http_ai_gateway_metrics_view_t *ngx_http_ai_gateway_metrics_view(
    ngx_http_request_t *r, ngx_uint_t prometheus);

/* bytes the view's JSON or Prometheus text takes, at most */
size_t ngx_http_ai_gateway_metrics_size(
    ngx_http_ai_gateway_metrics_view_t *view);

/* ,"models":{...},"servers":{...} */
u_char *ngx_http_ai_gateway_metrics_json(u_char *p,
    ngx_http_ai_gateway_metrics_view_t *view);

u_char *ngx_http_ai_gateway_metrics_prometheus(u_char *p,
    ngx_http_ai_gateway_metrics_view_t *view);


#endif /* _NGX_HTTP_AI_GATEWAY_METRICS_H_INCLUDED_ */
