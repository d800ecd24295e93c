/*
 * The buckets of "ai_gateway_limit_zone ... redis" (SPEC 3.1, 3.3): token
 * buckets kept in Redis, so that every nginx using the same Redis draws
 * from one budget.
 *
 * A bucket is the hash <prefix>rl:<zone>:<hex SHA-256 of the key value>
 * with the fields "level" (units: period_ms per token, as in
 * lib/agw_bucket.c) and "stamp" (ms, Redis's clock).  All the redis zones
 * of a request are checked and charged by one Lua script, run atomically
 * by Redis: it refills every bucket to now, charges all of them if every
 * one has the tokens and none otherwise, and answers with each bucket's
 * level before the charge.  The RateLimit figures are then computed here
 * from that level by agw_bucket_check(), the very code the shared-memory
 * zones use, so both backends report alike.
 *
 * The clock is Redis's TIME, one clock for all nginx nodes; the script
 * never moves a stamp backwards, so a clock that steps back (a failover to
 * a replica whose clock lags) credits no time twice.  A charged bucket
 * expires after the time it takes to refill from empty, plus a second: a
 * missing bucket is a full one, so an idle key vanishes without changing
 * any answer.
 *
 * The script is sent with EVALSHA, and by the connection's eval helper
 * with EVAL when Redis answers NOSCRIPT (a restart, SCRIPT FLUSH).  The
 * request waits without blocking the worker: the reply handler resumes
 * its phases.  When Redis cannot answer (not connected, breaker open,
 * timeout, error), ai_gateway_limit_redis_fail decides for every redis
 * zone of the request: "open" lets it through without figures (the zone
 * adds no RateLimit headers and counts the request as passed), "closed"
 * rejects it (Retry-After 1).  A zone that only reads (a cache HIT without
 * charge_hits) never rejects for want of Redis.
 *
 * The zone's shared memory keeps the counters and, for the "keys" gauge, a
 * mirror of each bucket this nginx charged, set to the level Redis
 * reported after the charge and refilled locally.  Mirrors that have
 * refilled are freed lazily (when other buckets are added) and the least
 * recently charged ones when the zone is full, as in a shared-memory zone.
 * So "keys" is this nginx's view: about the number of distinct keys it
 * charged whose buckets had not refilled the last time it looked, not the
 * number of keys in Redis (other nodes' keys are not seen, and counting
 * those would take a SCAN).
 *
 * With a Redis Cluster ("ai_gateway_redis ... cluster") the keys of one
 * script call share the hash tag {<prefix>rl}, so the call runs on one
 * node: the limiter's buckets all live on the node owning that slot.
 */

#include "bucket/ngx_http_ai_gateway_bucket_node.h"
#include "redis/ngx_http_ai_gateway_redis.h"


/* arguments per zone: rate, period_ms, burst, cost, ttl_ms, dry_run,
   lease, giveback */
#define NGX_HTTP_AI_GATEWAY_BUCKET_REDIS_ARGS  8

/*
 * The bucket's key.  With a Redis Cluster every bucket is under the hash
 * tag {<prefix>rl}: the keys of one script call must share a slot, so all
 * buckets live on one node (the limiter's load is not spread, the cache's
 * is): {<prefix>rl}:<zone>:<hex>
 */
size_t
ngx_http_ai_gateway_bucket_redis_key_len(ngx_http_ai_gateway_redis_conf_t *rcf,
    ngx_http_ai_gateway_bucket_zone_t *zone)
{
    return (rcf->cluster ? 2 : 0) + rcf->prefix.len + sizeof("rl:") - 1
           + zone->name.len + 1 + 2 * NGX_HTTP_AI_GATEWAY_BUCKET_KEY_LEN;
}


