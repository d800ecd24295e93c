/*
 * The Redis cache store (ai_gateway_cache redis, SPEC 3.2).
 *
 * An entry is the hash <prefix><hex digest of the cache key> with the
 * fields status (decimal), headers (the agw headers blob, "Name: value"
 * lines), body, created (unix seconds), fresh_until (unix seconds: the
 * end of the answer's lifetime, lib/agw_entry.h), key (the cache key
 * text) and model (the request's, for purge by model; empty if it named
 * none),
 * written by HSET and EXPIRE inside MULTI/EXEC so that no entry is ever
 * left without its TTL (store_redis_save.c: a large body in pieces, then
 * the entry at once), and read back with HMGET.  What comes back is
 * untrusted (anyone who can write to Redis wrote it): it is served only if
 * it decodes strictly (agw_entry_from_fields(): all fields, status 200, no
 * larger than max_entry_size, checked before anything is copied, valid
 * headers and no framing or hop-by-hop one); anything else is a MISS and
 * an error, never an answer.  Writes are fire and forget, with their own
 * write_timeout, outside the breaker (ngx_http_ai_gateway_redis_send_write).
 *
 * The lookup waits the way limit_req's delay does: the store returns
 * NGX_AGAIN, the client is watched with ngx_http_test_reading(), and the
 * reply handler reports through the handler the lookup was given (the
 * cache's resumes the phases).  The command is tied to the request's pool,
 * so a client that goes away first leaves a reply that nobody reads.  When
 * Redis is unavailable (down, breaker open) the lookup is a MISS at once.
 * A lookup asked for the entry's expiry (a near cache's) reads its PTTL
 * with it, in one MULTI/EXEC.
 *
 * "entries" is the number of cache keys (the prefix and 64 hex digits,
 * not the limiter's "rl:" buckets under the same prefix), counted by
 * worker 0 every NGX_HTTP_AI_GATEWAY_STORE_REDIS_SCAN ms with SCAN MATCH
 * (one round trip per 1000 keys, never KEYS or DBSIZE: the database may be
 * shared), on every master of a Redis Cluster (redis/, scan).  bytes_used
 * is not known and stays 0.
 *
 * Cluster: every command of an entry names the one key, so the whole
 * MULTI/EXEC block goes to the node that owns it (redis/).
 */

#include "store/ngx_http_ai_gateway_store_redis.h"


#define NGX_HTTP_AI_GATEWAY_STORE_REDIS_SCAN       3000          /* ms */
#define NGX_HTTP_AI_GATEWAY_STORE_REDIS_SCAN_MAX   10000 /* rounds */
#define NGX_HTTP_AI_GATEWAY_STORE_REDIS_FIELDS     6


typedef struct {
    ngx_http_request_t                  *r;
    ngx_http_ai_gateway_store_t         *store;
    ngx_http_ai_gateway_found_t         *found;
    ngx_str_t                            key;     /* the Redis key */
    ngx_http_ai_gateway_store_done_pt    done;
    void                                *data;
    unsigned                             expiry:1; /* PTTL asked too */
} ngx_http_ai_gateway_store_redis_lookup_t;


typedef struct {
    ngx_http_ai_gateway_store_t         *store;
    ngx_event_t                          timer;
    ngx_http_ai_gateway_redis_scan_t     scan;
    ngx_uint_t                           count;
    ngx_uint_t                           rounds;
} ngx_http_ai_gateway_store_redis_count_t;


static ngx_int_t ngx_http_ai_gateway_store_redis_lookup(
    ngx_http_request_t *r, ngx_http_ai_gateway_store_t *store,
    const agw_digest_t *digest, ngx_http_ai_gateway_found_t *found,
    ngx_http_ai_gateway_store_done_pt done, void *data);
static void ngx_http_ai_gateway_store_redis_start(ngx_cycle_t *cycle,
    void *data);
static void ngx_http_ai_gateway_store_redis_stop(void *data);
static void ngx_http_ai_gateway_store_redis_count(ngx_event_t *ev);
static void ngx_http_ai_gateway_store_redis_counted(
    ngx_http_ai_gateway_redis_scan_t *scan, redisReply *keys,
    ngx_http_ai_gateway_redis_status_e status);


