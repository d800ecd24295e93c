
/*
 * The prompt's start in model order (lib/agw_prompt.c): the text ai-sim's
 * prefix cache reads (backends/ai-sim/sim_chat.c, sim_chat_seq()), member
 * order, whitespace and escapes aside, cut at the buffer's size.  And the
 * reader returns what its first, byte at a time, implementation returned
 * (tests/ref/agw_prompt_ref.c), for realistic requests at every buffer
 * size and for each of them cut short or with a byte changed.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agw_prompt.h"
#include "../ref/agw_prompt_ref.c"


#define AGW_TEST_GUARD  16               /* bytes past the buffer, checked */
#define AGW_TEST_CAP    4096


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


typedef struct {
    size_t       len;
    const char  *data;
} agw_prompt_body_t;


#define agw_test_body(s)  { sizeof(s) - 1, s }


/* requests as clients send them, and as they should not */
static const agw_prompt_body_t  bodies[] = {
    /* OpenAI chat with a system message, as make bench sends it */
    agw_test_body(
      "{\"model\":\"m\",\"max_tokens\":8,\"messages\":[{\"role\":\"syst"
      "em\",\"content\":\"You are a helpful assistant. You are a helpfu"
      "l assistant. You are a helpful assistant.\"},{\"role\":\"user\","
      "\"content\":\"what balancing costs\"}]}"),

    /* OpenAI chat without system, several turns, stream options */
    agw_test_body(
      "{\"model\":\"gpt-4o-mini\",\"stream\":true,\"stream_options\":{"
      "\"include_usage\":true},\"temperature\":0.7,\"messages\":[{\"rol"
      "e\":\"user\",\"content\":\"Hello there\"},{\"role\":\"assistant"
      "\",\"content\":\"Hi! How can I help?\"},{\"role\":\"user\",\"con"
      "tent\":\"Tell me a joke about caches.\"}],\"max_tokens\":64}"),

    /* members in another order, the content before the role */
    agw_test_body(
      "{\"messages\":[{\"content\":\"Be brief.\",\"role\":\"system\",\""
      "name\":\"sys\"},{\"content\":\"Hi\",\"role\":\"user\"}],\"model"
      "\":\"m\"}"),

    /* content as parts: text, an image, bare strings, a part without text */
    agw_test_body(
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{"
      "\"type\":\"text\",\"text\":\"Look at this: \"},{\"type\":\"image"
      "_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0KGg"
      "o=\",\"detail\":\"low\"}},\"bare part \",{\"type\":\"input_audio"
      "\",\"input_audio\":{\"data\":\"AAAA\",\"format\":\"wav\"}},{\"te"
      "xt\":\"and this\",\"type\":\"text\"}]}]}"),

    /* a tool call: content null, tool_calls, a tool answer */
    agw_test_body(
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\""
      "weather?\"},{\"role\":\"assistant\",\"content\":null,\"tool_call"
      "s\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\""
      ":\"get\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},{\"r"
      "ole\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"{\\\"t\\\":"
      "21}\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\""
      ":\"get\",\"parameters\":{\"type\":\"object\",\"properties\":{\"c"
      "ity\":{\"type\":\"string\"}}}}}]}"),

    /* Anthropic: a top-level system after the messages */
    agw_test_body(
      "{\"model\":\"claude\",\"max_tokens\":1024,\"messages\":[{\"role"
      "\":\"user\",\"content\":\"Hello, Claude\"},{\"role\":\"assistant"
      "\",\"content\":\"Hello!\"}],\"system\":\"You are a pirate. Answe"
      "r as one.\"}"),

    /* Anthropic: system as text blocks, before the messages, content blocks */
    agw_test_body(
      "{\"system\":[{\"type\":\"text\",\"text\":\"You are terse.\",\"ca"
      "che_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"tex"
      "t\":\" Really.\"}],\"model\":\"claude\",\"messages\":[{\"role\":"
      "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi\"},{\"typ"
      "e\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"i"
      "mage/png\",\"data\":\"xyz\"}}]}],\"max_tokens\":5}"),

    /* Anthropic: system and no messages array */
    agw_test_body(
      "{\"system\":\"sys only\",\"prompt\":\"p\"}"),

    /* completions: a prompt string */
    agw_test_body(
      "{\"model\":\"m\",\"prompt\":\"Once upon a time\",\"max_tokens\":"
      "16,\"logprobs\":null,\"echo\":false}"),

    /* completions: a batch of prompts */
    agw_test_body(
      "{\"model\":\"m\",\"prompt\":[ \"first prompt\" , \"second prompt"
      "\"],\"n\":2}"),

    /* completions: token ids, then an empty batch */
    agw_test_body(
      "{\"prompt\":[101,2023,2003],\"model\":\"m\"}"),

    /* completions: an empty batch */
    agw_test_body(
      "{\"prompt\":[]}"),

    /* completions: a batch of token id lists */
    agw_test_body(
      "{\"prompt\":[[1,2],[3]]}"),

    /* Responses: input as a string */
    agw_test_body(
      "{\"model\":\"m\",\"input\":\"Write a haiku about nginx.\",\"inst"
      "ructions\":\"Be poetic.\"}"),

    /* Responses: input as items: messages, a string, a function call */
    agw_test_body(
      "{\"model\":\"m\",\"input\":[{\"role\":\"developer\",\"content\":"
      "\"Only haiku.\"},\"a bare item\",{\"type\":\"function_call\",\"c"
      "all_id\":\"x\",\"name\":\"f\",\"arguments\":\"{}\"},{\"type\":\""
      "function_call_output\",\"call_id\":\"x\",\"output\":\"42\"},{\"r"
      "ole\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\""
      "Now one about caches.\"}]}]}"),

    /* escapes: \u00e9, a surrogate pair, \n, \t, \", \\, \/ */
    agw_test_body(
      "{\"messages\":[{\"role\":\"us\\u0065r\",\"content\":\"caf\\u00e9"
      " \\ud83d\\ude00 line\\nnext\\ttab \\\"quoted\\\" back\\\\slash s"
      "l\\/ash \\u0000 nul \\b\\f\\r\"}]}"),

    /* escapes at a string's end and next to its quote */
    agw_test_body(
      "{\"messages\":[{\"role\":\"user\",\"content\":\"ends with a quot"
      "e\\\"\"},{\"role\":\"user\",\"content\":\"ends with a backslash"
      "\\\\\"},{\"role\":\"u\",\"content\":\"\\\\\\\"\\\\\"}]}"),

    /* escaped names are not the names looked for */
    agw_test_body(
      "{\"m\\u0065ssages\":[{\"role\":\"user\",\"content\":\"no\"}],\"p"
      "rompt\":\"yes\",\"r\\u006fle\":\"x\"}"),

    /* the first member of a name counts */
    agw_test_body(
      "{\"messages\":[{\"role\":\"user\",\"role\":\"system\",\"content"
      "\":\"first\",\"content\":\"second\"}],\"messages\":[{\"role\":\""
      "x\",\"content\":\"later\"}],\"system\":\"s1\",\"system\":\"s2\"}"),

    /* messages win over prompt and input */
    agw_test_body(
      "{\"input\":\"i\",\"prompt\":\"p\",\"messages\":[{\"role\":\"user"
      "\",\"content\":\"m\"}]}"),

    /* messages that is not an array: prompt then */
    agw_test_body(
      "{\"messages\":{\"role\":\"user\"},\"prompt\":\"p\"}"),

    /* prompt that is neither: input then */
    agw_test_body(
      "{\"prompt\":5,\"input\":\"i\"}"),

    /* odd messages: numbers, nested arrays, empty objects, literals */
    agw_test_body(
      "{\"messages\":[1,[2,[3]],{},{\"role\":null,\"content\":true},{\""
      "role\":[\"a\"],\"content\":{\"x\":\"y\"}},\"s\",-1.5e+3,false]}"),

    /* pretty-printed with spaces, tabs and CRLF */
    agw_test_body(
      "{\r\n\t\"model\" : \"m\" ,\r\n\t\"messages\" : [\r\n\t\t{ \"role"
      "\" : \"system\" , \"content\" : \"Be brief.\" } ,\r\n\t\t{\n  \""
      "role\":\t\"user\",\n  \"content\" :\n[ { \"type\":\"text\" , \"t"
      "ext\" : \"Hi\" } ]\n}\n\t]\r\n}\r\n"),

    /* whitespace around the object and nothing after it */
    agw_test_body(
      "  \n\t{\"prompt\":\"x\"}  trailing junk ignored"),

    /* non-ASCII UTF-8 as is */
    agw_test_body(
      "{\"messages\":[{\"role\":\"user\",\"content\":\"Gr\303\274\303"
      "\237e, \344\270\226\347\225\214 \360\237\214\215\"}]}"),

    /* long content with escapes past 256 bytes */
    agw_test_body(
      "{\"messages\":[{\"role\":\"system\",\"content\":\"lorem ipsum do"
      "lor sit amet \\n lorem ipsum dolor sit amet \\n lorem ipsum dolo"
      "r sit amet \\n lorem ipsum dolor sit amet \\n lorem ipsum dolor "
      "sit amet \\n lorem ipsum dolor sit amet \\n lorem ipsum dolor si"
      "t amet \\n lorem ipsum dolor sit amet \\n lorem ipsum dolor sit "
      "amet \\n lorem ipsum dolor sit amet \\n lorem ipsum dolor sit am"
      "et \\n lorem ipsum dolor sit amet \\n tail \\u00e9\\ud83d\\ude00"
      " end\"},{\"role\":\"user\",\"content\":\"q\\\"q\\\"q\\\"q\\\"q\\"
      "\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q"
      "\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\""
      "q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"q\\\"\"}]}"),

    /* an invalid escape after a long run (checked past a small buffer) */
    agw_test_body(
      "{\"prompt\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\\x\"}"),

    /* a lone high surrogate */
    agw_test_body(
      "{\"messages\":[{\"role\":\"user\",\"content\":\"x\\ud800y\"}]}"),

    /* a lone low surrogate */
    agw_test_body(
      "{\"prompt\":\"\\udc00\"}"),

    /* a high surrogate and a bad low one */
    agw_test_body(
      "{\"prompt\":\"a\\ud83d\\u0041b\"}"),

    /* a bad hex digit */
    agw_test_body(
      "{\"input\":\"\\u12G4\"}"),

    /* a short \u at the end */
    agw_test_body(
      "{\"prompt\":\"abc\\u12\"}"),

    /* an invalid escape in a member that is not read */
    agw_test_body(
      "{\"model\":\"\\q\",\"prompt\":\"fine\"}"),

    /* an invalid escape in a name */
    agw_test_body(
      "{\"pro\\mpt\":\"x\",\"prompt\":\"y\"}"),

    /* broken after the prompt */
    agw_test_body(
      "{\"prompt\":\"complete\",\"model\":"),

    /* broken in a later message */
    agw_test_body(
      "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":"
      "\"user\" \"content\":\"b\"}]}"),

    /* a missing comma between members */
    agw_test_body(
      "{\"prompt\":\"a\" \"model\":\"m\"}"),

    /* an array closed by a brace */
    agw_test_body(
      "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}}"),

    /* control bytes and a NUL inside strings */
    agw_test_body(
      "{\"prompt\":\"a\001b\000c\037d\"}"),

    /* bytes that are not UTF-8 */
    agw_test_body(
      "{\"messages\":[{\"role\":\"user\",\"content\":\"\377\376\303(\"}"
      "]}"),

    /* not an object */
    agw_test_body(
      "[\"prompt\",\"x\"]"),

    /* a bare string */
    agw_test_body(
      "\"prompt\""),

    /* empty object */
    agw_test_body(
      "{}"),

    /* an object never closed */
    agw_test_body(
      "{"),

    /* literals as values */
    agw_test_body(
      "{\"a\":true,\"b\":null,\"c\":-0.5E-7,\"d\":nul,\"prompt\":\"p\"}"),

    /* literals in capitals are none */
    agw_test_body(
      "{\"a\":True,\"b\":NULL,\"prompt\":\"p\"}"),

    /* a number run the reader takes as a literal */
    agw_test_body(
      "{\"a\":1x2,\"prompt\":\"p\"}"),

    /* 64 nested arrays beside the prompt */
    agw_test_body(
      "{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
      "]]]]]]],\"prompt\":\"p\"}"),

    /* 65 nested arrays beside the prompt */
    agw_test_body(
      "{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
      "]]]]]]]]],\"prompt\":\"p\"}"),

    /* 63 nested arrays around a number */
    agw_test_body(
      "{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
      "]]]]]],\"prompt\":\"p\"}"),

    /* 64 nested arrays around a number */
    agw_test_body(
      "{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
      "]]]]]]]],\"prompt\":\"p\"}"),

    /* nested objects 40 deep */
    agw_test_body(
      "{\"x\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{"
      "\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{"
      "\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{"
      "\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{"
      "\"a\":{\"a\":{\"a\":{\"a\":{\"a\":\"v\"}}}}}}}}}}}}}}}}}}}}}}}}}"
      "}}}}}}}}}}}}}}},\"messages\":[{\"role\":\"user\",\"content\":\"d"
      "eep\"}]}"),
};


/* the bytes that make and break JSON, for the mutations */
static const uint8_t  specials[] = {
    '"', '\\', '{', '}', '[', ']', ',', ':', ' ', 'u', '0', 'd', 'x', 'E',
    'T', '\0', 0xff
};


static size_t  compared;


/* the reader and its reference on body[0..len) with a buffer of cap */
static void
agw_prompt_compare(const uint8_t *body, size_t len, size_t cap,
    const char *what, size_t at)
{
    int       rc, ref_rc;
    size_t    i, n, ref_n;
    uint8_t  *in, *out, *ref;

    /* the input allocated to its size: ASan sees a read past its end */
    in = malloc(len ? len : 1);
    out = malloc(cap + AGW_TEST_GUARD);
    ref = malloc(cap ? cap : 1);

    assert_non_null(in);
    assert_non_null(out);
    assert_non_null(ref);

    memcpy(in, body, len);
    memset(out, 0xaa, cap + AGW_TEST_GUARD);

    rc = agw_prompt_prefix(in, len, out, cap, &n);
    ref_rc = agw_prompt_ref_prefix(in, len, ref, cap, &ref_n);

    if (rc != ref_rc || n != ref_n || memcmp(out, ref, n) != 0) {
        print_error("%s at %zu, cap %zu: %d, %zu bytes \"%.*s\","
                    " the reference %d, %zu bytes \"%.*s\"; input %zu"
                    " bytes \"%.*s\"\n", what, at, cap, rc, n, (int) n,
                    out, ref_rc, ref_n, (int) ref_n, ref, len, (int) len,
                    body);
        fail();
    }

    /* nothing written past the text (past the buffer, if INVALID) */

    for (i = (rc == AGW_PROMPT_INVALID) ? cap : n;
         i < cap + AGW_TEST_GUARD;
         i++)
    {
        if (out[i] != 0xaa) {
            print_error("%s at %zu, cap %zu: byte %zu written\n", what, at,
                        cap, i);
            fail();
        }
    }

    compared++;

    free(in);
    free(out);
    free(ref);
}


/* make bench's chat: a system prompt longer than prefix's 2048 bytes */
static size_t
agw_prompt_bench_body(uint8_t *buf, size_t size)
{
    int     k;
    size_t  i, len;

    len = snprintf((char *) buf, size, "{\"model\":\"sim-small\","
                   "\"max_tokens\":8,\"messages\":[{\"role\":\"system\","
                   "\"content\":\"You are a helpful assistant.");

    for (i = 1; i < 80; i++) {
        len += snprintf((char *) buf + len, size - len,
                        " You are a helpful assistant.");
    }

    k = snprintf((char *) buf + len, size - len, "\"},{\"role\":\"user\","
                 "\"content\":\"what balancing costs\"}]}");
    len += k;

    assert_true(len < size);

    return len;
}


static void
test_prompt_same_as_reference(void **state)
{
    size_t          i, c, len;
    uint8_t         bench[4096];
    const uint8_t  *body;
    static size_t   caps[] = {
        41, 63, 64, 65, 127, 128, 255, 256, 1024, 2047, 2048, AGW_TEST_CAP
    };

    compared = 0;

    for (i = 0; i <= sizeof(bodies) / sizeof(bodies[0]); i++) {
        if (i < sizeof(bodies) / sizeof(bodies[0])) {
            body = (const uint8_t *) bodies[i].data;
            len = bodies[i].len;

        } else {
            len = agw_prompt_bench_body(bench, sizeof(bench));
            body = bench;
        }

        for (c = 0; c <= 40; c++) {
            agw_prompt_compare(body, len, c, "body", i);
        }

        for (c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
            agw_prompt_compare(body, len, caps[c], "body", i);
        }

        for (c = len > 2 ? len - 2 : 0; c <= len + 2; c++) {
            agw_prompt_compare(body, len, c, "body", i);
        }
    }

    print_message("%zu comparisons\n", compared);
}


static void
test_prompt_same_as_reference_when_broken(void **state)
{
    size_t          i, at, s, c, len;
    uint8_t         mutant[4096], bench[4096];
    const uint8_t  *body;
    static size_t   cut_caps[] = { 0, 1, 5, 64, 2048 };
    static size_t   caps[] = { 3, 64, AGW_TEST_CAP };

    compared = 0;

    /* every request cut short at every byte */

    for (i = 0; i <= sizeof(bodies) / sizeof(bodies[0]); i++) {
        if (i < sizeof(bodies) / sizeof(bodies[0])) {
            body = (const uint8_t *) bodies[i].data;
            len = bodies[i].len;

        } else {
            len = agw_prompt_bench_body(bench, sizeof(bench));
            body = bench;
        }

        for (at = 0; at <= len; at++) {
            for (c = 0; c < sizeof(cut_caps) / sizeof(cut_caps[0]); c++) {
                agw_prompt_compare(body, at, cut_caps[c], "cut", at);
            }
        }
    }

    /* each byte of each request replaced by one that matters, or gone */

    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        body = (const uint8_t *) bodies[i].data;
        len = bodies[i].len;

        assert_true(len < sizeof(mutant));

        for (at = 0; at < len; at++) {
            memcpy(mutant, body, len);

            for (s = 0; s < sizeof(specials); s++) {
                mutant[at] = specials[s];

                for (c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
                    agw_prompt_compare(mutant, len, caps[c], "replaced",
                                       at);
                }
            }

            memcpy(mutant, body, at);
            memcpy(mutant + at, body + at + 1, len - at - 1);

            agw_prompt_compare(mutant, len - 1, 64, "deleted", at);
            agw_prompt_compare(mutant, len - 1, AGW_TEST_CAP, "deleted", at);
        }
    }

    print_message("%zu comparisons\n", compared);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt_vectors),
        cmocka_unit_test(test_prompt_ignores_what_follows_the_prefix),
        cmocka_unit_test(test_prompt_depth_is_bounded),
        cmocka_unit_test(test_prompt_same_as_reference),
        cmocka_unit_test(test_prompt_same_as_reference_when_broken),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
