
/*
 * The metrics' pure side: the conventions' boundaries, the bucket of a
 * value (boundaries are inclusive upper bounds, as Prometheus's le),
 * quantiles as Prometheus's histogram_quantile() estimates them, the
 * operation a path names, and label values from clients.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agw_metrics.h"


#define nitems(a)  (sizeof(a) / sizeof((a)[0]))


static void
test_metrics_boundaries_are_the_conventions(void **state)
{
    size_t  i;

    static const struct {
        const agw_metrics_bounds_t  *b;
        size_t                       n;
        double                       first, last;   /* exposed unit */
        uint64_t                     scale;
    } rows[] = {
        { &agw_metrics_ttft, 16, 0.001, 10.0, 1000000 },
        { &agw_metrics_tpot, 13, 0.01, 2.5, 1000000 },
        { &agw_metrics_duration, 14, 0.01, 81.92, 1000000 },
        { &agw_metrics_tokens, 14, 1, 67108864, 1 },
    };

    for (i = 0; i < nitems(rows); i++) {
        const agw_metrics_bounds_t  *b = rows[i].b;
        size_t                       k;

        assert_int_equal(b->n, rows[i].n);
        assert_int_equal(b->scale, rows[i].scale);
        assert_true(b->bound[0] == (uint64_t) (rows[i].first * b->scale
                                               + 0.5));
        assert_true(b->bound[b->n - 1]
                    == (uint64_t) (rows[i].last * b->scale + 0.5));

        /* ascending, and each le text is its boundary */
        for (k = 0; k < b->n; k++) {
            double  le = strtod(b->le[k], NULL);

            assert_true((uint64_t) (le * b->scale + 0.5) == b->bound[k]);
            if (k > 0) {
                assert_true(b->bound[k - 1] < b->bound[k]);
            }
        }
    }
}


static void
test_metrics_bucket_is_inclusive_above(void **state)
{
    const agw_metrics_bounds_t  *b = &agw_metrics_ttft;

    assert_int_equal(agw_metrics_bucket(b, 0), 0);
    assert_int_equal(agw_metrics_bucket(b, 1000), 0);       /* le 0.001 */
    assert_int_equal(agw_metrics_bucket(b, 1001), 1);
    assert_int_equal(agw_metrics_bucket(b, 300000), 9);     /* 0.3 s:
                                                               le 0.5 */
    assert_int_equal(agw_metrics_bucket(b, 10000000), 15);
    assert_int_equal(agw_metrics_bucket(b, 10000001), 16);  /* +Inf */
    assert_int_equal(agw_metrics_bucket(b, UINT64_MAX), 16);

    assert_int_equal(agw_metrics_bucket(&agw_metrics_tokens, 5), 2);
    assert_int_equal(agw_metrics_bucket(&agw_metrics_tokens, 64), 3);
}


static void
test_metrics_quantile_as_histogram_quantile(void **state)
{
    uint64_t  count[17];

    /* nothing counted: no estimate */
    memset(count, 0, sizeof(count));
    assert_true(agw_metrics_quantile(&agw_metrics_ttft, count, 0.5) < 0);

    /*
     * 10 in (0.25, 0.5]: p50 is the middle of that bucket, 375 ms; p90
     * 0.25 + 0.25 * 9/10 = 475 ms.  Prometheus: histogram_quantile(0.5,
     * ...) over le="0.25" 0, le="0.5" 10 gives 0.375.
     */
    count[9] = 10;
    assert_true(agw_metrics_quantile(&agw_metrics_ttft, count, 0.5)
                == 375000.0);
    assert_true(agw_metrics_quantile(&agw_metrics_ttft, count, 0.9)
                == 475000.0);

    /* the first bucket starts at 0 */
    memset(count, 0, sizeof(count));
    count[0] = 4;
    assert_true(agw_metrics_quantile(&agw_metrics_ttft, count, 0.5)
                == 500.0);

    /*
     * 90 in le=0.1, 10 in le=1.0 (0.75, 1.0]: p90 is the rank 90, reached
     * by the first bucket holding it: its top, 0.1 s; p99 is rank 99, 9th
     * of 10 in (0.75, 1.0]: 0.75 + 0.25 * 0.9 = 0.975 s
     */
    memset(count, 0, sizeof(count));
    count[7] = 90;
    count[11] = 10;
    assert_true(agw_metrics_quantile(&agw_metrics_ttft, count, 0.9)
                == 100000.0);
    assert_true(agw_metrics_quantile(&agw_metrics_ttft, count, 0.99)
                > 974999.0);
    assert_true(agw_metrics_quantile(&agw_metrics_ttft, count, 0.99)
                < 975001.0);

    /* a rank above the last boundary: the last boundary, 10 s */
    memset(count, 0, sizeof(count));
    count[16] = 3;
    assert_true(agw_metrics_quantile(&agw_metrics_ttft, count, 0.5)
                == 10000000.0);
}