/*
 * What a lookup reads, with HMGET, in this order (store_redis_decode()):
 * the entry's fields but the model, which only purge reads.  Values
 * alone, where HGETALL would send each name too: half the replies for
 * hiredis to allocate on every HIT.
 */
static struct {
    const char                          *data;
    size_t                               len;
} ngx_http_ai_gateway_store_redis_fields[] = {
    { "status", 6 },
    { "headers", 7 },
    { "body", 4 },
    { "created", 7 },
    { "key", 3 },
    { "fresh_until", 11 }
};


/* worker 0's */
static ngx_http_ai_gateway_store_redis_count_t
    *ngx_http_ai_gateway_store_redis_count_state;


ngx_http_ai_gateway_store_t *
ngx_http_ai_gateway_store_redis_create(ngx_conf_t *cf,
    ngx_http_ai_gateway_redis_conf_t *rcf)
{
    ngx_str_t                         name;
    ngx_http_ai_gateway_store_t      *store, **stores;
    ngx_http_ai_gateway_main_conf_t  *amcf;

    ngx_str_set(&name, "redis");

    /* "ai_gateway_cache redis" must mean the one thing */
    if (ngx_http_ai_gateway_store_shm_find(cf, &name) != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache zone \"redis\" conflicts with the Redis "
                           "cache, rename the zone");
        return NULL;
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ai_gateway_module);

    store = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_store_t));
    if (store == NULL) {
        return NULL;
    }

    store->ref.name = name;
    ngx_str_set(&store->ref.backend, "redis");
    store->lookup = ngx_http_ai_gateway_store_redis_lookup;
    store->save = ngx_http_ai_gateway_store_redis_save;
    store->purge = ngx_http_ai_gateway_store_redis_purge;
    store->max_entry_size = rcf->max_entry_size;
    store->data = rcf;

    stores = ngx_array_push(&amcf->caches);
    if (stores == NULL) {
        return NULL;
    }

    *stores = store;

    /* ref.stats is set in each worker, once the stats zone exists */

    if (ngx_http_ai_gateway_redis_on_worker(cf,
                                        ngx_http_ai_gateway_store_redis_start,
                                        ngx_http_ai_gateway_store_redis_stop,
                                        store)
        != NGX_OK)
    {
        return NULL;
    }

    return store;
}


static void
ngx_http_ai_gateway_store_redis_start(ngx_cycle_t *cycle, void *data)
{
    ngx_http_ai_gateway_store_t *store = data;

    ngx_http_ai_gateway_main_conf_t          *amcf;
    ngx_http_ai_gateway_redis_conf_t         *rcf;
    ngx_http_ai_gateway_shared_stats_t       *stats;
    ngx_http_ai_gateway_store_redis_count_t  *cnt;

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_ai_gateway_module);
    stats = ngx_http_ai_gateway_shared_stats(amcf);
    rcf = store->data;

    store->ref.stats = &stats->redis_cache;

    if (ngx_worker != 0) {
        return;
    }

    cnt = ngx_pcalloc(cycle->pool,
                      sizeof(ngx_http_ai_gateway_store_redis_count_t));
    if (cnt == NULL) {
        return;
    }

    cnt->store = store;

    if (ngx_http_ai_gateway_store_redis_pattern(cycle->pool, rcf,
                                                &cnt->scan.pattern)
        != NGX_OK)
    {
        return;
    }

    ngx_str_set(&cnt->scan.count, "1000");
    cnt->scan.handler = ngx_http_ai_gateway_store_redis_counted;
    cnt->scan.data = cnt;

    ngx_http_ai_gateway_event_init(&cnt->timer,
                                   ngx_http_ai_gateway_store_redis_count,
                                   cycle->log);
    cnt->timer.cancelable = 1;

    ngx_add_timer(&cnt->timer, NGX_HTTP_AI_GATEWAY_STORE_REDIS_SCAN);

    ngx_http_ai_gateway_store_redis_count_state = cnt;
}


