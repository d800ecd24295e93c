/*
 * ngx_http_ai_gateway_metrics_module: the OpenTelemetry GenAI conventions'
 * histograms of the answers (SPEC 8.3), filled in the log phase from what
 * the request saw, in shared memory (base/ngx_http_ai_gateway_histogram.c).
 *
 * Measured: the main requests that are POSTs (inference APIs are) on a
 * location with "ai_gateway_metrics on" (the default, so that loading the
 * module and asking /cachez is all it takes), answered by an upstream or
 * by the cache.  Every one counts in ai_gateway_requests_total{model,
 * cache}; an answer from upstream (cache status none, bypass or miss, and
 * an upstream that sent a header) also goes into the server set, by model,
 * operation and peer:
 *
 *   request duration   from sending the request upstream (the last try's
 *                      connect) to the answer's end, whatever its status
 *   time to first      2xx only: to the first body byte that went by, or
 *   token              to a stream's first content event
 *   time per output    2xx streams: (last content event - first) /
 *   token              (output tokens - 1), output tokens from the usage,
 *                      else the content events
 *   token usage        2xx: the usage's input and output figures; a stream
 *                      without usage: its content events as output
 *
 * HITs, COALESCED and STALE answers spent no server time on this request:
 * they are counted only by cache status.  Labels are bounded: models by
 * ai_gateway_metrics_models (the first N seen are named, the rest and
 * names that are not short UTF-8 text are "other", a request naming none
 * has the empty value); peers by the configuration, an address that is
 * not a server of an upstream (proxy_pass with variables) being "other".
 */

#include "base/ngx_http_ai_gateway_answer.h"
#include "base/ngx_http_ai_gateway_histogram.h"
#include "base/ngx_http_ai_gateway_request.h"
#include "core/ngx_http_ai_gateway_metrics.h"
#include "cache/ngx_http_ai_gateway_cache.h"


#define NGX_HTTP_AI_GATEWAY_METRICS_ZONE_SIZE  (4 * 1024 * 1024)
#define NGX_HTTP_AI_GATEWAY_METRICS_MODELS     32
#define NGX_HTTP_AI_GATEWAY_METRICS_MODELS_MAX 4096


static void *ngx_http_ai_gateway_metrics_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_ai_gateway_metrics_init_main_conf(ngx_conf_t *cf,
    void *conf);