u_char *
ngx_http_ai_gateway_bucket_redis_key(u_char *p,
    ngx_http_ai_gateway_redis_conf_t *rcf,
    ngx_http_ai_gateway_bucket_zone_t *zone, u_char *key)
{
    if (rcf->cluster) {
        *p++ = '{';
        p = ngx_cpymem(p, rcf->prefix.data, rcf->prefix.len);
        p = ngx_cpymem(p, "rl}:", sizeof("rl}:") - 1);

    } else {
        p = ngx_cpymem(p, rcf->prefix.data, rcf->prefix.len);
        p = ngx_cpymem(p, "rl:", sizeof("rl:") - 1);
    }

    p = ngx_cpymem(p, zone->name.data, zone->name.len);
    *p++ = ':';

    return ngx_hex_dump(p, key, NGX_HTTP_AI_GATEWAY_BUCKET_KEY_LEN);
}


/*
 * KEYS[i]: the bucket of zone i; ARGV[8i-7 .. 8i]: its rate, period_ms,
 * burst, cost, expiry (ms), dry_run ("1" or "0"), lease (tokens wanted at
 * once, 0 for none) and giveback (units of an ended lease, added first).
 * Returns {taken, level_1, ..., level_n, got_1, ..., got_n}: taken is 1 if
 * every bucket that is not dry_run had its cost, and then every bucket
 * that had it was charged (a dry_run bucket that would refuse takes
 * nothing), 0 if none was; level_i is bucket i refilled to now (and given
 * back to), before any charge; got_i the tokens taken from it: its cost,
 * or for a lease up to `lease` whole tokens, never less than the cost.
 *
 * The refill is agw_bucket_refill() of lib/agw_bucket.c, line for line
 * (see the pseudo-code in its essay): Lua numbers are doubles, exact up to
 * 2^53, which agw_bucket_conf_valid() guarantees every value stays under,
 * and the ceiling division is done with math.floor and a correction.  A
 * token zone's level may be negative (a debt, see the settle script); a
 * bucket in debt has no token to give (a read, of cost 0, passes all the
 * same: a cache HIT is free), and a bucket written here expires
 * once refilled from the level written, debt included (a giveback may
 * leave it in debt).  Levels are written with %d, since
 * tostring() would round them to 14 digits.  redis.replicate_commands()
 * lets Redis before 5 replicate a script that writes after reading TIME;
 * later versions always do.
 */

static ngx_http_ai_gateway_redis_script_t
    ngx_http_ai_gateway_bucket_redis_script =
{
    ngx_string(
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local level, stamp, ok, got, dirty, taken = {}, {}, {}, {}, {}, 1\n"
    "for i = 1, #KEYS do\n"
    "  local a = (i - 1) * 8\n"
    "  local rate = tonumber(ARGV[a + 1])\n"
    "  local period = tonumber(ARGV[a + 2])\n"
    "  local burst = tonumber(ARGV[a + 3])\n"
    "  local cost = tonumber(ARGV[a + 4])\n"
    "  local give = tonumber(ARGV[a + 8])\n"
    "  local cap = burst * period\n"
    "  local h = redis.call('HMGET', KEYS[i], 'level', 'stamp')\n"
    "  local l, s = tonumber(h[1]), tonumber(h[2])\n"
    "  if l == nil or s == nil then\n"
    "    l, s = cap, now\n"
    "  end\n"
    "  if l >= cap then\n"
    "    l = cap\n"
    "  elseif now > s then\n"
    "    local need = cap - l\n"
    "    local fill = math.floor(need / rate)\n"
    "    if fill * rate < need then fill = fill + 1 end\n"
    "    if now - s >= fill then l = cap else l = l + (now - s) * rate end\n"
    "  end\n"
    "  if now > s then s = now end\n"
    "  dirty[i] = give > 0\n"
    "  if give > 0 then l = math.min(cap, l + give) end\n"
    "  level[i], stamp[i], got[i] = l, s, 0\n"
    "  ok[i] = cost == 0 or not (cost > burst or cost * period > l)\n"
    "  if not ok[i] and ARGV[a + 6] == '0' then taken = 0 end\n"
    "end\n"
    "if taken == 1 then\n"
    "  for i = 1, #KEYS do\n"
    "    local a = (i - 1) * 8\n"
    "    local period = tonumber(ARGV[a + 2])\n"
    "    local cost = tonumber(ARGV[a + 4])\n"
    "    local lease = tonumber(ARGV[a + 7])\n"
    "    if cost > 0 and ok[i] then\n"
    "      local n = math.min(lease, math.floor(level[i] / period))\n"
    "      if n < cost then n = cost end\n"
    "      got[i] = n\n"
    "      dirty[i] = true\n"
    "    end\n"
    "  end\n"
    "end\n"
    "for i = 1, #KEYS do\n"
    "  if dirty[i] then\n"
    "    local a = (i - 1) * 8\n"
    "    local rate = tonumber(ARGV[a + 1])\n"
    "    local cap = tonumber(ARGV[a + 3]) * tonumber(ARGV[a + 2])\n"
    "    local w = level[i] - got[i] * tonumber(ARGV[a + 2])\n"
    "    local fill = math.floor((cap - w) / rate)\n"
    "    if fill * rate < cap - w then fill = fill + 1 end\n"
    "    redis.call('HSET', KEYS[i], 'level', string.format('%d', w),\n"
    "               'stamp', string.format('%d', stamp[i]))\n"
    "    redis.call('PEXPIRE', KEYS[i],\n"
    "               math.max(tonumber(ARGV[a + 5]), fill + 1000))\n"
    "  end\n"
    "end\n"
    "local reply = {taken}\n"
    "for i = 1, #KEYS do reply[i + 1] = level[i] end\n"
    "for i = 1, #KEYS do reply[#KEYS + i + 1] = got[i] end\n"
    "return reply\n"),
    ""
};


