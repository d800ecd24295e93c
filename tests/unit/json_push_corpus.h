
/*
 * Answers to hold the readers to their references with
 * (test_json_push_diff.c, test_usage_diff.c): the answers and events of
 * the three APIs the gateway reads (Chat Completions, Responses,
 * Anthropic Messages), JSON's corners, and their mutations, from a
 * deterministic generator.
 */


#ifndef _JSON_PUSH_CORPUS_H_INCLUDED_
#define _JSON_PUSH_CORPUS_H_INCLUDED_


#define AGW_CORPUS_MAX  4096             /* bytes of an input */

#define AGW_CORPUS_BASES  (sizeof(bases) / sizeof(bases[0]))


static uint64_t  diff_seed = 0x9e3779b97f4a7c15ULL;


static uint64_t
diff_rand(void)
{
    diff_seed ^= diff_seed << 13;
    diff_seed ^= diff_seed >> 7;
    diff_seed ^= diff_seed << 17;

    return diff_seed;
}


static const char  *bases[] = {
    /* Chat Completions: a stream's chunks (ai-sim's, OpenAI's), its usage */
    "{\"id\":\"chatcmpl-b0de94c403e1317b\",\"object\":\"chat.completion.chunk"
    "\",\"created\":1796613529,\"model\":\"sim-small\",\"server_id\":\"s1\","
    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\""
    ":\"\"},\"finish_reason\":null}],\"usage\":null}",

    "{\"id\":\"chatcmpl-b0de94c403e1317b\",\"object\":\"chat.completion.chunk"
    "\",\"created\":1796613529,\"model\":\"sim-small\",\"server_id\":\"s1\","
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" tenant\"},"
    "\"finish_reason\":null}],\"usage\":null}",

    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":"
    "[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":8,"
    "\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":2}}}",

    "{\"choices\":[{\"index\":0,\"text\":\"legacy completion\","
    "\"logprobs\":null,\"finish_reason\":\"length\"}]}",

    /* a whole answer, pretty-printed */
    "{\n  \"id\": \"chatcmpl-2\",\n  \"object\": \"chat.completion\",\n"
    "  \"choices\": [\n    {\n      \"index\": 0,\n      \"message\": {\n"
    "        \"role\": \"assistant\",\n        \"content\": \"Hello there,"
    " how may I help you today? A long answer, longer than the text\"\n"
    "      },\n      \"finish_reason\": \"stop\"\n    }\n  ],\n"
    "  \"usage\": {\r\n\t\"prompt_tokens\": 9, \"completion_tokens\": 12,"
    " \"total_tokens\": 21\n  }\n}\n",

    /* Responses API events */
    "{\"type\":\"response.output_text.delta\",\"item_id\":\"msg_1\","
    "\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}",

    "{\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\","
    "\"error\":null,\"output\":[{\"type\":\"message\",\"content\":[{\"type\""
    ":\"output_text\",\"text\":\"Hello \\\"world\\\" \\u00e9\\ud83d\\ude00"
    "\"}]}],\"usage\":{\"input_tokens\":5,\"input_tokens_details\":"
    "{\"cached_tokens\":2},\"output_tokens\":7,\"output_tokens_details\":"
    "{\"reasoning_tokens\":0},\"total_tokens\":12}}}",

    /* Anthropic Messages events */
    "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":"
    "\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\","
    "\"stop_reason\":null,\"usage\":{\"input_tokens\":25,"
    "\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":10,"
    "\"output_tokens\":1}}}",

    "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
    "\"text_delta\",\"text\":\"ok\"}}",

    "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
    "\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}",

    "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
    "\"message\":\"Overloaded\"}}",

    /* JSON's corners */
    "[-0,0,-1.5e+10,0.1E-3,12e5,1E+2,-0.0e-0,123456789012345678901234567890"
    "12345678901234567890123,1.00000000000000000000000000000000000000000000"
    "000000001]",

    "{\"esc\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\\u007f\\u0080"
    "\\u07ff\\u0800\\uffff\\uD834\\uDD1E\",\"utf8\":\"\xc3\xa9\xe2\x82\xac"
    "\xf0\x9f\x98\x80\xff\xfe\",\"k\\u0065y\":\"v\"}",

    "[true,false,null,[],{},[[]],{\"a\":{}},\"\",\"a\"]",

    " \t\r\n{ \"a\" : [ 1 , 2 , { \"b\" : null } ] , \"c\" : true } \n",

    "{\"a_key_that_is_much_longer_than_the_forty_eight_bytes_kept_of_it\":"
    "\"and a value that is longer than forty-eight bytes as well, by far\"}",

    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
    "1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",

    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
    "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",

    "42",
    "-12.5e3 ",
    "\"top\"",
    "true",
    "nul",
    "",
    "{\"a\":1}{\"b\":2}",
    "{\"a\":\"\\ud800\"}",
    "{\"a\":\"\\udc00\"}",
    "{\"a\":\"\\ud800\\u0041\"}",
    "{\"a\":\"\\ud800x\"}",
    "{\"a\":\"\\x\"}",
    "{\"a\":01}",
    "{\"a\":1.}",
    "{\"a\":1e}",
    "{\"a\":-}",
    "{\"a\":1,}",
    "[1,]",
    "{\"a\" 1}",
    "{,}",
    "[1 2]",
    "{\"a\":[}",
    "{\"a\":\"line\nbreak\"}",
};