static void *ngx_http_ai_gateway_metrics_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_ai_gateway_metrics_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_ai_gateway_metrics_models(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_ai_gateway_metrics_postconfiguration(
    ngx_conf_t *cf);
static ngx_int_t ngx_http_ai_gateway_metrics_peers(ngx_conf_t *cf,
    ngx_http_ai_gateway_metrics_main_conf_t *mmcf);
static ngx_int_t ngx_http_ai_gateway_metrics_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_ai_gateway_metrics_header_filter(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_ai_gateway_metrics_log_handler(
    ngx_http_request_t *r);
static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE void ngx_http_ai_gateway_metrics_log(
    ngx_http_request_t *r);
static void ngx_http_ai_gateway_metrics_server(ngx_http_request_t *r,
    ngx_http_ai_gateway_metrics_main_conf_t *mmcf,
    ngx_http_ai_gateway_label_t *model);
static ngx_http_ai_gateway_label_t *ngx_http_ai_gateway_metrics_model(
    ngx_http_request_t *r, ngx_http_ai_gateway_metrics_main_conf_t *mmcf);
static ngx_http_ai_gateway_label_t *ngx_http_ai_gateway_metrics_label(
    ngx_http_ai_gateway_metrics_main_conf_t *mmcf, ngx_uint_t dict,
    u_char *name, size_t len);
static void ngx_http_ai_gateway_metrics_fixed_labels(
    ngx_http_ai_gateway_metrics_main_conf_t *mmcf);


/* the conventions' histograms, in the order of the server set's hists */

static const ngx_http_ai_gateway_hist_set_t
    ngx_http_ai_gateway_metrics_sets[NGX_HTTP_AI_GATEWAY_METRICS_SETS] = {

    { 3, { NGX_HTTP_AI_GATEWAY_METRICS_MODEL,
           NGX_HTTP_AI_GATEWAY_METRICS_OPERATION,
           NGX_HTTP_AI_GATEWAY_METRICS_PEER },
      NGX_HTTP_AI_GATEWAY_METRICS_HISTS,
      { &agw_metrics_ttft, &agw_metrics_tpot, &agw_metrics_duration,
        &agw_metrics_tokens, &agw_metrics_tokens } },

    { 2, { NGX_HTTP_AI_GATEWAY_METRICS_MODEL,
           NGX_HTTP_AI_GATEWAY_METRICS_CACHE },
      1, { NULL } }
};


/* by the cache module's status numbers (cache/ngx_http_ai_gateway_cache.h) */
const char  *ngx_http_ai_gateway_metrics_cache_names[] = {
    "none", "bypass", "miss", "hit", "coalesced", "stale"
};


static ngx_str_t  ngx_http_ai_gateway_metrics_zone_name =
    ngx_string("ai_gateway_metrics");


static ngx_command_t  ngx_http_ai_gateway_metrics_commands[] = {

    { ngx_string("ai_gateway_metrics"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_metrics_loc_conf_t, enable),
      NULL },

    { ngx_string("ai_gateway_metrics_models"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ai_gateway_metrics_models,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ai_gateway_metrics_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_ai_gateway_metrics_postconfiguration, /* postconfiguration */

    ngx_http_ai_gateway_metrics_create_main_conf, /* create main conf */
    ngx_http_ai_gateway_metrics_init_main_conf, /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_ai_gateway_metrics_create_loc_conf, /* create location conf */
    ngx_http_ai_gateway_metrics_merge_loc_conf /* merge location conf */
};


ngx_module_t  ngx_http_ai_gateway_metrics_module = {
    NGX_MODULE_V1,
    &ngx_http_ai_gateway_metrics_module_ctx, /* module context */
    ngx_http_ai_gateway_metrics_commands,  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_ai_gateway_metrics_init_module, /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


static void *
ngx_http_ai_gateway_metrics_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ai_gateway_metrics_main_conf_t  *mmcf;

    mmcf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_ai_gateway_metrics_main_conf_t));
    if (mmcf == NULL) {
        return NULL;
    }

    mmcf->models = NGX_CONF_UNSET_UINT;

    if (ngx_array_init(&mmcf->peers, cf->pool, 8, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NULL;
    }

    return mmcf;
}


static char *
ngx_http_ai_gateway_metrics_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_ai_gateway_metrics_main_conf_t *mmcf = conf;

    ngx_conf_init_uint_value(mmcf->models, NGX_HTTP_AI_GATEWAY_METRICS_MODELS);

    return NGX_CONF_OK;
}


static void *
ngx_http_ai_gateway_metrics_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_ai_gateway_metrics_loc_conf_t  *conf;

    conf = ngx_palloc(cf->pool,
                      sizeof(ngx_http_ai_gateway_metrics_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->enable = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_ai_gateway_metrics_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_ai_gateway_metrics_loc_conf_t *prev = parent;
    ngx_http_ai_gateway_metrics_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 1);

    return NGX_CONF_OK;
}


static char *
ngx_http_ai_gateway_metrics_models(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ai_gateway_metrics_main_conf_t *mmcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (mmcf->models != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n > NGX_HTTP_AI_GATEWAY_METRICS_MODELS_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ai_gateway_metrics_models: \"%V\" is not a number"
                           " of models from 0 to %d", &value[1],
                           NGX_HTTP_AI_GATEWAY_METRICS_MODELS_MAX);
        return NGX_CONF_ERROR;
    }

    mmcf->models = n;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_ai_gateway_metrics_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt                      *h;
    ngx_http_core_main_conf_t                *cmcf;
    ngx_http_ai_gateway_metrics_main_conf_t  *mmcf;

    mmcf = ngx_http_conf_get_module_main_conf(cf,
                                          ngx_http_ai_gateway_metrics_module);

    /* what /cachez reads a histogram into (metrics_show.c) */
    if (agw_metrics_ttft.n + 1 > NGX_HTTP_AI_GATEWAY_METRICS_BUCKETS) {
        return NGX_ERROR;
    }

    if (ngx_http_ai_gateway_metrics_peers(cf, mmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * a fixed size: nginx keeps the zone, and every figure in it, across
     * any reload (series are found by their labels, never by position)
     */
    mmcf->hist = ngx_http_ai_gateway_hist_create(cf,
                     &ngx_http_ai_gateway_metrics_zone_name,
                     NGX_HTTP_AI_GATEWAY_METRICS_ZONE_SIZE,
                     ngx_http_ai_gateway_metrics_sets,
                     NGX_HTTP_AI_GATEWAY_METRICS_SETS,
                     NGX_HTTP_AI_GATEWAY_METRICS_DICTS,
                     &ngx_http_ai_gateway_metrics_module);
    if (mmcf->hist == NULL) {
        return NGX_ERROR;
    }

    /* above the answer reader's filter (core/), which it asks */

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_ai_gateway_metrics_header_filter;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_ai_gateway_metrics_log_handler;

    return NGX_OK;
}


/*
 * Every address the upstreams name (upstream{} servers, and the upstreams
 * proxy_pass and its kin define with an address or a host name): the peers
 * labelled by name.  Run after the upstreams' init_main_conf, which has
 * resolved them.
 */

static ngx_int_t
ngx_http_ai_gateway_metrics_peers(ngx_conf_t *cf,
    ngx_http_ai_gateway_metrics_main_conf_t *mmcf)
{
    ngx_str_t                       *name;
    ngx_uint_t                       i, j, k;
    ngx_http_upstream_server_t      *server;
    ngx_http_upstream_rr_peer_t     *peer;
    ngx_http_upstream_rr_peers_t    *peers;
    ngx_http_upstream_srv_conf_t   **uscfp;
    ngx_http_upstream_main_conf_t   *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {

        if (uscfp[i]->servers) {
            server = uscfp[i]->servers->elts;

            for (j = 0; j < uscfp[i]->servers->nelts; j++) {
                for (k = 0; k < server[j].naddrs; k++) {
                    name = ngx_array_push(&mmcf->peers);
                    if (name == NULL) {
                        return NGX_ERROR;
                    }

                    *name = server[j].addrs[k].name;
                }
            }

            continue;
        }

        /* an implicit upstream of a host name: round robin, resolved */

        peers = uscfp[i]->peer.data;

        for (peer = peers ? peers->peer : NULL; peer; peer = peer->next) {
            name = ngx_array_push(&mmcf->peers);
            if (name == NULL) {
                return NGX_ERROR;
            }

            *name = peer->name;
        }
    }

    return NGX_OK;
}


/* the peers' values are there before any worker looks them up */

static ngx_int_t
ngx_http_ai_gateway_metrics_init_module(ngx_cycle_t *cycle)
{
    ngx_str_t                                *name;
    ngx_uint_t                                i;
    ngx_http_ai_gateway_metrics_main_conf_t  *mmcf;

    mmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                          ngx_http_ai_gateway_metrics_module);

    if (mmcf == NULL || mmcf->hist == NULL) {
        return NGX_OK;                   /* no http{} */
    }

    name = mmcf->peers.elts;

    for (i = 0; i < mmcf->peers.nelts; i++) {
        if (!agw_metrics_label_ok(name[i].data, name[i].len)) {
            continue;
        }

        (void) ngx_http_ai_gateway_hist_label(mmcf->hist,
                                            NGX_HTTP_AI_GATEWAY_METRICS_PEER,
                                            name[i].data, name[i].len,
                                            NGX_MAX_UINT32_VALUE);
    }

    return NGX_OK;
}


/* an inference request going to an upstream: its answer is to be read */

static ngx_int_t
ngx_http_ai_gateway_metrics_header_filter(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_metrics_loc_conf_t  *mlcf;

    if (r == r->main && r->upstream && (r->method & NGX_HTTP_POST)) {
        mlcf = ngx_http_get_module_loc_conf(r,
                                          ngx_http_ai_gateway_metrics_module);

        if (mlcf->enable) {
            /* without memory for it, the answer is only counted */
            (void) ngx_http_ai_gateway_answer_want(r);
        }
    }

    return ngx_http_next_header_filter(r);
}


/*
 * Every request passes here, and most are not measured: they leave before
 * the measuring function sets up its frame
 */

static ngx_int_t
ngx_http_ai_gateway_metrics_log_handler(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_metrics_loc_conf_t  *mlcf;

    if (r != r->main || !(r->method & NGX_HTTP_POST)) {
        return NGX_OK;
    }

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_metrics_module);

    if (mlcf->enable) {
        ngx_http_ai_gateway_metrics_log(r);
    }

    return NGX_OK;
}


static void
ngx_http_ai_gateway_metrics_log(ngx_http_request_t *r)
{
    ngx_uint_t                                status;
    ngx_http_upstream_t                      *u;
    ngx_http_ai_gateway_label_t              *label[2];
    ngx_http_ai_gateway_series_t             *s;
    ngx_http_ai_gateway_cache_ctx_t          *cache;
    ngx_http_ai_gateway_metrics_main_conf_t  *mmcf;

    cache = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);
    status = cache ? cache->status : NGX_HTTP_AI_GATEWAY_CACHE_NONE;
    u = r->upstream;

    if (status >= NGX_HTTP_AI_GATEWAY_METRICS_CACHES
        || (u == NULL && status != NGX_HTTP_AI_GATEWAY_CACHE_HIT
            && status != NGX_HTTP_AI_GATEWAY_CACHE_COALESCED
            && status != NGX_HTTP_AI_GATEWAY_CACHE_STALE))
    {
        return;                          /* nobody answered: a 429, ... */
    }

    mmcf = ngx_http_get_module_main_conf(r,
                                         ngx_http_ai_gateway_metrics_module);

    if (mmcf->none == NULL) {
        ngx_http_ai_gateway_metrics_fixed_labels(mmcf);
    }

    label[0] = ngx_http_ai_gateway_metrics_model(r, mmcf);
    label[1] = mmcf->cache[status];

    s = ngx_http_ai_gateway_hist_series(mmcf->hist,
                                        NGX_HTTP_AI_GATEWAY_METRICS_REQUESTS,
                                        label);
    ngx_http_ai_gateway_hist_observe(mmcf->hist, s, 0, 1);

    /* a cached answer spent no server time on this request */

    if (status == NGX_HTTP_AI_GATEWAY_CACHE_NONE
        || status == NGX_HTTP_AI_GATEWAY_CACHE_BYPASS
        || status == NGX_HTTP_AI_GATEWAY_CACHE_MISS)
    {
        ngx_http_ai_gateway_metrics_server(r, mmcf, label[0]);
    }
}


