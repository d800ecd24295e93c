/*
 * ai_gateway_limit_zone KEY zone=NAME:SIZE rate=Nr/s|Nr/m|Nt/s|Nt/m
 *                       burst=N [redis [lease=N]];
 * ai_gateway_limit_zone KEY zone=NAME:SIZE rate=Nusd/d|Nusd/h|Nusd/m
 *                       burst=Nusd [redis [lease=N]];
 *
 * A zone as the policy keeps it: how its key is read, the header values
 * that never change, and the buckets its backend (bucket/) keeps in the
 * zone's shared memory.
 */

#include "limit/ngx_http_ai_gateway_limit.h"


static ngx_int_t ngx_http_ai_gateway_limit_key_variable(ngx_conf_t *cf,
    ngx_str_t *key);
static ngx_int_t ngx_http_ai_gateway_limit_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
static char *ngx_http_ai_gateway_limit_zone_usd(ngx_conf_t *cf,
    ngx_str_t *value, ngx_int_t *rate, ngx_uint_t *period);
static char *ngx_http_ai_gateway_limit_zone_usd_burst(ngx_conf_t *cf,
    ngx_str_t *value, ngx_int_t *burst);


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


char *
ngx_http_ai_gateway_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                                 *p;
    size_t                                  len;
    ssize_t                                 size;
    ngx_int_t                               rate, burst, lease;
    ngx_str_t                              *value, name;
    ngx_uint_t                              i, period, redis, tokens, usd;
    ngx_uint_t                              usd_burst;
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
    usd = 0;
    usd_burst = 0;
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

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0
            && ngx_strlcasestrn(value[i].data, value[i].data + value[i].len,
                                (u_char *) "usd/", 4 - 1)
               != NULL)
        {
            if (ngx_http_ai_gateway_limit_zone_usd(cf, &value[i], &rate,
                                                   &period)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            usd = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0
            && value[i].len > 9
            && ngx_strncmp(value[i].data + value[i].len - 3, "usd", 3) == 0)
        {
            if (ngx_http_ai_gateway_limit_zone_usd_burst(cf, &value[i],
                                                         &burst)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            usd_burst = 1;
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

    if (usd != usd_burst) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           usd ? "zone \"%V\" counts money: its burst must "
                                 "be in dollars too (\"burst=Nusd\")"
                               : "zone \"%V\" has a burst in dollars but "
                                 "its rate is not (\"rate=Nusd/d\")",
                           &name);
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
    bz->tokens = tokens || usd;
    bz->usd = usd;
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
        if (usd) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "rate or burst of zone \"%V\" is too large: "
                               "a bucket holds up to %uL USD a day, %uL USD "
                               "an hour", &name,
                               AGW_BUCKET_MAX_UNITS / AGW_BUCKET_USD_DAY
                               / 1000000,
                               AGW_BUCKET_MAX_UNITS / AGW_BUCKET_USD_HOUR
                               / 1000000);
            return NGX_CONF_ERROR;
        }

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

    /* the 429's body names the zone as a JSON string */

    zone->scope_json.len = name.len
                           + ngx_escape_json(NULL, name.data, name.len);

    zone->scope_json.data = ngx_pnalloc(cf->pool, zone->scope_json.len);
    if (zone->scope_json.data == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_escape_json(zone->scope_json.data, name.data, name.len);

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

    if (usd) {
        ngx_str_set(&ref->unit, "usd");

    } else if (tokens) {
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

    if (usd) {
        /* the model of a body nginx spools is read as it passes */
        lmcf->usd = 1;
        amcf->body_facts = 1;
    }

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


/*
 * rate=Nusd/d|h|m: a budget in dollars (SPEC 8.4), a bucket of
 * micro-dollars with its rate in whole cents (lib/agw_bucket.c explains
 * why: the bucket's scale then depends on the period alone).  rate is set
 * to the cents per period, period to the units per micro-dollar.
 */

static char *
ngx_http_ai_gateway_limit_zone_usd(ngx_conf_t *cf, ngx_str_t *value,
    ngx_int_t *rate, ngx_uint_t *period)
{
    u_char    *last, *slash;
    uint64_t   micro;

    last = value->data + value->len;
    slash = last - 2;

    if (value->len < sizeof("rate=1usd/d") - 1 || slash[0] != '/'
        || ngx_strncmp(slash - 3, "usd", 3) != 0)
    {
        goto invalid;
    }

    switch (slash[1]) {
    case 'd':
        *period = AGW_BUCKET_USD_DAY;
        break;
    case 'h':
        *period = AGW_BUCKET_USD_HOUR;
        break;
    case 'm':
        *period = AGW_BUCKET_USD_MINUTE;
        break;
    default:
        goto invalid;
    }

    if (agw_price_parse(value->data + 5, slash - 3 - (value->data + 5),
                        AGW_PRICE_MAX_MICRO, &micro)
        != 0)
    {
        goto invalid;
    }

    if (micro < 10000 || micro % 10000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "rate \"%V\" must be a whole number of cents, "
                           "at least 0.01", value);
        return NGX_CONF_ERROR;
    }

    *rate = (ngx_int_t) (micro / 10000);

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid rate \"%V\", it must be \"Nusd/d\", "
                       "\"Nusd/h\" or \"Nusd/m\" with N in dollars, such "
                       "as \"rate=25usd/d\" or \"rate=0.50usd/h\"", value);

    return NGX_CONF_ERROR;
}


/* burst=Nusd: the bucket's capacity, in micro-dollars */

static char *
ngx_http_ai_gateway_limit_zone_usd_burst(ngx_conf_t *cf, ngx_str_t *value,
    ngx_int_t *burst)
{
    uint64_t  micro;

    if (agw_price_parse(value->data + 6, value->len - 9, AGW_PRICE_MAX_MICRO,
                        &micro)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid burst \"%V\", it must be \"Nusd\" with "
                           "N in dollars, to the micro-dollar", value);
        return NGX_CONF_ERROR;
    }

    if (micro == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "burst must be at least 0.000001 in \"%V\"",
                           value);
        return NGX_CONF_ERROR;
    }

    *burst = (ngx_int_t) micro;

    return NGX_CONF_OK;
}


/*
 * The zone's shared memory is its backend's (bucket/); a reload must not
 * hand the buckets of one key to another
 */

static ngx_int_t
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
