/*
 * ngx_http_ai_gateway_limit_module: token-bucket rate limiting (SPEC 3.1),
 * its directives and their configuration.
 *
 *     ai_gateway_limit_zone KEY zone=NAME:SIZE
 *                           rate=Nr/s|Nr/m|Nt/s|Nt/m burst=N [redis];
 *     ai_gateway_limit_zone KEY zone=NAME:SIZE
 *                           rate=Nusd/d|Nusd/h|Nusd/m burst=Nusd [redis];
 *     ai_gateway_model_price MODEL input=USD output=USD [cached_input=USD];
 *     ai_gateway_limit zone=NAME [cost=N|$var] [dry_run] [charge_hits];
 *     ai_gateway_limit_status CODE;
 *     ai_gateway_limit_headers on|off|openai|all;
 *     ai_gateway_tokens_default_max N;
 *     ai_gateway_limit_redis_fail open|closed;
 *
 * The zones are limit_zone.c, the prices limit_price.c, the request-time
 * decision limit.c and
 * limit_decide.c, what the client is told limit_headers.c; the buckets are
 * the backends' (bucket/: shared memory, Redis, leases).
 */

#include "base/ngx_http_ai_gateway_request.h"
#include "limit/ngx_http_ai_gateway_limit.h"


static void *ngx_http_ai_gateway_limit_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_ai_gateway_limit_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_ai_gateway_limit_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_ai_gateway_limit_lock_order(ngx_conf_t *cf,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf);
static void ngx_http_ai_gateway_limit_mark_costs(
    ngx_http_ai_gateway_limit_loc_conf_t *lcf);
