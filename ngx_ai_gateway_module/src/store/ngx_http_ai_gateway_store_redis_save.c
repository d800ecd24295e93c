/*
 * Writing an entry into the Redis cache store.
 *
 * An entry is the hash <prefix><hex digest> with the fields status,
 * headers, body, created, fresh_until, key and model, and a TTL: it must
 * appear whole or not at all, and never without its TTL.  The save keeps what it needs
 * in a block of its own (the request may be gone before Redis answers):
 *
 * - a body up to NGX_HTTP_AI_GATEWAY_REDIS_PIECE bytes is copied into the
 *   block and written with HSET and EXPIRE in one MULTI/EXEC;
 * - a larger one stays where it waits (the flight's buffer in shared
 *   memory, kept for the save) and is sent a piece at a time, each piece
 *   once Redis took the one before: APPENDed to a key of its own (the
 *   entry's key in a hash tag, so that a cluster puts both on one node)
 *   with a TTL, then turned into the entry by a script that checks its
 *   length and deletes it, in one step.  A worker never holds more than
 *   one piece of it, and Redis never shows a half-written entry; a save
 *   that stops part way leaves a key that expires.
 *
 * Writes are fire and forget, with their own write_timeout, outside the
 * breaker (ngx_http_ai_gateway_redis_send_write); the one who asked (the
 * near cache) may be told when Redis took the entry, and only then.
 */

#include "store/ngx_http_ai_gateway_store_redis.h"


#define NGX_HTTP_AI_GATEWAY_REDIS_PIECE      16384   /* bytes per write */
#define NGX_HTTP_AI_GATEWAY_REDIS_PIECE_TTL  "60000" /* ms a partial body
                                                        stays */


typedef struct {
    ngx_http_ai_gateway_store_t         *store;
    ngx_http_ai_gateway_source_t        *src;     /* kept; NULL: the body
                                                     is in the block */
    ngx_http_ai_gateway_store_saved_pt   done;
    void                                *data;
    agw_digest_t                         digest;
    agw_entry_t                          entry;   /* into the block */
    time_t                               ttl;
    ngx_str_t                            key;     /* the entry's */
    ngx_str_t                            tmp;     /* the partial body's */
    size_t                               sent;    /* body bytes appended */
} ngx_http_ai_gateway_redis_save_t;


static ngx_int_t ngx_http_ai_gateway_redis_save_piece(
    ngx_http_ai_gateway_redis_save_t *sv);
static void ngx_http_ai_gateway_redis_save_end(
    ngx_http_ai_gateway_redis_save_t *sv, ngx_int_t rc);


/*
 * The partial body's turn into the entry: all of it there, or nothing.
 * KEYS[1] the entry, KEYS[2] the partial body; ARGV status, headers,
 * created, key, model, TTL (s), the body's length, fresh_until.
 */
static ngx_str_t  ngx_http_ai_gateway_redis_save_script = ngx_string(
    "local b = redis.call('GET', KEYS[2]) "
    "redis.call('DEL', KEYS[2]) "
    "if not b or string.len(b) ~= tonumber(ARGV[7]) then return 0 end "
    "redis.call('HSET', KEYS[1], 'status', ARGV[1], 'headers', ARGV[2], "
    "'body', b, 'created', ARGV[3], 'key', ARGV[4], 'model', ARGV[5], "
    "'fresh_until', ARGV[8]) "
    "redis.call('EXPIRE', KEYS[1], ARGV[6]) "
    "return 1");


/* one piece at a time through this process: hiredis copies what it sends */
static u_char  ngx_http_ai_gateway_redis_piece[NGX_HTTP_AI_GATEWAY_REDIS_PIECE];

/* partial bodies' names are this worker's */
static ngx_uint_t  ngx_http_ai_gateway_redis_saves;


