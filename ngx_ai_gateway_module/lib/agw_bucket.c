
/*
 * Token bucket in exact integer arithmetic.
 *
 * A bucket holds up to `burst` tokens and gains `rate` tokens per period
 * (one second for "r/s", one minute for "r/m"); a request takes `cost`
 * tokens or is rejected and takes none.  The only state is a level and the
 * time it was computed.  Refill is lazy: nothing runs between requests, the
 * next request adds what the elapsed time earned, so an idle key costs no
 * CPU and a bucket can sit in shared memory or in a Redis hash unchanged.
 *
 * Units.  nginx's limit_req keeps its excess in thousandths of a request and
 * multiplies elapsed milliseconds by a rate in thousandths per second, which
 * is exact for r/s but rounds for r/m (1r/m is 16.66... per mille per
 * second).  Here the level is kept in units where one token is period_ms
 * units, so `rate` tokens per `period_ms` milliseconds is exactly `rate`
 * units per millisecond: refill is `elapsed_ms * rate`, with no division and
 * no float.  30r/m gains 30 units a ms and a token (60000 units) every
 * 2000 ms exactly; a thousand 1 ms steps sum to the same level as one step
 * of 1000 ms, so calling often never drifts and calling rarely never loses.
 *
 * Money.  A budget in dollars is a bucket of micro-dollars (agw_price.c),
 * with rates in whole cents per minute, hour or day.  One token (a
 * micro-dollar) is then period / 10^4 units (6 for a minute, 360 for an
 * hour, 8640 for a day: AGW_BUCKET_USD_*), and `rate` is the rate in cents:
 * a cent a day refills one unit a millisecond, 86.4 * 10^6 units a day,
 * exactly 10^4 micro-dollars.  The scale depends on the period alone, so a
 * reload that changes a budget's rate keeps every bucket's level meaning
 * the same money.  With a daily period a bucket holds up to 2^53 / 8640
 * micro-dollars, about 1.04 million dollars.
 *
 * Overflow.  Every product is guarded.  Capacity (burst * period_ms) is
 * checked once, in agw_bucket_conf_valid().  Refill compares the elapsed
 * time with the time still needed to fill, ceil((capacity - level) / rate),
 * BEFORE multiplying: past that time the bucket is simply full, and below
 * it elapsed * rate < capacity - level, which cannot overflow.  So a key
 * idle for years, or a stamp of 0 against a clock near UINT64_MAX, yields a
 * full bucket, never a wrapped one.  cost * period_ms is only formed once
 * cost <= burst is known, and burst * period_ms fits.
 *
 * Time.  Each nginx worker caches its own ngx_current_msec, so the stamp
 * another worker wrote may be slightly ahead of our "now".  As in limit_req,
 * a negative elapsed time counts as zero, and the stamp only ever moves
 * forward: otherwise a lagging worker would rewind the stamp and the next
 * one would be credited the same milliseconds twice.
 *
 * Rounding, as the response headers want it:
 *
 *     remaining      = floor(level_after / period_ms)             tokens
 *     reset_ms       = ceil((capacity - level_after) / rate)      ms
 *     retry_after_ms = ceil((cost * period_ms - level) / rate)    ms
 *
 * Remaining rounds down (a fraction of a token cannot be spent), the two
 * times round up (a client that waits that long is sure to succeed).
 * A cost larger than burst can never be satisfied; such a request is always
 * rejected and told to retry when the bucket is full, which is the longest
 * wait that means anything (the module should rather refuse such a cost at
 * configuration time).
 *
 * check() is separate from take(), and check() does not write, because a
 * request may be limited by several zones and must pass all of them or
 * spend nothing: the caller checks every zone, then takes from each.
 *
 * The Redis store runs this same algorithm in a Lua script.  Lua numbers
 * are doubles, exact up to 2^53, so agw_bucket_conf_valid() also bounds
 * rate and capacity by 2^53; with millisecond timestamps (about 2^41 today)
 * every intermediate value of the algorithm stays below that bound, and
 * the script reproduces these results bit for bit using math.floor for the
 * divisions.  In pseudo-code, the whole algorithm is:
 *
 *     cap = burst * period
 *     if now > stamp:
 *         need = cap - level
 *         if now - stamp >= ceil(need / rate): level = cap
 *         else: level = level + (now - stamp) * rate
 *         stamp = now
 *     want = cost * period
 *     if cost <= burst and want <= level: allow, level = level - want
 *     else: reject, retry_after = ceil(((cost > burst ? cap : want) - level)
 *                                      / rate)
 */


