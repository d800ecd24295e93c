
/*
 * The prompt's start in model order (lib/agw_prompt.c): the text ai-sim's
 * prefix cache reads (backends/ai-sim/sim_chat.c, sim_chat_seq()), member
 * order, whitespace and escapes aside, cut at the buffer's size.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "agw_prompt.h"


typedef struct {
    const char  *input;
    size_t       cap;
    int          rc;
    const char  *text;
} agw_prompt_test_t;


static const agw_prompt_test_t  vectors[] = {
    /* a chat: role and content, each followed by a newline */
    { "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be"
      " brief.\"},{\"role\":\"user\",\"content\":\"Hi\"}]}", 64,
      AGW_PROMPT_FOUND, "system\nBe brief.\nuser\nHi\n" },

    /* members in any order, whitespace, messages after the other fields */
    { " { \"max_tokens\" : 5 , \"messages\" : [ { \"content\" : \"Hi\" ,"
      " \"role\" : \"user\" } ] , \"model\" : \"m\" } ", 64,
      AGW_PROMPT_FOUND, "user\nHi\n" },

    /* escapes read as the text they stand for */
    { "{\"messages\":[{\"role\":\"us\\u0065r\",\"content\":\"a\\nb\\\"c\\u00e9"
      "\\ud83d\\ude00\"}]}", 64,
      AGW_PROMPT_FOUND, "user\na\nb\"c\xc3\xa9\xf0\x9f\x98\x80\n" },

    /* cut at the buffer's size, in a role, a content or an escape */
    { "{\"messages\":[{\"role\":\"system\",\"content\":\"abcdef\"}]}", 10,
      AGW_PROMPT_FOUND, "system\nabc" },
    { "{\"messages\":[{\"role\":\"system\",\"content\":\"abcdef\"}]}", 3,
      AGW_PROMPT_FOUND, "sys" },
    { "{\"messages\":[{\"role\":\"u\",\"content\":\"\\u00e9\"}]}", 3,
      AGW_PROMPT_FOUND, "u\n\xc3" },

    /* content as parts: their text, one after the other */
    { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
      "\"text\":\"one \"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
      "\"x\"}},{\"text\":\"two\",\"type\":\"text\"}]}]}", 64,
      AGW_PROMPT_FOUND, "user\none two\n" },

    /* a content that is null (a tool call), a message with no role */
    { "{\"messages\":[{\"role\":\"assistant\",\"content\":null},"
      "{\"content\":\"x\"}]}", 64, AGW_PROMPT_FOUND, "assistant\n\n\nx\n" },

    /* Anthropic's system first */
    { "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"system\":"
      "\"Be brief.\"}", 64, AGW_PROMPT_FOUND,
      "system\nBe brief.\nuser\nHi\n" },

    /* completions: the prompt as is; a batch: its first prompt */
    { "{\"prompt\":\"hello world\",\"max_tokens\":4}", 64, AGW_PROMPT_FOUND,
      "hello world" },
    { "{\"prompt\":[\"first\",\"second\"]}", 64, AGW_PROMPT_FOUND, "first" },
    { "{\"prompt\":[1,2,3]}", 64, AGW_PROMPT_NONE, "" },

    /* Responses: input as a string or as items */
    { "{\"input\":\"hello\"}", 64, AGW_PROMPT_FOUND, "hello" },
    { "{\"input\":[{\"role\":\"user\",\"content\":\"Hi\"}]}", 64,
      AGW_PROMPT_FOUND, "user\nHi\n" },

    /* messages win over prompt; the first member of a name counts */
    { "{\"prompt\":\"p\",\"messages\":[{\"role\":\"user\",\"content\":\"m\"}]"
      "}", 64, AGW_PROMPT_FOUND, "user\nm\n" },

    /* no prompt */
    { "{\"model\":\"m\"}", 64, AGW_PROMPT_NONE, "" },
    { "{}", 64, AGW_PROMPT_NONE, "" },
    { "{\"messages\":\"not an array\"}", 64, AGW_PROMPT_NONE, "" },
    { "{\"messages\":[]}", 64, AGW_PROMPT_FOUND, "" },

    /* nested names are not the request's */
    { "{\"metadata\":{\"prompt\":\"no\"},\"prompt\":\"yes\"}", 64,
      AGW_PROMPT_FOUND, "yes" },

    /* not an object, or broken where it is walked */
    { "[\"prompt\"]", 64, AGW_PROMPT_INVALID, "" },
    { "", 64, AGW_PROMPT_INVALID, "" },
    { "{\"prompt\":\"unterminated", 64, AGW_PROMPT_INVALID, "" },
    { "{\"prompt\":\"a\",", 64, AGW_PROMPT_INVALID, "" },
    { "{\"prompt\" \"a\"}", 64, AGW_PROMPT_INVALID, "" },
    { "{\"prompt\":\"bad \\x escape\"}", 64, AGW_PROMPT_INVALID, "" },
    { "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"} junk]}", 64,
      AGW_PROMPT_INVALID, "" },
};


