
/*
 * JSON canonicaliser and push tokenizer: canonical forms, equivalences and
 * inequivalences, numbers by value, ignored fields, the inputs that must
 * fall back to the raw bytes, the request scan, and the push tokenizer
 * split at every byte.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agw_json.h"
#include "agw_json_canonical.h"
#include "agw_json_push.h"
#include "agw_json_scan.h"


#define nitems(a)  (sizeof(a) / sizeof((a)[0]))
#define STR(s)     { (const uint8_t *) (s), sizeof(s) - 1 }
#define LEN        UINT64_MAX            /* the input's length */


static int
canon_ignore(const char *in, size_t len, const agw_json_str_t *ignore,
    size_t nignore, char *out, size_t out_len, agw_json_request_t *req)
{
    int             rc;
    void           *scratch;
    agw_json_buf_t  b;

    scratch = malloc(agw_json_scratch_size(len));
    assert_non_null(scratch);

    b.pos = (uint8_t *) out;
    b.end = (uint8_t *) out + out_len - 1;

    rc = agw_json_canonical((const uint8_t *) in, len, ignore, nignore,
                            scratch, agw_json_scratch_size(len),
                            agw_json_buf_write, &b, req);
    *b.pos = '\0';

    if (rc != AGW_JSON_OK) {
        assert_ptr_equal(b.pos, out);    /* nothing written on failure */
    }

    free(scratch);

    return rc;
}


static int
canon(const char *in, char *out, size_t out_len)
{
    return canon_ignore(in, strlen(in), NULL, 0, out, out_len, NULL);
}


