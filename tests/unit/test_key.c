
/*
 * Cache key digests: equal inputs agree, every difference in key text,
 * body or Authorization (including absent against empty, and a different
 * split of the same bytes) gives a different digest; hex format.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "agw_key.h"
#include "agw_sha256.h"


#define nitems(a)  (sizeof(a) / sizeof((a)[0]))


/* a key case: key text, body digest of body text or none, same for auth */

typedef struct {
    const char  *key;
    const char  *body;                   /* NULL: not keyed on the body */
    const char  *auth;                   /* NULL: no Authorization */
} agw_key_case_t;


static const agw_key_case_t  cases[] = {
    { "GEThttplocalhost/v1/models", NULL, NULL },
    { "GEThttplocalhost/v1/model", NULL, NULL },
    { "GEThttplocalhost/v1/models ", NULL, NULL },
    { "gethttplocalhost/v1/models", NULL, NULL },
    { "", NULL, NULL },
    { "POSThttplocalhost/v1/chat", NULL, NULL },
    { "POSThttplocalhost/v1/chat", "", NULL },
    { "POSThttplocalhost/v1/chat", "{\"prompt\":\"hi\"}", NULL },
    { "POSThttplocalhost/v1/chat", "{\"prompt\":\"ho\"}", NULL },
    { "POSThttplocalhost/v1/chat", "{\"prompt\":\"hi\"}", "Bearer a" },
    { "POSThttplocalhost/v1/chat", "{\"prompt\":\"hi\"}", "Bearer b" },
    { "POSThttplocalhost/v1/chat", "{\"prompt\":\"hi\"}", "" },
    { "POSThttplocalhost/v1/chat", NULL, "Bearer a" },
    { "POSThttplocalhost/v1/chat", NULL, "" },
    { "", "", NULL },
    { "", NULL, "" },
    { "", "", "" },
    { "ab", NULL, NULL },
    { "abc", NULL, NULL },
    { "ab", "c", NULL },
    { "a", "bc", NULL },
    { "ab", NULL, "c" },
    { "a", NULL, "bc" },
    { "ab", "c", "d" },
    { "ab", "cd", NULL },
    { "ab", "c", "" },
};


static void
digest_case(const agw_key_case_t *c, agw_digest_t *out)
{
    agw_digest_t  body, auth;

    if (c->body) {
        agw_digest_buf(&body, (const uint8_t *) c->body, strlen(c->body));
    }

    if (c->auth) {
        agw_digest_buf(&auth, (const uint8_t *) c->auth, strlen(c->auth));
    }

    agw_key_digest(out, (const uint8_t *) c->key, strlen(c->key),
                   c->body ? &body : NULL, c->auth ? &auth : NULL);
}


static const char *
show(const char *s)
{
    return s ? s : "(none)";
}


static void
test_key_deterministic(void **state)
{
    size_t        i;
    agw_digest_t  a, b;

    for (i = 0; i < nitems(cases); i++) {
        digest_case(&cases[i], &a);
        digest_case(&cases[i], &b);
        assert_memory_equal(a.bytes, b.bytes, AGW_DIGEST_LEN);
    }
}


static void
test_key_all_differ(void **state)
{
    size_t        i, j;
    agw_digest_t  d[nitems(cases)];

    for (i = 0; i < nitems(cases); i++) {
        digest_case(&cases[i], &d[i]);
    }

    for (i = 0; i < nitems(cases); i++) {
        for (j = i + 1; j < nitems(cases); j++) {
            if (memcmp(d[i].bytes, d[j].bytes, AGW_DIGEST_LEN) == 0) {
                print_error("key digests collide: rows %zu and %zu: "
                            "\"%s\" body %s auth %s, \"%s\" body %s "
                            "auth %s\n", i, j,
                            cases[i].key, show(cases[i].body),
                            show(cases[i].auth),
                            cases[j].key, show(cases[j].body),
                            show(cases[j].auth));
                fail();
            }
        }
    }
}


static void
test_key_body_vs_auth_slot(void **state)
{
    agw_digest_t  x, a, b;

    /* the same digest as body or as Authorization names different entries */

    agw_digest_buf(&x, (const uint8_t *) "x", 1);

    agw_key_digest(&a, (const uint8_t *) "k", 1, &x, NULL);
    agw_key_digest(&b, (const uint8_t *) "k", 1, NULL, &x);

    assert_memory_not_equal(a.bytes, b.bytes, AGW_DIGEST_LEN);
}