static void
test_prompt_vectors(void **state)
{
    int       rc;
    size_t    i, n, len;
    uint8_t   out[64];

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        memset(out, 0xaa, sizeof(out));

        rc = agw_prompt_prefix((const uint8_t *) vectors[i].input,
                               strlen(vectors[i].input), out, vectors[i].cap,
                               &n);

        len = strlen(vectors[i].text);

        if (rc != vectors[i].rc || n != len
            || memcmp(out, vectors[i].text, len) != 0
            || (rc != AGW_PROMPT_INVALID && n < sizeof(out)
                && out[n] != 0xaa))
        {
            print_error("%s (cap %zu): expected %d \"%s\", got %d \"%.*s\"\n",
                        vectors[i].input, vectors[i].cap, vectors[i].rc,
                        vectors[i].text, rc, (int) n, out);
            fail();
        }
    }
}


static void
test_prompt_ignores_what_follows_the_prefix(void **state)
{
    size_t       n;
    uint8_t      a[16], b[16];
    const char  *x = "{\"messages\":[{\"role\":\"system\",\"content\":"
                     "\"You are a helpful assistant\"},{\"role\":\"user\","
                     "\"content\":\"question one\"}]}";
    const char  *y = "{\"max_tokens\":9,\"messages\":[{\"content\":\"You are"
                     " a helpful assistant\",\"role\":\"system\"},{\"role\":"
                     "\"user\",\"content\":\"another question\"}]}";

    /* the same first 16 bytes of text, whatever comes after */
    assert_int_equal(agw_prompt_prefix((const uint8_t *) x, strlen(x), a,
                                       sizeof(a), &n), AGW_PROMPT_FOUND);
    assert_int_equal(n, sizeof(a));
    assert_int_equal(agw_prompt_prefix((const uint8_t *) y, strlen(y), b,
                                       sizeof(b), &n), AGW_PROMPT_FOUND);
    assert_int_equal(n, sizeof(b));
    assert_memory_equal(a, b, sizeof(a));
}


static void
test_prompt_depth_is_bounded(void **state)
{
    char     in[600];
    size_t   i, n;
    uint8_t  out[8];

    /* 200 nested arrays beside the prompt: refused, not a deep recursion */
    i = 0;
    i += sprintf(in + i, "{\"x\":");
    memset(in + i, '[', 200);
    i += 200;
    memset(in + i, ']', 200);
    i += 200;
    i += sprintf(in + i, ",\"prompt\":\"p\"}");

    assert_int_equal(agw_prompt_prefix((const uint8_t *) in, i, out,
                                       sizeof(out), &n), AGW_PROMPT_INVALID);
    assert_int_equal(n, 0);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt_vectors),
        cmocka_unit_test(test_prompt_ignores_what_follows_the_prefix),
        cmocka_unit_test(test_prompt_depth_is_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
