
/*
 * Redis Cluster key slots against CLUSTER KEYSLOT of redis-server 7.0,
 * hash tags included.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "agw_slot.h"


typedef struct {
    const char  *key;
    unsigned     slot;                   /* CLUSTER KEYSLOT key */
} agw_slot_test_t;


static const agw_slot_test_t  vectors[] = {
    { "foo", 12182 },
    { "bar", 5061 },
    { "123456789", 12739 },
    { "{user1000}.following", 3443 },    /* the tag "user1000" */
    { "a{}b", 13694 },                   /* an empty tag: the whole key */
    { "{}{x}", 3257 },                   /* the first '{' counts */
    { "a{b", 13340 },                    /* no '}': the whole key */
    { "gw:v1:0123abcd", 13076 },
    { "{gw:v1:rl}:z:ab", 13600 },
    { "", 0 },
};


static void
test_slot_vectors(void **state)
{
    size_t    i;
    unsigned  got;

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        got = agw_cluster_slot(vectors[i].key, strlen(vectors[i].key));

        if (got != vectors[i].slot) {
            print_error("slot of \"%s\": expected %u, got %u\n",
                        vectors[i].key, vectors[i].slot, got);
            fail();
        }
    }
}


static void
test_crc16_check_value(void **state)
{
    /* CRC-16/XMODEM's check value */
    assert_int_equal(agw_crc16("123456789", 9), 0x31c3);
}


static void
test_same_tag_same_slot(void **state)
{
    assert_int_equal(agw_cluster_slot("{gw:v1:rl}:a:00", 15),
                     agw_cluster_slot("{gw:v1:rl}:other:ff", 19));
    assert_int_equal(agw_cluster_slot("{gw:v1:rl}:a:00", 15),
                     agw_cluster_slot("gw:v1:rl", 8));
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot_vectors),
        cmocka_unit_test(test_crc16_check_value),
        cmocka_unit_test(test_same_tag_same_slot),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