static void
test_key_known_answer(void **state)
{
    char          hex[AGW_DIGEST_HEX_LEN + 1];
    uint8_t       buf[128];
    size_t        n;
    agw_digest_t  d, e;

    /*
     * pin the encoding: 'V' varint(10) "agw-key-v4" 'K' varint(3) "abc",
     * so a change to the field layout (which would orphan every cached
     * entry in Redis) cannot slip in unnoticed
     */

    n = 0;
    buf[n++] = 'V';
    buf[n++] = 10;
    memcpy(buf + n, "agw-key-v4", 10);
    n += 10;
    buf[n++] = 'K';
    buf[n++] = 3;
    memcpy(buf + n, "abc", 3);
    n += 3;

    agw_digest_buf(&e, buf, n);
    agw_key_digest(&d, (const uint8_t *) "abc", 3, NULL, NULL);

    assert_memory_equal(d.bytes, e.bytes, AGW_DIGEST_LEN);

    agw_digest_hex(&d, hex);
    assert_int_equal(strlen(hex), AGW_DIGEST_HEX_LEN);

    /* a length of 128 or more takes two varint bytes: 0x80 | low 7, high */
    {
        static uint8_t  long_part[300];
        agw_sha256_t    sha;
        uint8_t         hdr[3] = { 'K', 0x80 | (300 & 0x7f), 300 >> 7 };

        memset(long_part, 'x', sizeof(long_part));

        agw_sha256_init(&sha);
        agw_sha256_update(&sha, hdr, sizeof(hdr));
        agw_sha256_update(&sha, long_part, sizeof(long_part));
        agw_digest_final(&e, &sha);

        agw_sha256_init(&sha);
        agw_digest_field(&sha, 'K', long_part, sizeof(long_part));
        agw_digest_final(&d, &sha);

        assert_memory_equal(d.bytes, e.bytes, AGW_DIGEST_LEN);
    }
}


static void
key_of_parts(agw_digest_t *out, const char **parts, size_t n)
{
    size_t     i;
    agw_key_t  k;

    agw_key_init(&k);

    for (i = 0; i < n; i++) {
        agw_key_part(&k, (const uint8_t *) parts[i], strlen(parts[i]));
    }

    agw_key_final(&k, out, NULL, NULL);
}


static void
test_key_parts_do_not_slide(void **state)
{
    agw_digest_t  a, b, joined_a, joined_b, one;

    /*
     * the default key $request_method$scheme$host$request_uri: an http
     * request for sexample.com and an https one for example.com are one
     * text, "GEThttpsexample.com/x", and must be two keys
     */

    static const char  *http[] = { "GET", "http", "sexample.com", "/x" };
    static const char  *https[] = { "GET", "https", "example.com", "/x" };

    /* and a custom $arg_a$arg_b with a=ab,b=c against a=a,b=bc */

    static const char  *ab_c[] = { "ab", "c" };
    static const char  *a_bc[] = { "a", "bc" };
    static const char  *abc[] = { "abc" };

    key_of_parts(&a, http, 4);
    key_of_parts(&b, https, 4);
    assert_memory_not_equal(a.bytes, b.bytes, AGW_DIGEST_LEN);

    /* what the single field of the joined text gave: the collision */

    agw_key_digest(&joined_a, (const uint8_t *) "GEThttpsexample.com/x", 21,
                   NULL, NULL);
    agw_key_digest(&joined_b, (const uint8_t *) "GEThttpsexample.com/x", 21,
                   NULL, NULL);
    assert_memory_equal(joined_a.bytes, joined_b.bytes, AGW_DIGEST_LEN);
    assert_memory_not_equal(a.bytes, joined_a.bytes, AGW_DIGEST_LEN);

    key_of_parts(&a, ab_c, 2);
    key_of_parts(&b, a_bc, 2);
    assert_memory_not_equal(a.bytes, b.bytes, AGW_DIGEST_LEN);

    /* one part is the one-field digest */

    key_of_parts(&a, abc, 1);
    agw_key_digest(&one, (const uint8_t *) "abc", 3, NULL, NULL);
    assert_memory_equal(a.bytes, one.bytes, AGW_DIGEST_LEN);
}


