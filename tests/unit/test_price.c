
/*
 * Money in integers (lib/agw_price.c): decimal USD parsed exactly, costs
 * rounded up once, no overflow and no wrap at the edges (prices of 0 and
 * of a million dollars, a million tokens and AGW_TOKENS_MAX of them), and
 * the usage of each API priced with its cached tokens.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "agw_price.h"


#define nitems(a)  (sizeof(a) / sizeof((a)[0]))

#define BAD        UINT64_MAX
#define MAXM       AGW_PRICE_MAX_MICRO
#define MAXT       AGW_TOKENS_MAX


static void
test_price_parse(void **state)
{
    int       rc;
    size_t    i;
    uint64_t  got;

    static const struct {
        const char  *text;
        uint64_t     max;
        uint64_t     micro;              /* BAD: refused */
    } rows[] = {
        { "0", MAXM, 0 },
        { "0.15", MAXM, 150000 },
        { "2.5", MAXM, 2500000 },
        { "10", MAXM, 10000000 },
        { "0.000001", MAXM, 1 },
        { "1000000", AGW_PRICE_MAX_PICO, 1000000000000ULL },
        { "1000000.000001", AGW_PRICE_MAX_PICO, BAD },
        { "999999.999999", AGW_PRICE_MAX_PICO, 999999999999ULL },
        { "007.50", MAXM, 7500000 },
        /* finer than a micro-dollar */
        { "0.0000001", MAXM, BAD },
        /* not a plain decimal */
        { "", MAXM, BAD },
        { ".5", MAXM, BAD },
        { "5.", MAXM, BAD },
        { "-1", MAXM, BAD },
        { "+1", MAXM, BAD },
        { "1e3", MAXM, BAD },
        { "1,5", MAXM, BAD },
        { " 1", MAXM, BAD },
        { "1 ", MAXM, BAD },
        { "0x10", MAXM, BAD },
        { "1.2.3", MAXM, BAD },
        /* far beyond any bound, never wrapped */
        { "18446744073709551616", UINT64_MAX, BAD },
        { "18446744073709.551614", UINT64_MAX, UINT64_MAX - 1 },
        { "18446744073709.551616", UINT64_MAX, BAD },
        { "99999999999999999999999999", UINT64_MAX, BAD },
    };

    for (i = 0; i < nitems(rows); i++) {
        got = BAD;
        rc = agw_price_parse((const uint8_t *) rows[i].text,
                             strlen(rows[i].text), rows[i].max, &got);

        if ((rows[i].micro == BAD) != (rc != 0)
            || (rc == 0 && got != rows[i].micro))
        {
            print_error("parse \"%s\": expected %llu, got rc %d %llu\n",
                        rows[i].text, (unsigned long long) rows[i].micro,
                        rc, (unsigned long long) got);
            fail();
        }
    }
}


static void
test_price_format(void **state)
{
    size_t   i, n;
    uint8_t  buf[AGW_PRICE_LEN + 1];

    static const struct {
        uint64_t     micro;
        const char  *text;
    } rows[] = {
        { 0, "0.000000" },
        { 1, "0.000001" },
        { 150000, "0.150000" },
        { 12345678, "12.345678" },
        { UINT64_MAX, "18446744073709.551615" },
    };

    for (i = 0; i < nitems(rows); i++) {
        memset(buf, 'x', sizeof(buf));
        n = agw_price_format(buf, rows[i].micro);

        if (n > AGW_PRICE_LEN || buf[AGW_PRICE_LEN] != 'x'
            || n != strlen(rows[i].text)
            || memcmp(buf, rows[i].text, n) != 0)
        {
            print_error("format %llu: expected %s, got %.*s\n",
                        (unsigned long long) rows[i].micro, rows[i].text,
                        (int) n, buf);
            fail();
        }
    }
}