static char *ngx_http_ai_gateway_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ai_gateway_limit_redis_fail(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ai_gateway_limit_status_check(ngx_conf_t *cf,
    void *post, void *data);
static char *ngx_http_ai_gateway_limit_headers_conf(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ai_gateway_limit_default_max_check(ngx_conf_t *cf,
    void *post, void *data);
static ngx_int_t ngx_http_ai_gateway_limit_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_ai_gateway_limit_init_process(ngx_cycle_t *cycle);
static ngx_array_t *ngx_http_ai_gateway_limit_leases(ngx_cycle_t *cycle);


static ngx_conf_post_t  ngx_http_ai_gateway_limit_status_post = {
    ngx_http_ai_gateway_limit_status_check
};


static ngx_conf_post_t  ngx_http_ai_gateway_limit_default_max_post = {
    ngx_http_ai_gateway_limit_default_max_check
};


static ngx_command_t  ngx_http_ai_gateway_limit_commands[] = {

    { ngx_string("ai_gateway_limit_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_ai_gateway_limit_zone,
      0,
      0,
      NULL },

    { ngx_string("ai_gateway_model_price"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_ai_gateway_limit_price,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ai_gateway_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_ai_gateway_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ai_gateway_limit_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_limit_loc_conf_t, status),
      &ngx_http_ai_gateway_limit_status_post },

    { ngx_string("ai_gateway_limit_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_ai_gateway_limit_headers_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ai_gateway_tokens_default_max"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_limit_loc_conf_t, tokens_default_max),
      &ngx_http_ai_gateway_limit_default_max_post },

    { ngx_string("ai_gateway_limit_redis_fail"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_ai_gateway_limit_redis_fail,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ai_gateway_limit_module_ctx = {
    ngx_http_ai_gateway_limit_add_variables,  /* preconfiguration */
    ngx_http_ai_gateway_limit_init,           /* postconfiguration */

    ngx_http_ai_gateway_limit_create_main_conf, /* create main conf */
    NULL,                                     /* init main configuration */

    NULL,                                     /* create server configuration */
    NULL,                                     /* merge server configuration */

    ngx_http_ai_gateway_limit_create_loc_conf, /* create location conf */
    ngx_http_ai_gateway_limit_merge_loc_conf  /* merge location conf */
};


ngx_module_t  ngx_http_ai_gateway_limit_module = {
    NGX_MODULE_V1,
    &ngx_http_ai_gateway_limit_module_ctx,    /* module context */
    ngx_http_ai_gateway_limit_commands,       /* module directives */
    NGX_HTTP_MODULE,                          /* module type */
    NULL,                                     /* init master */
    NULL,                                     /* init module */
    ngx_http_ai_gateway_limit_init_process,   /* init process */
    NULL,                                     /* init thread */
    NULL,                                     /* exit thread */
    NULL,                                     /* exit process */
    NULL,                                     /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_ai_gateway_limit_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ai_gateway_limit_main_conf_t  *lmcf;

    lmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_limit_main_conf_t));
    if (lmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&lmcf->uses, cf->pool, 4,
                       sizeof(ngx_http_ai_gateway_limit_use_t))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&lmcf->zones, cf->pool, 4,
                       sizeof(ngx_http_ai_gateway_limit_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&lmcf->leases, cf->pool, 1,
                       sizeof(ngx_http_ai_gateway_bucket_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&lmcf->prices, cf->pool, 4,
                       sizeof(ngx_http_ai_gateway_limit_price_t))
        != NGX_OK)
    {
        return NULL;
    }

    return lmcf;
}


static void *
ngx_http_ai_gateway_limit_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_ai_gateway_limit_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_limit_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->limits.elts = NULL;
     *     conf->lock_order = NULL;
     */

    conf->status = NGX_CONF_UNSET_UINT;
    conf->headers = NGX_CONF_UNSET_UINT;
    conf->tokens_default_max = NGX_CONF_UNSET_UINT;
    conf->redis_fail = NGX_CONF_UNSET_UINT;

    return conf;
}


/*
 * The order in which a request locks the zones of a location: by zone
 * name.  Every worker, of this configuration or of the one before a reload
 * (the layout version changes with any change of this rule, so the two
 * never share zones across it), takes the locks of any two zones in the
 * same order, so two requests can never each hold a lock the other waits
 * for.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_lock_order(ngx_conf_t *cf,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf)
{
    ngx_str_t                    *a, *b;
    ngx_uint_t                    i, k, n, tmp, *order;
    ngx_http_ai_gateway_limit_t  *limits;

    limits = lcf->limits.elts;
    n = lcf->limits.nelts;

    if (n == 0) {
        return NGX_OK;
    }

    order = ngx_palloc(cf->pool, n * sizeof(ngx_uint_t));
    if (order == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        tmp = i;
        b = &limits[tmp].shm_zone->shm.name;

        for (k = i; k > 0; k--) {
            a = &limits[order[k - 1]].shm_zone->shm.name;

            if (ngx_memn2cmp(a->data, b->data, a->len, b->len) <= 0) {
                break;
            }

            order[k] = order[k - 1];
        }

        order[k] = tmp;
    }

    lcf->lock_order = order;

    return NGX_OK;
}


/*
 * The lines whose cost limit_start() finds itself: a request zone's fixed
 * cost, a token zone's estimate.  Every zone is known once the http{}
 * block is read, when the locations are merged (an unknown one is refused
 * by limit_init()).
 */

static void
ngx_http_ai_gateway_limit_mark_costs(ngx_http_ai_gateway_limit_loc_conf_t *lcf)
{
    ngx_uint_t                         i;
    ngx_http_ai_gateway_limit_t       *limits;
    ngx_http_ai_gateway_limit_zone_t  *zone;

    limits = lcf->limits.elts;

    for (i = 0; i < lcf->limits.nelts; i++) {
        zone = limits[i].shm_zone->data;

        limits[i].fixed = zone != NULL
                          && !zone->buckets.tokens && !zone->buckets.usd
                          && limits[i].cost_cv == NULL;

        limits[i].estimated = zone != NULL
                              && zone->buckets.tokens && !zone->buckets.usd
                              && !limits[i].cost_set;
    }
}


static char *
ngx_http_ai_gateway_limit_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_ai_gateway_limit_loc_conf_t *prev = parent;
    ngx_http_ai_gateway_limit_loc_conf_t *conf = child;

    /* as limit_req: a level with its own lines inherits none */

    if (conf->limits.elts == NULL) {
        conf->limits = prev->limits;
        conf->lock_order = prev->lock_order;
    }

    if (prev->lock_order == NULL
        && ngx_http_ai_gateway_limit_lock_order(cf, prev) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->lock_order == NULL
        && ngx_http_ai_gateway_limit_lock_order(cf, conf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_http_ai_gateway_limit_mark_costs(conf);

    ngx_conf_merge_uint_value(conf->status, prev->status,
                              NGX_HTTP_TOO_MANY_REQUESTS);

    ngx_conf_merge_uint_value(conf->headers, prev->headers,
                              NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_IETF);

    ngx_conf_merge_uint_value(conf->tokens_default_max,
                              prev->tokens_default_max, 256);

    ngx_conf_merge_uint_value(conf->redis_fail, prev->redis_fail,
                              NGX_HTTP_AI_GATEWAY_BUCKET_FAIL_OPEN);

    return NGX_CONF_OK;
}


static char *
ngx_http_ai_gateway_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ai_gateway_limit_loc_conf_t *lcf = conf;

    ngx_int_t                               cost;
    ngx_str_t                              *value, s;
    ngx_uint_t                              i;
    ngx_http_ai_gateway_limit_t            *limit, *limits;
    ngx_http_ai_gateway_limit_use_t        *use;
    ngx_http_compile_complex_value_t        ccv;
    ngx_http_ai_gateway_limit_main_conf_t  *lmcf;

    value = cf->args->elts;

    if (lcf->limits.elts == NULL) {
        if (ngx_array_init(&lcf->limits, cf->pool, 2,
                           sizeof(ngx_http_ai_gateway_limit_t))
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    limit = ngx_array_push(&lcf->limits);
    if (limit == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(limit, sizeof(ngx_http_ai_gateway_limit_t));
    limit->cost = 1;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            s.len = value[i].len - 5;
            s.data = value[i].data + 5;

            if (s.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            /* the zone may be declared further down: size 0 finds or adds */

            limit->shm_zone = ngx_shared_memory_add(cf, &s, 0,
                                             &ngx_http_ai_gateway_limit_module);
            if (limit->shm_zone == NULL) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "cost=", 5) == 0) {

            s.len = value[i].len - 5;
            s.data = value[i].data + 5;

            if (ngx_http_script_variables_count(&s)) {
                limit->cost_cv = ngx_palloc(cf->pool,
                                        sizeof(ngx_http_complex_value_t));
                if (limit->cost_cv == NULL) {
                    return NGX_CONF_ERROR;
                }

                ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

                ccv.cf = cf;
                ccv.value = &s;
                ccv.complex_value = limit->cost_cv;

                if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                    return NGX_CONF_ERROR;
                }

                limit->cost_set = 1;
                continue;
            }

            cost = ngx_atoi(s.data, s.len);

            if (cost == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid cost \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            limit->cost = cost;
            limit->cost_set = 1;

            continue;
        }

        if (ngx_strcmp(value[i].data, "dry_run") == 0) {
            limit->dry_run = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "charge_hits") == 0) {
            limit->charge_hits = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (limit->shm_zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    limits = lcf->limits.elts;

    for (i = 0; i < lcf->limits.nelts - 1; i++) {
        if (limits[i].shm_zone == limit->shm_zone) {
            return "is duplicate";
        }
    }

    /* the zone and the cost are checked once the whole http{} is read */

    lmcf = ngx_http_conf_get_module_main_conf(cf,
                                            ngx_http_ai_gateway_limit_module);

    use = ngx_array_push(&lmcf->uses);
    if (use == NULL) {
        return NGX_CONF_ERROR;
    }

    use->shm_zone = limit->shm_zone;
    use->cost = limit->cost_cv ? NGX_CONF_UNSET_UINT : limit->cost;
    use->file = cf->conf_file->file.name;
    use->line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/*
 * not ngx_conf_set_enum_slot(): its "invalid value" message does not name
 * the directive, while a string returned here is logged after its name
 */

static char *
ngx_http_ai_gateway_limit_redis_fail(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ai_gateway_limit_loc_conf_t *lcf = conf;

    ngx_str_t  *value;

    if (lcf->redis_fail != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "open") == 0) {
        lcf->redis_fail = NGX_HTTP_AI_GATEWAY_BUCKET_FAIL_OPEN;

    } else if (ngx_strcmp(value[1].data, "closed") == 0) {
        lcf->redis_fail = NGX_HTTP_AI_GATEWAY_BUCKET_FAIL_CLOSED;

    } else {
        return "must be \"open\" or \"closed\"";
    }

    return NGX_CONF_OK;
}


/*
 * on (the IETF fields), openai (OpenAI's x-ratelimit-* instead), all (both)
 * or off; written by hand for a message that names the directive
 */

static char *
ngx_http_ai_gateway_limit_headers_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ai_gateway_limit_loc_conf_t *lcf = conf;

    ngx_str_t  *value;

    if (lcf->headers != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "on") == 0) {
        lcf->headers = NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_IETF;

    } else if (ngx_strcmp(value[1].data, "openai") == 0) {
        lcf->headers = NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_OPENAI;

    } else if (ngx_strcmp(value[1].data, "all") == 0) {
        lcf->headers = NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_IETF
                       |NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_OPENAI;

    } else if (ngx_strcmp(value[1].data, "off") == 0) {
        lcf->headers = 0;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, it "
                           "must be \"on\", \"off\", \"openai\" or \"all\"",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ai_gateway_limit_default_max_check(ngx_conf_t *cf, void *post,
    void *data)
{
    ngx_uint_t  *np = data;

    if (*np < 1 || *np > AGW_TOKENS_MAX) {
        return "must be between 1 and 1099511627776";
    }

    return NGX_CONF_OK;
}


/*
 * not ngx_conf_check_num_bounds(): its message does not name the
 * directive, while a string returned here is logged after its name
 */

static char *
ngx_http_ai_gateway_limit_status_check(ngx_conf_t *cf, void *post, void *data)
{
    ngx_uint_t  *np = data;

    if (*np < 400 || *np > 599) {
        return "must be between 400 and 599";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_ai_gateway_limit_init(ngx_conf_t *cf)
{
    ngx_uint_t                              i;
    ngx_http_ai_gateway_limit_use_t        *use;
    ngx_http_ai_gateway_limit_zone_t       *zone, **zones;
    ngx_http_ai_gateway_main_conf_t        *amcf;
    ngx_http_ai_gateway_limit_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf,
                                            ngx_http_ai_gateway_limit_module);

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ai_gateway_module);

    zones = lmcf->zones.elts;

    for (i = 0; i < lmcf->zones.nelts; i++) {
        if (zones[i]->buckets.backend == &ngx_http_ai_gateway_bucket_redis
            && amcf->redis == NULL)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "ai_gateway_limit_zone \"%V\" has the \"redis\" "
                          "flag but \"ai_gateway_redis\" is not configured "
                          "in %V:%ui", &zones[i]->buckets.name, &zones[i]->file,
                          zones[i]->line);
            return NGX_ERROR;
        }
    }

    use = lmcf->uses.elts;

    for (i = 0; i < lmcf->uses.nelts; i++) {
        zone = use[i].shm_zone->data;

        if (zone == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown ai_gateway_limit_zone \"%V\" in %V:%ui",
                          &use[i].shm_zone->shm.name, &use[i].file,
                          use[i].line);
            return NGX_ERROR;
        }

        /* agw_bucket rejects such a request forever: refuse it now */

        if (use[i].cost != NGX_CONF_UNSET_UINT
            && use[i].cost > zone->buckets.bucket.burst)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "cost %ui exceeds burst %uL of zone \"%V\" "
                          "in %V:%ui", use[i].cost,
                          zone->buckets.bucket.burst, &zone->buckets.name,
                          &use[i].file, use[i].line);
            return NGX_ERROR;
        }
    }

    if (ngx_http_ai_gateway_limit_price_init(cf, lmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (amcf->body_facts
        && ngx_http_ai_gateway_request_body_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_ai_gateway_limit_settle_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_ai_gateway_limit_headers_init(cf);
}


/* the zones that lease hand their ended leases back from a timer */

static ngx_int_t
ngx_http_ai_gateway_limit_init_process(ngx_cycle_t *cycle)
{
    return ngx_http_ai_gateway_bucket_lease_init_process(cycle,
                                             ngx_http_ai_gateway_limit_leases);
}


static ngx_array_t *
ngx_http_ai_gateway_limit_leases(ngx_cycle_t *cycle)
{
    ngx_http_ai_gateway_limit_main_conf_t  *lmcf;

    lmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                            ngx_http_ai_gateway_limit_module);

    return lmcf ? &lmcf->leases : NULL;
}