static void
cred_digest(agw_digest_t *out, const char **fields, size_t n)
{
    size_t        i;
    agw_sha256_t  sha;

    /* name, value, name, value ... as the module feeds them */

    agw_sha256_init(&sha);

    for (i = 0; i < n; i++) {
        agw_digest_field(&sha, (i % 2) ? 'C' : 'N',
                         (const uint8_t *) fields[i], strlen(fields[i]));
    }

    agw_digest_final(out, &sha);
}


static void
test_key_credentials_fields(void **state)
{
    size_t        i, j;
    agw_digest_t  d[6], k[6], body;

    static const char  *alice[] = { "x-api-key", "alice" };
    static const char  *bob[] = { "x-api-key", "bob" };
    static const char  *empty[] = { "x-api-key", "" };
    static const char  *cookie[] = { "cookie", "alice" };
    static const char  *two[] = { "x-api-key", "alice", "x-api-key", "bob" };
    static const char  *slid[] = { "x-api-key", "alicex-api-keybob" };

    cred_digest(&d[0], alice, 2);
    cred_digest(&d[1], bob, 2);
    cred_digest(&d[2], empty, 2);
    cred_digest(&d[3], cookie, 2);
    cred_digest(&d[4], two, 4);
    cred_digest(&d[5], slid, 2);

    agw_digest_buf(&body, (const uint8_t *) "{}", 2);

    for (i = 0; i < 6; i++) {
        agw_key_digest(&k[i], (const uint8_t *) "POST/v1", 7, &body, &d[i]);
    }

    for (i = 0; i < 6; i++) {
        for (j = i + 1; j < 6; j++) {
            assert_memory_not_equal(k[i].bytes, k[j].bytes, AGW_DIGEST_LEN);
        }
    }
}


static void
test_key_streaming_body(void **state)
{
    agw_digest_t  a, b;
    agw_sha256_t  ctx;

    /* a body hashed buffer by buffer equals the body hashed at once */

    agw_sha256_init(&ctx);
    agw_sha256_update(&ctx, "{\"prompt\":", 10);
    agw_sha256_update(&ctx, "\"hi\"}", 5);
    agw_digest_final(&a, &ctx);

    agw_digest_buf(&b, (const uint8_t *) "{\"prompt\":\"hi\"}", 15);

    assert_memory_equal(a.bytes, b.bytes, AGW_DIGEST_LEN);
}


/*
 * A body keyed by its bytes and one keyed by its canonical form are in
 * two domains: the same bytes under the two tags never give one digest,
 * so bytes that happen to be another body's canonical form are another
 * key; the tag is one byte before the body.
 */
static void
test_body_digest_domains(void **state)
{
    uint8_t        buf[32];
    agw_digest_t   raw, canon, plain, want, ka, kb;
    agw_sha256_t   sha;
    const uint8_t  body[] = "{\"a\":1,\"b\":2}";

    agw_body_digest_init(&sha, AGW_BODY_RAW);
    agw_sha256_update(&sha, body, sizeof(body) - 1);
    agw_digest_final(&raw, &sha);

    agw_body_digest_init(&sha, AGW_BODY_CANONICAL);
    agw_sha256_update(&sha, body, sizeof(body) - 1);
    agw_digest_final(&canon, &sha);

    agw_digest_buf(&plain, body, sizeof(body) - 1);

    assert_memory_not_equal(raw.bytes, canon.bytes, AGW_DIGEST_LEN);
    assert_memory_not_equal(raw.bytes, plain.bytes, AGW_DIGEST_LEN);
    assert_memory_not_equal(canon.bytes, plain.bytes, AGW_DIGEST_LEN);

    /* pinned: SHA-256('R' body) and SHA-256('J' body) */

    buf[0] = 'R';
    memcpy(buf + 1, body, sizeof(body) - 1);
    agw_digest_buf(&want, buf, sizeof(body));
    assert_memory_equal(raw.bytes, want.bytes, AGW_DIGEST_LEN);

    buf[0] = 'J';
    agw_digest_buf(&want, buf, sizeof(body));
    assert_memory_equal(canon.bytes, want.bytes, AGW_DIGEST_LEN);

    /* so the keys differ too */

    agw_key_digest(&ka, (const uint8_t *) "POST/v1", 7, &raw, NULL);
    agw_key_digest(&kb, (const uint8_t *) "POST/v1", 7, &canon, NULL);
    assert_memory_not_equal(ka.bytes, kb.bytes, AGW_DIGEST_LEN);
}