static void
test_price_cost(void **state)
{
    size_t    i;
    uint64_t  got;

    static const struct {
        const char   *what;
        agw_price_t   price;             /* pico-dollars per token */
        uint64_t      input, cached, output;
        uint64_t      micro;
    } rows[] = {
        { "gpt-4o-mini: 0.15 in, 0.60 out, 1000 + 500 tokens",
          { 150000, 600000, 75000 }, 1000, 0, 500, 150 + 300 },
        { "a fraction of a micro-dollar is one",
          { 150000, 600000, 75000 }, 1, 0, 0, 1 },
        { "nothing used costs nothing",
          { 150000, 600000, 75000 }, 0, 0, 0, 0 },
        { "cached input at its own price",
          { 2500000, 10000000, 1250000 }, 1000, 1000, 0, 2500 + 1250 },
        { "prices of 0 are free",
          { 0, 0, 0 }, MAXT, MAXT, MAXT, 0 },
        { "a million dollars per 1M tokens: a dollar a token",
          { AGW_PRICE_MAX_PICO, AGW_PRICE_MAX_PICO, AGW_PRICE_MAX_PICO },
          1, 0, 0, 1000000 },
        { "a body of a million tokens at a million dollars: 10^12 micro",
          { AGW_PRICE_MAX_PICO, 0, 0 }, 1000000, 0, 0, 1000000000000ULL },
        { "the most tokens at the highest price: saturated, not wrapped",
          { AGW_PRICE_MAX_PICO, AGW_PRICE_MAX_PICO, AGW_PRICE_MAX_PICO },
          MAXT, MAXT, MAXT, MAXM },
        { "more than the most tokens counts as the most",
          { 1, 1, 1 }, UINT64_MAX, UINT64_MAX, UINT64_MAX,
          /* 3 x 2^40 pico, rounded up */ (3 * MAXT + 999999) / 1000000 },
        { "prices beyond the bound count as the bound",
          { UINT64_MAX, 0, 0 }, 1, 0, 0, 1000000 },
    };

    for (i = 0; i < nitems(rows); i++) {
        got = agw_price_cost(&rows[i].price, rows[i].input, rows[i].cached,
                             rows[i].output);

        if (got != rows[i].micro) {
            print_error("%s: expected %llu, got %llu\n", rows[i].what,
                        (unsigned long long) rows[i].micro,
                        (unsigned long long) got);
            fail();
        }
    }
}


static void
test_price_usage(void **state)
{
    int          rc;
    size_t       i;
    uint64_t     got;
    agw_usage_t  u;

    /* in 2.50, out 10.00, cached 1.25 USD per 1M tokens */
    static const agw_price_t  price = { 2500000, 10000000, 1250000 };

    static const struct {
        const char  *what;
        agw_usage_t  usage;
        int          rc;
        uint64_t     micro;
    } rows[] = {
        { "OpenAI: 1000 prompt tokens of which 400 cached, 100 out",
          { .input = 1000, .output = 100, .total = 1100, .cached = 400,
            .has_input = 1, .has_output = 1, .has_total = 1,
            .has_cached = 1 },
          0, 600 * 2500 / 1000 + 400 * 1250 / 1000 + 100 * 10 },
        { "cached tokens above the prompt's count as the prompt",
          { .input = 10, .cached = 400, .has_input = 1, .has_cached = 1 },
          0, 13 },
        { "Anthropic: cache reads and writes beyond the input",
          { .input = 100, .output = 50, .cache_read = 1000,
            .cache_write = 200, .has_input = 1, .has_output = 1,
            .has_cache_read = 1, .has_cache_write = 1 },
          0, 250 + 500 + 1250 + 500 },
        { "a total alone, at the higher price",
          { .total = 1000, .has_total = 1 }, 0, 10000 },
        { "nothing said", { .total = 0 }, -1, 0 },
        { "absurd figures saturate",
          { .input = UINT64_MAX, .output = UINT64_MAX,
            .cache_read = UINT64_MAX, .cache_write = UINT64_MAX,
            .cached = UINT64_MAX, .has_input = 1, .has_output = 1,
            .has_cached = 1, .has_cache_read = 1, .has_cache_write = 1 },
          /* 2^40 x (1.25 + 1.25 + 2.5 + 10) micro-dollars: 16.49... x 10^12 */
          0, (MAXT * 1250000 + MAXT * 1250000 + MAXT * 2500000
              + MAXT * 10000000) / 1000000 },
    };

    for (i = 0; i < nitems(rows); i++) {
        u = rows[i].usage;
        got = 12345;
        rc = agw_price_usage(&price, &u, &got);

        if (rc != rows[i].rc || got != rows[i].micro) {
            print_error("%s: expected %d %llu, got %d %llu\n", rows[i].what,
                        rows[i].rc, (unsigned long long) rows[i].micro, rc,
                        (unsigned long long) got);
            fail();
        }
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_price_parse),
        cmocka_unit_test(test_price_format),
        cmocka_unit_test(test_price_cost),
        cmocka_unit_test(test_price_usage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
