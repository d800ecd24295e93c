/*
 * The response cache policy: directives, the lookup and serve steps of the
 * PRECONTENT handler, and $ai_gateway_cache_status.  What is stored is
 * decided in cache_filter.c; where it is stored is the store's business
 * (ngx_http_ai_gateway_store.h).
 *
 * A request is looked up after the access phase: bypass rules first (no
 * body read, nothing counted but the bypass), then, for POST and any
 * request with a body, the whole body is read and digested as it arrives
 * (cache_body.c), then the store is asked.  The key digest covers each
 * part of the key text as a field of its own (the key is split at each
 * variable, so `$arg_a$arg_b` with a=ab,b=c and a=a,b=bc differ), the
 * body digest and, with authorized caching, a digest of every credential
 * header present (lib/agw_key.c), so one credential or one prompt never
 * meets another's answer.
 */

#include "cache/ngx_http_ai_gateway_cache.h"
#include "agw_policy.h"
#include "agw_tokens.h"


static ngx_int_t ngx_http_ai_gateway_cache_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_ai_gateway_cache_init(ngx_conf_t *cf);
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
static void ngx_http_ai_gateway_cache_lookup_done(ngx_http_request_t *r,
    ngx_int_t rc, void *data);
static ngx_flag_t ngx_http_ai_gateway_cache_is_stale(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx);


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

    NULL,                                    /* create main configuration */
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
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
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

    /* one flight table for the whole configuration, where it is used */
    if (conf->store && conf->lock) {
        conf->flight = ngx_http_ai_gateway_flight_zone(cf);
        if (conf->flight == NULL) {
            return NGX_CONF_ERROR;
        }
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


/*
 * Every line of a request header joined with ", " (RFC 9110 5.3), so a
 * directive on a second Cache-Control line counts as one on the first;
 * NGX_DECLINED if absent.
 */
static ngx_int_t
ngx_http_ai_gateway_cache_request_header(ngx_http_request_t *r,
    const char *name, size_t len, ngx_str_t *out)
{
    u_char           *p, *q;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    out->len = 0;
    out->data = NULL;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != len
            || ngx_strncasecmp(h[i].key.data, (u_char *) name, len) != 0)
        {
            continue;
        }

        if (out->data == NULL) {
            *out = h[i].value;
            continue;
        }

        p = ngx_pnalloc(r->pool, out->len + 2 + h[i].value.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        q = ngx_cpymem(p, out->data, out->len);
        q = ngx_cpymem(q, ", ", 2);
        ngx_memcpy(q, h[i].value.data, h[i].value.len);

        out->len += 2 + h[i].value.len;
        out->data = p;
    }

    return out->data ? NGX_OK : NGX_DECLINED;
}


/*
 * The credential headers present, in the configured order, every line of
 * a repeated one, each name and value a field of their own: 0 if none.
 * With sha NULL, only whether any is present (an empty value counts).
 */
static ngx_uint_t
ngx_http_ai_gateway_cache_credentials_walk(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_conf_t *conf, agw_sha256_t *sha)
{
    ngx_str_t        *names;
    ngx_uint_t        i, j, found;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    names = conf->credentials->elts;
    found = 0;

    for (j = 0; j < conf->credentials->nelts; j++) {

        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].key.len != names[j].len
                || ngx_strncasecmp(h[i].key.data, names[j].data,
                                   names[j].len) != 0)
            {
                continue;
            }

            if (sha == NULL) {
                return 1;
            }

            agw_digest_field(sha, 'N', names[j].data, names[j].len);
            agw_digest_field(sha, 'C', h[i].value.data, h[i].value.len);
            found++;
        }
    }

    return found;
}


static agw_bypass_t
ngx_http_ai_gateway_cache_bypass(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_conf_t *conf)
{
    ngx_str_t             cc, pragma;
    agw_request_facts_t   facts;

    ngx_memzero(&facts, sizeof(agw_request_facts_t));

    /* HEAD is looked up as GET (see lookup_key); unknown is never listed */
    facts.method_listed = (r->method != NGX_HTTP_UNKNOWN
                           && (r->method & conf->methods)) ? 1 : 0;
    facts.has_credential =
        ngx_http_ai_gateway_cache_credentials_walk(r, conf, NULL) ? 1 : 0;
    facts.authorized_caching = conf->authorized ? 1 : 0;
    facts.bypass_variable =
        (ngx_http_test_predicates(r, conf->bypass) == NGX_DECLINED);

    switch (ngx_http_ai_gateway_cache_request_header(r, "Cache-Control", 13,
                                                     &cc))
    {
    case NGX_OK:
        facts.cache_control = cc.data;
        facts.cache_control_len = cc.len;
        break;
    case NGX_DECLINED:
        break;
    default:
        /* not all of it could be read: do not guess it allows caching */
        return AGW_BYPASS_REQUEST_CC;
    }

    switch (ngx_http_ai_gateway_cache_request_header(r, "Pragma", 6,
                                                     &pragma))
    {
    case NGX_OK:
        facts.pragma = pragma.data;
        facts.pragma_len = pragma.len;
        break;
    case NGX_DECLINED:
        break;
    default:
        return AGW_BYPASS_REQUEST_CC;
    }

    facts.max_body = conf->max_body;

    if (r->headers_in.content_length_n >= 0) {
        facts.body_len_known = 1;
        facts.body_len = r->headers_in.content_length_n;
    }

    return agw_request_bypass(&facts);
}


