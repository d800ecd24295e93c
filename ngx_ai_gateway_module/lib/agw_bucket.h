
/*
 * Token bucket in exact integer arithmetic.  No clock reads: the caller
 * passes "now" in milliseconds.  See the essay in agw_bucket.c.
 */


#ifndef _AGW_BUCKET_H_INCLUDED_
#define _AGW_BUCKET_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/*
 * rate and burst * period_ms are bounded by 2^53 so that the Redis Lua port,
 * whose numbers are doubles, computes exactly what this code computes
 */
#define AGW_BUCKET_MAX_UNITS  ((uint64_t) 1 << 53)

/*
 * a money zone's units per micro-dollar (its period_ms), with its rate in
 * cents per minute, hour or day: see agw_bucket.c
 */
#define AGW_BUCKET_USD_MINUTE  6
#define AGW_BUCKET_USD_HOUR    360
#define AGW_BUCKET_USD_DAY     8640


typedef struct {
    uint64_t  rate;              /* tokens added per period; a money
                                    zone's: cents per minute, hour, day */
    uint64_t  period_ms;         /* 1000 for r/s, 60000 for r/m; a money
                                    zone's AGW_BUCKET_USD_* */
    uint64_t  burst;             /* capacity, tokens (>= 1) */
} agw_bucket_conf_t;


typedef struct {
    uint64_t  level;             /* tokens scaled by period_ms:
                                    1 token == period_ms units */
    uint64_t  stamp_ms;          /* time the level was computed, ms */
    uint64_t  debt;              /* units owed after an overrun (settle),
                                    paid by refill first; level is 0 while
                                    there is debt; at most
                                    agw_bucket_max_debt() */
} agw_bucket_t;


typedef struct {
    unsigned  allowed:1;
    uint64_t  remaining;         /* whole tokens left after the request
                                    (or now, if rejected) */
    uint64_t  reset_ms;          /* ms until the bucket is full again
                                    (after the request if allowed) */
    uint64_t  retry_after_ms;    /* rejected: ms until `cost` tokens are
                                    available (cost > burst: until full);
                                    0 if allowed */
    uint64_t  level;             /* the level after the request (now, if
                                    rejected), in units: for commit() */
    uint64_t  debt;              /* units still owed (0 if allowed) */
} agw_bucket_result_t;


/*
 * 1 if usable: rate >= 1, period 1000, 60000 or AGW_BUCKET_USD_*,
 * burst >= 1, no overflow
 */
int agw_bucket_conf_valid(const agw_bucket_conf_t *conf);

/* a new bucket starts full */
void agw_bucket_init(agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t now_ms);

/* the result of taking `cost` at now_ms, without changing *b; cost 0 peeks */
void agw_bucket_check(const agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t cost, uint64_t now_ms, agw_bucket_result_t *res);

/*
 * refill to now_ms and take `cost`; the caller has checked that it is
 * allowed, and if it is not (the level fell in between), the level
 * saturates at 0 rather than going negative
 */
void agw_bucket_take(agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t cost, uint64_t now_ms);

/*
 * store what agw_bucket_check() found allowed at now_ms, if nothing changed
 * the bucket in between (the caller holds the lock across both): the same
 * as agw_bucket_take() without a second refill
 */
void agw_bucket_commit(agw_bucket_t *b, const agw_bucket_result_t *res,
    uint64_t now_ms);

/*
 * agw_bucket_check() and, if allowed, agw_bucket_take() in one refill: what
 * a single bucket needs per request; returns res->allowed
 */
int agw_bucket_consume(agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t cost, uint64_t now_ms, agw_bucket_result_t *res);

/*
 * settle a reservation of `reserved` tokens on the `actual` use: unused
 * tokens go back, an overrun is taken whole and may leave the bucket in
 * debt (up to agw_bucket_max_debt()); a refund is actual 0
 */
void agw_bucket_settle(agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t reserved, uint64_t actual, uint64_t now_ms);

/*
 * the most a bucket may owe, in units: AGW_BUCKET_MAX_UNITS less its
 * capacity, so that capacity + debt stays exact in the Redis script
 */
uint64_t agw_bucket_max_debt(const agw_bucket_conf_t *conf);

/* the level refilled to now_ms, in units (period_ms units per token) */
uint64_t agw_bucket_level(const agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t now_ms);

/* 0 -> 0, 1..1000 -> 1, 1001 -> 2 (inline: every limited request's Reset) */
static inline uint64_t
agw_ms_to_s_ceil(uint64_t ms)
{
    return ms / 1000 + (ms % 1000 != 0);
}

/* Retry-After seconds: agw_ms_to_s_ceil(), but at least 1 */
static inline uint64_t
agw_retry_after_s(uint64_t ms)
{
    return ms > 1000 ? agw_ms_to_s_ceil(ms) : 1;
}

/* seconds to refill burst from empty, rounded up, >= 1 */
uint64_t agw_bucket_window_s(const agw_bucket_conf_t *conf);


#endif /* _AGW_BUCKET_H_INCLUDED_ */