/* bytes that matter to JSON, for mutations */

static const char  alphabet[] = "{}[]\":,\\/u0123456789abcdefABCDEF"
                                "eE+-.tfnrulsx \t\n\r";


static size_t
diff_mutate(uint8_t *buf, size_t len)
{
    size_t    i, k, n, at, from;
    unsigned  what;

    k = 1 + diff_rand() % 4;

    for (i = 0; i < k; i++) {
        what = diff_rand() % 6;
        at = len ? diff_rand() % len : 0;

        switch (what) {

        case 0:                          /* a byte changed */
        case 1:
            if (len) {
                buf[at] = (diff_rand() % 4)
                          ? (uint8_t) alphabet[diff_rand()
                                               % (sizeof(alphabet) - 1)]
                          : (uint8_t) diff_rand();
            }
            break;

        case 2:                          /* a byte inserted */
            if (len + 1 < AGW_CORPUS_MAX) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = (uint8_t) alphabet[diff_rand()
                                             % (sizeof(alphabet) - 1)];
                len++;
            }
            break;

        case 3:                          /* a byte deleted */
            if (len) {
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            }
            break;

        case 4:                          /* a span repeated */
            if (len) {
                from = diff_rand() % len;
                n = 1 + diff_rand() % 64;

                if (from + n > len) {
                    n = len - from;
                }

                if (len + n < AGW_CORPUS_MAX) {
                    memmove(buf + at + n, buf + at, len - at);
                    memmove(buf + at, buf + (from < at ? from : from + n),
                            n);
                    len += n;
                }
            }
            break;

        default:                         /* cut short */
            len = at;
        }
    }

    return len;
}

/*
 * One SSE event carrying data[0..n), appended to buf from *len (at most
 * cap): now and then a comment before it and an event type, "data:" with
 * or without its space, the data in two lines cut anywhere; 0 if it did
 * not fit (what did is kept).  Inline: not every file that includes this
 * one writes streams.
 */

static inline int
diff_sse_event(uint8_t *buf, size_t *len, size_t cap, const char *eol,
    const uint8_t *data, size_t n)
{
    size_t       at;
    const char  *type;

    static const char  *types[] = {
        "response.output_text.delta", "content_block_delta",
        "response.completed", "message_stop", "message_start",
        "message_delta", "error", "ping"
    };

#define diff_add(s, sl)                                                      \
    do {                                                                     \
        if (*len + (sl) > cap) {                                             \
            return 0;                                                        \
        }                                                                    \
        memcpy(buf + *len, s, sl);                                           \
        *len += (sl);                                                        \
    } while (0)

    if (diff_rand() % 8 == 0) {
        diff_add(": keep-alive", 12);
        diff_add(eol, strlen(eol));
    }

    if (diff_rand() % 3 == 0) {
        type = types[diff_rand() % (sizeof(types) / sizeof(types[0]))];
        diff_add("event: ", 7);
        diff_add(type, strlen(type));
        diff_add(eol, strlen(eol));
    }

    if (diff_rand() % 5) {
        diff_add("data: ", 6);

    } else {
        diff_add("data:", 5);            /* no space: the value as is */
    }

    if (n > 2 && diff_rand() % 8 == 0) {
        at = 1 + diff_rand() % (n - 1);

        diff_add(data, at);
        diff_add(eol, strlen(eol));
        diff_add("data: ", 6);
        diff_add(data + at, n - at);

    } else {
        diff_add(data, n);
    }

    diff_add(eol, strlen(eol));
    diff_add(eol, strlen(eol));

#undef diff_add

    return 1;
}


#endif /* _JSON_PUSH_CORPUS_H_INCLUDED_ */