static ngx_int_t ngx_http_ai_gateway_bucket_redis_charge(
    ngx_http_ai_gateway_bucket_batch_t *batch);
static void ngx_http_ai_gateway_bucket_redis_reply(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data);
static ngx_int_t ngx_http_ai_gateway_bucket_redis_result(
    ngx_http_ai_gateway_bucket_batch_t *batch, redisReply *reply);
static void ngx_http_ai_gateway_bucket_redis_failed(
    ngx_http_ai_gateway_bucket_batch_t *batch);
static void ngx_http_ai_gateway_bucket_redis_unsent(
    ngx_http_ai_gateway_bucket_batch_t *batch);


void
ngx_http_ai_gateway_bucket_redis_init_conf(void)
{
    if (ngx_http_ai_gateway_bucket_redis_script.sha1[0] == '\0') {
        ngx_http_ai_gateway_redis_script_init(
                                      &ngx_http_ai_gateway_bucket_redis_script);
        ngx_http_ai_gateway_bucket_redis_settle_init();
    }
}


/*
 * The backend's charge: the zones whose cost this nginx's lease covers (or
 * that Redis lately refused) are decided at once (bucket_lease.c), the
 * others by the script
 */

static ngx_int_t
ngx_http_ai_gateway_bucket_redis_charge(
    ngx_http_ai_gateway_bucket_batch_t *batch)
{
    ngx_uint_t                           i, m;
    ngx_http_ai_gateway_bucket_state_t  *st;

    st = batch->st;
    m = batch->count;

    for (i = 0; m && i < batch->n; i++) {
        if (st[i].zone && st[i].zone->lease && st[i].cost && !st[i].dry
            && st[i].zone->backend == &ngx_http_ai_gateway_bucket_redis
            && ngx_http_ai_gateway_bucket_lease_take(&st[i],
                                             ngx_http_ai_gateway_bucket_now()))
        {
            m--;

            if (st[i].leased == 1) {
                batch->refundable = 1;
            }
        }
    }

    if (m == 0) {
        return NGX_OK;
    }

    return ngx_http_ai_gateway_bucket_redis_check(batch);
}


