
/*
 * Freshness of upstream answers (lib/agw_fresh.c): Cache-Control over
 * several lines, s-maxage before max-age, Expires against Date or now,
 * X-Accel-Expires as nginx reads it, and the Connection token list.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "agw_fresh.h"


#define NOW  1700000000


static int64_t
ttl(const char *cc1, const char *cc2, const char *accel, int64_t expires,
    int64_t date, const char **why)
{
    size_t             n;
    agw_fresh_line_t   lines[2];
    agw_fresh_facts_t  f;

    n = 0;

    if (cc1) {
        lines[n].data = (const uint8_t *) cc1;
        lines[n++].len = strlen(cc1);
    }

    if (cc2) {
        lines[n].data = (const uint8_t *) cc2;
        lines[n++].len = strlen(cc2);
    }

    memset(&f, 0, sizeof(f));
    f.cache_control = lines;
    f.ncache_control = n;
    f.accel_expires = (const uint8_t *) accel;
    f.accel_expires_len = accel ? strlen(accel) : 0;
    f.expires = expires;
    f.date = date;
    f.now = NOW;
    f.max_ttl = 300;

    if (why) {
        *why = NULL;
    }

    return agw_fresh_ttl(&f, why);
}


#define A  AGW_FRESH_ABSENT


static void
test_no_freshness_information_keeps_the_configured_ttl(void **state)
{
    assert_int_equal(ttl(NULL, NULL, NULL, A, A, NULL), 300);
    assert_int_equal(ttl("public", NULL, NULL, A, A, NULL), 300);
    assert_int_equal(ttl("", NULL, NULL, A, A, NULL), 300);
}


static void
test_max_age_and_s_maxage(void **state)
{
    const char  *why;

    assert_int_equal(ttl("max-age=60", NULL, NULL, A, A, NULL), 60);
    assert_int_equal(ttl("public, max-age=6000", NULL, NULL, A, A, NULL),
                     300);
    assert_int_equal(ttl("max-age=60, s-maxage=10", NULL, NULL, A, A, &why),
                     10);
    assert_string_equal(why, "s-maxage");
    assert_int_equal(ttl("s-maxage=100, max-age=10", NULL, NULL, A, A, NULL),
                     100);
    assert_int_equal(ttl("MAX-AGE=7", NULL, NULL, A, A, NULL), 7);
    assert_int_equal(ttl("max-age=\"7\"", NULL, NULL, A, A, NULL), 7);
    assert_int_equal(ttl("max-age = 7", NULL, NULL, A, A, NULL), 7);
    /* the most restrictive of two */
    assert_int_equal(ttl("max-age=70", "max-age=20", NULL, A, A, NULL), 20);
    /* huge numbers do not wrap */
    assert_int_equal(ttl("max-age=99999999999999999999999", NULL, NULL, A, A,
                         NULL), 300);
    /* max-age beats Expires */
    assert_int_equal(ttl("max-age=30", NULL, NULL, NOW + 100, A, NULL), 30);
}


static void
test_zero_lifetime_is_not_stored(void **state)
{
    const char  *why;

    assert_int_equal(ttl("max-age=0", NULL, NULL, A, A, &why), 0);
    assert_string_equal(why, "max-age");
    assert_int_equal(ttl("s-maxage=0, max-age=60", NULL, NULL, A, A, NULL),
                     0);
    /* an argument that is no number is stale */
    assert_int_equal(ttl("max-age=abc", NULL, NULL, A, A, NULL), 0);
    assert_int_equal(ttl("max-age", NULL, NULL, A, A, NULL), 0);
    assert_int_equal(ttl("max-age=-5", NULL, NULL, A, A, NULL), 0);
}


static void
test_no_store_no_cache_private_on_any_line(void **state)
{
    const char  *why;

    assert_int_equal(ttl("public", "no-cache", NULL, A, A, &why), 0);
    assert_string_equal(why, "no-cache");
    assert_int_equal(ttl("max-age=60", "No-Store", NULL, A, A, &why), 0);
    assert_string_equal(why, "no-store");
    assert_int_equal(ttl("private=\"x\", max-age=60", NULL, NULL, A, A, &why),
                     0);
    assert_string_equal(why, "private");
    assert_int_equal(ttl("no-cache=\"Set-Cookie\"", NULL, NULL, A, A, NULL),
                     0);
    /* X-Accel-Expires never overrides them */
    assert_int_equal(ttl("private", NULL, "60", A, A, NULL), 0);
}