static void
ngx_http_ai_gateway_store_redis_stop(void *data)
{
    ngx_http_ai_gateway_store_redis_count_t  *cnt;

    cnt = ngx_http_ai_gateway_store_redis_count_state;

    if (cnt && cnt->timer.timer_set) {
        ngx_del_timer(&cnt->timer);
    }
}


static ngx_int_t
ngx_http_ai_gateway_store_redis_key(ngx_pool_t *pool,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    ngx_str_t *key)
{
    ngx_http_ai_gateway_redis_conf_t  *rcf;

    rcf = store->data;

    key->len = rcf->prefix.len + AGW_DIGEST_HEX_LEN;

    key->data = ngx_pnalloc(pool, key->len + 1);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(key->data, rcf->prefix.data, rcf->prefix.len);
    agw_digest_hex(digest, (char *) key->data + rcf->prefix.len);

    return NGX_OK;
}


/* no such key: HMGET's values all missing */

static ngx_uint_t
ngx_http_ai_gateway_store_redis_absent(redisReply *reply)
{
    size_t  i;

    if (reply->type != REDIS_REPLY_ARRAY) {
        return 0;
    }

    for (i = 0; i < reply->elements; i++) {
        if (reply->element[i]->type != REDIS_REPLY_NIL) {
            return 0;
        }
    }

    return 1;
}


/*
 * NULL and the entry in r's pool, or the reason it is not one.  The fields
 * are checked (lib/agw_entry.c) before anything is copied: what is copied
 * is bounded by max_entry_size and is what will be served.
 */
static const char *
ngx_http_ai_gateway_store_redis_decode(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, redisReply *reply, agw_entry_t *e)
{
    u_char        *p;
    size_t         i, total;
    agw_field_t   *field[NGX_HTTP_AI_GATEWAY_STORE_REDIS_FIELDS];
    redisReply    *v;
    const char    *reason;
    agw_fields_t   fields;

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements != NGX_HTTP_AI_GATEWAY_STORE_REDIS_FIELDS)
    {
        return "not a hash";
    }

    ngx_memzero(&fields, sizeof(agw_fields_t));

    field[0] = &fields.status;
    field[1] = &fields.headers;
    field[2] = &fields.body;
    field[3] = &fields.created;
    field[4] = &fields.key;
    field[5] = &fields.fresh_until;  /* optional: an older gateway's entry
                                        is fresh while kept */

    for (i = 0; i < NGX_HTTP_AI_GATEWAY_STORE_REDIS_FIELDS; i++) {
        v = reply->element[i];

        if (v->type == REDIS_REPLY_NIL) {
            continue;                    /* missing: from_fields() judges */
        }

        if (v->type != REDIS_REPLY_STRING) {
            return "not a hash";
        }

        /* hiredis ends every string with a NUL: never a NULL pointer */
        field[i]->data = (const uint8_t *) v->str;
        field[i]->len = v->len;
    }

    reason = agw_entry_from_fields(&fields, store->max_entry_size, e);
    if (reason) {
        return reason;
    }

    /* copy out: hiredis frees the reply when the handler returns */
    total = e->headers_len + e->body_len + e->key_len;

    p = ngx_pnalloc(r->pool, total ? total : 1);
    if (p == NULL) {
        return "out of memory";
    }

    ngx_memcpy(p, e->headers, e->headers_len);
    e->headers = p;
    p += e->headers_len;

    ngx_memcpy(p, e->body, e->body_len);
    e->body = p;
    p += e->body_len;

    ngx_memcpy(p, e->key, e->key_len);
    e->key = p;

    return NULL;
}


