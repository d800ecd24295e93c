/*
 * ai_gateway_redis (SPEC 3.3): the connection's configuration, and the
 * hooks that its users (the Redis cache store, the near cache) register
 * to run in every worker with it.  The connection itself creates nothing:
 * core/ wires the Redis store to the directive.
 */

#include "redis/ngx_http_ai_gateway_redis_node.h"
#include "agw_entry.h"


char *
ngx_http_ai_gateway_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ai_gateway_main_conf_t *amcf = conf;

    u_char                            *p;
    ssize_t                            size;
    ngx_int_t                          n;
    ngx_str_t                         *value, s;
    ngx_url_t                          u;
    ngx_uint_t                         i;
    ngx_msec_t                        *msp;
    ngx_http_ai_gateway_redis_conf_t  *rcf;

    if (amcf->redis) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_redis_conf_t));
    if (rcf == NULL) {
        return NGX_CONF_ERROR;
    }

    /*
     * A host name is resolved here, once, as proxy_pass resolves its
     * upstream: a worker must never block in getaddrinfo() on reconnect.
     */
    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid address \"%V\": %s",
                           &value[1], u.err ? u.err : "cannot parse");
        return NGX_CONF_ERROR;
    }

    if (u.family == AF_UNIX || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid address \"%V\": HOST:PORT expected",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    /* as documented: a forgotten port is a mistake, not 6379 in disguise */
    if (u.no_port) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid address \"%V\": no port, HOST:PORT "
                           "expected", &value[1]);
        return NGX_CONF_ERROR;
    }

    rcf->name = value[1];
    rcf->port = ngx_inet_get_port(u.addrs[0].sockaddr);

    rcf->addr = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (rcf->addr == NULL) {
        return NGX_CONF_ERROR;
    }

    p = rcf->addr + ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                                  rcf->addr, NGX_SOCKADDR_STRLEN, 0);
    *p = '\0';

    ngx_str_set(&rcf->prefix, "gw:v1:");
    /*
     * No request waits on a connect: commands queue behind the handshake
     * for at most their own timeout.  connect_timeout only says when a
     * connection that does not answer is given up (a failure, retried):
     * 100 ms gave up on handshakes that a loaded host was merely slow to
     * run, and each retry cost a new connection and its handshake.
     */
    rcf->connect_timeout = 1000;
    rcf->timeout = 50;
    rcf->write_timeout = 1000;
    rcf->max_entry_size = 1024 * 1024;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "cluster") == 0) {
            rcf->cluster = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {

            n = ngx_atoi(value[i].data + 3, value[i].len - 3);

            if (n == NGX_ERROR || n > 1000000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid db \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            rcf->db = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {

            rcf->password.data = value[i].data + 9;
            rcf->password.len = value[i].len - 9;

            if (rcf->password.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty password in \"%V\"", &value[1]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "max_entry_size=", 15) == 0) {

            s.data = value[i].data + 15;
            s.len = value[i].len - 15;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR || size == 0
                || (size_t) size > AGW_ENTRY_MAX_FIELD)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid max_entry_size \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            rcf->max_entry_size = size;
            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            rcf->prefix.data = value[i].data + 7;
            rcf->prefix.len = value[i].len - 7;
            continue;
        }

        msp = NULL;

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;
            msp = &rcf->connect_timeout;

        } else if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;
            msp = &rcf->timeout;

        } else if (ngx_strncmp(value[i].data, "write_timeout=", 14) == 0) {
            s.data = value[i].data + 14;
            s.len = value[i].len - 14;
            msp = &rcf->write_timeout;
        }

        if (msp) {
            *msp = ngx_parse_time(&s, 0);

            if (*msp == (ngx_msec_t) NGX_ERROR || *msp == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid timeout \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (rcf->cluster && rcf->db) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"db=\" cannot be used with \"cluster\": "
                           "a Redis Cluster has database 0 only");
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&rcf->workers, cf->pool, 2,
                       sizeof(ngx_http_ai_gateway_redis_worker_hook_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    amcf->redis = rcf;
    amcf->redis_configured = 1;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_ai_gateway_redis_on_worker(ngx_conf_t *cf,
    ngx_http_ai_gateway_redis_start_pt start,
    ngx_http_ai_gateway_redis_stop_pt stop, void *data)
{
    ngx_http_ai_gateway_main_conf_t          *amcf;
    ngx_http_ai_gateway_redis_worker_hook_t  *hook;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ai_gateway_module);

    if (amcf->redis == NULL) {
        return NGX_ERROR;
    }

    hook = ngx_array_push(&amcf->redis->workers);
    if (hook == NULL) {
        return NGX_ERROR;
    }

    hook->start = start;
    hook->stop = stop;
    hook->data = data;

    return NGX_OK;
}
