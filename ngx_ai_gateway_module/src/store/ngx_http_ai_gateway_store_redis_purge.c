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
 */

#include "store/ngx_http_ai_gateway_store_redis.h"


#define NGX_HTTP_AI_GATEWAY_STORE_REDIS_PURGE_BATCH  "500"


typedef struct {
    ngx_http_request_t                  *r;
    ngx_http_ai_gateway_store_t         *store;
    ngx_http_ai_gateway_purge_done_pt    done;
    ngx_str_t                            field;   /* "" for all */
    ngx_str_t                            value;
    ngx_str_t                            pattern;
    u_char                               cursor[NGX_INT64_LEN];
    size_t                               cursor_len;
    ngx_uint_t                           purged;
} ngx_http_ai_gateway_store_redis_purge_t;


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


static ngx_int_t ngx_http_ai_gateway_store_redis_purge_scan(
    ngx_http_ai_gateway_store_redis_purge_t *pg);


ngx_int_t
ngx_http_ai_gateway_store_redis_purge(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, ngx_http_ai_gateway_purge_by_e by,
    ngx_str_t *value, ngx_http_ai_gateway_purge_done_pt done)
{
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

    pg = ngx_pcalloc(r->pool,
                     sizeof(ngx_http_ai_gateway_store_redis_purge_t));
    if (pg == NULL) {
        return NGX_ERROR;
    }

    pg->r = r;
    pg->store = store;
    pg->done = done;
    pg->value = *value;

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

    if (ngx_http_ai_gateway_store_redis_pattern(r->pool, rcf, &pg->pattern)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    pg->cursor[0] = '0';
    pg->cursor_len = 1;

    return ngx_http_ai_gateway_store_redis_purge_scan(pg);
}


static void
ngx_http_ai_gateway_store_redis_purge_unlinked(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data)
{
    ngx_http_ai_gateway_store_redis_purge_t  *pg = data;

    if (status != NGX_HTTP_AI_GATEWAY_REDIS_OK
        || reply->type != REDIS_REPLY_INTEGER || reply->integer < 0)
    {
        ngx_log_error(NGX_LOG_ERR, pg->r->connection->log, 0,
                      "redis cache purge: a batch failed");
        pg->done(pg->r, NGX_ERROR, pg->purged);
        return;
    }

    pg->purged += (ngx_uint_t) reply->integer;

    if (pg->cursor_len == 1 && pg->cursor[0] == '0') {
        pg->done(pg->r, NGX_OK, pg->purged);
        return;
    }

    if (ngx_http_ai_gateway_store_redis_purge_scan(pg) != NGX_AGAIN) {
        pg->done(pg->r, NGX_ERROR, pg->purged);
    }
}


static void
ngx_http_ai_gateway_store_redis_purge_scanned(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data)
{
    ngx_http_ai_gateway_store_redis_purge_t  *pg = data;

    int                               argc;
    size_t                           *len, i;
    const char                      **argv;
    redisReply                       *cursor, *keys;
    ngx_http_ai_gateway_redis_cmd_t  *cmd;

    if (status != NGX_HTTP_AI_GATEWAY_REDIS_OK
        || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len == 0
        || reply->element[0]->len > NGX_INT64_LEN
        || reply->element[1]->type != REDIS_REPLY_ARRAY)
    {
        ngx_log_error(NGX_LOG_ERR, pg->r->connection->log, 0,
                      "redis cache purge: SCAN failed");
        pg->done(pg->r, NGX_ERROR, pg->purged);
        return;
    }

    cursor = reply->element[0];
    keys = reply->element[1];

    pg->cursor_len = cursor->len;
    ngx_memcpy(pg->cursor, cursor->str, cursor->len);

    for (i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING) {
            pg->done(pg->r, NGX_ERROR, pg->purged);
            return;
        }
    }

    if (keys->elements == 0) {
        if (pg->cursor_len == 1 && pg->cursor[0] == '0') {
            pg->done(pg->r, NGX_OK, pg->purged);
            return;
        }

        if (ngx_http_ai_gateway_store_redis_purge_scan(pg) != NGX_AGAIN) {
            pg->done(pg->r, NGX_ERROR, pg->purged);
        }

        return;
    }

    /* the script's arguments: the keys, then the field and its value */

    argc = (int) keys->elements + 2;

    argv = ngx_palloc(pg->r->pool, argc * sizeof(char *));
    len = ngx_palloc(pg->r->pool, argc * sizeof(size_t));
    if (argv == NULL || len == NULL) {
        pg->done(pg->r, NGX_ERROR, pg->purged);
        return;
    }

    for (i = 0; i < keys->elements; i++) {
        argv[i] = keys->element[i]->str;
        len[i] = keys->element[i]->len;
    }

    argv[i] = (const char *) pg->field.data;
    len[i] = pg->field.len;
    argv[i + 1] = (const char *) pg->value.data;
    len[i + 1] = pg->value.len;

    /* the arguments are copied: the reply may go */
    cmd = ngx_http_ai_gateway_redis_eval(pg->r->pool,
                              ngx_http_ai_gateway_store_redis_purge_unlinked,
                              pg, &ngx_http_ai_gateway_store_redis_purge_script,
                              keys->elements, argc, argv, len);

    ngx_pfree(pg->r->pool, argv);
    ngx_pfree(pg->r->pool, len);

    if (cmd == NULL) {
        pg->done(pg->r, NGX_ERROR, pg->purged);
    }
}


static ngx_int_t
ngx_http_ai_gateway_store_redis_purge_scan(
    ngx_http_ai_gateway_store_redis_purge_t *pg)
{
    size_t       len[6];
    const char  *argv[6];

    argv[0] = "SCAN";
    len[0] = 4;
    argv[1] = (const char *) pg->cursor;
    len[1] = pg->cursor_len;
    argv[2] = "MATCH";
    len[2] = 5;
    argv[3] = (const char *) pg->pattern.data;
    len[3] = pg->pattern.len;
    argv[4] = "COUNT";
    len[4] = 5;
    argv[5] = NGX_HTTP_AI_GATEWAY_STORE_REDIS_PURGE_BATCH;
    len[5] = sizeof(NGX_HTTP_AI_GATEWAY_STORE_REDIS_PURGE_BATCH) - 1;

    if (ngx_http_ai_gateway_redis_send(pg->r->pool,
                                ngx_http_ai_gateway_store_redis_purge_scanned,
                                pg, 6, argv, len)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}
