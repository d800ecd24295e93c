
/*
 * Money in integers.
 *
 * A budget in dollars is a token bucket whose tokens are micro-dollars
 * (lib/agw_bucket.c, unchanged): admission reserves what a request may
 * cost, settlement replaces it with what its answer did cost.  No floating
 * point touches a figure: prices and budgets are written in decimal USD
 * and parsed exactly into integers, and costs are computed in integers,
 * rounded once, up.
 *
 * Prices are given in USD per million tokens, as providers list them, with
 * up to six decimals: 0.15 USD per 1M tokens is 0.15 micro-dollars a
 * token, 150,000 pico-dollars (10^-12 USD).  Parsed as micro-dollars, a
 * price per 1M tokens IS pico-dollars per token, with no conversion and
 * no rounding: 0.000001 USD per 1M tokens is one pico-dollar a token, the
 * finest price this can hold, far below any listed one.
 *
 * A cost is tokens x pico-dollars per token, summed over input, cached
 * input and output, then divided by 10^6 into micro-dollars, rounding up,
 * so that a request of a few tokens of a cheap model still costs one
 * micro-dollar rather than nothing.  The products need more than 64 bits
 * at the edges: tokens saturate at AGW_TOKENS_MAX (2^40, about 10^12) and
 * a price at AGW_PRICE_MAX_PICO (a million dollars per 1M tokens, 10^12
 * pico-dollars a token), so one product is below 2^80 and the sum of three
 * below 2^82: they are formed in unsigned 128-bit integers (GCC and clang
 * on 64-bit targets), where they cannot wrap.  The result saturates at
 * AGW_PRICE_MAX_MICRO (2^53 micro-dollars, nine billion dollars): above
 * any budget, so a cost that large is one that never fits, never one that
 * wrapped around to fit.
 */


#include <string.h>

#include "agw_price.h"


typedef unsigned __int128  agw_u128_t;


int
agw_price_parse(const uint8_t *s, size_t len, uint64_t max, uint64_t *micro)
{
    size_t          i, frac;
    uint64_t        whole, part;
    const uint8_t  *end;

    end = s + len;
    whole = 0;

    for (i = 0; s < end && *s >= '0' && *s <= '9'; s++, i++) {
        if (whole > (UINT64_MAX - 9) / 10) {
            return -1;
        }

        whole = whole * 10 + (uint64_t) (*s - '0');
    }

    if (i == 0) {
        return -1;                       /* "", ".5", "-1", "+1" */
    }

    part = 0;
    frac = 0;

    if (s < end && *s == '.') {
        for (s++; s < end && *s >= '0' && *s <= '9'; s++) {
            if (++frac > AGW_PRICE_DECIMALS) {
                return -1;               /* finer than a micro-dollar */
            }

            part = part * 10 + (uint64_t) (*s - '0');
        }

        if (frac == 0) {
            return -1;                   /* "1." */
        }
    }

    if (s != end) {
        return -1;
    }

    for ( /* void */ ; frac < AGW_PRICE_DECIMALS; frac++) {
        part *= 10;
    }

    if (part > max || whole > (max - part) / 1000000) {
        return -1;
    }

    *micro = whole * 1000000 + part;

    return 0;
}


size_t
agw_price_format(uint8_t *buf, uint64_t micro)
{
    size_t    n, i;
    uint64_t  whole, part;
    uint8_t   tmp[20];

    whole = micro / 1000000;
    part = micro % 1000000;
    n = 0;

    i = sizeof(tmp);

    do {
        tmp[--i] = (uint8_t) ('0' + whole % 10);
        whole /= 10;
    } while (whole);

    memcpy(buf, tmp + i, sizeof(tmp) - i);
    n = sizeof(tmp) - i;

    buf[n++] = '.';

    for (i = 6; i > 0; i--) {
        buf[n + i - 1] = (uint8_t) ('0' + part % 10);
        part /= 10;
    }

    return n + 6;
}


static uint64_t
agw_price_micro(agw_u128_t pico)
{
    agw_u128_t  micro;

    micro = pico / 1000000 + (pico % 1000000 != 0);

    return (micro > AGW_PRICE_MAX_MICRO) ? AGW_PRICE_MAX_MICRO
                                         : (uint64_t) micro;
}


static uint64_t
agw_price_tokens(uint64_t n)
{
    return (n > AGW_TOKENS_MAX) ? AGW_TOKENS_MAX : n;
}


static uint64_t
agw_price_pico(uint64_t p)
{
    return (p > AGW_PRICE_MAX_PICO) ? AGW_PRICE_MAX_PICO : p;
}


uint64_t
agw_price_cost(const agw_price_t *p, uint64_t input, uint64_t cached,
    uint64_t output)
{
    agw_u128_t  pico;

    /* each term below 2^40 x 2^40: the sum cannot wrap 128 bits */

    pico = (agw_u128_t) agw_price_tokens(input) * agw_price_pico(p->input)
           + (agw_u128_t) agw_price_tokens(cached)
             * agw_price_pico(p->cached_input)
           + (agw_u128_t) agw_price_tokens(output) * agw_price_pico(p->output);

    return agw_price_micro(pico);
}


int
agw_price_usage(const agw_price_t *p, const agw_usage_t *u, uint64_t *micro)
{
    uint64_t    input, cached, higher;
    agw_u128_t  pico;

    if (u->has_input || u->has_output) {
        input = u->has_input ? agw_price_tokens(u->input) : 0;
        cached = u->has_cached ? agw_price_tokens(u->cached) : 0;

        /* OpenAI's cached tokens are part of the prompt's */
        if (cached > input) {
            cached = input;
        }

        pico = (agw_u128_t) (input - cached) * agw_price_pico(p->input)
               + (agw_u128_t) (cached + agw_price_tokens(u->cache_read))
                 * agw_price_pico(p->cached_input)
               + (agw_u128_t) agw_price_tokens(u->cache_write)
                 * agw_price_pico(p->input)
               + (agw_u128_t) (u->has_output ? agw_price_tokens(u->output)
                                             : 0)
                 * agw_price_pico(p->output);

        *micro = agw_price_micro(pico);
        return 0;
    }

    if (u->has_total) {
        higher = (p->input > p->output) ? p->input : p->output;
        *micro = agw_price_cost(&(agw_price_t) { higher, 0, 0 },
                                u->total, 0, 0);
        return 0;
    }

    *micro = 0;

    return -1;
}


void
agw_price_max(agw_price_t *a, const agw_price_t *b)
{
    if (b->input > a->input) {
        a->input = b->input;
    }

    if (b->output > a->output) {
        a->output = b->output;
    }

    if (b->cached_input > a->cached_input) {
        a->cached_input = b->cached_input;
    }
}
