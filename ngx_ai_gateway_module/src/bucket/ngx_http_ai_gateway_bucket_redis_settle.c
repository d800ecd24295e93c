/*
 * Settlements of "ai_gateway_limit_zone ... redis" token zones (SPEC 7.1)
 * and the ends of leases: a bucket moved by units, given back or taken, by
 * a script run atomically by Redis, fire and forget (the request may be
 * gone before Redis answers).
 */

#include "bucket/ngx_http_ai_gateway_bucket_node.h"
#include "redis/ngx_http_ai_gateway_redis.h"


/*
 * A token zone's reservation settled on the real use: KEYS[1] the bucket;
 * ARGV rate, period_ms, burst and the units given back (positive, within
 * one capacity) or taken (negative, within 2^53).  The level is refilled
 * to now as in the check script, moved, and kept within
 * [capacity - 2^53, capacity]: a negative level is the debt of
 * lib/agw_bucket.c (at most agw_bucket_max_debt(), so that capacity less
 * the level stays exact in doubles), which refill pays back first and the
 * check script lets no request through until it is paid.  The sum is
 * compared before it is formed, so it is never rounded.  A bucket full
 * again is deleted (a missing bucket is a full one); any other expires
 * once refilled, debt included.
 */

static ngx_http_ai_gateway_redis_script_t
    ngx_http_ai_gateway_bucket_redis_settle_script =
{
    ngx_string(
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local rate = tonumber(ARGV[1])\n"
    "local cap = tonumber(ARGV[3]) * tonumber(ARGV[2])\n"
    "local delta = tonumber(ARGV[4])\n"
    "local h = redis.call('HMGET', KEYS[1], 'level', 'stamp')\n"
    "local l, s = tonumber(h[1]), tonumber(h[2])\n"
    "if l == nil or s == nil then\n"
    "  l, s = cap, now\n"
    "end\n"
    "if l >= cap then\n"
    "  l = cap\n"
    "elseif now > s then\n"
    "  local need = cap - l\n"
    "  local fill = math.floor(need / rate)\n"
    "  if fill * rate < need then fill = fill + 1 end\n"
    "  if now - s >= fill then l = cap else l = l + (now - s) * rate end\n"
    "end\n"
    "if now > s then s = now end\n"
    "local floor = cap - 9007199254740992\n"
    "if delta < floor - l then l = floor else l = l + delta end\n"
    "if l > cap then l = cap end\n"
    "if l >= cap then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  return l\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'level', string.format('%d', l),\n"
    "           'stamp', string.format('%d', s))\n"
    "local fill = math.floor((cap - l) / rate)\n"
    "redis.call('PEXPIRE', KEYS[1], fill + 1001)\n"
    "return l\n"),
    ""
};


static void ngx_http_ai_gateway_bucket_redis_settled(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data);


void
ngx_http_ai_gateway_bucket_redis_settle_init(void)
{
    ngx_http_ai_gateway_redis_script_init(
                               &ngx_http_ai_gateway_bucket_redis_settle_script);
}


/*
 * Settle a redis token zone's reservation: fire and forget, with no pool,
 * so the request may be gone before Redis answers.  Unavailable Redis
 * leaves the reservation where it is: the bucket then refills as if the
 * estimate had been used, the error on the side of the budget.
 */

void
ngx_http_ai_gateway_bucket_redis_settle(ngx_http_request_t *r,
    ngx_http_ai_gateway_bucket_state_t *st, uint64_t used, uint64_t now)
{
    uint64_t                            units;
    ngx_http_ai_gateway_main_conf_t    *amcf;
    ngx_http_ai_gateway_bucket_zone_t  *zone;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_ai_gateway_module);
    zone = st->zone;

    /*
     * as agw_bucket_settle(): given back within one capacity; an overrun
     * taken whole, saturated at 2^53 units (the script bounds the debt)
     */

    if (used < st->reserved) {
        units = st->reserved - used;
        units = (units > zone->bucket.burst) ? zone->bucket.burst : units;
        ngx_http_ai_gateway_bucket_redis_move(amcf->redis, zone, st->key,
                                  (int64_t) (units * zone->bucket.period_ms));

    } else {
        units = used - st->reserved;
        units = (units > AGW_BUCKET_MAX_UNITS / zone->bucket.period_ms)
                ? AGW_BUCKET_MAX_UNITS : units * zone->bucket.period_ms;
        ngx_http_ai_gateway_bucket_redis_move(amcf->redis, zone, st->key,
                                              -(int64_t) units);
    }
}


/*
 * Move a Redis bucket by units (given back if positive, taken if
 * negative) with the settle script: what settlements and ended leases
 * use.  Fire and forget; argv is copied by the connection.
 */

void
ngx_http_ai_gateway_bucket_redis_move(ngx_http_ai_gateway_redis_conf_t *rcf,
    ngx_http_ai_gateway_bucket_zone_t *zone, u_char *key, int64_t units)
{
    u_char       *p, buf[NGX_HTTP_AI_GATEWAY_BUCKET_REDIS_KEY_MAX
                         + 4 * NGX_INT64_LEN + 1];
    size_t        len, argvlen[5];
    const char   *argv[5];

    if (!ngx_http_ai_gateway_redis_available()) {
        return;
    }

    len = ngx_http_ai_gateway_bucket_redis_key_len(rcf, zone);

    if (len > NGX_HTTP_AI_GATEWAY_BUCKET_REDIS_KEY_MAX) {
        return;
    }

    p = ngx_http_ai_gateway_bucket_redis_key(buf, rcf, zone, key);

    argv[0] = (const char *) buf;
    argvlen[0] = len;

    argv[1] = (const char *) p;
    p = ngx_sprintf(p, "%uL", zone->bucket.rate);
    argvlen[1] = p - (u_char *) argv[1];

    argv[2] = (const char *) p;
    p = ngx_sprintf(p, "%uL", zone->bucket.period_ms);
    argvlen[2] = p - (u_char *) argv[2];

    argv[3] = (const char *) p;
    p = ngx_sprintf(p, "%uL", zone->bucket.burst);
    argvlen[3] = p - (u_char *) argv[3];

    argv[4] = (const char *) p;
    p = ngx_sprintf(p, "%L", units);
    argvlen[4] = p - (u_char *) argv[4];

    (void) ngx_http_ai_gateway_redis_eval(NULL,
                               ngx_http_ai_gateway_bucket_redis_settled, NULL,
                               &ngx_http_ai_gateway_bucket_redis_settle_script,
                               1, 5, argv, argvlen);
}


static void
ngx_http_ai_gateway_bucket_redis_settled(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data)
{
    /* nothing waits for it: a failure is counted by the connection */
}
