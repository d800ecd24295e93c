/*
 * ngx_http_ai_gateway_cache_module, the response cache policy (SPEC 3.2):
 * its directives and their configuration, $ai_gateway_cache_status and
 * $ai_gateway_cache_tier.  The lookup and serve steps of the PRECONTENT
 * handler are cache_lookup.c; what is stored is decided in
 * cache_capture.c and cache_filter.c; where it is stored is the store's
 * business (store/ngx_http_ai_gateway_store.h).
 */

#include "cache/ngx_http_ai_gateway_cache.h"


static ngx_int_t ngx_http_ai_gateway_cache_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_ai_gateway_cache_init(ngx_conf_t *cf);
static void *ngx_http_ai_gateway_cache_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_ai_gateway_cache_create_conf(ngx_conf_t *cf);
static char *ngx_http_ai_gateway_cache_merge_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_ai_gateway_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ai_gateway_cache_key(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ai_gateway_cache_credentials(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_array_t *ngx_http_ai_gateway_cache_compile_key(ngx_conf_t *cf,
    ngx_str_t *value);
static char *ngx_http_ai_gateway_cache_ttl_check(ngx_conf_t *cf, void *post,
    void *data);
static ngx_int_t ngx_http_ai_gateway_cache_status_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_ai_gateway_cache_tier_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static char *ngx_http_ai_gateway_cache_key_ignore(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_conf_bitmask_t  ngx_http_ai_gateway_cache_methods_mask[] = {
    { ngx_string("GET"), NGX_HTTP_GET },
    { ngx_string("HEAD"), NGX_HTTP_HEAD },
    { ngx_string("POST"), NGX_HTTP_POST },
    { ngx_null_string, 0 }
};


static ngx_conf_post_t  ngx_http_ai_gateway_cache_ttl_post = {
    ngx_http_ai_gateway_cache_ttl_check
};


static ngx_command_t  ngx_http_ai_gateway_cache_commands[] = {

    { ngx_string("ai_gateway_cache_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_ai_gateway_store_shm_zone,
      0,
      0,
      NULL },

    { ngx_string("ai_gateway_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_ai_gateway_cache,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ai_gateway_cache_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_cache_conf_t, ttl),
      &ngx_http_ai_gateway_cache_ttl_post },

    { ngx_string("ai_gateway_cache_methods"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_cache_conf_t, methods),
      &ngx_http_ai_gateway_cache_methods_mask },

    { ngx_string("ai_gateway_cache_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_ai_gateway_cache_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ai_gateway_cache_bypass"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_set_predicate_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_cache_conf_t, bypass),
      NULL },

    { ngx_string("ai_gateway_cache_authorized"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_cache_conf_t, authorized),
      NULL },

    { ngx_string("ai_gateway_cache_credentials"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_ai_gateway_cache_credentials,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ai_gateway_cache_max_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_cache_conf_t, max_body),
      NULL },

    { ngx_string("ai_gateway_cache_near"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_ai_gateway_store_near,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_cache_conf_t, near),
      NULL },

    { ngx_string("ai_gateway_cache_key_json"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_cache_conf_t, key_json),
      NULL },

    { ngx_string("ai_gateway_cache_key_ignore"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_ai_gateway_cache_key_ignore,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ai_gateway_cache_lock"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_cache_conf_t, lock),
      NULL },

    { ngx_string("ai_gateway_cache_lock_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ai_gateway_cache_lock_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ai_gateway_cache_lock_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_cache_conf_t, lock_timeout),
      NULL },

    { ngx_string("ai_gateway_cache_use_stale"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_ai_gateway_cache_use_stale,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ai_gateway_cache_stale"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_cache_conf_t, stale),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ai_gateway_cache_module_ctx = {
    ngx_http_ai_gateway_cache_add_variables, /* preconfiguration */
    ngx_http_ai_gateway_cache_init,          /* postconfiguration */

    ngx_http_ai_gateway_cache_create_main_conf, /* create main configuration */
    NULL,                                    /* init main configuration */

    NULL,                                    /* create server configuration */
    NULL,                                    /* merge server configuration */

    ngx_http_ai_gateway_cache_create_conf,   /* create location configuration */
    ngx_http_ai_gateway_cache_merge_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_ai_gateway_cache_module = {
    NGX_MODULE_V1,
    &ngx_http_ai_gateway_cache_module_ctx, /* module context */
    ngx_http_ai_gateway_cache_commands,    /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_ai_gateway_cache_init_process, /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_ai_gateway_cache_exit_process, /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


ngx_str_t  ngx_http_ai_gateway_cache_status_names[] = {
    ngx_null_string,
    ngx_string("BYPASS"),
    ngx_string("MISS"),
    ngx_string("HIT"),
    ngx_string("COALESCED"),
    ngx_string("STALE")
};


static ngx_str_t  ngx_http_ai_gateway_cache_default_key =
    ngx_string("$request_method$scheme$host$request_uri");


/* what carries a client's identity to an OpenAI-style API, lowercase */
static ngx_str_t  ngx_http_ai_gateway_cache_default_credentials[] = {
    ngx_string("authorization"),
    ngx_string("proxy-authorization"),
    ngx_string("cookie"),
    ngx_string("x-api-key"),
    ngx_string("api-key"),
    ngx_null_string
};


static ngx_http_variable_t  ngx_http_ai_gateway_cache_vars[] = {

    { ngx_string("ai_gateway_cache_status"), NULL,
      ngx_http_ai_gateway_cache_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ai_gateway_cache_tier"), NULL,
      ngx_http_ai_gateway_cache_tier_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_ai_gateway_cache_add_variables(ngx_conf_t *cf)
{
    return ngx_http_ai_gateway_add_variables(cf,
                                             ngx_http_ai_gateway_cache_vars);
}


static ngx_int_t
ngx_http_ai_gateway_cache_init(ngx_conf_t *cf)
{
    if (ngx_http_ai_gateway_cache_body_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_ai_gateway_cache_filter_init(cf);
}


static void *
ngx_http_ai_gateway_cache_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ai_gateway_cache_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_ai_gateway_cache_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    cmcf->lock_zone = NGX_CONF_UNSET_SIZE;

    return cmcf;
}


static void *
ngx_http_ai_gateway_cache_create_conf(ngx_conf_t *cf)
{
    ngx_http_ai_gateway_cache_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_cache_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->methods = 0;
     */

    conf->store = NGX_CONF_UNSET_PTR;
    conf->ttl = NGX_CONF_UNSET;
    conf->key = NGX_CONF_UNSET_PTR;
    conf->bypass = NGX_CONF_UNSET_PTR;
    conf->authorized = NGX_CONF_UNSET;
    conf->credentials = NGX_CONF_UNSET_PTR;
    conf->max_body = NGX_CONF_UNSET;
    conf->near = NGX_CONF_UNSET_PTR;
    conf->key_json = NGX_CONF_UNSET;
    conf->key_ignore = NGX_CONF_UNSET_PTR;
    conf->lock = NGX_CONF_UNSET;
    conf->lock_timeout = NGX_CONF_UNSET_MSEC;
    conf->use_stale = NGX_CONF_UNSET_UINT;
    conf->stale = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_ai_gateway_cache_merge_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_ai_gateway_cache_conf_t  *prev = parent;
    ngx_http_ai_gateway_cache_conf_t  *conf = child;

    char                              *rv;
    ngx_str_t                         *name;
    ngx_flag_t                         near;

    ngx_conf_merge_ptr_value(conf->store, prev->store, NULL);

    near = (conf->near != NGX_CONF_UNSET_PTR);
    ngx_conf_merge_ptr_value(conf->near, prev->near, NULL);

    rv = ngx_http_ai_gateway_store_near_merge(cf, &conf->store, conf->near,
                                              near);
    if (rv != NGX_CONF_OK) {
        if (rv != NGX_CONF_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ai_gateway_cache_near\" %s", rv);
        }

        return NGX_CONF_ERROR;
    }
    ngx_conf_merge_sec_value(conf->ttl, prev->ttl, 300);

    /*
     * GET and HEAD are always cacheable, as with proxy_cache_methods.
     * NGX_CONF_BITMASK_SET is also NGX_HTTP_UNKNOWN's bit: cleared, so a
     * method nginx does not know (QUERY, PURGE, FOO) is never listed.
     */
    ngx_conf_merge_bitmask_value(conf->methods, prev->methods,
                                 NGX_CONF_BITMASK_SET);
    conf->methods |= NGX_HTTP_GET|NGX_HTTP_HEAD;
    conf->methods &= ~NGX_HTTP_UNKNOWN;

    /* the default key is compiled per level, never written into prev */
    ngx_conf_merge_ptr_value(conf->key, prev->key, NULL);

    if (conf->key_text.data == NULL) {
        conf->key_text = prev->key_text.data
                         ? prev->key_text
                         : ngx_http_ai_gateway_cache_default_key;
    }

    if (conf->key == NULL) {
        conf->key = ngx_http_ai_gateway_cache_compile_key(cf,
                                      &ngx_http_ai_gateway_cache_default_key);
        if (conf->key == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    ngx_conf_merge_ptr_value(conf->bypass, prev->bypass, NULL);
    ngx_conf_merge_value(conf->authorized, prev->authorized, 0);
    ngx_conf_merge_ptr_value(conf->credentials, prev->credentials, NULL);

    if (conf->credentials == NULL) {
        conf->credentials = ngx_array_create(cf->pool, 5, sizeof(ngx_str_t));
        if (conf->credentials == NULL) {
            return NGX_CONF_ERROR;
        }

        for (name = ngx_http_ai_gateway_cache_default_credentials;
             name->len;
             name++)
        {
            *(ngx_str_t *) ngx_array_push(conf->credentials) = *name;
        }
    }

    ngx_conf_merge_off_value(conf->max_body, prev->max_body, 1024 * 1024);
    ngx_conf_merge_value(conf->key_json, prev->key_json, 0);
    ngx_conf_merge_ptr_value(conf->key_ignore, prev->key_ignore, NULL);

    ngx_conf_merge_value(conf->lock, prev->lock, 1);
    ngx_conf_merge_msec_value(conf->lock_timeout, prev->lock_timeout, 60000);
    ngx_conf_merge_uint_value(conf->use_stale, prev->use_stale, 0);
    ngx_conf_merge_sec_value(conf->stale, prev->stale, 0);

    /* one flight zone for the whole configuration, where it is used */
    if (ngx_http_ai_gateway_cache_flight_conf(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ai_gateway_cache_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ai_gateway_cache_conf_t *acf = conf;

    ngx_str_t  *value;

    if (acf->key != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    acf->key = ngx_http_ai_gateway_cache_compile_key(cf, &value[1]);
    if (acf->key == NULL) {
        return NGX_CONF_ERROR;
    }

    acf->key_text = value[1];

    return NGX_CONF_OK;
}


/*
 * The key split into parts, each a run of literal text or one variable
 * reference ($name, ${name}, $1), compiled as a complex value of its own:
 * each part enters the digest as its own length-prefixed field, so values
 * cannot slide from one variable into the next.  A malformed reference is
 * left to ngx_http_compile_complex_value(), which names the error.
 */
static ngx_array_t *
ngx_http_ai_gateway_cache_compile_key(ngx_conf_t *cf, ngx_str_t *value)
{
    u_char                            *p, *last, *start, ch;
    ngx_str_t                         *part;
    ngx_array_t                       *key;
    ngx_http_compile_complex_value_t   ccv;

    key = ngx_array_create(cf->pool, 4, sizeof(ngx_http_complex_value_t));
    if (key == NULL) {
        return NULL;
    }

    p = value->data;
    last = p + value->len;

    while (p < last) {
        start = p;

        if (*p == '$') {
            p++;

            if (p < last && *p == '{') {
                while (p < last && *p != '}') {
                    p++;
                }

                if (p < last) {
                    p++;
                }

            } else if (p < last && *p >= '1' && *p <= '9') {
                p++;

            } else {
                while (p < last) {
                    ch = *p;

                    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
                        || (ch >= '0' && ch <= '9') || ch == '_')
                    {
                        p++;
                        continue;
                    }

                    break;
                }
            }

        } else {
            while (p < last && *p != '$') {
                p++;
            }
        }

        part = ngx_palloc(cf->pool, sizeof(ngx_str_t));
        if (part == NULL) {
            return NULL;
        }

        part->data = start;
        part->len = p - start;

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = part;
        ccv.complex_value = ngx_array_push(key);

        if (ccv.complex_value == NULL
            || ngx_http_compile_complex_value(&ccv) != NGX_OK)
        {
            return NULL;
        }
    }

    if (key->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ai_gateway_cache_key\" must not be empty");
        return NULL;
    }

    return key;
}


static char *
ngx_http_ai_gateway_cache_credentials(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ai_gateway_cache_conf_t *acf = conf;

    u_char      ch;
    ngx_str_t  *value, *name, *names;
    ngx_uint_t  i, j, k;

    if (acf->credentials != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    acf->credentials = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                        sizeof(ngx_str_t));
    if (acf->credentials == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        /* a field-name is a token (RFC 9110 5.1) */

        for (k = 0; k < value[i].len; k++) {
            ch = value[i].data[k];

            if (ch <= 0x20 || ch >= 0x7f
                || ngx_strchr("\"(),/:;<=>?@[\\]{}", ch) != NULL)
            {
                break;
            }
        }

        if (value[i].len == 0 || k < value[i].len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid header name \"%V\" in "
                               "\"ai_gateway_cache_credentials\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        names = acf->credentials->elts;

        for (j = 0; j < acf->credentials->nelts; j++) {
            if (names[j].len == value[i].len
                && ngx_strncasecmp(names[j].data, value[i].data,
                                   value[i].len) == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "header \"%V\" is listed twice in "
                                   "\"ai_gateway_cache_credentials\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        name = ngx_array_push(acf->credentials);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        name->len = value[i].len;
        name->data = ngx_pnalloc(cf->pool, name->len);
        if (name->data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_strlow(name->data, value[i].data, name->len);
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ai_gateway_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ai_gateway_cache_conf_t *acf = conf;

    ngx_str_t  *value;

    if (acf->store != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        acf->store = NULL;
        return NGX_CONF_OK;
    }

    /* the Redis store is registered as "redis" by ai_gateway_redis */
    acf->store = ngx_http_ai_gateway_store_shm_find(cf, &value[1]);

    if (acf->store == NULL && ngx_strcmp(value[1].data, "redis") == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ai_gateway_cache redis\" requires "
                           "\"ai_gateway_redis\" (declare it before use)");
        return NGX_CONF_ERROR;
    }

    if (acf->store == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown cache zone \"%V\" (declare it with "
                           "ai_gateway_cache_zone before use)", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ai_gateway_cache_ttl_check(ngx_conf_t *cf, void *post, void *data)
{
    time_t  *ttl = data;

    if (*ttl < 1) {
        return "must be at least 1s";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_ai_gateway_cache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_ai_gateway_cache_module);

    if (ctx == NULL || ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ngx_http_ai_gateway_cache_status_names[ctx->status].len;
    v->data = ngx_http_ai_gateway_cache_status_names[ctx->status].data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/* where a HIT came from: "shm", "near" or "redis" (SPEC 7.4) */
static ngx_int_t
ngx_http_ai_gateway_cache_tier_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_ai_gateway_cache_module);

    if (ctx == NULL || ctx->status != NGX_HTTP_AI_GATEWAY_CACHE_HIT) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (ctx->found.near) {
        v->len = sizeof("near") - 1;
        v->data = (u_char *) "near";

    } else {
        v->len = ctx->store->ref.backend.len;
        v->data = ctx->store->ref.backend.data;
    }

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * ai_gateway_cache_key_ignore FIELD ...: top-level members of a JSON body
 * left out of its canonical form (with ai_gateway_cache_key_json on), as
 * the canonicaliser takes them: unescaped names, compared bytewise.
 */
static char *
ngx_http_ai_gateway_cache_key_ignore(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ai_gateway_cache_conf_t *acf = conf;

    ngx_str_t       *value;
    ngx_uint_t       i, j;
    agw_json_str_t  *field, *fields;

    if (acf->key_ignore != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    acf->key_ignore = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                       sizeof(agw_json_str_t));
    if (acf->key_ignore == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty field name in "
                               "\"ai_gateway_cache_key_ignore\"");
            return NGX_CONF_ERROR;
        }

        fields = acf->key_ignore->elts;

        for (j = 0; j < acf->key_ignore->nelts; j++) {
            if (fields[j].len == value[i].len
                && ngx_memcmp(fields[j].data, value[i].data, value[i].len)
                   == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "field \"%V\" is listed twice in "
                                   "\"ai_gateway_cache_key_ignore\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        field = ngx_array_push(acf->key_ignore);
        if (field == NULL) {
            return NGX_CONF_ERROR;
        }

        field->data = value[i].data;
        field->len = value[i].len;
    }

    return NGX_CONF_OK;
}
