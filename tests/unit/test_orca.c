
/*
 * ORCA load reports (lib/agw_orca.c): vLLM's and ai-sim's header, other
 * keys and forms passed over, and hostile values clamped.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "agw_orca.h"


#define R  "named_metrics.num_requests_running="
#define W  "named_metrics.num_requests_waiting="
#define K  "named_metrics.kv_cache_usage_perc="

/* has: 1 running, 2 waiting, 4 kv */
typedef struct {
    const char  *input;
    int          rc;
    unsigned     has;
    uint32_t     running;
    uint32_t     waiting;
    uint32_t     kv_ppm;
} agw_orca_test_t;


static const agw_orca_test_t  vectors[] = {
    /* ai-sim's and vLLM's own */
    { "TEXT " R "3, " W "1, " K "0.25", 1, 7, 3, 1, 250000 },
    { "TEXT " R "0, " W "0, " K "0.0", 1, 7, 0, 0, 0 },
    { "TEXT " K "1.0, " R "12, " W "40", 1, 7, 12, 40, 1000000 },

    /* spacing, the word's case, other keys, one figure alone */
    { "  text   " W "5 ,cpu_utilization=0.3 ", 1, 2, 0, 5, 0 },
    { "TEXT\t" R "2", 1, 1, 2, 0, 0 },
    { "TEXT cpu_utilization=0.3, mem_utilization=0.8", 0, 0, 0, 0, 0 },
    { "TEXT named_metrics.num_requests_waiting = 7", 1, 2, 0, 7, 0 },
    { "TEXT " W " = 7", 0, 0, 0, 0, 0 },

    /* the other forms, and no form */
    { "JSON {\"named_metrics\":{\"num_requests_waiting\":3}}", 0, 0, 0, 0, 0 },
    { "BIN Cg0KBXF1ZXVlEgQIAxAB", 0, 0, 0, 0, 0 },
    { R "3", 0, 0, 0, 0, 0 },
    { "TEXT", 0, 0, 0, 0, 0 },
    { "TEXTX " R "3", 0, 0, 0, 0, 0 },
    { "", 0, 0, 0, 0, 0 },

    /* number forms */
    { "TEXT " R "3.9", 1, 1, 3, 0, 0 },
    { "TEXT " R "+4", 1, 1, 4, 0, 0 },
    { "TEXT " R "1e2", 1, 1, 100, 0, 0 },
    { "TEXT " R "2.5E+1", 1, 1, 25, 0, 0 },
    { "TEXT " K ".5", 1, 4, 0, 0, 500000 },
    { "TEXT " K "0.0000005", 1, 4, 0, 0, 0 },
    { "TEXT " K "0.123456789", 1, 4, 0, 0, 123456 },
    { "TEXT " K "5e-1", 1, 4, 0, 0, 500000 },
    { "TEXT " R "000000000000000000000000007", 1, 1, 7, 0, 0 },

    /* hostile: negative, huge, not numbers; a bad pair is skipped alone */
    { "TEXT " R "-5, " W "2", 1, 3, 0, 2, 0 },
    { "TEXT " R "18446744073709551617", 1, 1, AGW_ORCA_MAX_REQUESTS, 0, 0 },
    { "TEXT " W "1e999999999", 1, 2, 0, AGW_ORCA_MAX_REQUESTS, 0 },
    { "TEXT " W "1e-999999999", 1, 2, 0, 0, 0 },
    { "TEXT " K "75", 1, 4, 0, 0, 1000000 },
    { "TEXT " K "-0.5", 1, 4, 0, 0, 0 },
    { "TEXT " R "nan, " W "inf, " K "0x1", 0, 0, 0, 0, 0 },
    { "TEXT " R "1e, " W "., " K "3", 1, 4, 0, 0, 1000000 },
    { "TEXT " R "12abc, " W "4", 1, 2, 0, 4, 0 },
    { "TEXT " R ", " W "=, =, ,,, junk, " K "0.5", 1, 4, 0, 0, 500000 },
    { "TEXT " R "1 2, " W "3", 1, 2, 0, 3, 0 },

    /* a repeated key: the last one */
    { "TEXT " R "1, " R "9", 1, 1, 9, 0, 0 },

    /* names compare exactly */
    { "TEXT NAMED_METRICS.num_requests_running=3", 0, 0, 0, 0, 0 },
    { "TEXT named_metrics.num_requests_running_total=3", 0, 0, 0, 0, 0 },
};


static void
test_orca_vectors(void **state)
{
    int                 rc;
    size_t              i;
    unsigned            has;
    agw_orca_report_t   rep;

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        rc = agw_orca_parse((const uint8_t *) vectors[i].input,
                            strlen(vectors[i].input), &rep);

        has = rep.has_running | rep.has_waiting << 1 | rep.has_kv << 2;

        if (rc != vectors[i].rc || has != vectors[i].has
            || rep.running != vectors[i].running
            || rep.waiting != vectors[i].waiting
            || rep.kv_ppm != vectors[i].kv_ppm)
        {
            print_error("\"%s\": expected rc %d has %u running %u waiting %u"
                        " kv %u, got rc %d has %u running %u waiting %u"
                        " kv %u\n", vectors[i].input, vectors[i].rc,
                        vectors[i].has, vectors[i].running,
                        vectors[i].waiting, vectors[i].kv_ppm, rc, has,
                        rep.running, rep.waiting, rep.kv_ppm);
            fail();
        }
    }
}


static void
test_orca_reads_only_its_length(void **state)
{
    agw_orca_report_t  rep;
    const char        *s = "TEXT " R "3, " W "17";

    /* the value ends where nginx says, not at a NUL: "W=1" of "W=17" */
    assert_int_equal(agw_orca_parse((const uint8_t *) s, strlen(s) - 1,
                                    &rep), 1);
    assert_int_equal(rep.waiting, 1);
    assert_int_equal(rep.running, 3);
}


static void
test_orca_refuses_overlong_values(void **state)
{
    static uint8_t     big[AGW_ORCA_MAX_LEN + 1];
    agw_orca_report_t  rep;
    const char        *s = "TEXT " R "3";

    memset(big, ' ', sizeof(big));
    memcpy(big, s, strlen(s));

    assert_int_equal(agw_orca_parse(big, AGW_ORCA_MAX_LEN, &rep), 1);
    assert_int_equal(agw_orca_parse(big, sizeof(big), &rep), 0);
    assert_int_equal(rep.has_running, 0);
    assert_int_equal(agw_orca_parse(NULL, 0, &rep), 0);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_orca_vectors),
        cmocka_unit_test(test_orca_reads_only_its_length),
        cmocka_unit_test(test_orca_refuses_overlong_values),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
