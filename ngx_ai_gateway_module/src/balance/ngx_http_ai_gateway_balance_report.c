/*
 * What the balancers know, in and out: the replicas' own load reports,
 * read from each answer's `endpoint-load-metrics` header (ORCA's text
 * form, lib/agw_orca.c), and the figures /cachez shows (SPEC 8.2).
 *
 * The header is read in a header filter, on the answer of the peer the
 * request was balanced to, and kept in that peer's slot for every worker.
 * It is then taken out of the answer: vLLM sends it to the gateway that
 * asked for it, not to end users, and a cached answer must not replay a
 * replica's load of minutes ago (this filter runs before the cache's,
 * which stores what is left).  Only answers of upstreams balanced here are
 * read and stripped; elsewhere the header passes as nginx passes it.
 */

#include "balance/ngx_http_ai_gateway_balance.h"
#include "agw_orca.h"


static ngx_int_t ngx_http_ai_gateway_balance_header_filter(
    ngx_http_request_t *r);
static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE void
    ngx_http_ai_gateway_balance_report(ngx_http_request_t *r,
    ngx_http_ai_gateway_balance_peer_data_t *bp);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


static ngx_str_t  ngx_http_ai_gateway_balance_orca =
    ngx_string("endpoint-load-metrics");


ngx_int_t
ngx_http_ai_gateway_balance_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_ai_gateway_balance_header_filter;

    return NGX_OK;
}


/* the header line in a list, NULL if none; hash 0 lines are gone */

static ngx_table_elt_t *
ngx_http_ai_gateway_balance_find(ngx_list_t *headers)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &headers->part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash != 0
            && h[i].key.len == ngx_http_ai_gateway_balance_orca.len
            && ngx_strncasecmp(h[i].key.data,
                               ngx_http_ai_gateway_balance_orca.data,
                               ngx_http_ai_gateway_balance_orca.len)
               == 0)
        {
            return &h[i];
        }
    }
}


/*
 * every answer passes here; only a balanced one is read, in a function of
 * its own, so that the others leave before its frame is set up
 */

static ngx_int_t
ngx_http_ai_gateway_balance_header_filter(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_balance_peer_data_t  *bp;

    if (r->upstream) {
        bp = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_balance_module);

        if (bp) {
            ngx_http_ai_gateway_balance_report(r, bp);
        }
    }

    return ngx_http_next_header_filter(r);
}


static void
ngx_http_ai_gateway_balance_report(ngx_http_request_t *r,
    ngx_http_ai_gateway_balance_peer_data_t *bp)
{
    ngx_table_elt_t                     *h;
    agw_orca_report_t                    rep;
    ngx_http_ai_gateway_balance_slot_t  *slot;

    h = ngx_http_ai_gateway_balance_find(&r->upstream->headers_in.headers);
    slot = bp->current;

    if (h && slot && agw_orca_parse(h->value.data, h->value.len, &rep)) {

        if (rep.has_running) {
            slot->running = rep.running;
        }

        if (rep.has_waiting) {
            slot->waiting = rep.waiting;
        }

        if (rep.has_kv) {
            slot->kv_ppm = rep.kv_ppm;
        }

        /* the stamp last: a reader that sees it sees the figures */
        ngx_memory_barrier();

        slot->msec = ngx_current_msec ? ngx_current_msec : 1;

        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ai_gateway balance: report of %V: running %uD,"
                       " waiting %uD, kv %uD ppm",
                       r->upstream->peer.name, rep.running, rep.waiting,
                       rep.kv_ppm);
    }

    /* not for the client, nor for a cache: every line of it */

    while ((h = ngx_http_ai_gateway_balance_find(&r->headers_out.headers))) {
        h->hash = 0;
    }
}


/* /cachez */


static ngx_http_ai_gateway_balance_main_conf_t *
ngx_http_ai_gateway_balance_main_conf(void)
{
    return ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                           ngx_http_ai_gateway_balance_module);
}


static u_char *
ngx_http_ai_gateway_balance_escaped(u_char *p, ngx_str_t *s)
{
    if (ngx_escape_json(NULL, s->data, s->len) == 0) {
        return ngx_cpymem(p, s->data, s->len);
    }

    return (u_char *) ngx_escape_json(p, s->data, s->len);
}