static void
test_digest_hex(void **state)
{
    size_t        i;
    char          out[AGW_DIGEST_HEX_LEN + 1];
    agw_digest_t  d;

    static const struct {
        uint8_t      fill;
        const char  *hex;
    } rows[] = {
        { 0x00, "00000000000000000000000000000000"
                "00000000000000000000000000000000" },
        { 0xff, "ffffffffffffffffffffffffffffffff"
                "ffffffffffffffffffffffffffffffff" },
        { 0xa5, "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"
                "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5" },
        { 0x0f, "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"
                "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f" },
    };

    for (i = 0; i < nitems(rows); i++) {
        memset(d.bytes, rows[i].fill, sizeof(d.bytes));
        memset(out, 'X', sizeof(out));
        agw_digest_hex(&d, out);

        if (strcmp(out, rows[i].hex) != 0) {
            print_error("digest_hex failed: 0x%02x: expected %s, got %.65s\n",
                        rows[i].fill, rows[i].hex, out);
            fail();
        }
    }

    /* byte order: the first byte is the first pair; SHA-256("abc") */

    agw_digest_buf(&d, (const uint8_t *) "abc", 3);
    agw_digest_hex(&d, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223"
                             "b00361a396177a9cb410ff61f20015ad");
}



/* rate-limit key slots: exact for short keys, digested for long ones */

static void
test_key_slot(void **state)
{
    static const struct {
        const char  *key;
        size_t       len;
    } keys[] = {
        { "", 0 },
        { "a", 1 },
        { "a\0", 2 },
        { "\x7f\x00\x00\x01", 4 },
        { "\x7f\x00\x00\x02", 4 },
        { "0123456789abcdef0123456789abcde", 31 },
        { "0123456789abcdef0123456789abcdef", 32 },
        { "0123456789abcdef0123456789abcdeg", 32 },
        { "sk-live-0123456789abcdef0123456789abcdef0123456789", 50 },
    };

    size_t   i, j;
    uint8_t  slots[nitems(keys)][AGW_KEY_SLOT_LEN], again[AGW_KEY_SLOT_LEN];

    (void) state;

    for (i = 0; i < nitems(keys); i++) {
        agw_key_slot(slots[i], (const uint8_t *) keys[i].key, keys[i].len);
        agw_key_slot(again, (const uint8_t *) keys[i].key, keys[i].len);
        assert_memory_equal(slots[i], again, AGW_KEY_SLOT_LEN);

        if (keys[i].len < AGW_KEY_SLOT_LEN) {
            /* short keys are kept as they are, behind their length */
            assert_int_equal(slots[i][0], keys[i].len);
            assert_memory_equal(slots[i] + 1, keys[i].key, keys[i].len);

        } else {
            assert_int_equal(slots[i][0], AGW_KEY_SLOT_DIGEST);
        }

        for (j = 0; j < i; j++) {
            if (memcmp(slots[i], slots[j], AGW_KEY_SLOT_LEN) == 0) {
                print_error("slot of key %zu equals slot of key %zu\n", i, j);
                fail();
            }
        }
    }
}

int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_key_deterministic),
        cmocka_unit_test(test_key_all_differ),
        cmocka_unit_test(test_key_body_vs_auth_slot),
        cmocka_unit_test(test_key_known_answer),
        cmocka_unit_test(test_key_parts_do_not_slide),
        cmocka_unit_test(test_key_credentials_fields),
        cmocka_unit_test(test_key_streaming_body),
        cmocka_unit_test(test_body_digest_domains),
        cmocka_unit_test(test_digest_hex),
        cmocka_unit_test(test_key_slot),
    };

    return cmocka_run_group_tests_name("key", tests, NULL, NULL);
}
