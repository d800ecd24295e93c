
/*
 * Money: prices per model, what a request may cost and what it did cost,
 * in integers.  See agw_price.c.
 */


#ifndef _AGW_PRICE_H_INCLUDED_
#define _AGW_PRICE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "agw_tokens.h"


/* decimal places a USD figure may have: one micro-dollar */
#define AGW_PRICE_DECIMALS      6

/*
 * the highest price, USD per 1M tokens: a million dollars (one dollar a
 * token), as pico-dollars per token
 */
#define AGW_PRICE_MAX_PICO      ((uint64_t) 1000000 * 1000000)

/* every cost saturates here, in micro-dollars: above any bucket */
#define AGW_PRICE_MAX_MICRO     ((uint64_t) 1 << 53)

/* the longest agw_price_format() output, without a NUL */
#define AGW_PRICE_LEN           32


/* a model's prices, in pico-dollars (10^-12 USD) per token */
typedef struct {
    uint64_t  input;
    uint64_t  output;
    uint64_t  cached_input;
} agw_price_t;


/*
 * A decimal USD figure ("0.15", "2", "1000000.000001") in micro-dollars:
 * digits, optionally a point and 1 to AGW_PRICE_DECIMALS more digits; no
 * sign, exponent or spaces.  0 and *micro if it is one and at most max,
 * -1 otherwise.  A price in USD per 1M tokens read this way is pico-dollars
 * per token.
 */
int agw_price_parse(const uint8_t *s, size_t len, uint64_t max,
    uint64_t *micro);

/* micro-dollars as "12.345678" (6 decimals, no NUL); returns the length */
size_t agw_price_format(uint8_t *buf, uint64_t micro);

/*
 * what tokens cost, in micro-dollars rounded up (a fraction of a
 * micro-dollar is a micro-dollar: the budget never loses), saturating at
 * AGW_PRICE_MAX_MICRO: input tokens at the input price, cached ones at the
 * cached price, output tokens at the output price
 */
uint64_t agw_price_cost(const agw_price_t *p, uint64_t input,
    uint64_t cached, uint64_t output);

/*
 * what an answer's usage costs: the prompt's tokens (input_tokens or
 * prompt_tokens) less those its provider read from its prompt cache
 * (prompt_tokens_details.cached_tokens, input_tokens_details.cached_tokens)
 * at the input price, those cached ones and Anthropic's
 * cache_read_input_tokens at the cached price, Anthropic's
 * cache_creation_input_tokens at the input price, the output at the
 * output price; a usage with only a total, at the higher of the input and
 * output prices.  0 and *micro, or -1 if the usage says nothing.
 */
int agw_price_usage(const agw_price_t *p, const agw_usage_t *u,
    uint64_t *micro);

/* the highest of each price of a and b, into a */
void agw_price_max(agw_price_t *a, const agw_price_t *b);


#endif /* _AGW_PRICE_H_INCLUDED_ */