static void
ngx_http_ai_gateway_cache_count(ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    ngx_http_ai_gateway_cache_stats_t  *stats;

    stats = ctx->store->ref.stats;

    switch (ctx->status) {

    case NGX_HTTP_AI_GATEWAY_CACHE_HIT:
        ngx_http_ai_gateway_count(stats->hits, 1);
        break;

    case NGX_HTTP_AI_GATEWAY_CACHE_MISS:
        ngx_http_ai_gateway_count(stats->misses, 1);
        break;

    default: /* BYPASS */
        ngx_http_ai_gateway_count(stats->bypasses, 1);
    }
}


ngx_int_t
ngx_http_ai_gateway_cache_lookup(ngx_http_request_t *r)
{
    agw_bypass_t                       bypass;
    ngx_http_ai_gateway_cache_ctx_t   *ctx;
    ngx_http_ai_gateway_cache_conf_t  *conf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    if (ctx) {
        /* the phases run again after a suspended step */
        return ctx->waiting ? NGX_DONE : NGX_DECLINED;
    }

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    if (conf->store == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_ai_gateway_cache_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_ai_gateway_cache_module);

    ctx->store = conf->store;

    bypass = ngx_http_ai_gateway_cache_bypass(r, conf);

    if (bypass != AGW_BYPASS_NONE) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ai_gateway cache bypass: %s",
                       agw_bypass_reason(bypass));

        ctx->status = NGX_HTTP_AI_GATEWAY_CACHE_BYPASS;
        ctx->done = 1;
        ngx_http_ai_gateway_cache_count(ctx);
        return NGX_DECLINED;
    }

    /* a POST, or any request with a body, is keyed on its body */
    if (r->method == NGX_HTTP_POST
        || r->headers_in.content_length_n > 0
        || r->headers_in.chunked)
    {
        ctx->body_keyed = 1;
        return ngx_http_ai_gateway_cache_read_body(r, ctx, conf->max_body);
    }

    return ngx_http_ai_gateway_cache_lookup_key(r, ctx);
}


/* the key digest, then the store; NGX_DECLINED to go on, NGX_DONE pending */
ngx_int_t
ngx_http_ai_gateway_cache_lookup_key(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    u_char                            *p;
    size_t                             len;
    ngx_int_t                          rc;
    ngx_str_t                          method, *parts;
    ngx_uint_t                         i, n;
    agw_key_t                          key;
    agw_sha256_t                       sha;
    agw_digest_t                       body, cred, *pbody, *pcred;
    ngx_http_complex_value_t          *cv;
    ngx_http_ai_gateway_cache_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    cv = conf->key->elts;
    n = conf->key->nelts;

    parts = ngx_palloc(r->pool, n * sizeof(ngx_str_t));
    if (parts == NULL) {
        return NGX_ERROR;
    }

    /*
     * HEAD is keyed as GET, as proxy_cache_convert_head does, so a HEAD is
     * answered from the entry a GET stored; a HEAD MISS stores nothing.
     */
    method = r->method_name;

    if (r->method == NGX_HTTP_HEAD) {
        ngx_str_set(&r->method_name, "GET");
    }

    rc = NGX_OK;
    len = 0;

    for (i = 0; i < n; i++) {
        rc = ngx_http_complex_value(r, &cv[i], &parts[i]);
        if (rc != NGX_OK) {
            break;
        }

        len += parts[i].len;
    }

    r->method_name = method;

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    /* the readable key text (Redis "key" field, logs) is the parts joined */

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->key.data = p;
    ctx->key.len = len;

    agw_key_init(&key);

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, parts[i].data, parts[i].len);
        agw_key_part(&key, parts[i].data, parts[i].len);
    }

    pbody = NULL;
    pcred = NULL;

    if (ctx->body_keyed) {
        if (ngx_http_ai_gateway_cache_body_digest(r, ctx, &body) != NGX_OK) {
            /*
             * larger than allowed, or not all of it seen: forward it,
             * uncached
             */
            ctx->status = NGX_HTTP_AI_GATEWAY_CACHE_BYPASS;
            ctx->done = 1;
            ngx_http_ai_gateway_cache_count(ctx);
            return NGX_DECLINED;
        }

        pbody = &body;
    }

    /* only reached with ai_gateway_cache_authorized on if any is present */

    agw_sha256_init(&sha);

    if (ngx_http_ai_gateway_cache_credentials_walk(r, conf, &sha)) {
        agw_digest_final(&cred, &sha);
        pcred = &cred;
    }

    agw_key_final(&key, &ctx->digest, pbody, pcred);

    rc = ctx->store->lookup(r, ctx->store, &ctx->digest, &ctx->found,
                            ngx_http_ai_gateway_cache_lookup_done, ctx);

    if (rc == NGX_AGAIN) {
        ctx->waiting = 1;
        return NGX_DONE;
    }

    ngx_http_ai_gateway_cache_lookup_done(r, rc, ctx);

    /* waiting on an identical request's flight (cache_wait.c) */
    return ctx->waiting ? NGX_DONE : NGX_DECLINED;
}