#include "agw_bucket.h"


static uint64_t
agw_div_ceil(uint64_t a, uint64_t b)
{
    /* not (a + b - 1) / b, which overflows for a near UINT64_MAX */
    return a / b + (a % b != 0);
}


/*
 * The level refilled to now_ms, and in *debt what is still owed: time
 * pays an overrun back before it fills the bucket again, so while *debt is
 * not 0 the level is 0.
 */

static uint64_t
agw_bucket_refill(const agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t now_ms, uint64_t *debt)
{
    uint64_t  cap, level, need, elapsed, gained;

    cap = conf->burst * conf->period_ms;
    level = b->level;
    *debt = b->debt;

    /* a reload may have shrunk the burst under an existing bucket */

    if (*debt == 0 && level >= cap) {
        return cap;
    }

    if (now_ms <= b->stamp_ms) {
        /* another worker's clock is ahead of ours: no time has passed */
        return level;
    }

    elapsed = now_ms - b->stamp_ms;

    /* debt <= 2^53 - cap (see settle) and level <= cap: need <= 2^53 */
    need = cap - level + *debt;

    if (elapsed >= agw_div_ceil(need, conf->rate)) {
        *debt = 0;
        return cap;
    }

    /* elapsed < ceil(need / rate), so elapsed * rate < need: no overflow */

    gained = elapsed * conf->rate;

    if (gained <= *debt) {
        *debt -= gained;
        return 0;
    }

    gained -= *debt;
    *debt = 0;

    return level + gained;
}


int
agw_bucket_conf_valid(const agw_bucket_conf_t *conf)
{
    if (conf->rate < 1 || conf->rate > AGW_BUCKET_MAX_UNITS) {
        return 0;
    }

    switch (conf->period_ms) {
    case 1000:                           /* r/s, t/s */
    case 60000:                          /* r/m, t/m */
    case AGW_BUCKET_USD_MINUTE:          /* usd/m, h, d: see below */
    case AGW_BUCKET_USD_HOUR:
    case AGW_BUCKET_USD_DAY:
        break;
    default:
        return 0;
    }

    if (conf->burst < 1
        || conf->burst > AGW_BUCKET_MAX_UNITS / conf->period_ms)
    {
        return 0;
    }

    return 1;
}


void
agw_bucket_init(agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t now_ms)
{
    b->level = conf->burst * conf->period_ms;
    b->stamp_ms = now_ms;
    b->debt = 0;
}


uint64_t
agw_bucket_level(const agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t now_ms)
{
    uint64_t  debt;

    return agw_bucket_refill(b, conf, now_ms, &debt);
}


/*
 * the result of taking cost from a bucket at level (refilled to now),
 * including the level after it, which is level itself if refused
 */
static inline void
agw_bucket_decide(const agw_bucket_conf_t *conf, uint64_t level,
    uint64_t debt, uint64_t cost, agw_bucket_result_t *res)
{
    uint64_t  cap, want;

    cap = conf->burst * conf->period_ms;

    if (cost <= conf->burst) {
        want = cost * conf->period_ms;

        /* a read (cost 0) always passes: a HIT is free even in debt */

        if (want <= level && (debt == 0 || cost == 0)) {
            level -= want;

            res->allowed = 1;
            res->remaining = level / conf->period_ms;
            res->reset_ms = agw_div_ceil(cap - level + debt, conf->rate);
            res->retry_after_ms = 0;
            res->level = level;
            res->debt = debt;
            return;
        }

    } else {
        /* never satisfiable: wait for the fullest the bucket gets */
        want = cap;
    }

    /* in debt the level is 0: the debt is paid before anything is taken */

    res->allowed = 0;
    res->remaining = level / conf->period_ms;
    res->reset_ms = agw_div_ceil(cap - level + debt, conf->rate);
    res->retry_after_ms = agw_div_ceil(want - level + debt, conf->rate);
    res->level = level;
    res->debt = debt;
}


void
agw_bucket_check(const agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t cost, uint64_t now_ms, agw_bucket_result_t *res)
{
    uint64_t  level, debt;

    level = agw_bucket_refill(b, conf, now_ms, &debt);

    agw_bucket_decide(conf, level, debt, cost, res);
}


