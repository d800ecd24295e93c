/*
 * Purge of the Redis cache (ai_gateway_cache_purge).  SCAN MATCH over the
 * cache's keys (as the entry count does, a round trip per batch, never
 * KEYS), each batch handed to a short script that UNLINKs the keys whose
 * `key` or `model` field is the value (or every one): the field is checked
 * and the key dropped in one step, and UNLINK frees the memory in the
 * background, so Redis is never held for more than a batch.  A script per
 * batch rather than a per-model set: a set would have to be kept right on
 * every store and every expiry, and would grow without bound under TTLs; a
 * purge is rare and may take its time.  Keys seen twice by SCAN are
 * unlinked once (UNLINK counts).
 *
 * Redis Cluster: SCAN runs on every master in turn (redis/, scan), and a
 * script may only touch keys of one slot, so a batch is split by slot: one
 * script per slot, all of a batch's sent at once, each routed to its
 * slot's owner; the next batch is asked for once they all answered.
 *
 * A purge may send hundreds of thousands of commands: its state and its
 * scratch are on the heap, not in the request's pool (which only grows),
 * and its commands are tied to no pool; one cleanup of the request's pool
 * tells the purge its request is gone, and the state is freed once no
 * command of it is in flight.
 */

#include "store/ngx_http_ai_gateway_store_redis.h"
#include "agw_slot.h"


#define NGX_HTTP_AI_GATEWAY_STORE_REDIS_PURGE_BATCH  "500"


typedef struct {
    ngx_http_request_t                  *r;       /* NULL: gone */
    ngx_http_ai_gateway_store_t         *store;
    ngx_http_ai_gateway_purge_done_pt    done;
    ngx_str_t                            field;   /* "" for all */
    ngx_str_t                            value;   /* copied with the state */
    ngx_http_ai_gateway_redis_scan_t     scan;
    ngx_uint_t                           purged;
    ngx_uint_t                           pending; /* commands in flight */
    unsigned                             failed:1;
    unsigned                             cluster:1;
    unsigned                             ending:1; /* inside done() */
} ngx_http_ai_gateway_store_redis_purge_t;


/* a key of a batch and its slot, to group a batch by slot */
typedef struct {
    ngx_uint_t                           slot;
    redisReply                          *key;
} ngx_http_ai_gateway_store_redis_slot_key_t;


static ngx_http_ai_gateway_redis_script_t
    ngx_http_ai_gateway_store_redis_purge_script = {
    ngx_string(
        "local n = 0\n"
        "for _, k in ipairs(KEYS) do\n"
        "  if ARGV[1] == '' or redis.pcall('HGET', k, ARGV[1]) == ARGV[2]"
        " then\n"
        "    n = n + redis.call('UNLINK', k)\n"
        "  end\n"
        "end\n"
        "return n\n"),
    { 0 }
};


static void ngx_http_ai_gateway_store_redis_purge_scanned(
    ngx_http_ai_gateway_redis_scan_t *scan, redisReply *keys,
    ngx_http_ai_gateway_redis_status_e status);
static void ngx_http_ai_gateway_store_redis_purge_batch_done(
    ngx_http_ai_gateway_store_redis_purge_t *pg);
static void ngx_http_ai_gateway_store_redis_purge_end(
    ngx_http_ai_gateway_store_redis_purge_t *pg, ngx_int_t rc);
static void ngx_http_ai_gateway_store_redis_purge_gone(void *data);


