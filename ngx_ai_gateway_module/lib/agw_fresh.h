
/*
 * Freshness of an upstream answer (SPEC 3.2): how long the cache may keep
 * it, from its Cache-Control lines, Expires, Date and X-Accel-Expires.
 * Pure functions; HTTP dates arrive already parsed (nginx's
 * ngx_parse_http_time() in the module).
 */


#ifndef _AGW_FRESH_H_INCLUDED_
#define _AGW_FRESH_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define AGW_FRESH_ABSENT   (-1)          /* no such header */
#define AGW_FRESH_INVALID  (-2)          /* a date that does not parse */


typedef struct {
    const uint8_t  *data;
    size_t          len;
} agw_fresh_line_t;


typedef struct {
    const agw_fresh_line_t  *cache_control;   /* every line of the answer */
    size_t                   ncache_control;
    const uint8_t           *accel_expires;   /* X-Accel-Expires, or NULL */
    size_t                   accel_expires_len;
    int64_t                  expires;         /* unix seconds, or ABSENT,
                                                 INVALID */
    int64_t                  date;            /* the same */
    int64_t                  now;             /* unix seconds */
    int64_t                  max_ttl;         /* ai_gateway_cache_ttl, > 0 */
} agw_fresh_facts_t;


/*
 * Seconds to keep the answer, 1..max_ttl, or 0 if it must not be stored
 * (no-store, no-cache, private, or a lifetime of zero or less); *why, if
 * not NULL, names what decided (NULL: only ai_gateway_cache_ttl), for logs.
 *
 * The lifetime is X-Accel-Expires if valid (as nginx: it overrides the
 * others; "0" is not cacheable, "@T" an absolute time), else s-maxage,
 * else max-age, else Expires minus Date (or now), else unlimited.  An
 * Expires that does not parse is in the past (RFC 9111 5.3), so is an
 * unreadable max-age argument.  X-Accel-Expires never overrides no-store,
 * no-cache or private.
 */
int64_t agw_fresh_ttl(const agw_fresh_facts_t *f, const char **why);

/*
 * 1 if the comma-separated token list (a Connection value) holds name,
 * compared without case
 */
int agw_token_list_has(const uint8_t *list, size_t len, const uint8_t *name,
    size_t name_len);


#endif /* _AGW_FRESH_H_INCLUDED_ */
