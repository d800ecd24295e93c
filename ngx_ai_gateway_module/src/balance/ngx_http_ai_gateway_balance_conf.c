/*
 * ai_gateway_balance, in upstream{} as least_conn and hash are:
 *
 *     ai_gateway_balance least_tokens;
 *     ai_gateway_balance prefix [bytes=N] [bound=F];
 *
 * The directive takes the upstream's init_upstream hook as nginx's own
 * balancers do (ngx_http_upstream_least_conn_module.c,
 * ngx_http_upstream_hash_module.c): init_upstream builds the round-robin
 * peers, then, for prefix, the consistent hashing ring over the primary
 * ones; init_peer (balance_peer.c) then runs for every request.
 *
 * nginx's own balancers only warn when one replaces another ("load
 * balancing method redefined") and the last one wins, silently dropping
 * the first.  An inference fleet configured for prefix affinity that
 * quietly runs least_conn would lose what it was set up for, so this one
 * refuses both orders: another method (or keepalive, which must follow
 * the method) before it, and another method after it, which is found in
 * postconfiguration because its init_upstream never ran.
 */

#include "balance/ngx_http_ai_gateway_balance.h"


static ngx_int_t ngx_http_ai_gateway_balance_postconfiguration(
    ngx_conf_t *cf);
static void *ngx_http_ai_gateway_balance_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_ai_gateway_balance_create_srv_conf(ngx_conf_t *cf);
static char *ngx_http_ai_gateway_balance(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_ai_gateway_balance_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_ai_gateway_balance_init_ring(ngx_conf_t *cf,
    ngx_http_ai_gateway_balance_srv_conf_t *bcf,
    ngx_http_upstream_rr_peers_t *peers);


static ngx_command_t  ngx_http_ai_gateway_balance_commands[] = {

    { ngx_string("ai_gateway_balance"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE123,
      ngx_http_ai_gateway_balance,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ai_gateway_balance_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_ai_gateway_balance_postconfiguration, /* postconfiguration */

    ngx_http_ai_gateway_balance_create_main_conf, /* create main conf */
    NULL,                                  /* init main configuration */

    ngx_http_ai_gateway_balance_create_srv_conf, /* create server conf */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_ai_gateway_balance_module = {
    NGX_MODULE_V1,
    &ngx_http_ai_gateway_balance_module_ctx, /* module context */
    ngx_http_ai_gateway_balance_commands,  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_ai_gateway_balance_init_process, /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_ai_gateway_balance_exit_process, /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_ai_gateway_balance_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ai_gateway_balance_main_conf_t  *bmcf;

    bmcf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_ai_gateway_balance_main_conf_t));
    if (bmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&bmcf->upstreams, cf->pool, 4,
                       sizeof(ngx_http_ai_gateway_balance_srv_conf_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return bmcf;
}


static void *
ngx_http_ai_gateway_balance_create_srv_conf(ngx_conf_t *cf)
{
    /* all zero: method 0, not balanced by this module */
    return ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_ai_gateway_balance_srv_conf_t));
}


static char *
ngx_http_ai_gateway_balance(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ai_gateway_balance_srv_conf_t  *bcf = conf;

    ssize_t                                   bytes;
    ngx_int_t                                 bound;
    ngx_str_t                                *value, s;
    ngx_uint_t                                i;
    ngx_http_upstream_srv_conf_t             *uscf;
    ngx_http_ai_gateway_balance_srv_conf_t  **up;
    ngx_http_ai_gateway_balance_main_conf_t  *bmcf;

    if (bcf->method) {
        return "is duplicate";
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ai_gateway_balance\" follows another load"
                           " balancing method or \"keepalive\" in upstream"
                           " \"%V\": it must be the only method, and come"
                           " before \"keepalive\"", &uscf->host);
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "least_tokens") == 0) {
        bcf->method = NGX_HTTP_AI_GATEWAY_BALANCE_LEAST_TOKENS;

    } else if (ngx_strcmp(value[1].data, "prefix") == 0) {
        bcf->method = NGX_HTTP_AI_GATEWAY_BALANCE_PREFIX;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid balancing method \"%V\" (least_tokens or"
                           " prefix)", &value[1]);
        return NGX_CONF_ERROR;
    }

    bcf->bytes = 2048;
    bcf->bound = 1250;

    for (i = 2; i < cf->args->nelts; i++) {

        if (bcf->method != NGX_HTTP_AI_GATEWAY_BALANCE_PREFIX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": least_tokens takes"
                               " none", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (ngx_strncmp(value[i].data, "bytes=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            bytes = ngx_parse_size(&s);

            if (bytes == NGX_ERROR || bytes < 1 || bytes > 1024 * 1024) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid bytes \"%V\" (1 to 1m)",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            bcf->bytes = bytes;
            continue;
        }

        if (ngx_strncmp(value[i].data, "bound=", 6) == 0) {
            bound = ngx_atofp(value[i].data + 6, value[i].len - 6, 3);

            if (bound == NGX_ERROR || bound < 1000 || bound > 100000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid bound \"%V\" (a factor of the"
                                   " average load from 1 to 100, such as"
                                   " 1.25)", &value[i]);
                return NGX_CONF_ERROR;
            }

            bcf->bound = bound;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    bcf->upstream = uscf;
    bcf->file = cf->conf_file->file.name.data;
    bcf->line = cf->conf_file->line;

    uscf->peer.init_upstream = ngx_http_ai_gateway_balance_init_upstream;

    uscf->flags = NGX_HTTP_UPSTREAM_CREATE
                  |NGX_HTTP_UPSTREAM_WEIGHT
                  |NGX_HTTP_UPSTREAM_MAX_CONNS
                  |NGX_HTTP_UPSTREAM_MAX_FAILS
                  |NGX_HTTP_UPSTREAM_FAIL_TIMEOUT
                  |NGX_HTTP_UPSTREAM_DOWN
                  |NGX_HTTP_UPSTREAM_BACKUP;

    bmcf = ngx_http_conf_get_module_main_conf(cf,
                                          ngx_http_ai_gateway_balance_module);

    up = ngx_array_push(&bmcf->upstreams);
    if (up == NULL) {
        return NGX_CONF_ERROR;
    }

    *up = bcf;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_ai_gateway_balance_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_uint_t                               n;
    ngx_http_upstream_rr_peer_t             *peer;
    ngx_http_upstream_rr_peers_t            *peers;
    ngx_http_ai_gateway_balance_srv_conf_t  *bcf;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                   "ai_gateway balance: init upstream");

    if (ngx_http_upstream_init_round_robin(cf, us) != NGX_OK) {
        return NGX_ERROR;
    }

    us->peer.init = ngx_http_ai_gateway_balance_init_peer;

    bcf = ngx_http_conf_upstream_srv_conf(us,
                                          ngx_http_ai_gateway_balance_module);

    peers = us->peer.data;

    bcf->npeers = peers->number;
    bcf->nbackup = peers->next ? peers->next->number : 0;

    bcf->names = ngx_palloc(cf->pool,
                            (bcf->npeers + bcf->nbackup) * sizeof(ngx_str_t));
    bcf->slots = ngx_pcalloc(cf->pool, (bcf->npeers + bcf->nbackup)
                             * sizeof(ngx_http_ai_gateway_balance_slot_t *));

    if (bcf->names == NULL || bcf->slots == NULL) {
        return NGX_ERROR;
    }

    /* the peers' addresses: the slots' keys, and /cachez's "addr" */

    n = 0;

    for (peer = peers->peer; peer; peer = peer->next) {
        bcf->names[n++] = peer->name;
    }

    if (peers->next) {
        for (peer = peers->next->peer; peer; peer = peer->next) {
            bcf->names[n++] = peer->name;
        }
    }

    if (bcf->method == NGX_HTTP_AI_GATEWAY_BALANCE_PREFIX
        && ngx_http_ai_gateway_balance_init_ring(cf, bcf, peers) != NGX_OK)
    {
        return NGX_ERROR;
    }

    bcf->initialized = 1;

    return NGX_OK;
}


/*
 * The primary peers' points, 160 a unit of weight, as nginx's hash
 * consistent places its servers' (lib/agw_ring.c).  By address, not by
 * the server's name: a name that resolves to several addresses is several
 * replicas, each with a cache of its own.
 */

static ngx_int_t
ngx_http_ai_gateway_balance_init_ring(ngx_conf_t *cf,
    ngx_http_ai_gateway_balance_srv_conf_t *bcf,
    ngx_http_upstream_rr_peers_t *peers)
{
    size_t                        n;
    ngx_uint_t                    i;
    ngx_http_upstream_rr_peer_t  *peer;

    n = 0;

    for (peer = peers->peer; peer; peer = peer->next) {
        n += (size_t) peer->weight * AGW_RING_POINTS_PER_WEIGHT;
    }

    bcf->points = ngx_palloc(cf->pool, n * sizeof(agw_ring_point_t));
    if (bcf->points == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    for (peer = peers->peer, i = 0; peer; peer = peer->next, i++) {
        n += agw_ring_add(bcf->points + n, peer->name.data, peer->name.len,
                          (uint32_t) peer->weight, (uint32_t) i);
    }

    bcf->npoints = agw_ring_sort(bcf->points, n);

    return NGX_OK;
}


static ngx_int_t
ngx_http_ai_gateway_balance_postconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t                                i;
    ngx_http_ai_gateway_balance_srv_conf_t  **up;
    ngx_http_ai_gateway_balance_main_conf_t  *bmcf;

    bmcf = ngx_http_conf_get_module_main_conf(cf,
                                          ngx_http_ai_gateway_balance_module);

    if (ngx_http_ai_gateway_balance_filter_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (bmcf->upstreams.nelts == 0) {
        return NGX_OK;          /* no zone, no timer: nothing to balance */
    }

    /*
     * every upstream's init_upstream ran in the upstream module's
     * init_main_conf, before any postconfiguration: one that did not run
     * ours was taken over by a method set after ai_gateway_balance
     */

    up = bmcf->upstreams.elts;

    for (i = 0; i < bmcf->upstreams.nelts; i++) {
        if (!up[i]->initialized) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"ai_gateway_balance\" in upstream \"%V\" is"
                          " replaced by a load balancing method set after"
                          " it in %s:%ui: it must be the only method",
                          &up[i]->upstream->host, up[i]->file, up[i]->line);
            return NGX_ERROR;
        }
    }

    return ngx_http_ai_gateway_balance_zone_add(cf, bmcf);
}
