
/*
 * ORCA load reports in their text form.
 *
 * A replica that speaks ORCA (Open Request Cost Aggregation, the xDS load
 * report that Envoy and gRPC read) puts its load on each answer in the
 * `endpoint-load-metrics` header.  The header has three forms, told apart
 * by their first word: `BIN` (a base64 protobuf), `JSON` and `TEXT`; vLLM
 * sends the last, and so does ai-sim:
 *
 *     TEXT named_metrics.num_requests_running=3,
 *          named_metrics.num_requests_waiting=1,
 *          named_metrics.kv_cache_usage_perc=0.25
 *
 * (one line): comma-separated `key=value` pairs, values decimal numbers.
 * The balancer needs three of them; any other key (cpu_utilization,
 * rps_fractional, other named metrics) is passed over, and so are the
 * other two forms.
 *
 * The header comes from a replica, not from the gateway's operator, and a
 * replica can be wrong, broken or hostile: the value is read with the care
 * of any input.  A pair that is not `key=number` is skipped, not the whole
 * report; a number may have a sign, a fraction and an exponent (`1e3`,
 * `.5`); negative figures read as 0, counts saturate at
 * AGW_ORCA_MAX_REQUESTS (a replica saying it queues 2^64 requests must not
 * make the balancer's sums overflow) and the cache usage at 1; `nan`,
 * `inf` and hexadecimal are not numbers.  No floating point: a value is
 * carried as an integer of millionths, so the result is exact and the
 * same on every machine.
 */


#include <string.h>

#include "agw_orca.h"


/* millionths; above every figure kept (AGW_ORCA_MAX_REQUESTS units) */
#define AGW_ORCA_SATURATE   ((uint64_t) 10000000000000ULL)

#define AGW_ORCA_MAX_DIGITS  18          /* significant digits carried */


static const char  agw_orca_running[] = "named_metrics.num_requests_running";
static const char  agw_orca_waiting[] = "named_metrics.num_requests_waiting";
static const char  agw_orca_kv[] = "named_metrics.kv_cache_usage_perc";


static int
agw_orca_space(uint8_t c)
{
    return c == ' ' || c == '\t';
}


static int
agw_orca_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}


/*
 * A decimal number filling [p, end), as millionths saturating at
 * AGW_ORCA_SATURATE, negative as 0.  Returns 0 if it is not one.
 */
static int
agw_orca_number(const uint8_t *p, const uint8_t *end, uint64_t *micro)
{
    int        negative, exp_negative;
    int64_t    exp10;
    uint64_t   mant, e;
    unsigned   digits, significant;

    negative = 0;

    if (p < end && (*p == '+' || *p == '-')) {
        negative = (*p == '-');
        p++;
    }

    mant = 0;
    exp10 = 0;
    digits = 0;
    significant = 0;

    /* the integer part: digits past the 18th only scale the value */

    for ( /* void */ ; p < end && agw_orca_digit(*p); p++) {
        digits++;

        if (significant < AGW_ORCA_MAX_DIGITS) {
            mant = mant * 10 + (uint64_t) (*p - '0');
            significant += (mant != 0);

        } else {
            exp10++;
        }
    }

    if (p < end && *p == '.') {
        p++;

        /* the fraction: digits past the 18th are below any figure kept */

        for ( /* void */ ; p < end && agw_orca_digit(*p); p++) {
            digits++;

            if (significant < AGW_ORCA_MAX_DIGITS) {
                mant = mant * 10 + (uint64_t) (*p - '0');
                significant += (mant != 0);
                exp10--;
            }
        }
    }

    if (digits == 0) {
        return 0;
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        exp_negative = 0;

        if (p < end && (*p == '+' || *p == '-')) {
            exp_negative = (*p == '-');
            p++;
        }

        if (p == end || !agw_orca_digit(*p)) {
            return 0;
        }

        for (e = 0; p < end && agw_orca_digit(*p); p++) {
            if (e < 100000) {
                e = e * 10 + (uint64_t) (*p - '0');
            }
        }

        exp10 += exp_negative ? -(int64_t) e : (int64_t) e;
    }

    if (p != end) {
        return 0;
    }

    if (negative || mant == 0) {
        *micro = 0;
        return 1;
    }

    /* mant * 10^(exp10 + 6), saturating */

    exp10 += 6;

    for ( /* void */ ; exp10 > 0; exp10--) {
        if (mant > AGW_ORCA_SATURATE / 10) {
            mant = AGW_ORCA_SATURATE;
            break;
        }

        mant *= 10;
    }

    for ( /* void */ ; exp10 < 0 && mant != 0; exp10++) {
        mant /= 10;
    }

    *micro = mant < AGW_ORCA_SATURATE ? mant : AGW_ORCA_SATURATE;

    return 1;
}


static int
agw_orca_key_is(const uint8_t *key, size_t len, const char *name,
    size_t name_len)
{
    return len == name_len && memcmp(key, name, len) == 0;
}


static uint32_t
agw_orca_count(uint64_t micro)
{
    uint64_t  n;

    n = micro / AGW_ORCA_PPM;

    return (uint32_t) (n < AGW_ORCA_MAX_REQUESTS ? n : AGW_ORCA_MAX_REQUESTS);
}


int
agw_orca_parse(const uint8_t *in, size_t len, agw_orca_report_t *rep)
{
    uint64_t        micro;
    const uint8_t  *p, *end, *key, *key_end, *val, *val_end;

    memset(rep, 0, sizeof(agw_orca_report_t));

    if (in == NULL || len > AGW_ORCA_MAX_LEN) {
        return 0;
    }

    p = in;
    end = in + len;

    while (p < end && agw_orca_space(*p)) {
        p++;
    }

    /* the form's word, then at least one space */

    if (end - p < 5
        || (p[0] | 0x20) != 't' || (p[1] | 0x20) != 'e'
        || (p[2] | 0x20) != 'x' || (p[3] | 0x20) != 't'
        || !agw_orca_space(p[4]))
    {
        return 0;
    }

    p += 5;

    while (p < end) {

        while (p < end && (agw_orca_space(*p) || *p == ',')) {
            p++;
        }

        key = p;

        while (p < end && *p != '=' && *p != ',') {
            p++;
        }

        if (p == end || *p == ',') {
            continue;                    /* no '=': not a pair */
        }

        key_end = p++;

        while (key_end > key && agw_orca_space(key_end[-1])) {
            key_end--;
        }

        while (p < end && agw_orca_space(*p)) {
            p++;
        }

        val = p;

        while (p < end && *p != ',') {
            p++;
        }

        val_end = p;

        while (val_end > val && agw_orca_space(val_end[-1])) {
            val_end--;
        }

        if (!agw_orca_number(val, val_end, &micro)) {
            continue;
        }

        if (agw_orca_key_is(key, key_end - key, agw_orca_running,
                            sizeof(agw_orca_running) - 1))
        {
            rep->running = agw_orca_count(micro);
            rep->has_running = 1;

        } else if (agw_orca_key_is(key, key_end - key, agw_orca_waiting,
                                   sizeof(agw_orca_waiting) - 1))
        {
            rep->waiting = agw_orca_count(micro);
            rep->has_waiting = 1;

        } else if (agw_orca_key_is(key, key_end - key, agw_orca_kv,
                                   sizeof(agw_orca_kv) - 1))
        {
            rep->kv_ppm = (uint32_t) (micro < AGW_ORCA_PPM ? micro
                                                            : AGW_ORCA_PPM);
            rep->has_kv = 1;
        }
    }

    if (!rep->has_running && !rep->has_waiting && !rep->has_kv) {
        return 0;
    }

    return 1;
}