/*
 * The store's answer: NGX_OK found, anything else a MISS (a failing store
 * counted its own error).  Called here when the store answered at once,
 * and by an asynchronous store as the handler its lookup was given, after
 * which the phases resume.
 */
static void
ngx_http_ai_gateway_cache_lookup_done(ngx_http_request_t *r, ngx_int_t rc,
    void *data)
{
    ngx_http_ai_gateway_cache_ctx_t *ctx = data;

    ngx_uint_t         resume;
    ngx_connection_t  *c;

    resume = ctx->waiting;

    if (resume && r->main->count == 0) {
        /*
         * terminated while waiting, its pool kept alive a little longer
         * (an HTTP/2 stream with frames still queued): nothing to resume
         */
        return;
    }

    ctx->waiting = 0;
    ctx->done = 1;

    if (rc == NGX_OK && ngx_http_ai_gateway_cache_is_stale(r, ctx)) {
        /* kept for an upstream failure (cache_filter.c); a MISS until then */
        ctx->stale = ctx->found;
        ctx->has_stale = 1;
        rc = NGX_DECLINED;
    }

    ctx->status = (rc == NGX_OK) ? NGX_HTTP_AI_GATEWAY_CACHE_HIT
                                 : NGX_HTTP_AI_GATEWAY_CACHE_MISS;

    if (ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_MISS
        && ngx_http_ai_gateway_cache_join(r, ctx) == NGX_AGAIN)
    {
        /* counted, and the phases resumed, once the wait is over */
        ctx->waiting = 1;
        ctx->done = 0;
        return;
    }

    ngx_http_ai_gateway_cache_count(ctx);

    if (resume) {
        /* r may be freed by the time the phases return */
        c = r->connection;

        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
        ngx_http_run_posted_requests(c);
    }
}


/* does the store keep entries ai_gateway_cache_stale past their TTL? */
ngx_flag_t
ngx_http_ai_gateway_cache_keeps_stale(ngx_http_ai_gateway_store_t *store)
{
    return store->ref.backend.len == 3
           && ngx_strncmp(store->ref.backend.data, "shm", 3) == 0;
}


ngx_flag_t
ngx_http_ai_gateway_cache_is_hit(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_ai_gateway_cache_module);

    /* a coalesced answer, decided before the limiter, costs as a HIT */
    return ctx && (ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_HIT
                   || ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_COALESCED);
}


/*
 * An entry past its own lifetime but within ai_gateway_cache_stale: the
 * store keeps entries that much longer (cache_filter.c), so the lifetime
 * ends that long before the store's expiry.  Only the shared-memory store
 * keeps them longer (Redis, and the near zone in front of it, do not).
 */
static ngx_flag_t
ngx_http_ai_gateway_cache_is_stale(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    ngx_http_ai_gateway_cache_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    return conf->stale > 0 && ctx->found.expires != 0
           && ngx_http_ai_gateway_cache_keeps_stale(ctx->store)
           && ctx->found.expires - conf->stale <= ngx_time();
}


ngx_int_t
ngx_http_ai_gateway_cache_serve(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_buf_t                        *b;
    ngx_chain_t                       out;
    agw_entry_t                      *e;
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    if (ctx && ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_COALESCED
        && r == r->main)
    {
        return ngx_http_ai_gateway_cache_serve_coalesced(r, ctx);
    }

    if (ctx == NULL || ctx->status != NGX_HTTP_AI_GATEWAY_CACHE_HIT
        || r != r->main)
    {
        return NGX_DECLINED;
    }

    e = &ctx->found.entry;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    /* the tokens the upstream did not spend again (SPEC 7.1) */
    ngx_http_ai_gateway_count(ctx->store->ref.stats->tokens_saved,
                              agw_tokens_tail_total((const uint8_t *) e->body,
                                                    e->body_len));

    r->headers_out.status = e->status;
    r->headers_out.content_length_n = e->body_len;

    if (ngx_http_ai_gateway_cache_set_headers(r, e->headers, e->headers_len)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = (u_char *) e->body;
    b->last = (u_char *) e->body + e->body_len;
    b->memory = e->body_len ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));

    return NGX_DONE;
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
