/*
 * ngx_http_ai_gateway_limit_module: token-bucket rate limiting (SPEC 3.1),
 * its directives and their configuration.
 *
 *     ai_gateway_limit_zone KEY zone=NAME:SIZE
 *                           rate=Nr/s|Nr/m|Nt/s|Nt/m burst=N [redis];
 *     ai_gateway_limit zone=NAME [cost=N|$var] [dry_run] [charge_hits];
 *     ai_gateway_limit_status CODE;
 *     ai_gateway_limit_headers on|off|openai|all;
 *     ai_gateway_tokens_default_max N;
 *     ai_gateway_limit_redis_fail open|closed;
 *
 * The request-time decision is ngx_http_ai_gateway_limit.c, what the client
 * is told ngx_http_ai_gateway_limit_headers.c; the buckets are the
 * backends' (bucket/: shared memory, Redis, leases).
 */

#include "limit/ngx_http_ai_gateway_limit.h"


static void *ngx_http_ai_gateway_limit_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_ai_gateway_limit_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_ai_gateway_limit_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_ai_gateway_limit_lock_order(ngx_conf_t *cf,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf);
static ngx_int_t ngx_http_ai_gateway_limit_key_variable(ngx_conf_t *cf,
    ngx_str_t *key);
static char *ngx_http_ai_gateway_limit_zone(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
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


/*
 * The index of the variable if the key is one variable alone ("$name" or
 * "${name}"), which the request reads without the script engine; otherwise
 * NGX_ERROR.  "$1" is a regex capture, not a variable.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_key_variable(ngx_conf_t *cf, ngx_str_t *key)
{
    u_char     ch;
    size_t     i;
    ngx_str_t  name;

    if (key->len < 2 || key->data[0] != '$') {
        return NGX_ERROR;
    }

    name.data = key->data + 1;
    name.len = key->len - 1;

    if (name.data[0] == '{') {
        if (name.len < 3 || name.data[name.len - 1] != '}') {
            return NGX_ERROR;
        }

        name.data++;
        name.len -= 2;
    }

    if (name.data[0] >= '0' && name.data[0] <= '9') {
        return NGX_ERROR;
    }

    for (i = 0; i < name.len; i++) {
        ch = name.data[i];

        if ((ch < 'a' || ch > 'z') && (ch < 'A' || ch > 'Z')
            && (ch < '0' || ch > '9') && ch != '_')
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_get_variable_index(cf, &name);
}


static char *
ngx_http_ai_gateway_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                                 *p;
    size_t                                  len;
    ssize_t                                 size;
    ngx_int_t                               rate, burst, lease;
    ngx_str_t                              *value, name;
    ngx_uint_t                              i, period, redis, tokens;
    ngx_shm_zone_t                         *shm_zone;
    ngx_http_ai_gateway_limit_ref_t        *ref, **refp;
    ngx_http_ai_gateway_limit_zone_t       *zone, **zonep;
    ngx_http_ai_gateway_bucket_zone_t      *bz, **leasep;
    ngx_http_ai_gateway_main_conf_t        *amcf;
    ngx_http_compile_complex_value_t        ccv;
    ngx_http_ai_gateway_limit_main_conf_t  *lmcf;

    value = cf->args->elts;

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_limit_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = &zone->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* an empty key value means "not this request": a constant one, never */

    if (zone->key.lengths == NULL && zone->key.value.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the key of \"%V\" is an empty string, so the "
                           "zone would never apply", &cmd->name);
        return NGX_CONF_ERROR;
    }

    size = 0;
    rate = 0;
    burst = 0;
    period = 0;
    redis = 0;
    lease = 0;
    tokens = 0;
    name.len = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            if (ngx_http_ai_gateway_parse_zone(cf, &value[i], &name, &size)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            /* the name is quoted in RateLimit-Policy and RateLimit */

            if (ngx_strlchr(name.data, name.data + name.len, '"')
                || ngx_strlchr(name.data, name.data + name.len, '\\'))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone name \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {

            len = value[i].len;
            p = value[i].data + len - 3;

            /* requests (r/s, r/m) or LLM tokens (t/s, t/m) */

            if (len > 8 && (p[0] == 'r' || p[0] == 't')
                && ngx_strncmp(p + 1, "/s", 2) == 0)
            {
                period = 1000;

            } else if (len > 8 && (p[0] == 'r' || p[0] == 't')
                       && ngx_strncmp(p + 1, "/m", 2) == 0)
            {
                period = 60000;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid rate \"%V\", it must be "
                                   "\"Nr/s\", \"Nr/m\", \"Nt/s\" or "
                                   "\"Nt/m\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            tokens = (p[0] == 't');

            rate = ngx_atoi(value[i].data + 5, len - 8);

            if (rate == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid rate \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (rate < 1) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "rate must be at least 1 in \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {

            burst = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (burst == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid burst \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (burst < 1) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "burst must be at least 1 in \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "redis") == 0) {
            redis = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "lease=", 6) == 0) {

            lease = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (lease == NGX_ERROR || lease < 1) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid lease \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (period == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"rate\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (burst == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"burst\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (lease && !redis) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"lease\" of zone \"%V\" requires \"redis\"",
                           &name);
        return NGX_CONF_ERROR;
    }

    if (lease > burst) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "lease %i of zone \"%V\" exceeds its burst %i",
                           lease, &name, burst);
        return NGX_CONF_ERROR;
    }

    bz = &zone->buckets;

    bz->name = name;
    bz->lease = lease;
    bz->backend = redis ? &ngx_http_ai_gateway_bucket_redis
                        : &ngx_http_ai_gateway_bucket_shm;
    bz->tokens = tokens;
    zone->file = cf->conf_file->file.name;
    zone->line = cf->conf_file->line;
    bz->bucket.rate = rate;
    bz->bucket.period_ms = period;
    bz->bucket.burst = burst;

    if (zone->key.lengths == NULL) {
        zone->key_kind = NGX_HTTP_AI_GATEWAY_LIMIT_KEY_CONSTANT;

        ngx_http_ai_gateway_bucket_key(bz, zone->key_slot, &zone->key.value);

    } else {
        zone->key_index = ngx_http_ai_gateway_limit_key_variable(cf,
                                                                 &value[1]);

        zone->key_kind = (zone->key_index == NGX_ERROR)
                         ? NGX_HTTP_AI_GATEWAY_LIMIT_KEY_COMPLEX
                         : NGX_HTTP_AI_GATEWAY_LIMIT_KEY_VARIABLE;
    }

    if (!agw_bucket_conf_valid(&bz->bucket)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "rate or burst of zone \"%V\" is too large",
                           &name);
        return NGX_CONF_ERROR;
    }

    /*
     * the structured fields quote the zone name; names are checked above
     * to hold no quote or backslash
     */
    p = ngx_pnalloc(cf->pool, NGX_INT64_LEN + sizeof("\"\";q=;w=") - 1
                              + name.len + 2 * NGX_INT64_LEN
                              + sizeof("\"\";r=") - 1 + name.len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->limit_value.data = p;
    p = ngx_sprintf(p, "%uL", burst);
    zone->limit_value.len = p - zone->limit_value.data;

    zone->policy_value.data = p;
    p = ngx_sprintf(p, "\"%V\";q=%uL;w=%uL", &name, burst,
                    agw_bucket_window_s(&bz->bucket));
    zone->policy_value.len = p - zone->policy_value.data;

    zone->fields_start.data = p;
    p = ngx_sprintf(p, "\"%V\";r=", &name);
    zone->fields_start.len = p - zone->fields_start.data;

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_ai_gateway_limit_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    ref = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_limit_ref_t));
    if (ref == NULL) {
        return NGX_CONF_ERROR;
    }

    ref->name = name;

    if (tokens) {
        ngx_str_set(&ref->unit, "tokens");

    } else {
        ngx_str_set(&ref->unit, "requests");
    }

    if (redis) {
        /* ai_gateway_redis may come later: checked in postconfiguration */
        ngx_str_set(&ref->backend, "redis");
        ngx_http_ai_gateway_bucket_redis_init_conf();

    } else {
        ngx_str_set(&ref->backend, "shm");
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ai_gateway_module);

    refp = ngx_array_push(&amcf->limits);
    if (refp == NULL) {
        return NGX_CONF_ERROR;
    }

    *refp = ref;

    lmcf = ngx_http_conf_get_module_main_conf(cf,
                                            ngx_http_ai_gateway_limit_module);

    zonep = ngx_array_push(&lmcf->zones);
    if (zonep == NULL) {
        return NGX_CONF_ERROR;
    }

    *zonep = zone;

    if (lease) {
        leasep = ngx_array_push(&lmcf->leases);
        if (leasep == NULL) {
            return NGX_CONF_ERROR;
        }

        *leasep = bz;
    }

    bz->ref = ref;
    bz->shm_zone = shm_zone;

    shm_zone->init = ngx_http_ai_gateway_limit_zone_init;
    shm_zone->data = zone;

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

    if (ngx_http_ai_gateway_limit_settle_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_ai_gateway_limit_headers_init(cf);
}


/*
 * The zone's shared memory is its backend's (bucket/); a reload must not
 * hand the buckets of one key to another
 */

ngx_int_t
ngx_http_ai_gateway_limit_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_ai_gateway_limit_zone_t *ozone = data;

    ngx_http_ai_gateway_limit_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone
        && (zone->key.value.len != ozone->key.value.len
            || ngx_strncmp(zone->key.value.data, ozone->key.value.data,
                           zone->key.value.len)
               != 0))
    {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "ai_gateway_limit_zone \"%V\" uses the \"%V\" key "
                      "while previously it used the \"%V\" key",
                      &shm_zone->shm.name, &zone->key.value,
                      &ozone->key.value);
        return NGX_ERROR;
    }

    return ngx_http_ai_gateway_bucket_zone_init(shm_zone, &zone->buckets,
                                                ozone ? &ozone->buckets
                                                      : NULL);
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