static void
ngx_http_ai_gateway_metrics_server(ngx_http_request_t *r,
    ngx_http_ai_gateway_metrics_main_conf_t *mmcf,
    ngx_http_ai_gateway_label_t *model)
{
    uint64_t                       output;
    ngx_uint_t                     status, op, has_usage, stream;
    agw_usage_t                    usage;
    ngx_msec_int_t                 ms;
    ngx_http_upstream_t           *u;
    ngx_http_ai_gateway_hist_t    *h;
    ngx_http_ai_gateway_label_t   *label[3];
    ngx_http_ai_gateway_series_t  *s;
    ngx_http_ai_gateway_answer_t  *a;
    ngx_http_upstream_state_t     *st;

    u = r->upstream;
    st = u ? u->state : NULL;

    /* the upstream answered: it sent a header */

    if (st == NULL || st->peer == NULL || st->header_time == (ngx_msec_t) -1) {
        return;
    }

    h = mmcf->hist;

    op = agw_metrics_operation(r->uri.data, r->uri.len);

    label[0] = model;
    label[1] = mmcf->operation[op];
    label[2] = ngx_http_ai_gateway_metrics_label(mmcf,
                                              NGX_HTTP_AI_GATEWAY_METRICS_PEER,
                                              st->peer->data, st->peer->len);

    s = ngx_http_ai_gateway_hist_series(h, NGX_HTTP_AI_GATEWAY_METRICS_SERVER,
                                        label);

    ms = (st->response_time != (ngx_msec_t) -1)
         ? (ngx_msec_int_t) st->response_time
         : (ngx_msec_int_t) (ngx_current_msec - u->start_time);

    ngx_http_ai_gateway_hist_observe(h, s,
                                     NGX_HTTP_AI_GATEWAY_METRICS_DURATION,
                                     (uint64_t) ngx_max(ms, 0) * 1000);

    status = u->headers_in.status_n ? u->headers_in.status_n
                                    : r->headers_out.status;
    a = ngx_http_ai_gateway_answer(r);

    if (status < NGX_HTTP_OK || status >= NGX_HTTP_SPECIAL_RESPONSE
        || a == NULL)
    {
        return;                          /* not a successful response */
    }

    stream = (a->mode == NGX_HTTP_AI_GATEWAY_ANSWER_SSE);

    /* time to first token: the first content event, or body byte */

    if (stream ? a->reader.content > 0 : a->has_first_byte) {
        ms = (ngx_msec_int_t) ((stream ? a->first_content : a->first_byte)
                               - u->start_time);

        ngx_http_ai_gateway_hist_observe(h, s,
                                         NGX_HTTP_AI_GATEWAY_METRICS_TTFT,
                                         (uint64_t) ngx_max(ms, 0) * 1000);
    }

    has_usage = ngx_http_ai_gateway_answer_usage(a, &usage);

    if (has_usage && usage.has_input) {
        ngx_http_ai_gateway_hist_observe(h, s,
                                         NGX_HTTP_AI_GATEWAY_METRICS_INPUT,
                                         usage.input);
    }

    if (has_usage && usage.has_output) {
        output = usage.output;

    } else if (stream && a->reader.content) {
        output = a->reader.content;             /* a token a content event */

    } else {
        return;
    }

    ngx_http_ai_gateway_hist_observe(h, s, NGX_HTTP_AI_GATEWAY_METRICS_OUTPUT,
                                     output);

    /* time per output token, after the first: streams only */

    if (stream && a->reader.content >= 2 && output >= 2) {
        ms = (ngx_msec_int_t) (a->last_content - a->first_content);

        ngx_http_ai_gateway_hist_observe(h, s,
                                         NGX_HTTP_AI_GATEWAY_METRICS_TPOT,
                                         (uint64_t) ngx_max(ms, 0) * 1000
                                         / (output - 1));
    }
}


