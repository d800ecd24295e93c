/*
 * ngx_http_ai_gateway_module: the module definition, its directives, and
 * the PRECONTENT phase handler that runs the cache and the limiter in
 * order.  Each feature lives in its folder and is wired in here, the one
 * place that sees them all (DESIGN.md): the three nginx modules of the
 * .so are this one, the limiter (limit/) and the cache (cache/).
 */

#include "base/ngx_http_ai_gateway_answer.h"
#include "base/ngx_http_ai_gateway_conf.h"
#include "base/ngx_http_ai_gateway_request.h"
#include "base/ngx_http_ai_gateway_stats.h"
#include "core/ngx_http_ai_gateway_handlers.h"
#include "redis/ngx_http_ai_gateway_redis.h"
#include "store/ngx_http_ai_gateway_store.h"
#include "cache/ngx_http_ai_gateway_cache.h"
#include "limit/ngx_http_ai_gateway_limit.h"


static char *ngx_http_ai_gateway_redis_conf(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_ai_gateway_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_ai_gateway_precontent_handler(ngx_http_request_t *r);
static ngx_flag_t ngx_http_ai_gateway_body_ahead(ngx_http_request_t *r);


static ngx_command_t  ngx_http_ai_gateway_commands[] = {

    { ngx_string("ai_gateway_cachez"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_ai_gateway_cachez,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ai_gateway_cache_purge"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_ai_gateway_cache_purge,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ai_gateway_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_loc_conf_t, body),
      NULL },

    { ngx_string("ai_gateway_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_ai_gateway_redis_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ai_gateway_module_ctx = {
    ngx_http_ai_gateway_request_add_variables, /* preconfiguration */
    ngx_http_ai_gateway_postconfiguration, /* postconfiguration */

    ngx_http_ai_gateway_create_main_conf,  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_ai_gateway_create_loc_conf,   /* create location configuration */
    ngx_http_ai_gateway_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_ai_gateway_module = {
    NGX_MODULE_V1,
    &ngx_http_ai_gateway_module_ctx,       /* module context */
    ngx_http_ai_gateway_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_ai_gateway_redis_init_process, /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_ai_gateway_redis_exit_process, /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * ai_gateway_redis: the connection (redis/), and the Redis cache store that
 * comes with it (store/), "ai_gateway_cache redis"
 */

static char *
ngx_http_ai_gateway_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ai_gateway_main_conf_t *amcf = conf;

    char  *rv;

    rv = ngx_http_ai_gateway_redis(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (ngx_http_ai_gateway_store_redis_create(cf, amcf->redis) == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_ai_gateway_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    if (ngx_http_ai_gateway_stats_zone_add(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* answers read for the limiter and the metrics, which ask below it */

    if (ngx_http_ai_gateway_answer_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * PRECONTENT, not PREACCESS as limit_req: a POST's cache key needs the
     * request body, which is read here (as the mirror module does), and the
     * limiter must know whether the cache will answer before charging.
     */
    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_ai_gateway_precontent_handler;

    return NGX_OK;
}


/*
 * The dispatcher: the steps of the cache and the limiter, run in this
 * order on every request (and again from the top when a suspended step
 * resumes the phases, so each step must notice it already ran):
 *
 *   limit_precheck where the cache would read a request body: refuse now,
 *                  unread, a request that no bucket could pass as a MISS
 *   cache_lookup   decide BYPASS, read and digest the body, look the key up
 *                  (then the request's context learns whether the cache
 *                  answers it: a HIT or another request's flight)
 *   limit_check    charge (or, for a cached answer, just read) the buckets
 *   cache_serve    answer a HIT from the store
 *   read_body      ai_gateway_body on: read a JSON POST's body that neither
 *                  step above read, for $ai_gateway_model and the balancer
 *
 * A step returns NGX_DECLINED to go on; NGX_DONE when it is waiting (it will
 * call ngx_http_core_run_phases() itself) or has already finalized the
 * request; or an HTTP status / NGX_ERROR for nginx to finalize.
 */

static ngx_int_t
ngx_http_ai_gateway_precontent_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_ai_gateway_loc_conf_t    *alcf;
    ngx_http_ai_gateway_cache_conf_t  *ccf;

    /*
     * /cachez is never cached or limited, even where ai_gateway_cache or
     * ai_gateway_limit is inherited from the server or http level: reading
     * the figures must not change them
     */
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->handler == ngx_http_ai_gateway_cachez_handler) {
        return NGX_DECLINED;
    }

    /*
     * the cache's steps only where a cache is configured: elsewhere they
     * have nothing to do (the cache's ctx is only ever made where it is),
     * and a limited location does not pay for asking them
     */
    ccf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    if (ccf->store) {
        if (ngx_http_ai_gateway_body_ahead(r)) {
            rc = ngx_http_ai_gateway_limit_precheck(r);
            if (rc != NGX_DECLINED) {
                return rc;
            }
        }

        rc = ngx_http_ai_gateway_cache_lookup(r);
        if (rc != NGX_DECLINED) {
            return rc;
        }

        /* the limiter reads, not charges, the zones of a cached answer */

        if (r == r->main && ngx_http_ai_gateway_cache_is_hit(r)) {
            ngx_http_ai_gateway_request_set_cached(r);
        }
    }

    rc = ngx_http_ai_gateway_limit_check(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (ccf->store) {
        rc = ngx_http_ai_gateway_cache_serve(r);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_module);

    if (alcf->body) {
        return ngx_http_ai_gateway_request_read_body(r);
    }

    return NGX_DECLINED;
}


/*
 * Is the cache step about to read this request's body?  (In a cached
 * location) not looked up yet, and a body on its way (a declared length
 * or chunks).
 */

static ngx_flag_t
ngx_http_ai_gateway_body_ahead(ngx_http_request_t *r)
{
    return ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module) == NULL
           && (r->headers_in.content_length_n > 0 || r->headers_in.chunked);
}