ngx_int_t
ngx_http_ai_gateway_store_redis_purge(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, ngx_http_ai_gateway_purge_by_e by,
    ngx_str_t *value, ngx_http_ai_gateway_purge_done_pt done)
{
    ngx_pool_cleanup_t                       *cln;
    ngx_http_ai_gateway_redis_conf_t         *rcf;
    ngx_http_ai_gateway_store_redis_purge_t  *pg;

    if (!ngx_http_ai_gateway_redis_available()) {
        return NGX_ERROR;
    }

    if (ngx_http_ai_gateway_store_redis_purge_script.sha1[0] == '\0') {
        ngx_http_ai_gateway_redis_script_init(
                                &ngx_http_ai_gateway_store_redis_purge_script);
    }

    rcf = store->data;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    pg = ngx_calloc(sizeof(ngx_http_ai_gateway_store_redis_purge_t)
                    + value->len, r->connection->log);
    if (pg == NULL) {
        return NGX_ERROR;
    }

    pg->r = r;
    pg->store = store;
    pg->done = done;
    pg->value.data = (u_char *) (pg + 1);
    pg->value.len = value->len;
    ngx_memcpy(pg->value.data, value->data, value->len);
    pg->cluster = rcf->cluster ? 1 : 0;

    switch (by) {
    case NGX_HTTP_AI_GATEWAY_PURGE_KEY:
        ngx_str_set(&pg->field, "key");
        break;
    case NGX_HTTP_AI_GATEWAY_PURGE_MODEL:
        ngx_str_set(&pg->field, "model");
        break;
    default: /* ALL */
        ngx_str_set(&pg->field, "");
        ngx_str_set(&pg->value, "");
    }

    /* the pattern lives as long as the request: the scan ends with it */
    if (ngx_http_ai_gateway_store_redis_pattern(r->pool, rcf,
                                                &pg->scan.pattern)
        != NGX_OK)
    {
        ngx_free(pg);
        return NGX_ERROR;
    }

    pg->scan.pool = NULL;
    ngx_str_set(&pg->scan.count, NGX_HTTP_AI_GATEWAY_STORE_REDIS_PURGE_BATCH);
    pg->scan.handler = ngx_http_ai_gateway_store_redis_purge_scanned;
    pg->scan.data = pg;

    if (ngx_http_ai_gateway_redis_scan_start(&pg->scan) != NGX_AGAIN) {
        ngx_free(pg);
        return NGX_ERROR;
    }

    pg->pending = 1;                     /* the SCAN */

    cln->handler = ngx_http_ai_gateway_store_redis_purge_gone;
    cln->data = pg;

    return NGX_AGAIN;
}


/* the request's pool goes: the purge carries on with nobody to tell */
static void
ngx_http_ai_gateway_store_redis_purge_gone(void *data)
{
    ngx_http_ai_gateway_store_redis_purge_t  *pg = data;

    pg->r = NULL;

    /* inside done(), the purge frees itself once done() returns */
    if (pg->pending == 0 && !pg->ending) {
        ngx_free(pg);
    }
}


/*
 * Nothing in flight: tell the request, once.  done() may finalize it and
 * destroy its pool at once (its cleanup then only clears r), or later
 * (the cleanup frees the state then).
 */
static void
ngx_http_ai_gateway_store_redis_purge_end(
    ngx_http_ai_gateway_store_redis_purge_t *pg, ngx_int_t rc)
{
    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, pg->r->connection->log, 0,
                      "redis cache purge failed after %ui entries",
                      pg->purged);
    }

    pg->ending = 1;

    pg->done(pg->r, rc, pg->purged);

    pg->ending = 0;

    if (pg->r == NULL) {
        ngx_free(pg);
    }
}


static void
ngx_http_ai_gateway_store_redis_purge_unlinked(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data)
{
    ngx_http_ai_gateway_store_redis_purge_t  *pg = data;

    if (status != NGX_HTTP_AI_GATEWAY_REDIS_OK
        || reply->type != REDIS_REPLY_INTEGER || reply->integer < 0)
    {
        pg->failed = 1;

    } else {
        pg->purged += (ngx_uint_t) reply->integer;
    }

    if (--pg->pending == 0) {
        ngx_http_ai_gateway_store_redis_purge_batch_done(pg);
    }
}


/* the state of a purge whose request is gone goes with its last command */
static ngx_flag_t
ngx_http_ai_gateway_store_redis_purge_orphan(
    ngx_http_ai_gateway_store_redis_purge_t *pg)
{
    if (pg->r != NULL) {
        return 0;
    }

    if (pg->pending == 0) {
        ngx_free(pg);
    }

    return 1;
}


/* the batch is over (nothing in flight): the next one, or the end */
static void
ngx_http_ai_gateway_store_redis_purge_batch_done(
    ngx_http_ai_gateway_store_redis_purge_t *pg)
{
    if (ngx_http_ai_gateway_store_redis_purge_orphan(pg)) {
        return;
    }

    if (pg->failed) {
        ngx_http_ai_gateway_store_redis_purge_end(pg, NGX_ERROR);
        return;
    }

    if (pg->scan.done) {
        ngx_http_ai_gateway_store_redis_purge_end(pg, NGX_OK);
        return;
    }

    if (ngx_http_ai_gateway_redis_scan_next(&pg->scan) != NGX_AGAIN) {
        ngx_http_ai_gateway_store_redis_purge_end(pg, NGX_ERROR);
        return;
    }

    pg->pending = 1;
}


