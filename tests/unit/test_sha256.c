
/*
 * SHA-256 against the FIPS 180-2 example vectors, one-shot and streamed in
 * every chunk size that crosses a block boundary differently, through
 * libcrypto's SHA extensions path and again without it.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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


/*
 * every length from 0 to 200 and on to 1,000 in steps of 61, each digest
 * fed into one digest, against hashlib's: the same figure whichever block
 * function libcrypto picked (main runs the tests under both)
 */
static void
test_sha256_lengths(void **state)
{
    char          got[65];
    size_t        len, i;
    uint8_t       data[1000], digest[AGW_SHA256_DIGEST_LEN];
    uint32_t      x;
    agw_sha256_t  all;

    (void) state;

    for (x = 2463534242u, i = 0; i < sizeof(data); i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data[i] = (uint8_t) x;
    }

    agw_sha256_init(&all);

    for (len = 0; len <= sizeof(data); len += (len < 200) ? 1 : 61) {
        agw_sha256(data, len, digest);
        agw_sha256_update(&all, digest, sizeof(digest));
    }

    agw_sha256_final(&all, digest);
    hex(digest, got);

    assert_string_equal(got, "132a0c68c6e9d65b94c83c0b203ed216"
                             "faba335dc2e19584348150815da9a631");
}


/*
 * libcrypto picks its block function once, at load time, from the CPU:
 * the SHA extensions where the CPU has them, else AVX2, SSSE3 or plain
 * x86-64.  OPENSSL_ia32cap (openssl's OPENSSL_ia32cap(3)) masks CPUID bits
 * from that choice, so the tests run again in a copy of this program with
 * CPUID.7.0:EBX.SHA (bit 29) masked: both the path this machine takes and
 * the one a CPU without SHA-NI takes give the known answers.
 */
#define AGW_SHA256_NO_SHA_NI  ":~0x20000000"


int
main(int argc, char **argv)
{
    int                      rc;
    const char              *masked;
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_sha256_million_a_one_shot),
        cmocka_unit_test(test_sha256_chunking),
        cmocka_unit_test(test_sha256_null_empty),
        cmocka_unit_test(test_sha256_lengths),
    };

    (void) argc;

    masked = getenv("OPENSSL_ia32cap");

    if (masked != NULL) {
        return cmocka_run_group_tests_name(
                   "sha256 (libcrypto, SHA extensions masked)",
                   tests, NULL, NULL);
    }

    rc = cmocka_run_group_tests_name("sha256 (libcrypto, as the CPU allows)",
                                     tests, NULL, NULL);
    if (rc != 0) {
        return rc;
    }

    if (setenv("OPENSSL_ia32cap", AGW_SHA256_NO_SHA_NI, 1) != 0) {
        perror("setenv");
        return 1;
    }

    execv("/proc/self/exe", argv);
    perror("execv /proc/self/exe");

    return 1;
}