static void
test_json_canonical_forms(void **state)
{
    int     rc;
    size_t  i;
    char    out[512];

    static const struct {
        const char  *in;
        const char  *out;
    } rows[] = {
        { "{\"b\":2,\"a\":1}", "{\"a\":1,\"b\":2}" },
        { " { \"a\" : 1 ,\n\t\"b\" : 2 } \r\n", "{\"a\":1,\"b\":2}" },
        { "{}", "{}" },
        { "[]", "[]" },
        { "[ ]", "[]" },
        { "\"x\"", "\"x\"" },
        { "true", "true" },
        { " null ", "null" },
        { "[2,1,[3,{}]]", "[2,1,[3,{}]]" },
        { "{\"b\":{\"d\":1,\"c\":2},\"a\":[{\"z\":0,\"y\":0}]}",
          "{\"a\":[{\"y\":0,\"z\":0}],\"b\":{\"c\":2,\"d\":1}}" },

        /* names sort bytewise, shorter prefix first */
        { "{\"ab\":1,\"a\":2,\"B\":3,\"\":4}",
          "{\"\":4,\"B\":3,\"a\":2,\"ab\":1}" },
        { "{\"\\u00e9\":1,\"z\":2}", "{\"z\":2,\"\xc3\xa9\":1}" },
        { "{\"\xf0\x9f\x98\x80\":1,\"\xef\xbf\xbd\":2}",
          "{\"\xef\xbf\xbd\":2,\"\xf0\x9f\x98\x80\":1}" },

        /* strings: unescaped, written back with the fewest escapes */
        { "\"\\u0041\"", "\"A\"" },
        { "\"\\/\"", "\"/\"" },
        { "\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"" },
        { "\"\\\"\\\\\\b\\f\\n\\r\\t\"", "\"\\\"\\\\\\b\\f\\n\\r\\t\"" },
        { "\"\\u0022\\u005c\\u000A\\u0001\\u001F\"",
          "\"\\\"\\\\\\n\\u0001\\u001f\"" },
        { "\"\\u0000\"", "\"\\u0000\"" },
        { "\"\x7f\"", "\"\x7f\"" },
        { "\"a\\u00e9b\"", "\"a\xc3\xa9" "b\"" },

        /* numbers by value */
        { "1", "1" },
        { "1.0", "1" },
        { "1e0", "1" },
        { "10e-1", "1" },
        { "1E2", "100" },
        { "100", "100" },
        { "1e+2", "100" },
        { "-0", "0" },
        { "-0.0e5", "0" },
        { "0.000", "0" },
        { "1.5", "15e-1" },
        { "0.5", "5e-1" },
        { "0.0010", "1e-3" },
        { "100.5", "1005e-1" },
        { "-12.50", "-125e-1" },
        { "1e20", "100000000000000000000" },
        { "1e21", "1e21" },
        { "123e19", "1230000000000000000000" },
        { "123e20", "12300000000000000000000" },
        { "123e21", "123e21" },
        { "1e400", "1e400" },
        { "1e-400", "1e-400" },
        { "1e000000000000000001", "10" },
        { "1e999999999", "1e999999999" },
        { "1e0000000000999999999", "1e999999999" },
        { "0.1e1000000000", "1e999999999" },
        { "-12.5e-999999998", "-125e-999999999" },
        { "0e99999999999", "0" },
        { "-0.000e-99999999999999999999", "0" },
        { "12345678901234567890123456789012345678901234567890",
          "12345678901234567890123456789012345678901234567890" },
        { "1.0000000000000000000001", "10000000000000000000001e-22" },
        { "{\"n\":[0,-1,2.50,3e1]}", "{\"n\":[0,-1,25e-1,30]}" },
    };

    for (i = 0; i < nitems(rows); i++) {
        rc = canon(rows[i].in, out, sizeof(out));

        if (rc != AGW_JSON_OK || strcmp(out, rows[i].out) != 0) {
            print_error("canonical failed: row %zu: %s: expected %s, "
                        "got %d %s\n", i, rows[i].in, rows[i].out, rc, out);
            fail();
        }

        /* the canonical form is a fixed point */

        {
            char  again[512];

            rc = canon(out, again, sizeof(again));

            if (rc != AGW_JSON_OK || strcmp(out, again) != 0) {
                print_error("canonical not idempotent: row %zu: %s -> %s\n",
                            i, out, again);
                fail();
            }
        }
    }
}


static void
test_json_equivalence(void **state)
{
    int     ra, rb, same;
    size_t  i;
    char    a[512], b[512];

    static const struct {
        const char  *a;
        const char  *b;
        int          same;
    } rows[] = {
        { "{\"b\":2,\"a\":1}", "{ \"a\" : 1, \"b\" : 2 }", 1 },
        { "\"\\u0041\"", "\"A\"", 1 },
        { "\"\\u00E9\"", "\"\xc3\xa9\"", 1 },
        { "{\"\\u006dodel\":1}", "{\"model\":1}", 1 },
        { "1.0", "1", 1 },
        { "1e0", "1", 1 },
        { "10e-1", "1", 1 },
        { "-0", "0", 1 },
        { "1E2", "100", 1 },
        { "0.1e1", "1", 1 },
        { "[1, 2]", "[1,2]", 1 },

        { "1", "\"1\"", 0 },
        { "{\"a\":1}", "{\"a\":\"1\"}", 0 },
        { "[1,2]", "[2,1]", 0 },
        { "1", "1.0000000000000000000001", 0 },
        { "1e400", "1e401", 0 },
        { "10000000000000001", "10000000000000000", 0 },
        { "-1", "1", 0 },
        { "0.1", "1", 0 },
        { "true", "\"true\"", 0 },
        { "null", "{}", 0 },
        { "[]", "{}", 0 },
        { "\"a\"", "\"a \"", 0 },
        { "{\"a\":{}}", "{\"a\":[]}", 0 },
        { "[[1],2]", "[1,[2]]", 0 },
    };

    for (i = 0; i < nitems(rows); i++) {
        ra = canon(rows[i].a, a, sizeof(a));
        rb = canon(rows[i].b, b, sizeof(b));
        same = (strcmp(a, b) == 0);

        if (ra != AGW_JSON_OK || rb != AGW_JSON_OK || same != rows[i].same) {
            print_error("equivalence failed: row %zu: %s (%d: %s) vs %s "
                        "(%d: %s): expected %s\n", i, rows[i].a, ra, a,
                        rows[i].b, rb, b, rows[i].same ? "same" : "differ");
            fail();
        }
    }
}


static void
test_json_fallback(void **state)
{
    int     rc;
    size_t  i;
    char    out[512], deep[200];

    static const struct {
        const char  *in;
        int          rc;
    } rows[] = {
        { "", AGW_JSON_EINVAL },
        { " ", AGW_JSON_EINVAL },
        { "{", AGW_JSON_EINVAL },
        { "{\"a\":1", AGW_JSON_EINVAL },
        { "{\"a\":1,}", AGW_JSON_EINVAL },
        { "[1,]", AGW_JSON_EINVAL },
        { "[1 2]", AGW_JSON_EINVAL },
        { "{\"a\" 1}", AGW_JSON_EINVAL },
        { "{a:1}", AGW_JSON_EINVAL },
        { "\"abc", AGW_JSON_EINVAL },
        { "\"a\nb\"", AGW_JSON_EINVAL },
        { "\"\\x\"", AGW_JSON_EINVAL },
        { "\"\\u12\"", AGW_JSON_EINVAL },
        { "\"\\ud83d\"", AGW_JSON_EINVAL },
        { "\"\\ude00\"", AGW_JSON_EINVAL },
        { "\"\\ud83d\\u0041\"", AGW_JSON_EINVAL },
        { "\"\xff\"", AGW_JSON_EINVAL },
        { "\"\xc0\xaf\"", AGW_JSON_EINVAL },
        { "\"\xe0\x80\xaf\"", AGW_JSON_EINVAL },
        { "\"\xed\xa0\x80\"", AGW_JSON_EINVAL },
        { "\"\xf4\x90\x80\x80\"", AGW_JSON_EINVAL },
        { "\"\xc3\"", AGW_JSON_EINVAL },
        { "01", AGW_JSON_EINVAL },
        { "-", AGW_JSON_EINVAL },
        { "1.", AGW_JSON_EINVAL },
        { ".5", AGW_JSON_EINVAL },
        { "1e", AGW_JSON_EINVAL },
        { "+1", AGW_JSON_EINVAL },
        { "tru", AGW_JSON_EINVAL },
        { "nul", AGW_JSON_EINVAL },
        { "truex", AGW_JSON_EINVAL },
        { "1 2", AGW_JSON_EINVAL },
        { "{} x", AGW_JSON_EINVAL },
        { "NaN", AGW_JSON_EINVAL },
        { "1e1000000000", AGW_JSON_ERANGE },
        /* the canonical exponent, not the written one, has nine digits */
        { "0.1e-999999999", AGW_JSON_ERANGE },
        { "10e999999999", AGW_JSON_ERANGE },
        { "1000e999999999", AGW_JSON_ERANGE },
        { "1.5e-999999999", AGW_JSON_ERANGE },
        { "[1,{\"a\":0.01e-999999998}]", AGW_JSON_ERANGE },
        { "1e99999999999999999999", AGW_JSON_ERANGE },
        { "{\"a\":1,\"a\":2}", AGW_JSON_EDUP },
        { "{\"a\":1,\"\\u0061\":1}", AGW_JSON_EDUP },
        { "[{\"x\":{\"b\":1,\"c\":2,\"b\":3}}]", AGW_JSON_EDUP },
    };

    for (i = 0; i < nitems(rows); i++) {
        rc = canon(rows[i].in, out, sizeof(out));

        if (rc != rows[i].rc) {
            print_error("fallback failed: row %zu: %s: expected %d, "
                        "got %d\n", i, rows[i].in, rows[i].rc, rc);
            fail();
        }
    }

    /* depth: 64 nested arrays are fine, 65 are not */

    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = '\0';
    assert_int_equal(canon(deep, out, sizeof(out)), AGW_JSON_OK);

    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = '\0';
    assert_int_equal(canon(deep, out, sizeof(out)), AGW_JSON_EDEPTH);

    memset(deep, '[', 150);
    deep[150] = '\0';
    assert_int_equal(canon(deep, out, sizeof(out)), AGW_JSON_EDEPTH);
}


static void
test_json_truncation(void **state)
{
    int         rc;
    size_t      n;
    char        out[512];
    static const char  body[] =
        "{\"model\":\"gpt\",\"messages\":[{\"role\":\"user\","
        "\"content\":\"h\\u00e9llo\"}],\"max_tokens\":10,\"n\":1.5e3}";

    /* every proper prefix is invalid, and writes nothing */

    for (n = 0; n < sizeof(body) - 1; n++) {
        rc = canon_ignore(body, n, NULL, 0, out, sizeof(out), NULL);

        if (rc == AGW_JSON_OK) {
            print_error("truncation accepted: %zu bytes\n", n);
            fail();
        }
    }

    assert_int_equal(canon(body, out, sizeof(out)), AGW_JSON_OK);
}


static void
test_json_scratch_and_output(void **state)
{
    int              rc;
    size_t           i, need;
    uint8_t          out[64];
    uint32_t         scratch[64];
    agw_json_buf_t   b;
    static const char  body[] = "[1,[2,3],{\"a\":4}]";

    need = agw_json_scratch_size(sizeof(body) - 1);
    assert_true(need <= sizeof(scratch));

    /* too little scratch is ENOMEM, never an overrun (ASan watches) */

    for (i = 0; i < 12 * 8; i += 4) {
        uint32_t  *s = malloc(i ? i : 1);

        b.pos = out;
        b.end = out + sizeof(out);
        rc = agw_json_canonical((const uint8_t *) body, sizeof(body) - 1,
                                NULL, 0, s, i, agw_json_buf_write, &b, NULL);
        free(s);

        assert_true(rc == AGW_JSON_OK || rc == AGW_JSON_ENOMEM);
        if (rc == AGW_JSON_ENOMEM) {
            assert_ptr_equal(b.pos, out);
        }
    }

    /* an output buffer one byte short stops the writer */

    b.pos = out;
    b.end = out + sizeof(body) - 2;
    rc = agw_json_canonical((const uint8_t *) body, sizeof(body) - 1,
                            NULL, 0, scratch, sizeof(scratch),
                            agw_json_buf_write, &b, NULL);
    assert_int_equal(rc, AGW_JSON_ESTOP);

    b.pos = out;
    b.end = out + sizeof(body) - 1;
    rc = agw_json_canonical((const uint8_t *) body, sizeof(body) - 1,
                            NULL, 0, scratch, sizeof(scratch),
                            agw_json_buf_write, &b, NULL);
    assert_int_equal(rc, AGW_JSON_OK);
    assert_memory_equal(out, body, sizeof(body) - 1);
}


static void
test_json_ignore(void **state)
{
    int     rc;
    size_t  i;
    char    out[512];

    static const agw_json_str_t  ignore[] = {
        STR("user"), STR("metadata"), STR("\xc3\xa9t\xc3\xa9")
    };

    static const struct {
        const char  *in;
        const char  *out;
    } rows[] = {
        { "{\"model\":\"m\",\"user\":\"u1\"}", "{\"model\":\"m\"}" },
        { "{\"user\":\"u1\",\"metadata\":{\"a\":1},\"x\":1}", "{\"x\":1}" },
        { "{\"user\":1}", "{}" },
        { "{\"\\u0075ser\":1,\"a\":2}", "{\"a\":2}" },
        { "{\"\\u00e9t\\u00e9\":1,\"a\":2}", "{\"a\":2}" },
        { "{\"users\":1,\"use\":2}", "{\"use\":2,\"users\":1}" },
        /* top level only */
        { "{\"a\":{\"user\":1}}", "{\"a\":{\"user\":1}}" },
        { "[{\"user\":1}]", "[{\"user\":1}]" },
        { "\"user\"", "\"user\"" },
    };

    for (i = 0; i < nitems(rows); i++) {
        rc = canon_ignore(rows[i].in, strlen(rows[i].in), ignore,
                          nitems(ignore), out, sizeof(out), NULL);

        if (rc != AGW_JSON_OK || strcmp(out, rows[i].out) != 0) {
            print_error("ignore failed: row %zu: %s: expected %s, "
                        "got %d %s\n", i, rows[i].in, rows[i].out, rc, out);
            fail();
        }
    }

    /* a duplicate of an ignored name is still a duplicate */

    rc = canon_ignore("{\"user\":1,\"user\":2}", 19, ignore, nitems(ignore),
                      out, sizeof(out), NULL);
    assert_int_equal(rc, AGW_JSON_EDUP);
}


static void
test_json_request_scan(void **state)
{
    int                 rc, rc2;
    size_t              i;
    char                out[1024];
    uint64_t            prompt_bytes;
    agw_json_request_t  req, req2;

    static const struct {
        const char  *in;
        const char  *model;
        uint64_t     prompt_bytes;       /* LEN: the input's length */
        uint64_t     prompt_tokens;      /* token ids */
        int          has_max;
        uint64_t     max_tokens;
        int          stream;
        int          include_usage;
        int          valid;
    } rows[] = {
        { "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\","
          "\"content\":\"be brief\"},{\"role\":\"user\",\"content\":"
          "\"hello\"}],\"max_tokens\":100}",
          "gpt-4o", 13, 0, 1, 100, 0, 0, 1 },
        { "{\"model\":\"m\",\"prompt\":\"abcd\",\"max_tokens\":7}",
          "m", 4, 0, 1, 7, 0, 0, 1 },
        /* strings, and an array of token ids: one token each */
        { "{\"prompt\":[\"ab\",\"cde\",[1,2]]}", NULL, 5, 2, 0, 0, 0, 0, 1 },
        { "{\"messages\":[{\"content\":[{\"type\":\"text\",\"text\":\"abc\"},"
          "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
          NULL, 3, 0, 0, 0, 0, 0, 1 },
        { "{\"messages\":[{\"content\":\"\\u00e9\\n\"}]}",
          NULL, 3, 0, 0, 0, 0, 0, 1 },
        /* no prompt field at all: the whole body counts by its size */
        { "{\"max_tokens\":5,\"max_completion_tokens\":9}",
          NULL, LEN, 0, 1, 9, 0, 0, 1 },
        { "{\"max_completion_tokens\":9,\"max_tokens\":5}",
          NULL, LEN, 0, 1, 9, 0, 0, 1 },
        { "{\"max_tokens\":99999999999999999999999999}",
          NULL, LEN, 0, 1, AGW_JSON_MAX_INT, 0, 0, 1 },
        { "{\"max_tokens\":-5}", NULL, LEN, 0, 0, 0, 0, 0, 1 },
        { "{\"max_tokens\":1.5}", NULL, LEN, 0, 0, 0, 0, 0, 1 },
        { "{\"max_tokens\":\"5\"}", NULL, LEN, 0, 0, 0, 0, 0, 1 },
        { "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
          NULL, LEN, 0, 0, 0, 1, 1, 1 },
        { "{\"stream\":false,\"stream_options\":{\"include_usage\":false}}",
          NULL, LEN, 0, 0, 0, 0, 0, 1 },
        { "{\"stream\":\"true\"}", NULL, LEN, 0, 0, 0, 0, 0, 1 },
        /* only at top level */
        { "{\"x\":{\"model\":\"m\",\"prompt\":\"abc\",\"max_tokens\":3}}",
          NULL, LEN, 0, 0, 0, 0, 0, 1 },
        { "[{\"model\":\"m\"}]", NULL, LEN, 0, 0, 0, 0, 0, 1 },
        /* Responses API and Anthropic shapes */
        { "{\"model\":\"o\",\"input\":\"hey\",\"max_output_tokens\":4}",
          "o", 3, 0, 1, 4, 0, 0, 1 },
        { "{\"system\":\"ab\",\"messages\":[{\"content\":\"cd\"}]}",
          NULL, 4, 0, 0, 0, 0, 0, 1 },
        /* duplicates: still valid JSON, the last wins */
        { "{\"model\":\"a\",\"model\":\"b\"}", "b", LEN, 0, 0, 0, 0, 0, 1 },
        { "{\"model\":\"a\"", NULL, 0, 0, 0, 0, 0, 0, 0 },
        { "not json", NULL, 0, 0, 0, 0, 0, 0, 0 },
    };

    for (i = 0; i < nitems(rows); i++) {
        rc = agw_json_scan_request((const uint8_t *) rows[i].in,
                                   strlen(rows[i].in), &req);
        rc2 = canon_ignore(rows[i].in, strlen(rows[i].in), NULL, 0, out,
                           sizeof(out), &req2);

        prompt_bytes = (rows[i].prompt_bytes == LEN) ? strlen(rows[i].in)
                                                     : rows[i].prompt_bytes;

        if ((rc == AGW_JSON_OK) != rows[i].valid
            || req.valid != rows[i].valid
            || req.prompt_bytes != prompt_bytes
            || req.prompt_tokens != rows[i].prompt_tokens
            || req.has_max_tokens != rows[i].has_max
            || req.max_tokens != rows[i].max_tokens
            || req.stream != rows[i].stream
            || req.include_usage != rows[i].include_usage
            || (rows[i].model == NULL) != (req.model == NULL)
            || (rows[i].model
                && (req.model_len != strlen(rows[i].model)
                    || memcmp(req.model, rows[i].model, req.model_len))))
        {
            print_error("scan failed: row %zu: %s: rc %d valid %d prompt "
                        "%llu+%llu max %d/%llu stream %d usage %d\n", i,
                        rows[i].in, rc, req.valid,
                        (unsigned long long) req.prompt_bytes,
                        (unsigned long long) req.prompt_tokens,
                        req.has_max_tokens,
                        (unsigned long long) req.max_tokens, req.stream,
                        req.include_usage);
            fail();
        }

        /* the canonicaliser's pass reads the same */

        (void) rc2;
        assert_int_equal(req2.valid, req.valid);
        assert_int_equal(req2.prompt_bytes, req.prompt_bytes);
        assert_int_equal(req2.prompt_tokens, req.prompt_tokens);
        assert_int_equal(req2.max_tokens, req.max_tokens);
        assert_int_equal(req2.stream, req.stream);
        assert_int_equal(req2.include_usage, req.include_usage);
        assert_int_equal(req2.model_len, req.model_len);
    }
}


static void
test_json_unescape(void **state)
{
    ptrdiff_t  n;
    uint8_t    out[8];

    n = agw_json_unescape((const uint8_t *) "a\\u00e9\\n", 9, out,
                          sizeof(out));
    assert_int_equal(n, 4);
    assert_memory_equal(out, "a\xc3\xa9\n", 4);

    assert_int_equal(agw_json_unescape((const uint8_t *) "abc", 3, out, 2),
                     -1);
    assert_int_equal(agw_json_unescape((const uint8_t *) "a\\", 2, out, 8),
                     -1);
    assert_int_equal(agw_json_unescape((const uint8_t *) "a\"", 2, out, 8),
                     -1);
    assert_int_equal(agw_json_unescape((const uint8_t *) "\xff", 1, out, 8),
                     -1);
}


/* push tokenizer: a log of the events as text, to compare splits */

typedef struct {
    char    log[4096];
    size_t  len;
} push_log_t;


static int
push_log(void *ctx, const agw_json_event_t *ev)
{
    int          n;
    push_log_t  *l;

    l = ctx;
    n = snprintf(l->log + l->len, sizeof(l->log) - l->len, "%u@%u:%.*s/%llu ",
                 ev->type, ev->depth,
                 (ev->type == AGW_JSON_KEY || ev->type == AGW_JSON_STRING
                  || ev->type == AGW_JSON_NUMBER) ? (int) ev->text_len : 0,
                 (const char *) ev->text, (unsigned long long) ev->full_len);

    if (n > 0 && (size_t) n < sizeof(l->log) - l->len) {
        l->len += (size_t) n;
    }

    return 0;
}


static int
push_all(const char *in, size_t len, size_t split, push_log_t *l)
{
    int              rc;
    agw_json_push_t  j;

    memset(l, 0, sizeof(push_log_t));
    agw_json_push_init(&j, push_log, l);

    rc = agw_json_push_feed(&j, (const uint8_t *) in, split);
    if (rc == AGW_JSON_OK) {
        rc = agw_json_push_feed(&j, (const uint8_t *) in + split,
                                len - split);
    }

    return rc == AGW_JSON_OK ? agw_json_push_finish(&j) : rc;
}


static void
test_json_push(void **state)
{
    int         rc, whole;
    size_t      i, k, len;
    push_log_t  a, b;

    static const struct {
        const char  *in;
        int          ok;
        const char  *log;                /* NULL: not checked */
    } rows[] = {
        { "{\"a\":[1,-2.5e+3,true,false,null],\"b\":\"x\\u00e9\"}", 1,
          "1@0:/0 5@1:a/1 3@1:/0 7@2:1/1 7@2:-2.5e+3/7 8@2:/0 9@2:/0 "
          "10@2:/0 4@1:/0 5@1:b/1 6@1:x\xc3\xa9/3 2@0:/0 " },
        { "12", 1, "7@0:12/2 " },
        { " \"\\ud83d\\ude00\" ", 1, "6@0:\xf0\x9f\x98\x80/4 " },
        { "[]", 1, "3@0:/0 4@0:/0 " },
        { "{\"usage\":{\"total_tokens\":42}}", 1, NULL },
        { "{\"a\":1,}", 0, NULL },
        { "[1,]", 0, NULL },
        { "{\"a\"}", 0, NULL },
        { "[1}", 0, NULL },
        { "{]", 0, NULL },
        { "01", 0, NULL },
        { "1.", 0, NULL },
        { "-", 0, NULL },
        { "\"\\ud83d\"", 0, NULL },
        { "\"\\ude00\"", 0, NULL },
        { "\"a\nb\"", 0, NULL },
        { "tru", 0, NULL },
        { "[1] 2", 0, NULL },
        { "", 0, NULL },
        { "{\"a\":1", 0, NULL },
    };

    for (i = 0; i < nitems(rows); i++) {
        len = strlen(rows[i].in);
        rc = push_all(rows[i].in, len, len, &a);
        whole = (rc == AGW_JSON_OK);

        if (whole != rows[i].ok
            || (rows[i].log && strcmp(a.log, rows[i].log) != 0))
        {
            print_error("push failed: row %zu: %s: rc %d, log %s\n", i,
                        rows[i].in, rc, a.log);
            fail();
        }

        /* the same events and verdict wherever the input is cut */

        for (k = 0; k <= len; k++) {
            rc = push_all(rows[i].in, len, k, &b);

            if ((rc == AGW_JSON_OK) != whole
                || (whole && strcmp(a.log, b.log) != 0))
            {
                print_error("push split failed: row %zu at %zu: %s / %s\n",
                            i, k, a.log, b.log);
                fail();
            }
        }
    }
}


static void
test_json_push_depth(void **state)
{
    char             buf[130];
    agw_json_push_t  j;

    memset(buf, '[', 64);
    memset(buf + 64, ']', 64);

    agw_json_push_init(&j, NULL, NULL);
    assert_int_equal(agw_json_push_feed(&j, (uint8_t *) buf, 128),
                     AGW_JSON_OK);
    assert_int_equal(agw_json_push_finish(&j), AGW_JSON_OK);

    memset(buf, '[', 65);
    agw_json_push_init(&j, NULL, NULL);
    assert_int_equal(agw_json_push_feed(&j, (uint8_t *) buf, 65),
                     AGW_JSON_EDEPTH);
}


/*
 * A string's bytes are taken eight at a time where they are plain ASCII:
 * a control byte, a byte of bad UTF-8, a quote or a backslash anywhere in
 * a string of any length is found where it is, as the byte at a time loop
 * found it
 */

static void
test_json_string_bytes_everywhere(void **state)
{
    int     rc;
    size_t  len, k, i, n;
    char    body[64], text[64], in[96], out[96], want[96];

    static const struct {
        const char  *bytes;
        int          rc;
        const char  *canonical;         /* NULL: the bytes themselves */
    } cases[] = {
        { "\x01", AGW_JSON_EINVAL, NULL },
        { "\x1f", AGW_JSON_EINVAL, NULL },
        { "\t", AGW_JSON_EINVAL, NULL },
        { "\x7f", AGW_JSON_OK, NULL },
        { "\x80", AGW_JSON_EINVAL, NULL },
        { "\xff", AGW_JSON_EINVAL, NULL },
        { "\xc3(", AGW_JSON_EINVAL, NULL },
        { "\xc3\xa9", AGW_JSON_OK, NULL },
        { "\xe2\x82\xac", AGW_JSON_OK, NULL },
        { "\xed\xa0\x80", AGW_JSON_EINVAL, NULL },   /* a surrogate */
        { "\\n", AGW_JSON_OK, NULL },
        { "\\u0041", AGW_JSON_OK, "A" },
        { "\\x", AGW_JSON_EINVAL, NULL },
        { "\"", AGW_JSON_EINVAL, NULL }
    };

    for (i = 0; i < nitems(cases); i++) {
        n = strlen(cases[i].bytes);

        for (len = 0; len <= 40; len++) {
            for (k = 0; k <= len; k++) {

                /* the string's content as sent, and as the output has it */

                memset(body, 0, sizeof(body));
                memset(body, 'a', k);
                memcpy(body + k, cases[i].bytes, n);
                memset(body + k + n, 'a', len - k);

                memset(text, 0, sizeof(text));
                memset(text, 'a', k);
                strcat(text, cases[i].canonical ? cases[i].canonical
                                                : cases[i].bytes);
                memset(text + strlen(text), 'a', len - k);

                snprintf(in, sizeof(in), "\"%s\"", body);
                rc = canon(in, out, sizeof(out));
                assert_int_equal(rc, cases[i].rc);

                snprintf(in, sizeof(in), "{\"m\":\"%s\"}", body);
                rc = canon(in, out, sizeof(out));
                assert_int_equal(rc, cases[i].rc);

                if (rc == AGW_JSON_OK) {
                    snprintf(want, sizeof(want), "{\"m\":\"%s\"}", text);
                    assert_string_equal(out, want);
                }
            }
        }
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_json_canonical_forms),
        cmocka_unit_test(test_json_equivalence),
        cmocka_unit_test(test_json_fallback),
        cmocka_unit_test(test_json_truncation),
        cmocka_unit_test(test_json_scratch_and_output),
        cmocka_unit_test(test_json_ignore),
        cmocka_unit_test(test_json_request_scan),
        cmocka_unit_test(test_json_unescape),
        cmocka_unit_test(test_json_string_bytes_everywhere),
        cmocka_unit_test(test_json_push),
        cmocka_unit_test(test_json_push_depth),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
