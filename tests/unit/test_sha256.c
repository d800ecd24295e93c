
/*
 * SHA-256 against the FIPS 180-2 example vectors, one-shot and streamed in
 * every chunk size that crosses a block boundary differently.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "agw_sha256.h"


typedef struct {
    const char  *input;
    size_t       repeat;                 /* input repeated this many times */
    const char  *digest;                 /* lowercase hex */
} agw_sha256_test_t;


static const agw_sha256_test_t  vectors[] = {
    { "", 1,
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    { "abc", 1,
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    { "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
      "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu", 1,
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
    { "a", 1000000,
      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
};


static void
hex(const uint8_t *d, char out[65])
{
    size_t  i;

    for (i = 0; i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    }
}


static void
test_sha256_vectors(void **state)
{
    char          got[65];
    size_t        i, r, len;
    uint8_t       digest[32];
    agw_sha256_t  ctx;

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        len = strlen(vectors[i].input);

        agw_sha256_init(&ctx);

        for (r = 0; r < vectors[i].repeat; r++) {
            agw_sha256_update(&ctx, vectors[i].input, len);
        }

        agw_sha256_final(&ctx, digest);
        hex(digest, got);

        if (strcmp(got, vectors[i].digest) != 0) {
            print_error("sha256 failed: \"%.20s\" x %zu: expected %s, got %s\n",
                        vectors[i].input, vectors[i].repeat,
                        vectors[i].digest, got);
            fail();
        }
    }
}


static void
test_sha256_million_a_one_shot(void **state)
{
    char      got[65];
    uint8_t   digest[32];
    static uint8_t  buf[1000000];

    memset(buf, 'a', sizeof(buf));
    agw_sha256(buf, sizeof(buf), digest);
    hex(digest, got);

    assert_string_equal(got, vectors[4].digest);
}


static void
test_sha256_chunking(void **state)
{
    size_t        i, chunk, off, n;
    uint8_t       msg[300], whole[32], parts[32];
    agw_sha256_t  ctx;

    for (i = 0; i < sizeof(msg); i++) {
        msg[i] = (uint8_t) (i * 7 + 3);
    }

    /* every message length around the 55/56/64 padding edges, every chunk */

    for (n = 0; n < sizeof(msg); n++) {
        agw_sha256(msg, n, whole);

        for (chunk = 1; chunk <= 130; chunk++) {
            agw_sha256_init(&ctx);

            for (off = 0; off < n; off += chunk) {
                agw_sha256_update(&ctx, msg + off,
                                  n - off < chunk ? n - off : chunk);
            }

            agw_sha256_final(&ctx, parts);

            if (memcmp(whole, parts, 32) != 0) {
                print_error("sha256 chunking failed: len %zu chunk %zu\n",
                            n, chunk);
                fail();
            }
        }
    }
}


static void
test_sha256_null_empty(void **state)
{
    char          got[65];
    uint8_t       digest[32];
    agw_sha256_t  ctx;

    agw_sha256_init(&ctx);
    agw_sha256_update(&ctx, NULL, 0);
    agw_sha256_final(&ctx, digest);
    hex(digest, got);

    assert_string_equal(got, vectors[0].digest);
}


/* the CPU's SHA instructions and the portable code agree on every length */
static void
test_sha256_paths_agree(void **state)
{
    size_t    len, i;
    uint8_t   data[1000], fast[AGW_SHA256_DIGEST_LEN];
    uint8_t   portable[AGW_SHA256_DIGEST_LEN];
    uint32_t  x;

    (void) state;

    if (!agw_sha256_set_accelerated(1)) {
        skip();
    }

    for (x = 2463534242u, i = 0; i < sizeof(data); i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data[i] = (uint8_t) x;
    }

    for (len = 0; len <= sizeof(data); len += (len < 200) ? 1 : 61) {
        agw_sha256_set_accelerated(1);
        agw_sha256(data, len, fast);
        agw_sha256_set_accelerated(0);
        agw_sha256(data, len, portable);

        if (memcmp(fast, portable, sizeof(fast)) != 0) {
            print_error("length %zu: the two paths differ\n", len);
            fail();
        }
    }
}


int
main(void)
{
    int                      rc;
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_sha256_million_a_one_shot),
        cmocka_unit_test(test_sha256_chunking),
        cmocka_unit_test(test_sha256_null_empty),
    };
    const struct CMUnitTest  both[] = {
        cmocka_unit_test(test_sha256_paths_agree),
    };

    rc = 0;

    /* every vector through the SHA instructions (where the CPU has them),
       then through the portable code */

    if (agw_sha256_set_accelerated(1)) {
        rc |= cmocka_run_group_tests_name("sha256 (CPU SHA instructions)",
                                          tests, NULL, NULL);
    }

    agw_sha256_set_accelerated(0);
    rc |= cmocka_run_group_tests_name("sha256 (portable)", tests, NULL, NULL);
    rc |= cmocka_run_group_tests_name("sha256 paths", both, NULL, NULL);

    return rc;
}