/*
 * The model the request names: empty if none (or the body was not read),
 * "other" past the first ai_gateway_metrics_models names, or for a name
 * that is not short text
 */

static ngx_http_ai_gateway_label_t *
ngx_http_ai_gateway_metrics_model(ngx_http_request_t *r,
    ngx_http_ai_gateway_metrics_main_conf_t *mmcf)
{
    ngx_http_ai_gateway_request_info_t  *info;

    info = ngx_http_ai_gateway_request_info(r);

    if (info == NULL || info->model.len == 0) {
        return mmcf->none;
    }

    return ngx_http_ai_gateway_metrics_label(mmcf,
                                             NGX_HTTP_AI_GATEWAY_METRICS_MODEL,
                                             info->model.data,
                                             info->model.len);
}


/*
 * A model's or a peer's value: a worker asks for the same few again and
 * again, so the last ones it found are kept by their bytes, in its own
 * memory (a value's pointer never changes).  A model's name is checked to
 * be short text first; a peer is one of the configuration's, the others
 * being "other" for good.  A model that went to "other" is not kept: the
 * dictionary may have looked full in the instant another worker took its
 * last place for that very name.
 */

static ngx_http_ai_gateway_label_t *
ngx_http_ai_gateway_metrics_label(
    ngx_http_ai_gateway_metrics_main_conf_t *mmcf, ngx_uint_t dict,
    u_char *name, size_t len)
{
    ngx_uint_t                             i;
    ngx_http_ai_gateway_label_t           *l;
    ngx_http_ai_gateway_metrics_recent_t  *rc;

    rc = mmcf->recent;

    for (i = 0; i < NGX_HTTP_AI_GATEWAY_METRICS_RECENT; i++) {
        if (rc[i].len == len && rc[i].dict == dict && rc[i].label != NULL
            && ngx_memcmp(rc[i].name, name, len) == 0)
        {
            return rc[i].label;
        }
    }

    if (dict != NGX_HTTP_AI_GATEWAY_METRICS_MODEL) {
        l = ngx_http_ai_gateway_hist_label(mmcf->hist, dict, name, len, 0);

    } else if (agw_metrics_label_ok(name, len)) {
        l = ngx_http_ai_gateway_hist_label(mmcf->hist, dict, name, len,
                                           mmcf->models);

    } else {
        l = ngx_http_ai_gateway_hist_other(mmcf->hist, dict);
    }

    if (len <= NGX_HTTP_AI_GATEWAY_METRICS_RECENT_LEN
        && (dict != NGX_HTTP_AI_GATEWAY_METRICS_MODEL
            || l != ngx_http_ai_gateway_hist_other(mmcf->hist, dict)))
    {
        rc = &mmcf->recent[mmcf->next++ % NGX_HTTP_AI_GATEWAY_METRICS_RECENT];

        rc->label = l;
        rc->dict = dict;
        rc->len = len;
        ngx_memcpy(rc->name, name, len);
    }

    return l;
}