static void
test_metrics_operation_of_a_path(void **state)
{
    size_t  i;

    static const struct {
        const char  *path;
        const char  *op;
    } rows[] = {
        { "/v1/chat/completions", "chat" },
        { "/v1/chat/completions/", "chat" },
        { "/r/v1/chat/completions", "chat" },
        { "/v1/completions", "text_completion" },
        { "/openai/deployments/x/completions", "text_completion" },
        { "/v1/embeddings", "embeddings" },
        { "/v1/responses", "chat" },
        { "/v1/messages", "chat" },
        { "/v1beta/models/gemini-pro:generateContent", "generate_content" },
        { "/v1beta/models/gemini-pro:streamGenerateContent",
          "generate_content" },
        { "/infer", "other" },
        { "/v1/models", "other" },
        { "/", "other" },
        { "", "other" },
        { "/v1/chat/completionsX", "other" },
        { "/v1/Chat/Completions", "other" },
    };

    for (i = 0; i < nitems(rows); i++) {
        const char  *got;

        got = agw_metrics_operation_name(
            agw_metrics_operation((const uint8_t *) rows[i].path,
                                  strlen(rows[i].path)));

        if (strcmp(got, rows[i].op) != 0) {
            print_error("%s: expected %s, got %s\n", rows[i].path,
                        rows[i].op, got);
            fail();
        }
    }

    assert_string_equal(agw_metrics_operation_name(AGW_METRICS_OPS + 7),
                        "other");
}


static void
test_metrics_label_values_from_clients(void **state)
{
    uint8_t  long_name[AGW_METRICS_LABEL_MAX + 1];

    static const struct {
        const char  *value;
        int          ok;
    } rows[] = {
        { "gpt-4o", 1 },
        { "meta-llama/Llama-3.1-8B-Instruct", 1 },
        { "caf\xc3\xa9 \xe2\x98\x95", 1 },          /* UTF-8 */
        { "a\"b\\c", 1 },                          /* escaped, shown */
        { "<img src=x onerror=alert(1)>", 1 },      /* text is text */
        { "line\nbreak", 0 },                      /* control characters */
        { "tab\there", 0 },
        { "del\x7f", 0 },
        { "\xff\xfe", 0 },                         /* not UTF-8 */
        { "\xc0\xaf", 0 },                         /* overlong */
        { "\xed\xa0\x80", 0 },                     /* a surrogate */
        { "cut \xe2\x98", 0 },                     /* truncated */
        { "", 0 },
    };
    size_t  i;

    for (i = 0; i < nitems(rows); i++) {
        if (agw_metrics_label_ok((const uint8_t *) rows[i].value,
                                 strlen(rows[i].value)) != rows[i].ok)
        {
            print_error("\"%s\": expected %d\n", rows[i].value, rows[i].ok);
            fail();
        }
    }

    assert_false(agw_metrics_label_ok((const uint8_t *) "a\0b", 3));

    memset(long_name, 'm', sizeof(long_name));
    assert_true(agw_metrics_label_ok(long_name, AGW_METRICS_LABEL_MAX));
    assert_false(agw_metrics_label_ok(long_name, AGW_METRICS_LABEL_MAX + 1));
}


static void
test_metrics_escape(void **state)
{
    uint8_t      out[64];
    size_t       n;
    const char  *in = "a\"b\\c\"";

    n = agw_metrics_escape(NULL, (const uint8_t *) in, strlen(in));
    assert_int_equal(n, 9);
    assert_int_equal(agw_metrics_escape(out, (const uint8_t *) in,
                                        strlen(in)), 9);
    assert_memory_equal(out, "a\\\"b\\\\c\\\"", 9);

    n = agw_metrics_escape(out, (const uint8_t *) "plain", 5);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "plain", 5);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_metrics_boundaries_are_the_conventions),
        cmocka_unit_test(test_metrics_bucket_is_inclusive_above),
        cmocka_unit_test(test_metrics_quantile_as_histogram_quantile),
        cmocka_unit_test(test_metrics_operation_of_a_path),
        cmocka_unit_test(test_metrics_label_values_from_clients),
        cmocka_unit_test(test_metrics_escape),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
