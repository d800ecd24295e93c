/*
 * The store interface (DESIGN.md): the boundary between the cache policy
 * (cache/: keys, bypass rules, HIT/MISS/BYPASS, headers, counters) and the
 * stores that hold entries, lookup, save and purge:
 *
 *   store_shm.c    ai_gateway_cache_zone, in shared memory
 *   store_redis.c  the Redis cache, on the connection of redis/
 *   store_near.c   a store composed of two: a shared-memory zone in front
 *                  of the Redis cache
 *
 * A store may complete at once (shared memory) or later (Redis), so lookup
 * may return NGX_AGAIN and report through the handler it was given when
 * the answer arrives.  Stores are best effort: a store that fails counts
 * an error and the request is served from upstream as if it were a MISS.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_STORE_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_STORE_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"
#include "base/ngx_http_ai_gateway_stats.h"
#include "agw_entry.h"
#include "agw_key.h"


typedef struct ngx_http_ai_gateway_store_s  ngx_http_ai_gateway_store_t;


/*
 * What a lookup found: an entry decoded into memory the request owns; or,
 * for a large entry of a shared-memory store, its head only (entry.body
 * NULL, entry.body_len its size), the body read a piece at a time with
 * the store's read() while the store keeps the entry for the request (a
 * reference, dropped with the request's pool)
 */
typedef struct {
    agw_entry_t                          entry;
    time_t                               expires;  /* unix seconds; 0: not
                                                      told (a store that
                                                      keeps the TTL) */
    unsigned                             near:1;   /* from the near zone */
    unsigned                             expiry:1; /* asked of the store:
                                                      tell expires even if
                                                      it keeps the TTL */
    void                                *ref;      /* the store's hold on
                                                      an entry read in
                                                      pieces */
    void                                *cursor;   /* where the last read
                                                      ended */
    size_t                               cursor_start;
} ngx_http_ai_gateway_found_t;


/*
 * An answer's body as a store copies it, from where it waits in shared
 * memory (the flight's buffer, cache/): copy() fills buf from the body's
 * offset and says how many bytes; keep() makes a copy of the source that
 * outlives the request (a store that writes later), released with
 * release(); NULL if it cannot.
 */
typedef struct ngx_http_ai_gateway_source_s  ngx_http_ai_gateway_source_t;

struct ngx_http_ai_gateway_source_s {
    size_t                             (*copy)(
                                           ngx_http_ai_gateway_source_t *src,
                                           size_t offset, u_char *buf,
                                           size_t len);
    ngx_http_ai_gateway_source_t      *(*keep)(
                                           ngx_http_ai_gateway_source_t *src);
    void                               (*release)(
                                           ngx_http_ai_gateway_source_t *src);
};


/* a lookup that returned NGX_AGAIN reports here, once, with its answer */
typedef void (*ngx_http_ai_gateway_store_done_pt)(ngx_http_request_t *r,
    ngx_int_t rc, void *data);

/*
 * lookup: NGX_OK (found, *found filled), NGX_DECLINED (not there),
 * NGX_ERROR (store failed: counted by the store), NGX_AGAIN (pending: the
 * store calls done(r, rc, data) later with one of the others, from outside
 * the request's event handlers).
 */
typedef ngx_int_t (*ngx_http_ai_gateway_store_lookup_pt)(
    ngx_http_request_t *r, ngx_http_ai_gateway_store_t *store,
    const agw_digest_t *digest, ngx_http_ai_gateway_found_t *found,
    ngx_http_ai_gateway_store_done_pt done, void *data);

/*
 * store: fire and forget; NGX_OK once written or handed over.  The body is
 * entry->body, or, when src is given, entry->body_len bytes read from it.
 * r may be NULL (a write that completes a Redis write).
 */
typedef ngx_int_t (*ngx_http_ai_gateway_store_save_pt)(
    ngx_http_request_t *r, ngx_http_ai_gateway_store_t *store,
    const agw_digest_t *digest, const agw_entry_t *entry,
    ngx_http_ai_gateway_source_t *src, time_t ttl);