/*
 * The values every request uses, found once in this worker's copy of the
 * configuration; the empty value stands for "no model" and "no peer" both
 * (each dictionary has its own, the model's is kept here)
 */

static void
ngx_http_ai_gateway_metrics_fixed_labels(
    ngx_http_ai_gateway_metrics_main_conf_t *mmcf)
{
    const char                  *name;
    ngx_uint_t                   i;
    ngx_http_ai_gateway_hist_t  *h;

    h = mmcf->hist;

    for (i = 0; i < AGW_METRICS_OPS; i++) {
        name = agw_metrics_operation_name(i);
        mmcf->operation[i] = ngx_http_ai_gateway_hist_label(h,
                                 NGX_HTTP_AI_GATEWAY_METRICS_OPERATION,
                                 (u_char *) name, ngx_strlen(name),
                                 NGX_MAX_UINT32_VALUE);
    }

    for (i = 0; i < NGX_HTTP_AI_GATEWAY_METRICS_CACHES; i++) {
        name = ngx_http_ai_gateway_metrics_cache_names[i];
        mmcf->cache[i] = ngx_http_ai_gateway_hist_label(h,
                             NGX_HTTP_AI_GATEWAY_METRICS_CACHE,
                             (u_char *) name, ngx_strlen(name),
                             NGX_MAX_UINT32_VALUE);
    }

    mmcf->none = ngx_http_ai_gateway_hist_label(h,
                                            NGX_HTTP_AI_GATEWAY_METRICS_MODEL,
                                            (u_char *) "", 0, 0);
}
