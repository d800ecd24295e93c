/*
 * The main configuration of the gateway and the helpers every folder's
 * directives share.
 */

#include "base/ngx_http_ai_gateway_conf.h"
#include "base/ngx_http_ai_gateway_stats.h"


void *
ngx_http_ai_gateway_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ai_gateway_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&amcf->caches, cf->pool, 4,
                       sizeof(ngx_http_ai_gateway_cache_ref_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&amcf->limits, cf->pool, 4,
                       sizeof(ngx_http_ai_gateway_limit_ref_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return amcf;
}


void *
ngx_http_ai_gateway_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_ai_gateway_loc_conf_t  *conf;

    conf = ngx_palloc(cf->pool, sizeof(ngx_http_ai_gateway_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->body = NGX_CONF_UNSET;

    return conf;
}


char *
ngx_http_ai_gateway_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_ai_gateway_loc_conf_t  *prev = parent;
    ngx_http_ai_gateway_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->body, prev->body, 0);

    return NGX_CONF_OK;
}


/*
 * "zone=NAME:SIZE" of ai_gateway_limit_zone and ai_gateway_cache_zone, with
 * limit_req_zone's messages and its rule that a zone holds at least 8 pages
 */
ngx_int_t
ngx_http_ai_gateway_parse_zone(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *name, ssize_t *size)
{
    u_char     *p;
    ngx_str_t   s;

    name->data = value->data + sizeof("zone=") - 1;

    p = (u_char *) ngx_strlchr(name->data, value->data + value->len, ':');

    if (p == NULL || p == name->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", value);
        return NGX_ERROR;
    }

    name->len = p - name->data;

    s.data = p + 1;
    s.len = value->data + value->len - s.data;

    *size = ngx_parse_size(&s);

    if (*size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", value);
        return NGX_ERROR;
    }

    if (*size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small", value);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_ai_gateway_add_variables(ngx_conf_t *cf, ngx_http_variable_t *vars)
{
    ngx_http_variable_t  *var, *v;

    for (v = vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}