/* room for a peer's JSON object and its Prometheus lines, names aside */
#define NGX_HTTP_AI_GATEWAY_BALANCE_PEER_LEN   (1024 + 16 * NGX_ATOMIC_T_LEN)

/* the families' HELP and TYPE lines */
#define NGX_HTTP_AI_GATEWAY_BALANCE_FAMILIES   2048


size_t
ngx_http_ai_gateway_balance_cachez_size(void)
{
    size_t                                    size;
    ngx_uint_t                                i, j;
    ngx_http_ai_gateway_balance_srv_conf_t  **up;
    ngx_http_ai_gateway_balance_main_conf_t  *bmcf;

    bmcf = ngx_http_ai_gateway_balance_main_conf();

    if (bmcf == NULL) {
        return 32;
    }

    size = NGX_HTTP_AI_GATEWAY_BALANCE_FAMILIES;
    up = bmcf->upstreams.elts;

    for (i = 0; i < bmcf->upstreams.nelts; i++) {
        size += 128 + 6 * up[i]->upstream->host.len;

        for (j = 0; j < up[i]->npeers + up[i]->nbackup; j++) {
            /* the names, escaped, in JSON and in each of 8 series */
            size += NGX_HTTP_AI_GATEWAY_BALANCE_PEER_LEN
                    + 9 * 6 * (up[i]->names[j].len
                               + up[i]->upstream->host.len);
        }
    }

    return size;
}


static ngx_flag_t
ngx_http_ai_gateway_balance_has_report(ngx_http_ai_gateway_balance_slot_t *s,
    ngx_msec_int_t *age)
{
    ngx_msec_t  msec;

    msec = s->msec;

    if (msec == 0) {
        return 0;
    }

    /* another worker's clock may run a little ahead of this one's */
    *age = (ngx_msec_int_t) (ngx_current_msec - msec);

    if (*age < 0) {
        *age = 0;
    }

    return 1;
}


u_char *
ngx_http_ai_gateway_balance_cachez_json(u_char *p)
{
    ngx_uint_t                                i, j;
    ngx_msec_int_t                            age;
    ngx_http_ai_gateway_balance_slot_t       *s;
    ngx_http_ai_gateway_balance_srv_conf_t  **up, *bcf;
    ngx_http_ai_gateway_balance_main_conf_t  *bmcf;

    p = ngx_cpymem(p, ",\"upstreams\":{", sizeof(",\"upstreams\":{") - 1);

    bmcf = ngx_http_ai_gateway_balance_main_conf();
    up = bmcf ? bmcf->upstreams.elts : NULL;

    for (i = 0; bmcf && i < bmcf->upstreams.nelts; i++) {
        bcf = up[i];

        p = ngx_sprintf(p, "%s\"", i ? "," : "");
        p = ngx_http_ai_gateway_balance_escaped(p, &bcf->upstream->host);
        p = ngx_sprintf(p, "\":{\"balance\":\"%s\",\"peers\":[",
                        bcf->method == NGX_HTTP_AI_GATEWAY_BALANCE_PREFIX
                        ? "prefix" : "least_tokens");

        for (j = 0; j < bcf->npeers + bcf->nbackup; j++) {
            s = bcf->slots[j];

            p = ngx_sprintf(p, "%s{\"addr\":\"", j ? "," : "");
            p = ngx_http_ai_gateway_balance_escaped(p, &bcf->names[j]);
            p = ngx_sprintf(p, "\",\"backup\":%s,\"picks\":%uA,"
                            "\"inflight_requests\":%uA,"
                            "\"inflight_tokens\":%uA,\"report\":",
                            j < bcf->npeers ? "false" : "true",
                            s->picks, s->requests, s->tokens);

            if (ngx_http_ai_gateway_balance_has_report(s, &age)) {
                p = ngx_sprintf(p, "{\"running\":%uA,\"waiting\":%uA,"
                                "\"kv_cache_usage\":%uA.%06uA,"
                                "\"age_ms\":%M}}",
                                s->running, s->waiting,
                                s->kv_ppm / 1000000, s->kv_ppm % 1000000,
                                (ngx_msec_t) age);

            } else {
                p = ngx_cpymem(p, "null}", sizeof("null}") - 1);
            }
        }

        p = ngx_cpymem(p, "]}", 2);
    }

    *p++ = '}';

    return p;
}