static void
ngx_http_ai_gateway_store_redis_found(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data)
{
    ngx_http_ai_gateway_store_redis_lookup_t  *lk = data;

    ngx_int_t            rc;
    redisReply          *pttl;
    const char          *reason;
    ngx_http_request_t  *r;

    r = lk->r;
    pttl = NULL;

    if (lk->expiry && status == NGX_HTTP_AI_GATEWAY_REDIS_OK) {
        /* EXEC's reply: HMGET's, then PTTL's */
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
            && reply->element[1]->type == REDIS_REPLY_INTEGER)
        {
            pttl = reply->element[1];
            reply = reply->element[0];

        } else {
            status = NGX_HTTP_AI_GATEWAY_REDIS_ERROR;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ai_gateway redis cache lookup status:%d reply:%p",
                   status, reply);

    r->read_event_handler = ngx_http_block_reading;

    if (status != NGX_HTTP_AI_GATEWAY_REDIS_OK) {
        /* timed out or failed: counted by the connection, a MISS here */
        ngx_http_ai_gateway_count(lk->store->ref.stats->errors, 1);
        rc = NGX_ERROR;

    } else if (ngx_http_ai_gateway_store_redis_absent(reply)) {
        rc = NGX_DECLINED;

    } else {
        reason = ngx_http_ai_gateway_store_redis_decode(r, lk->store, reply,
                                                        &lk->found->entry);
        if (reason == NULL) {
            lk->found->expires = 0;  /* Redis keeps the TTL */
            rc = NGX_OK;

            if (pttl && pttl->integer != -1) {
                /* whole seconds left, never more: -1 is "no TTL" */
                lk->found->expires = ngx_time()
                                     + (time_t) (pttl->integer / 1000);
            }

        } else {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "redis cache: ignoring entry \"%V\": %s",
                          &lk->key, reason);
            ngx_http_ai_gateway_count(lk->store->ref.stats->errors, 1);
            rc = NGX_ERROR;
        }
    }

    lk->done(r, rc, lk->data);
}