static void
test_quoted_strings_hide_directives(void **state)
{
    assert_int_equal(ttl("x=\"no-store\"", NULL, NULL, A, A, NULL), 300);
    assert_int_equal(ttl("x=\"a, max-age=0\", max-age=40", NULL, NULL, A, A,
                         NULL), 40);
    assert_int_equal(ttl("x=\"\\\"no-cache\", max-age=40", NULL, NULL, A, A,
                         NULL), 40);
    /* malformed elements are skipped, not read as directives */
    assert_int_equal(ttl("foo bar, max-age=40", NULL, NULL, A, A, NULL), 40);
    assert_int_equal(ttl("=, max-age=40", NULL, NULL, A, A, NULL), 40);
    assert_int_equal(ttl("x=\"unterminated, no-store", NULL, NULL, A, A,
                         NULL), 300);
}


static void
test_expires(void **state)
{
    const char  *why;

    assert_int_equal(ttl(NULL, NULL, NULL, NOW + 100, A, &why), 100);
    assert_int_equal(ttl(NULL, NULL, NULL, NOW + 1000, A, NULL), 300);
    /* against the answer's own Date, not our clock */
    assert_int_equal(ttl(NULL, NULL, NULL, NOW + 100, NOW + 80, NULL), 20);
    assert_int_equal(ttl(NULL, NULL, NULL, NOW, A, &why), 0);
    assert_string_equal(why, "Expires");
    assert_int_equal(ttl(NULL, NULL, NULL, NOW - 5, A, NULL), 0);
    /* "Expires: 0" and other garbage: in the past */
    assert_int_equal(ttl(NULL, NULL, NULL, AGW_FRESH_INVALID, A, NULL), 0);
    /* an invalid Date: now */
    assert_int_equal(ttl(NULL, NULL, NULL, NOW + 50, AGW_FRESH_INVALID, NULL),
                     50);
}


static void
test_x_accel_expires(void **state)
{
    const char  *why;

    assert_int_equal(ttl(NULL, NULL, "30", A, A, &why), 30);
    assert_int_equal(ttl(NULL, NULL, "3000", A, A, NULL), 300);
    /* overrides max-age and Expires */
    assert_int_equal(ttl("max-age=0", NULL, "30", A, A, NULL), 30);
    assert_int_equal(ttl("max-age=100", NULL, "30", A, A, NULL), 30);
    assert_int_equal(ttl(NULL, NULL, "30", NOW - 1, A, NULL), 30);
    /* 0: not cacheable */
    assert_int_equal(ttl("max-age=100", NULL, "0", A, A, &why), 0);
    assert_string_equal(why, "X-Accel-Expires");
    /* @ absolute */
    assert_int_equal(ttl(NULL, NULL, "@1700000040", A, A, NULL), 40);
    assert_int_equal(ttl(NULL, NULL, "@1699999999", A, A, NULL), 0);
    /* not a number: ignored, as nginx does */
    assert_int_equal(ttl("max-age=20", NULL, "soon", A, A, NULL), 20);
    assert_int_equal(ttl("max-age=20", NULL, "@", A, A, NULL), 20);
    assert_int_equal(ttl("max-age=20", NULL, "", A, A, NULL), 20);
}


#define has(list, name)                                                      \
    agw_token_list_has((const uint8_t *) (list), strlen(list),               \
                       (const uint8_t *) (name), strlen(name))


static void
test_connection_token_list(void **state)
{
    assert_true(has("close, X-Foo", "x-foo"));
    assert_true(has("X-Foo", "X-FOO"));
    assert_true(has(" keep-alive ,x-bar\t", "X-Bar"));
    assert_false(has("close, X-Foobar", "X-Foo"));
    assert_false(has("close", "X-Foo"));
    assert_false(has("", "X-Foo"));
    assert_false(has(",,", ""));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_no_freshness_information_keeps_the_configured_ttl),
        cmocka_unit_test(test_max_age_and_s_maxage),
        cmocka_unit_test(test_zero_lifetime_is_not_stored),
        cmocka_unit_test(test_no_store_no_cache_private_on_any_line),
        cmocka_unit_test(test_quoted_strings_hide_directives),
        cmocka_unit_test(test_expires),
        cmocka_unit_test(test_x_accel_expires),
        cmocka_unit_test(test_connection_token_list),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