/*
 * read: the body of a found entry that came without it, bytes [offset,
 * offset + len) into buf: the bytes copied (0: gone, never for an entry
 * the request holds)
 */
typedef size_t (*ngx_http_ai_gateway_store_read_pt)(
    ngx_http_ai_gateway_store_t *store, ngx_http_ai_gateway_found_t *found,
    size_t offset, u_char *buf, size_t len);

/* per worker, where a store needs it (a shared-memory zone) */
typedef ngx_int_t (*ngx_http_ai_gateway_store_process_pt)(
    ngx_http_ai_gateway_store_t *store, ngx_cycle_t *cycle);


/*
 * Purge (ai_gateway_cache_purge): the entries whose cache key text, or
 * model, is `value`, or all of them.  A store purges in steps without
 * holding anything for long and calls done(r, rc, purged) once, later,
 * never from inside purge(): rc NGX_OK, or NGX_ERROR if it stopped part
 * way (purged says how many went).  purge() itself returns NGX_AGAIN, or
 * NGX_ERROR when it cannot start (Redis unavailable).
 */
typedef enum {
    NGX_HTTP_AI_GATEWAY_PURGE_ALL = 0,
    NGX_HTTP_AI_GATEWAY_PURGE_KEY,
    NGX_HTTP_AI_GATEWAY_PURGE_MODEL
} ngx_http_ai_gateway_purge_by_e;

typedef void (*ngx_http_ai_gateway_purge_done_pt)(ngx_http_request_t *r,
    ngx_int_t rc, ngx_uint_t purged);

typedef ngx_int_t (*ngx_http_ai_gateway_store_purge_pt)(
    ngx_http_request_t *r, ngx_http_ai_gateway_store_t *store,
    ngx_http_ai_gateway_purge_by_e by, ngx_str_t *value,
    ngx_http_ai_gateway_purge_done_pt done);


struct ngx_http_ai_gateway_store_s {
    ngx_http_ai_gateway_cache_ref_t      ref;          /* what /cachez shows */
    ngx_http_ai_gateway_store_lookup_pt  lookup;
    ngx_http_ai_gateway_store_save_pt    save;
    ngx_http_ai_gateway_store_read_pt    read;         /* NULL: entries come
                                                          whole */
    ngx_http_ai_gateway_store_purge_pt   purge;
    ngx_http_ai_gateway_store_process_pt init_process;
    ngx_http_ai_gateway_store_process_pt exit_process;
    size_t                               max_entry_size; /* bytes */
    ngx_uint_t                           near_zone;    /* a shm zone some
                                                          location keeps in
                                                          front of Redis */
    void                                *data;         /* the store's own */
};


/* the shared-memory store: ai_gateway_cache_zone */
char *ngx_http_ai_gateway_store_shm_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_http_ai_gateway_store_t *ngx_http_ai_gateway_store_shm_find(
    ngx_conf_t *cf, ngx_str_t *name);

/* the near cache in front of Redis: ai_gateway_cache_near (store_near.c) */
char *ngx_http_ai_gateway_store_near(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_ai_gateway_store_near_merge(ngx_conf_t *cf,
    ngx_http_ai_gateway_store_t **storep, ngx_http_ai_gateway_store_t *near,
    ngx_flag_t explicit);
/* the near zone of a location's store, NULL without one (for purge) */
ngx_http_ai_gateway_store_t *ngx_http_ai_gateway_store_near_zone(
    ngx_http_ai_gateway_store_t *store);

/*
 * the Redis cache store (store_redis.c), "ai_gateway_cache redis": created
 * with the connection's configuration; it registers what it runs in every
 * worker with the connection
 */
ngx_http_ai_gateway_store_t *ngx_http_ai_gateway_store_redis_create(
    ngx_conf_t *cf, ngx_http_ai_gateway_redis_conf_t *rcf);



#endif /* _NGX_HTTP_AI_GATEWAY_STORE_H_INCLUDED_ */