static ngx_http_ai_gateway_redis_save_t *
ngx_http_ai_gateway_redis_save_create(ngx_http_ai_gateway_store_t *store,
    const agw_digest_t *digest, const agw_entry_t *entry,
    ngx_http_ai_gateway_source_t *src, time_t ttl)
{
    u_char                            *p;
    size_t                             size, body;
    ngx_flag_t                         tag;
    ngx_http_ai_gateway_redis_conf_t  *rcf;
    ngx_http_ai_gateway_redis_save_t  *sv;

    rcf = store->data;

    body = (src && entry->body_len > NGX_HTTP_AI_GATEWAY_REDIS_PIECE)
           ? 0 : entry->body_len;

    /* the entry's key, and "{key}:w:PID:N" for a partial body */
    size = sizeof(ngx_http_ai_gateway_redis_save_t)
           + entry->key_len + entry->headers_len + entry->model_len + body
           + 2 * (rcf->prefix.len + AGW_DIGEST_HEX_LEN) + 4 + 2
           + NGX_INT64_LEN + NGX_INT_T_LEN + 8;

    sv = ngx_alloc(size, ngx_cycle->log);
    if (sv == NULL) {
        return NULL;
    }

    ngx_memzero(sv, sizeof(ngx_http_ai_gateway_redis_save_t));

    sv->store = store;
    sv->digest = *digest;
    sv->ttl = ttl;
    sv->entry = *entry;

    p = (u_char *) (sv + 1);

    /* memcpy() wants pointers even for 0 bytes: the parts may have none */

    sv->entry.key = p;

    if (entry->key_len) {
        p = ngx_cpymem(p, entry->key, entry->key_len);
    }

    sv->entry.headers = p;

    if (entry->headers_len) {
        p = ngx_cpymem(p, entry->headers, entry->headers_len);
    }

    sv->entry.model = p;

    if (entry->model_len) {
        p = ngx_cpymem(p, entry->model, entry->model_len);
    }

    /* the body in the block, or NULL: read from src a piece at a time */
    sv->entry.body = NULL;

    if (body || src == NULL) {
        sv->entry.body = p;

        if (body == 0) {
            /* void */

        } else if (src == NULL) {
            p = ngx_cpymem(p, entry->body, body);

        } else if (src->copy(src, 0, p, body) == body) {
            p += body;

        } else {
            ngx_free(sv);
            return NULL;
        }
    }

    sv->key.data = p;
    p = ngx_cpymem(p, rcf->prefix.data, rcf->prefix.len);
    agw_digest_hex(digest, (char *) p);
    p += AGW_DIGEST_HEX_LEN;
    sv->key.len = p - sv->key.data;

    /*
     * the partial body's key shares the entry's slot: the entry's key in
     * braces, unless it has a hash tag of its own (in the prefix), which
     * then tags both
     */
    tag = (ngx_strlchr(sv->key.data, sv->key.data + sv->key.len, '{')
           != NULL);

    sv->tmp.data = p;

    if (!tag) {
        *p++ = '{';
    }

    p = ngx_cpymem(p, sv->key.data, sv->key.len);

    if (!tag) {
        *p++ = '}';
    }

    p = ngx_sprintf(p, ":w:%P:%ui", ngx_pid,
                    ++ngx_http_ai_gateway_redis_saves);
    sv->tmp.len = p - sv->tmp.data;

    return sv;
}


static void
ngx_http_ai_gateway_redis_save_free(ngx_http_ai_gateway_redis_save_t *sv)
{
    if (sv->src) {
        sv->src->release(sv->src);
    }

    ngx_free(sv);
}


/* EXEC's reply: every command's reply, none an error */
static ngx_flag_t
ngx_http_ai_gateway_redis_save_ok(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, size_t n)
{
    size_t  i;

    if (status != NGX_HTTP_AI_GATEWAY_REDIS_OK
        || reply->type != REDIS_REPLY_ARRAY || reply->elements != n)
    {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (reply->element[i]->type == REDIS_REPLY_ERROR) {
            return 0;
        }
    }

    return 1;
}


static void
ngx_http_ai_gateway_redis_saved(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data)
{
    ngx_http_ai_gateway_redis_save_t *sv = data;

    /* e.g. a non-hash value under the key: WRONGTYPE inside EXEC */
    ngx_http_ai_gateway_redis_save_end(sv,
                          ngx_http_ai_gateway_redis_save_ok(reply, status, 2)
                          ? NGX_OK : NGX_ERROR);
}


