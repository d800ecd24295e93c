
/*
 * CRC-32 against the standard check value and zlib's crc32().
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "agw_crc32.h"


typedef struct {
    const char  *input;
    uint32_t     crc;                    /* zlib.crc32(input) */
} agw_crc32_test_t;


static const agw_crc32_test_t  vectors[] = {
    { "123456789", 0xcbf43926 },
    { "", 0x00000000 },
    { "a", 0xe8b7be43 },
    { "The quick brown fox jumps over the lazy dog", 0x414fa339 },
};


static void
test_crc32_vectors(void **state)
{
    size_t    i, len;
    uint32_t  got;

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        len = strlen(vectors[i].input);
        got = agw_crc32(vectors[i].input, len);

        if (got != vectors[i].crc) {
            print_error("crc32 failed: \"%s\": expected %08x, got %08x\n",
                        vectors[i].input, vectors[i].crc, got);
            fail();
        }
    }
}


static void
test_crc32_streaming(void **state)
{
    size_t       i, len;
    uint32_t     crc;
    const char  *s;

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        s = vectors[i].input;
        len = strlen(s);

        agw_crc32_init(crc);
        crc = agw_crc32_update(crc, s, len / 2);
        crc = agw_crc32_update(crc, s + len / 2, len - len / 2);
        agw_crc32_final(crc);

        assert_int_equal(crc, vectors[i].crc);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_crc32_vectors),
        cmocka_unit_test(test_crc32_streaming),
    };

    return cmocka_run_group_tests_name("crc32", tests, NULL, NULL);
}