/*
 * one script over keys[0..n): the keys, then the field and its value, in
 * argv and len (room for n + 2, copied by the script call)
 */
static ngx_int_t
ngx_http_ai_gateway_store_redis_purge_keys(
    ngx_http_ai_gateway_store_redis_purge_t *pg,
    ngx_http_ai_gateway_store_redis_slot_key_t *keys, ngx_uint_t n,
    const char **argv, size_t *len)
{
    int                               argc;
    ngx_uint_t                        i;
    ngx_http_ai_gateway_redis_cmd_t  *cmd;

    argc = (int) n + 2;

    for (i = 0; i < n; i++) {
        argv[i] = keys[i].key->str;
        len[i] = keys[i].key->len;
    }

    argv[i] = (const char *) pg->field.data;
    len[i] = pg->field.len;
    argv[i + 1] = (const char *) pg->value.data;
    len[i + 1] = pg->value.len;

    /* the arguments are copied: the reply may go */
    cmd = ngx_http_ai_gateway_redis_eval(NULL,
                              ngx_http_ai_gateway_store_redis_purge_unlinked,
                              pg, &ngx_http_ai_gateway_store_redis_purge_script,
                              n, argc, argv, len);

    if (cmd == NULL) {
        return NGX_ERROR;
    }

    pg->pending++;

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_ai_gateway_store_redis_slot_cmp(const void *one, const void *two)
{
    const ngx_http_ai_gateway_store_redis_slot_key_t  *a = one, *b = two;

    return (a->slot > b->slot) - (a->slot < b->slot);
}


static void
ngx_http_ai_gateway_store_redis_purge_scanned(
    ngx_http_ai_gateway_redis_scan_t *scan, redisReply *keys,
    ngx_http_ai_gateway_redis_status_e status)
{
    ngx_http_ai_gateway_store_redis_purge_t *pg = scan->data;

    u_char                                      *scratch;
    size_t                                      *len;
    ngx_uint_t                                   i, n, first;
    const char                                 **argv;
    ngx_http_ai_gateway_store_redis_slot_key_t  *sk;

    pg->pending = 0;                     /* the SCAN answered */

    if (ngx_http_ai_gateway_store_redis_purge_orphan(pg)) {
        return;
    }

    if (status != NGX_HTTP_AI_GATEWAY_REDIS_OK) {
        ngx_http_ai_gateway_store_redis_purge_end(pg, NGX_ERROR);
        return;
    }

    n = keys->elements;

    if (n == 0) {
        ngx_http_ai_gateway_store_redis_purge_batch_done(pg);
        return;
    }

    /* the keys with their slots, and the arguments of one script */
    scratch = ngx_alloc(n * sizeof(ngx_http_ai_gateway_store_redis_slot_key_t)
                        + (n + 2) * (sizeof(char *) + sizeof(size_t)),
                        ngx_cycle->log);
    if (scratch == NULL) {
        ngx_http_ai_gateway_store_redis_purge_end(pg, NGX_ERROR);
        return;
    }

    sk = (ngx_http_ai_gateway_store_redis_slot_key_t *) scratch;
    argv = (const char **) (sk + n);
    len = (size_t *) (argv + n + 2);

    for (i = 0; i < n; i++) {
        sk[i].key = keys->element[i];
        sk[i].slot = pg->cluster ? agw_cluster_slot(sk[i].key->str,
                                                    sk[i].key->len)
                                 : 0;
    }

    /* a script may only touch keys of one slot (CROSSSLOT otherwise) */
    if (pg->cluster) {
        ngx_qsort(sk, n, sizeof(ngx_http_ai_gateway_store_redis_slot_key_t),
                  ngx_http_ai_gateway_store_redis_slot_cmp);
    }

    /* the answers come later, never from inside eval: pending is right */
    first = 0;

    for (i = 1; i <= n; i++) {
        if (i < n && sk[i].slot == sk[first].slot) {
            continue;
        }

        if (ngx_http_ai_gateway_store_redis_purge_keys(pg, &sk[first],
                                                       i - first, argv, len)
            != NGX_OK)
        {
            pg->failed = 1;
            break;
        }

        first = i;
    }

    ngx_free(scratch);

    if (pg->pending == 0) {
        ngx_http_ai_gateway_store_redis_purge_batch_done(pg);
    }
}