/* HSET and EXPIRE: a body that the block holds */
static ngx_int_t
ngx_http_ai_gateway_redis_save_whole(ngx_http_ai_gateway_redis_save_t *sv)
{
    u_char                            *p;
    u_char                             num[4 * NGX_TIME_T_LEN];
    size_t                             hlen[16], elen[3];
    const char                        *hset[16], *expire[3];
    agw_entry_t                       *entry;
    ngx_http_ai_gateway_redis_argv_t   cmds[2];

    entry = &sv->entry;
    p = num;

    hset[0] = "HSET";
    hlen[0] = 4;
    hset[1] = (const char *) sv->key.data;
    hlen[1] = sv->key.len;

    hset[2] = "status";
    hlen[2] = 6;
    hset[3] = (const char *) p;
    hlen[3] = ngx_sprintf(p, "%ui", (ngx_uint_t) entry->status) - p;
    p += hlen[3];

    hset[4] = "headers";
    hlen[4] = 7;
    hset[5] = (const char *) entry->headers;
    hlen[5] = entry->headers_len;

    hset[6] = "body";
    hlen[6] = 4;
    hset[7] = (const char *) entry->body;
    hlen[7] = entry->body_len;

    hset[8] = "created";
    hlen[8] = 7;
    hset[9] = (const char *) p;
    hlen[9] = ngx_sprintf(p, "%T", (time_t) entry->created) - p;
    p += hlen[9];

    hset[10] = "key";
    hlen[10] = 3;
    hset[11] = (const char *) entry->key;
    hlen[11] = entry->key_len;

    /* what purge by model matches; empty when the request named none */
    hset[12] = "model";
    hlen[12] = 5;
    hset[13] = (const char *) entry->model;
    hlen[13] = entry->model_len;

    hset[14] = "fresh_until";
    hlen[14] = 11;
    hset[15] = (const char *) p;
    hlen[15] = ngx_sprintf(p, "%T", (time_t) entry->fresh_until) - p;
    p += hlen[15];

    expire[0] = "EXPIRE";
    elen[0] = 6;
    expire[1] = (const char *) sv->key.data;
    elen[1] = sv->key.len;
    expire[2] = (const char *) p;
    elen[2] = ngx_sprintf(p, "%T", sv->ttl) - p;

    cmds[0].argc = 16;
    cmds[0].argv = hset;
    cmds[0].argvlen = hlen;
    cmds[1].argc = 3;
    cmds[1].argv = expire;
    cmds[1].argvlen = elen;

    /* no pool: the write is counted even if the request is gone first */
    return ngx_http_ai_gateway_redis_send_write(
                                         ngx_http_ai_gateway_redis_saved,
                                         sv, 2, cmds)
           ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_ai_gateway_redis_save_committed(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data)
{
    ngx_http_ai_gateway_redis_save_t *sv = data;

    ngx_int_t  rc;

    /* PEXPIRE's reply, then the script's: 1 the entry is in */
    rc = (ngx_http_ai_gateway_redis_save_ok(reply, status, 2)
          && reply->element[1]->type == REDIS_REPLY_INTEGER
          && reply->element[1]->integer == 1)
         ? NGX_OK : NGX_ERROR;

    ngx_http_ai_gateway_redis_save_end(sv, rc);
}


/* the whole body is appended: the entry, from it */
static ngx_int_t
ngx_http_ai_gateway_redis_save_commit(ngx_http_ai_gateway_redis_save_t *sv)
{
    u_char                            *p;
    u_char                             num[4 * NGX_TIME_T_LEN
                                           + NGX_SIZE_T_LEN];
    size_t                             len[13], plen[3];
    const char                        *argv[13], *pexpire[3];
    agw_entry_t                       *entry;
    ngx_http_ai_gateway_redis_argv_t   cmds[2];

    entry = &sv->entry;
    p = num;

    /* first: a block is routed by its first command's key */
    pexpire[0] = "PEXPIRE";
    plen[0] = 7;
    pexpire[1] = (const char *) sv->tmp.data;
    plen[1] = sv->tmp.len;
    pexpire[2] = NGX_HTTP_AI_GATEWAY_REDIS_PIECE_TTL;
    plen[2] = sizeof(NGX_HTTP_AI_GATEWAY_REDIS_PIECE_TTL) - 1;

    argv[0] = "EVAL";
    len[0] = 4;
    argv[1] = (const char *) ngx_http_ai_gateway_redis_save_script.data;
    len[1] = ngx_http_ai_gateway_redis_save_script.len;
    argv[2] = "2";
    len[2] = 1;
    argv[3] = (const char *) sv->key.data;
    len[3] = sv->key.len;
    argv[4] = (const char *) sv->tmp.data;
    len[4] = sv->tmp.len;

    argv[5] = (const char *) p;
    len[5] = ngx_sprintf(p, "%ui", (ngx_uint_t) entry->status) - p;
    p += len[5];
    argv[6] = (const char *) entry->headers;
    len[6] = entry->headers_len;
    argv[7] = (const char *) p;
    len[7] = ngx_sprintf(p, "%T", (time_t) entry->created) - p;
    p += len[7];
    argv[8] = (const char *) entry->key;
    len[8] = entry->key_len;
    argv[9] = (const char *) entry->model;
    len[9] = entry->model_len;
    argv[10] = (const char *) p;
    len[10] = ngx_sprintf(p, "%T", sv->ttl) - p;
    p += len[10];
    argv[11] = (const char *) p;
    len[11] = ngx_sprintf(p, "%uz", entry->body_len) - p;
    p += len[11];
    argv[12] = (const char *) p;
    len[12] = ngx_sprintf(p, "%T", (time_t) entry->fresh_until) - p;

    cmds[0].argc = 3;
    cmds[0].argv = pexpire;
    cmds[0].argvlen = plen;
    cmds[1].argc = 13;
    cmds[1].argv = argv;
    cmds[1].argvlen = len;

    return ngx_http_ai_gateway_redis_send_write(
                                    ngx_http_ai_gateway_redis_save_committed,
                                    sv, 2, cmds)
           ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_ai_gateway_redis_save_appended(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data)
{
    ngx_http_ai_gateway_redis_save_t *sv = data;

    ngx_int_t  rc;

    if (!ngx_http_ai_gateway_redis_save_ok(reply, status, 2)) {
        ngx_http_ai_gateway_redis_save_end(sv, NGX_ERROR);
        return;
    }

    rc = (sv->sent < sv->entry.body_len)
         ? ngx_http_ai_gateway_redis_save_piece(sv)
         : ngx_http_ai_gateway_redis_save_commit(sv);

    if (rc != NGX_OK) {
        ngx_http_ai_gateway_redis_save_end(sv, NGX_ERROR);
    }
}


/* the next piece of the body, APPENDed to the partial body, its TTL set */
static ngx_int_t
ngx_http_ai_gateway_redis_save_piece(ngx_http_ai_gateway_redis_save_t *sv)
{
    size_t                             n, alen[3], plen[3];
    const char                        *append[3], *pexpire[3];
    ngx_http_ai_gateway_redis_argv_t   cmds[2];

    n = ngx_min(sv->entry.body_len - sv->sent,
                NGX_HTTP_AI_GATEWAY_REDIS_PIECE);

    if (sv->src->copy(sv->src, sv->sent, ngx_http_ai_gateway_redis_piece, n)
        != n)
    {
        return NGX_ERROR;
    }

    append[0] = "APPEND";
    alen[0] = 6;
    append[1] = (const char *) sv->tmp.data;
    alen[1] = sv->tmp.len;
    append[2] = (const char *) ngx_http_ai_gateway_redis_piece;
    alen[2] = n;

    pexpire[0] = "PEXPIRE";
    plen[0] = 7;
    pexpire[1] = append[1];
    plen[1] = alen[1];
    pexpire[2] = NGX_HTTP_AI_GATEWAY_REDIS_PIECE_TTL;
    plen[2] = sizeof(NGX_HTTP_AI_GATEWAY_REDIS_PIECE_TTL) - 1;

    cmds[0].argc = 3;
    cmds[0].argv = append;
    cmds[0].argvlen = alen;
    cmds[1].argc = 3;
    cmds[1].argv = pexpire;
    cmds[1].argvlen = plen;

    if (ngx_http_ai_gateway_redis_send_write(
                                     ngx_http_ai_gateway_redis_save_appended,
                                     sv, 2, cmds)
        == NULL)
    {
        return NGX_ERROR;
    }

    sv->sent += n;

    return NGX_OK;
}


static void
ngx_http_ai_gateway_redis_save_end(ngx_http_ai_gateway_redis_save_t *sv,
    ngx_int_t rc)
{
    if (rc == NGX_OK) {
        ngx_http_ai_gateway_count(sv->store->ref.stats->stores, 1);

    } else {
        ngx_http_ai_gateway_count(sv->store->ref.stats->errors, 1);
    }

    if (sv->done) {
        sv->done(sv->data, rc, &sv->digest, &sv->entry,
                 sv->entry.body ? NULL : sv->src, sv->ttl);
    }

    ngx_http_ai_gateway_redis_save_free(sv);
}


ngx_int_t
ngx_http_ai_gateway_store_redis_save_then(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    const agw_entry_t *entry, ngx_http_ai_gateway_source_t *src,
    time_t ttl, ngx_http_ai_gateway_store_saved_pt done, void *data)
{
    ngx_int_t                          rc;
    ngx_http_ai_gateway_redis_save_t  *sv;

    if (!ngx_http_ai_gateway_redis_available()) {
        ngx_http_ai_gateway_count(store->ref.stats->errors, 1);
        return NGX_ERROR;
    }

    sv = ngx_http_ai_gateway_redis_save_create(store, digest, entry, src,
                                               ttl);
    if (sv == NULL) {
        ngx_http_ai_gateway_count(store->ref.stats->errors, 1);
        return NGX_ERROR;
    }

    if (sv->entry.body == NULL) {
        /* in pieces: the body stays where it waits until it is sent */
        sv->src = src->keep(src);

        rc = sv->src ? ngx_http_ai_gateway_redis_save_piece(sv) : NGX_ERROR;

    } else {
        rc = ngx_http_ai_gateway_redis_save_whole(sv);
    }

    if (rc != NGX_OK) {
        ngx_http_ai_gateway_count(store->ref.stats->errors, 1);
        ngx_http_ai_gateway_redis_save_free(sv);
        return NGX_ERROR;
    }

    sv->done = done;
    sv->data = data;

    return NGX_OK;
}


ngx_int_t
ngx_http_ai_gateway_store_redis_save(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    const agw_entry_t *entry, ngx_http_ai_gateway_source_t *src,
    time_t ttl)
{
    return ngx_http_ai_gateway_store_redis_save_then(r, store, digest, entry,
                                                     src, ttl, NULL, NULL);
}