static ngx_int_t
ngx_http_ai_gateway_store_redis_lookup(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    ngx_http_ai_gateway_found_t *found,
    ngx_http_ai_gateway_store_done_pt done, void *data)
{
    void                                      *sent;
    size_t                                     len[2 + NGX_HTTP_AI_GATEWAY_STORE_REDIS_FIELDS];
    size_t                                     plen[2];
    ngx_uint_t                                 i;
    const char                                *argv[2 + NGX_HTTP_AI_GATEWAY_STORE_REDIS_FIELDS];
    const char                                *pargv[2];
    ngx_http_ai_gateway_redis_argv_t           cmds[2];
    ngx_http_ai_gateway_store_redis_lookup_t  *lk;

    if (!ngx_http_ai_gateway_redis_available()) {
        /* down or breaker open: a MISS now, no waiting */
        ngx_http_ai_gateway_count(store->ref.stats->errors, 1);
        return NGX_ERROR;
    }

    lk = ngx_palloc(r->pool, sizeof(ngx_http_ai_gateway_store_redis_lookup_t));
    if (lk == NULL) {
        return NGX_ERROR;
    }

    lk->r = r;
    lk->store = store;
    lk->found = found;
    lk->done = done;
    lk->data = data;
    lk->expiry = found->expiry;

    if (ngx_http_ai_gateway_store_redis_key(r->pool, store, digest, &lk->key)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    argv[0] = "HMGET";
    len[0] = 5;
    argv[1] = (const char *) lk->key.data;
    len[1] = lk->key.len;

    for (i = 0; i < NGX_HTTP_AI_GATEWAY_STORE_REDIS_FIELDS; i++) {
        argv[2 + i] = ngx_http_ai_gateway_store_redis_fields[i].data;
        len[2 + i] = ngx_http_ai_gateway_store_redis_fields[i].len;
    }

    if (lk->expiry) {
        /* the entry and its remaining TTL (a near copy keeps to it) */
        cmds[0].argc = 2 + NGX_HTTP_AI_GATEWAY_STORE_REDIS_FIELDS;
        cmds[0].argv = argv;
        cmds[0].argvlen = len;
        pargv[0] = "PTTL";
        plen[0] = 4;
        pargv[1] = argv[1];
        plen[1] = len[1];

        cmds[1].argc = 2;
        cmds[1].argv = pargv;
        cmds[1].argvlen = plen;

        sent = ngx_http_ai_gateway_redis_send_multi(r->pool,
                                        ngx_http_ai_gateway_store_redis_found,
                                        lk, 2, cmds);

    } else {
        sent = ngx_http_ai_gateway_redis_send(r->pool,
                                        ngx_http_ai_gateway_store_redis_found,
                                        lk, 2 + NGX_HTTP_AI_GATEWAY_STORE_REDIS_FIELDS,
                                        argv, len);
    }

    if (sent == NULL) {
        ngx_http_ai_gateway_count(store->ref.stats->errors, 1);
        return NGX_ERROR;
    }

    /* notice a client that goes away while Redis answers */
    r->read_event_handler = ngx_http_test_reading;

    return NGX_AGAIN;
}


static void
ngx_http_ai_gateway_store_redis_counted(ngx_http_ai_gateway_redis_scan_t *scan,
    redisReply *keys, ngx_http_ai_gateway_redis_status_e status)
{
    ngx_http_ai_gateway_store_redis_count_t *cnt = scan->data;

    if (status != NGX_HTTP_AI_GATEWAY_REDIS_OK) {
        /* try again next time, from the start */
        ngx_add_timer(&cnt->timer, NGX_HTTP_AI_GATEWAY_STORE_REDIS_SCAN);
        return;
    }

    cnt->count += keys->elements;

    if (scan->done
        || ++cnt->rounds >= NGX_HTTP_AI_GATEWAY_STORE_REDIS_SCAN_MAX)
    {
        /* a gauge: a plain store of an aligned word */
        cnt->store->ref.stats->entries = cnt->count;

        ngx_add_timer(&cnt->timer, NGX_HTTP_AI_GATEWAY_STORE_REDIS_SCAN);
        return;
    }

    if (ngx_http_ai_gateway_redis_scan_next(scan) != NGX_AGAIN) {
        ngx_add_timer(&cnt->timer, NGX_HTTP_AI_GATEWAY_STORE_REDIS_SCAN);
    }
}


static void
ngx_http_ai_gateway_store_redis_count(ngx_event_t *ev)
{
    ngx_http_ai_gateway_store_redis_count_t  *cnt;

    cnt = ngx_http_ai_gateway_event_owner(ev,
                                       ngx_http_ai_gateway_store_redis_count_t,
                                       timer);

    cnt->count = 0;
    cnt->rounds = 0;

    if (ngx_http_ai_gateway_redis_scan_start(&cnt->scan) != NGX_AGAIN) {
        ngx_add_timer(&cnt->timer, NGX_HTTP_AI_GATEWAY_STORE_REDIS_SCAN);
    }
}


/*
 * The SCAN pattern of the cache's keys: the prefix taken literally (its
 * glob characters escaped), then exactly the 64 hex digits of a cache key,
 * so that other keys under the prefix (the limiter's "rl:" buckets) are
 * neither counted nor purged as cache entries.
 */

ngx_int_t
ngx_http_ai_gateway_store_redis_pattern(ngx_pool_t *pool,
    ngx_http_ai_gateway_redis_conf_t *rcf, ngx_str_t *pattern)
{
    u_char      *p;
    ngx_uint_t   i;

    pattern->data = ngx_pnalloc(pool, 2 * rcf->prefix.len
                                      + AGW_DIGEST_HEX_LEN
                                        * (sizeof("[0-9a-f]") - 1));
    if (pattern->data == NULL) {
        return NGX_ERROR;
    }

    p = pattern->data;

    for (i = 0; i < rcf->prefix.len; i++) {
        switch (rcf->prefix.data[i]) {
        case '*': case '?': case '[': case ']': case '\\':
            *p++ = '\\';
        }

        *p++ = rcf->prefix.data[i];
    }

    for (i = 0; i < AGW_DIGEST_HEX_LEN; i++) {
        p = ngx_cpymem(p, "[0-9a-f]", sizeof("[0-9a-f]") - 1);
    }

    pattern->len = p - pattern->data;

    return NGX_OK;
}