void
agw_bucket_commit(agw_bucket_t *b, const agw_bucket_result_t *res,
    uint64_t now_ms)
{
    b->level = res->level;
    b->debt = res->debt;

    /* the stamp never moves backwards */

    if (now_ms > b->stamp_ms) {
        b->stamp_ms = now_ms;
    }
}


int
agw_bucket_consume(agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t cost, uint64_t now_ms, agw_bucket_result_t *res)
{
    uint64_t  level, debt;

    level = agw_bucket_refill(b, conf, now_ms, &debt);

    agw_bucket_decide(conf, level, debt, cost, res);

    if (res->allowed && cost) {
        agw_bucket_commit(b, res, now_ms);
    }

    return res->allowed;
}


void
agw_bucket_take(agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t cost, uint64_t now_ms)
{
    uint64_t  level, want, debt;

    level = agw_bucket_refill(b, conf, now_ms, &debt);

    if (cost > conf->burst) {
        want = level;

    } else {
        want = cost * conf->period_ms;

        if (want > level) {
            want = level;
        }
    }

    b->level = level - want;
    b->debt = debt;

    /* the stamp never moves backwards */

    if (now_ms > b->stamp_ms) {
        b->stamp_ms = now_ms;
    }
}


/*
 * Settlement of a reservation.  A token zone charges an estimate when a
 * request is admitted and learns the real figure when the answer ends:
 * what was reserved but not used goes back (paying any debt first, never
 * above capacity); what was used beyond the reservation is taken, down to
 * 0 and then as debt, which refill pays back before the bucket fills again,
 * so later requests wait until the key has paid for what it used.  The
 * whole overrun is owed, however many capacities it spans: a key whose
 * answers use ten times their reservation waits ten windows, not one.
 *
 * The debt is bounded by AGW_BUCKET_MAX_UNITS less the capacity, so that
 * what refill must earn (capacity - level + debt) stays within 2^53 and
 * the Redis script, in doubles, computes it exactly; an overrun is
 * saturated there before it is multiplied.  That bound is far beyond any
 * real answer (2^53 units of a 1000 t/s zone is 285 years of its rate): an
 * upstream reporting a usage of 2^63 locks its key out "for ever", not
 * for a wrapped-around moment.  A refund is a settlement with actual 0.
 */

uint64_t
agw_bucket_max_debt(const agw_bucket_conf_t *conf)
{
    return AGW_BUCKET_MAX_UNITS - conf->burst * conf->period_ms;
}


/* tokens in units, saturating at AGW_BUCKET_MAX_UNITS */

static uint64_t
agw_bucket_units(const agw_bucket_conf_t *conf, uint64_t tokens)
{
    if (tokens > AGW_BUCKET_MAX_UNITS / conf->period_ms) {
        return AGW_BUCKET_MAX_UNITS;
    }

    return tokens * conf->period_ms;
}


void
agw_bucket_settle(agw_bucket_t *b, const agw_bucket_conf_t *conf,
    uint64_t reserved, uint64_t actual, uint64_t now_ms)
{
    uint64_t  cap, level, debt, units, max;

    cap = conf->burst * conf->period_ms;
    level = agw_bucket_refill(b, conf, now_ms, &debt);

    if (actual <= reserved) {
        units = reserved - actual;
        units = (units > conf->burst) ? cap : units * conf->period_ms;

        if (units <= debt) {
            debt -= units;

        } else {
            units -= debt;
            debt = 0;
            level = (cap - level <= units) ? cap : level + units;
        }

    } else {
        units = agw_bucket_units(conf, actual - reserved);

        if (units <= level) {
            level -= units;

        } else {
            /* debt and units are at most 2^53 each: the sum fits */
            debt += units - level;
            level = 0;

            max = agw_bucket_max_debt(conf);

            if (debt > max) {
                debt = max;
            }
        }
    }

    b->level = level;
    b->debt = debt;

    if (now_ms > b->stamp_ms) {
        b->stamp_ms = now_ms;
    }
}


uint64_t
agw_bucket_window_s(const agw_bucket_conf_t *conf)
{
    uint64_t  s;

    s = agw_ms_to_s_ceil(agw_div_ceil(conf->burst * conf->period_ms,
                                      conf->rate));

    return s ? s : 1;
}