typedef struct {
    const char  *name;
    const char  *type;
    const char  *help;
} ngx_http_ai_gateway_balance_family_t;


static ngx_http_ai_gateway_balance_family_t
    ngx_http_ai_gateway_balance_families[] = {
    { "upstream_picks_total", "counter",
      "Tries the balancer sent to the peer (ai_gateway_balance)." },
    { "upstream_inflight_requests", "gauge",
      "Requests this nginx (all workers) sent the peer, not yet ended." },
    { "upstream_inflight_tokens", "gauge",
      "Token estimates of the requests in flight on the peer." },
    { "upstream_peer_running", "gauge",
      "Requests running on the peer, as its last load report said." },
    { "upstream_peer_waiting", "gauge",
      "Requests waiting on the peer, as its last load report said." },
    { "upstream_peer_kv_cache_usage_ratio", "gauge",
      "KV cache in use on the peer (0 to 1), as its last report said." },
    { "upstream_peer_report_age_seconds", "gauge",
      "Seconds since the peer's last load report (endpoint-load-metrics)." },
    { NULL, NULL, NULL }
};


u_char *
ngx_http_ai_gateway_balance_cachez_prometheus(u_char *p)
{
    ngx_uint_t                                f, i, j;
    ngx_msec_int_t                            age;
    ngx_atomic_uint_t                         v;
    ngx_http_ai_gateway_balance_slot_t       *s;
    ngx_http_ai_gateway_balance_family_t     *fam;
    ngx_http_ai_gateway_balance_srv_conf_t  **up, *bcf;
    ngx_http_ai_gateway_balance_main_conf_t  *bmcf;

    bmcf = ngx_http_ai_gateway_balance_main_conf();

    if (bmcf == NULL || bmcf->upstreams.nelts == 0) {
        return p;
    }

    up = bmcf->upstreams.elts;

    for (f = 0; ngx_http_ai_gateway_balance_families[f].name; f++) {
        fam = &ngx_http_ai_gateway_balance_families[f];

        p = ngx_sprintf(p, "# HELP ai_gateway_%s %s\n"
                        "# TYPE ai_gateway_%s %s\n",
                        fam->name, fam->help, fam->name, fam->type);

        for (i = 0; i < bmcf->upstreams.nelts; i++) {
            bcf = up[i];

            for (j = 0; j < bcf->npeers + bcf->nbackup; j++) {
                s = bcf->slots[j];
                age = 0;

                if (f >= 3 && !ngx_http_ai_gateway_balance_has_report(s, &age))
                {
                    continue;   /* no report: no figure, rather than 0 */
                }

                p = ngx_sprintf(p, "ai_gateway_%s{upstream=\"", fam->name);
                p = ngx_http_ai_gateway_balance_escaped(p,
                                                       &bcf->upstream->host);
                p = ngx_cpymem(p, "\",peer=\"", sizeof("\",peer=\"") - 1);
                p = ngx_http_ai_gateway_balance_escaped(p, &bcf->names[j]);
                p = ngx_cpymem(p, "\"} ", 3);

                switch (f) {
                case 0:
                    v = s->picks;
                    break;
                case 1:
                    v = s->requests;
                    break;
                case 2:
                    v = s->tokens;
                    break;
                case 3:
                    v = s->running;
                    break;
                case 4:
                    v = s->waiting;
                    break;
                case 5:
                    v = s->kv_ppm;
                    p = ngx_sprintf(p, "%uA.%06uA\n", v / 1000000,
                                    v % 1000000);
                    continue;
                default:
                    p = ngx_sprintf(p, "%M.%03M\n", (ngx_msec_t) age / 1000,
                                    (ngx_msec_t) age % 1000);
                    continue;
                }

                p = ngx_sprintf(p, "%uA\n", v);
            }
        }
    }

    return p;
}