ngx_int_t
ngx_http_ai_gateway_bucket_redis_check(
    ngx_http_ai_gateway_bucket_batch_t *batch)
{
    u_char                              *p;
    size_t                              *argvlen, len;
    uint64_t                             cap;
    ngx_uint_t                           i, k, m, a;
    const char                         **argv;
    ngx_http_request_t                  *r;
    ngx_http_ai_gateway_bucket_zone_t   *zone;
    ngx_http_ai_gateway_redis_conf_t    *rcf;
    ngx_http_ai_gateway_main_conf_t     *amcf;
    ngx_http_ai_gateway_bucket_state_t  *st;

    r = batch->request;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_ai_gateway_module);
    rcf = amcf->redis;

    st = batch->st;

    for (i = 0, m = 0; i < batch->n; i++) {
        if (st[i].zone && !st[i].leased
            && st[i].zone->backend == &ngx_http_ai_gateway_bucket_redis)
        {
            m++;
        }
    }

    if (!ngx_http_ai_gateway_redis_available()) {
        ngx_http_ai_gateway_bucket_redis_unsent(batch);
        ngx_http_ai_gateway_bucket_redis_failed(batch);
        return NGX_OK;
    }

    a = NGX_HTTP_AI_GATEWAY_BUCKET_REDIS_ARGS;

    argv = ngx_palloc(r->pool, m * (1 + a) * sizeof(char *));
    argvlen = ngx_palloc(r->pool, m * (1 + a) * sizeof(size_t));
    if (argv == NULL || argvlen == NULL) {
        return NGX_ERROR;
    }

    /* the keys first, then the arguments of every zone, as KEYS and ARGV */

    for (i = 0, k = 0; i < batch->n; i++) {
        zone = st[i].zone;

        if (zone == NULL || st[i].leased
            || zone->backend != &ngx_http_ai_gateway_bucket_redis)
        {
            continue;
        }

        len = ngx_http_ai_gateway_bucket_redis_key_len(rcf, zone);

        p = ngx_pnalloc(r->pool, len + a * NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        argv[k] = (const char *) p;
        p = ngx_http_ai_gateway_bucket_redis_key(p, rcf, zone, st[i].key);
        argvlen[k] = len;

        argv[m + k * a] = (const char *) p;
        p = ngx_sprintf(p, "%uL", zone->bucket.rate);
        argvlen[m + k * a] = p - (u_char *) argv[m + k * a];

        argv[m + k * a + 1] = (const char *) p;
        p = ngx_sprintf(p, "%uL", zone->bucket.period_ms);
        argvlen[m + k * a + 1] = p - (u_char *) argv[m + k * a + 1];

        argv[m + k * a + 2] = (const char *) p;
        p = ngx_sprintf(p, "%uL", zone->bucket.burst);
        argvlen[m + k * a + 2] = p - (u_char *) argv[m + k * a + 2];

        argv[m + k * a + 3] = (const char *) p;
        p = ngx_sprintf(p, "%uL", st[i].cost);
        argvlen[m + k * a + 3] = p - (u_char *) argv[m + k * a + 3];

        /*
         * the time to refill from empty, ceil(capacity / rate) ms, and a
         * second for clock skew; capacity and rate are below 2^53
         */
        cap = zone->bucket.burst * zone->bucket.period_ms;

        argv[m + k * a + 4] = (const char *) p;
        p = ngx_sprintf(p, "%uL", cap / zone->bucket.rate
                                  + (cap % zone->bucket.rate != 0) + 1000);
        argvlen[m + k * a + 4] = p - (u_char *) argv[m + k * a + 4];

        /* a dry_run zone never vetoes the others; it takes if it can */
        argv[m + k * a + 5] = st[i].dry ? "1" : "0";
        argvlen[m + k * a + 5] = 1;

        /* lease=: up to that many tokens at once; an ended one handed back */
        argv[m + k * a + 6] = (const char *) p;
        p = ngx_sprintf(p, "%uL", (st[i].cost && !st[i].dry) ? zone->lease : 0);
        argvlen[m + k * a + 6] = p - (u_char *) argv[m + k * a + 6];

        argv[m + k * a + 7] = (const char *) p;
        p = ngx_sprintf(p, "%uL", st[i].giveback * zone->bucket.period_ms);
        argvlen[m + k * a + 7] = p - (u_char *) argv[m + k * a + 7];

        k++;
    }

    /*
     * the request's pool: a client that leaves while Redis is asked frees
     * the request, which detaches the command, and a late reply is dropped
     */

    if (ngx_http_ai_gateway_redis_eval(r->pool,
                                       ngx_http_ai_gateway_bucket_redis_reply,
                                       batch,
                                       &ngx_http_ai_gateway_bucket_redis_script,
                                       m, (int) (m * (1 + a)), argv, argvlen)
        == NULL)
    {
        ngx_http_ai_gateway_bucket_redis_unsent(batch);
        ngx_http_ai_gateway_bucket_redis_failed(batch);
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ai_gateway limit: redis asked for %ui zones", m);

    return NGX_AGAIN;
}


static void
ngx_http_ai_gateway_bucket_redis_reply(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data)
{
    ngx_http_ai_gateway_bucket_batch_t *batch = data;

    ngx_http_request_t  *r;

    r = batch->request;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ai_gateway limit: redis reply status:%d", (int) status);

    if (r->main->count == 0) {
        /*
         * terminated while waiting, its pool kept alive a little longer
         * (an HTTP/2 stream with frames still queued): nothing to resume
         */
        return;
    }

    if (status != NGX_HTTP_AI_GATEWAY_REDIS_OK
        || ngx_http_ai_gateway_bucket_redis_result(batch, reply) != NGX_OK)
    {
        ngx_http_ai_gateway_bucket_redis_failed(batch);
    }

    /* the policy decides, and resumes the request */
    batch->done(batch);
}


/* the script's answer into the zones' results; NGX_ERROR if malformed */

static ngx_int_t
ngx_http_ai_gateway_bucket_redis_result(
    ngx_http_ai_gateway_bucket_batch_t *batch,
    redisReply *reply)
{
    int64_t                              got;
    uint64_t                             cap, now, want, level, max;
    ngx_uint_t                           i, k, m, taken;
    agw_bucket_t                         b;
    redisReply                          *e;
    ngx_http_ai_gateway_bucket_zone_t   *zone;
    ngx_http_ai_gateway_bucket_state_t  *st;

    st = batch->st;

    for (i = 0, m = 0; i < batch->n; i++) {
        if (st[i].zone && !st[i].leased
            && st[i].zone->backend == &ngx_http_ai_gateway_bucket_redis)
        {
            m++;
        }
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 * m + 1) {
        goto malformed;
    }

    for (k = 0; k <= 2 * m; k++) {
        if (reply->element[k]->type != REDIS_REPLY_INTEGER) {
            goto malformed;
        }
    }

    if (reply->element[0]->integer < 0) {
        goto malformed;
    }

    taken = (reply->element[0]->integer == 1);

    now = ngx_http_ai_gateway_bucket_now();

    for (i = 0, k = 1; i < batch->n; i++) {
        zone = st[i].zone;

        if (zone == NULL || st[i].leased
            || zone->backend != &ngx_http_ai_gateway_bucket_redis)
        {
            continue;
        }

        e = reply->element[k];
        got = reply->element[m + k]->integer;
        k++;

        /*
         * the level is already refilled to Redis's now: a bucket stamped
         * 0 and checked at 0 gets no more time, and agw_bucket_check()
         * computes the figures exactly as for a shared-memory bucket
         */

        cap = zone->bucket.burst * zone->bucket.period_ms;

        /* a token zone's bucket may be in debt: a negative level */

        if (e->integer < 0) {
            max = agw_bucket_max_debt(&zone->bucket);

            b.level = 0;
            b.debt = ((uint64_t) -(e->integer + 1) < max)
                     ? (uint64_t) -(e->integer + 1) + 1 : max;

        } else {
            b.level = ((uint64_t) e->integer < cap) ? (uint64_t) e->integer
                                                    : cap;
            b.debt = 0;
        }

        b.stamp_ms = 0;

        agw_bucket_check(&b, &zone->bucket, st[i].cost, 0, &st[i].res);

        if (!taken) {
            if (st[i].res.allowed && st[i].cost) {
                /* another zone refused: this one holds what it held */
                agw_bucket_check(&b, &zone->bucket, 0, 0, &st[i].res);

            } else if (zone->lease && st[i].cost) {
                /* refused: remembered for a lease time (bucket_lease.c) */
                ngx_http_ai_gateway_bucket_zone_lock(zone);
                ngx_http_ai_gateway_bucket_zone_refused(zone, st[i].key, &b,
                                             now,
                                             batch->request->connection->log);
                ngx_http_ai_gateway_bucket_zone_unlock(zone);
            }

            continue;
        }

        if (st[i].cost == 0) {
            /* nothing taken: a read */
            continue;
        }

        if (!st[i].res.allowed) {
            if (!st[i].dry) {
                /*
                 * "taken", yet no room for the cost: the script takes
                 * only when every zone that is not dry_run has room, so
                 * this is not its answer (nor a refusal of the client)
                 */
                goto malformed;
            }

            /* a dry_run zone that would refuse: nothing taken from it */
            continue;
        }

        /*
         * the "keys" gauge: mirror the bucket as Redis holds it now; a
         * lease keeps what it took beyond the cost for the next requests
         */

        if (got < 0 || (uint64_t) got < st[i].cost
            || (uint64_t) got > zone->bucket.burst)
        {
            goto malformed;
        }

        st[i].charged = &ngx_http_ai_gateway_bucket_redis;

        want = (uint64_t) got * zone->bucket.period_ms;
        level = (b.level > want) ? b.level - want : 0;

        ngx_http_ai_gateway_bucket_zone_lock(zone);

        ngx_http_ai_gateway_bucket_zone_track(zone, st[i].key, level, now,
                                             (uint64_t) got - st[i].cost,
                                             batch->request->connection->log);

        ngx_http_ai_gateway_bucket_zone_unlock(zone);

        /*
         * the figures reported stay those of the bucket less this cost:
         * what Redis keeps plus what this nginx now holds
         */
    }

    return NGX_OK;

malformed:

    ngx_log_error(NGX_LOG_ERR, batch->request->connection->log, 0,
                  "ai_gateway_limit: unexpected reply from the redis script");

    return NGX_ERROR;
}


/*
 * The script call was never sent: the ended leases that were to go back
 * with it are kept (bucket_lease.c), not lost
 */

static void
ngx_http_ai_gateway_bucket_redis_unsent(
    ngx_http_ai_gateway_bucket_batch_t *batch)
{
    uint64_t                             now;
    ngx_uint_t                           i;
    ngx_http_ai_gateway_bucket_state_t  *st;

    st = batch->st;
    now = ngx_http_ai_gateway_bucket_now();

    for (i = 0; i < batch->n; i++) {
        if (st[i].zone && !st[i].leased && st[i].giveback
            && st[i].zone->backend == &ngx_http_ai_gateway_bucket_redis)
        {
            ngx_http_ai_gateway_bucket_lease_restore(&st[i], now);
        }
    }
}


/*
 * Redis could not answer: what ai_gateway_limit_redis_fail makes of it,
 * for every redis zone of the request
 */

static void
ngx_http_ai_gateway_bucket_redis_failed(
    ngx_http_ai_gateway_bucket_batch_t *batch)
{
    ngx_uint_t                           i;
    ngx_http_ai_gateway_bucket_state_t  *st;

    st = batch->st;

    for (i = 0; i < batch->n; i++) {
        if (st[i].zone == NULL || st[i].leased
            || st[i].zone->backend != &ngx_http_ai_gateway_bucket_redis)
        {
            continue;
        }

        ngx_memzero(&st[i].res, sizeof(agw_bucket_result_t));

        if (batch->fail == NGX_HTTP_AI_GATEWAY_BUCKET_FAIL_OPEN
            || st[i].cost == 0)
        {
            /* passes, with no figures to report */
            st[i].res.allowed = 1;
            st[i].blind = 1;
            continue;
        }

        /* closed: refused, try again in a second */
        st[i].res.allowed = 0;
        st[i].res.remaining = 0;
        st[i].res.reset_ms = 1000;
        st[i].res.retry_after_ms = 1000;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, batch->request->connection->log, 0,
                   "ai_gateway limit: redis unavailable");
}


/*
 * The Redis backend: no read without a round trip, so no check; a charge
 * is never refunded (the script charges all of a request's Redis zones or
 * none, and runs last: a charge paid from a lease is the lease backend's);
 * settlements go to Redis.
 */

ngx_http_ai_gateway_bucket_backend_t  ngx_http_ai_gateway_bucket_redis = {
    ngx_string("redis"),
    1,
    NULL,
    ngx_http_ai_gateway_bucket_redis_charge,
    NULL,
    ngx_http_ai_gateway_bucket_redis_settle
};
