
/*
 * The reference for the answer readers: agw_answer_t (lib/agw_tokens.c)
 * and the usage reader (lib/agw_usage.c) as they were at commit 8169499,
 * over the reference push tokenizer (agw_json_push_ref.c), kept as they
 * were so that tests can hold lib's readers to exactly the same results:
 * the same usage figures, content events, events and verdicts, for every
 * answer and stream cut anywhere (tests/unit/test_usage_diff.c,
 * tests/fuzz/fuzz_json_push_diff.c).  A stream goes through lib's SSE
 * parser (agw_sse.c), which the faster readers did not change.
 *
 * Included by those tests, never built into the module: every function
 * and type is static and named _ref.
 */


#include <string.h>

#include "agw_usage.h"
#include "agw_json_push_ref.c"


typedef struct {
    agw_json_push_ref_t  json;
    agw_usage_t          usage;
    unsigned             type;
    unsigned             usage_depth;
    unsigned             details_depth;
    uint8_t              key[5];
    unsigned             content:1;
} agw_answer_ref_t;

typedef struct {
    unsigned          mode;              /* AGW_USAGE_JSON, _SSE */
    agw_usage_t       usage;
    uint64_t          content;
    uint64_t          events;
    agw_answer_ref_t  answer;
    agw_sse_t         sse;
    uint64_t          broken;            /* events whose data was neither
                                            JSON nor [DONE]: where the
                                            readers may part (the lib's
                                            skims what it does not read) */
    uint64_t          data_len;          /* of the event being read */
    uint8_t           head[6];           /* its first bytes */
    unsigned          stream_usage:1;
    unsigned          in_event:1;
} agw_usage_ref_reader_t;


enum {
    AGW_K_NONE = 0,
    AGW_K_USAGE,
    AGW_K_MESSAGE,
    AGW_K_RESPONSE,
    AGW_K_TYPE,
    AGW_K_CHOICES,
    AGW_K_DELTA,
    AGW_K_CONTENT,
    AGW_K_TEXT,
    AGW_K_TOTAL,
    AGW_K_INPUT,
    AGW_K_OUTPUT,
    AGW_K_DETAILS,
    AGW_K_CACHED,
    AGW_K_CACHE_READ,
    AGW_K_CACHE_WRITE
};


/* an answer's "type" values that matter, and what they mean */

typedef struct {
    size_t       len;
    const char  *name;
    unsigned     value;
} agw_tokens_name_t;


#define agw_tokens_name(s, v)  { sizeof(s) - 1, s, v }


static const agw_tokens_name_t  agw_tokens_types[] = {
    agw_tokens_name("response.completed", AGW_ANSWER_TYPE_COMPLETED),
    agw_tokens_name("message_stop", AGW_ANSWER_TYPE_MESSAGE_STOP),
    agw_tokens_name("response.output_text.delta",
                    AGW_ANSWER_TYPE_TEXT_DELTA),
    agw_tokens_name("content_block_delta", AGW_ANSWER_TYPE_TEXT_DELTA),
    agw_tokens_name("message_start", AGW_ANSWER_TYPE_MESSAGE_START),
    agw_tokens_name("message_delta", AGW_ANSWER_TYPE_MESSAGE_DELTA),
    { 0, NULL, 0 }
};


static unsigned
agw_tokens_lookup(const agw_tokens_name_t *names, const agw_json_event_t *ev)
{
    if (ev->full_len != ev->text_len) {
        return 0;                        /* longer than any name we know */
    }

    for ( /* void */ ; names->name; names++) {
        if (names->len == ev->text_len
            && memcmp(names->name, ev->text, names->len) == 0)
        {
            return names->value;
        }
    }

    return 0;
}


#define agw_tokens_is(t, s)  (memcmp(t, s, sizeof(s) - 1) == 0)


/*
 * The class of a key.  Every key of every event at depths 1 to 4 comes
 * here, and most are none of these: the length tells at once which few
 * names to compare.
 */

static unsigned
agw_tokens_key(const agw_json_event_t *ev)
{
    const uint8_t  *t;

    if (ev->full_len != ev->text_len) {
        return AGW_K_NONE;               /* longer than any name we know */
    }

    t = ev->text;

    switch (ev->text_len) {

    case 4:
        return agw_tokens_is(t, "type") ? AGW_K_TYPE
               : agw_tokens_is(t, "text") ? AGW_K_TEXT : AGW_K_NONE;

    case 5:
        return agw_tokens_is(t, "usage") ? AGW_K_USAGE
               : agw_tokens_is(t, "delta") ? AGW_K_DELTA : AGW_K_NONE;

    case 7:
        return agw_tokens_is(t, "message") ? AGW_K_MESSAGE
               : agw_tokens_is(t, "choices") ? AGW_K_CHOICES
               : agw_tokens_is(t, "content") ? AGW_K_CONTENT : AGW_K_NONE;

    case 8:
        return agw_tokens_is(t, "response") ? AGW_K_RESPONSE : AGW_K_NONE;

    case 12:
        return agw_tokens_is(t, "total_tokens") ? AGW_K_TOTAL
               : agw_tokens_is(t, "input_tokens") ? AGW_K_INPUT
               : AGW_K_NONE;

    case 13:
        return agw_tokens_is(t, "prompt_tokens") ? AGW_K_INPUT
               : agw_tokens_is(t, "output_tokens") ? AGW_K_OUTPUT
               : agw_tokens_is(t, "cached_tokens") ? AGW_K_CACHED
               : AGW_K_NONE;

    case 17:
        return agw_tokens_is(t, "completion_tokens") ? AGW_K_OUTPUT
                                                      : AGW_K_NONE;

    case 20:
        return agw_tokens_is(t, "input_tokens_details") ? AGW_K_DETAILS
                                                         : AGW_K_NONE;

    case 21:
        return agw_tokens_is(t, "prompt_tokens_details") ? AGW_K_DETAILS
                                                          : AGW_K_NONE;

    case 23:
        return agw_tokens_is(t, "cache_read_input_tokens")
               ? AGW_K_CACHE_READ : AGW_K_NONE;

    case 27:
        return agw_tokens_is(t, "cache_creation_input_tokens")
               ? AGW_K_CACHE_WRITE : AGW_K_NONE;

    default:
        return AGW_K_NONE;
    }
}


/* a non-negative integer, saturating; -1 if the number is not one */

static int
agw_tokens_integer(const agw_json_event_t *ev, uint64_t *v)
{
    size_t  i;

    *v = 0;

    for (i = 0; i < ev->text_len; i++) {
        if (ev->text[i] < '0' || ev->text[i] > '9') {
            return -1;
        }

        *v = agw_tokens_add(*v * 10 > AGW_TOKENS_MAX ? AGW_TOKENS_MAX
                                                      : *v * 10,
                            (uint64_t) (ev->text[i] - '0'));
    }

    if (ev->full_len != ev->text_len) {
        *v = AGW_TOKENS_MAX;             /* more digits than the text holds */
    }

    return 0;
}


static int
agw_answer_ref_event(void *ctx, const agw_json_event_t *ev)
{
    unsigned           d;
    uint64_t           v;
    agw_answer_ref_t  *a;

    a = ctx;
    d = ev->depth;

    switch (ev->type) {

    case AGW_JSON_KEY:
        if (d <= 4) {
            a->key[d] = (uint8_t) agw_tokens_key(ev);
        }
        break;

    case AGW_JSON_OBJECT:
        if ((d == 1 && a->key[1] == AGW_K_USAGE)
            || (d == 2 && a->key[2] == AGW_K_USAGE
                && (a->key[1] == AGW_K_MESSAGE
                    || a->key[1] == AGW_K_RESPONSE)))
        {
            a->usage_depth = d + 1;

        } else if (a->usage_depth && d == a->usage_depth && d < 4
                   && a->key[d] == AGW_K_DETAILS)
        {
            a->details_depth = d + 1;
        }

        /* fall through */

    case AGW_JSON_ARRAY:
        if (d < 4) {
            a->key[d + 1] = AGW_K_NONE;
        }
        break;

    case AGW_JSON_OBJECT_END:
        if (a->details_depth && d + 1 == a->details_depth) {
            a->details_depth = 0;

        } else if (a->usage_depth && d + 1 == a->usage_depth) {
            a->usage_depth = 0;
        }
        break;

    case AGW_JSON_NUMBER:
        if (d == 0 || agw_tokens_integer(ev, &v) != 0) {
            break;
        }

        if (d == a->details_depth) {
            if (a->key[d] == AGW_K_CACHED) {
                a->usage.cached = v;
                a->usage.has_cached = 1;
            }

            break;
        }

        if (d != a->usage_depth) {
            break;
        }

        switch (a->key[d]) {
        case AGW_K_TOTAL:
            a->usage.total = v;
            a->usage.has_total = 1;
            break;
        case AGW_K_INPUT:
            a->usage.input = v;
            a->usage.has_input = 1;
            break;
        case AGW_K_OUTPUT:
            a->usage.output = v;
            a->usage.has_output = 1;
            break;
        case AGW_K_CACHE_READ:
            a->usage.cache_read = v;
            a->usage.has_cache_read = 1;
            break;
        case AGW_K_CACHE_WRITE:
            a->usage.cache_write = v;
            a->usage.has_cache_write = 1;
            break;
        }

        break;

    case AGW_JSON_STRING:
        if (d == 1 && a->key[1] == AGW_K_TYPE) {
            a->type = agw_tokens_lookup(agw_tokens_types, ev);
        }

        if (a->key[1] == AGW_K_CHOICES && ev->full_len > 0
            && ((d == 4 && a->key[3] == AGW_K_DELTA
                 && a->key[4] == AGW_K_CONTENT)
                || (d == 3 && a->key[3] == AGW_K_TEXT)))
        {
            a->content = 1;
        }

        break;
    }

    return 0;
}


static void
agw_answer_ref_init(agw_answer_ref_t *a)
{
    memset(a, 0, sizeof(agw_answer_ref_t));
    agw_json_push_ref_init(&a->json, agw_answer_ref_event, a);
}


static int
agw_answer_ref_feed(agw_answer_ref_t *a, const uint8_t *data,
    size_t len)
{
    return agw_json_push_ref_feed(&a->json, data, len);
}


static int
agw_answer_ref_finish(agw_answer_ref_t *a)
{
    return agw_json_push_ref_finish(&a->json);
}


static void
agw_usage_ref_data(void *ctx, const uint8_t *p, size_t len)
{
    agw_usage_ref_reader_t  *u = ctx;

    if (!u->in_event) {
        agw_answer_ref_init(&u->answer);
        u->in_event = 1;
        u->data_len = 0;
    }

    if (len && u->data_len < sizeof(u->head)) {
        memcpy(u->head + u->data_len, p,
               len < sizeof(u->head) - u->data_len
               ? len : sizeof(u->head) - u->data_len);
    }

    u->data_len += len;

    (void) agw_answer_ref_feed(&u->answer, p, len);
}


static int
agw_usage_ref_event(void *ctx, const agw_sse_event_t *ev)
{
    agw_usage_ref_reader_t  *u = ctx;

    static const char  text_delta[] = "response.output_text.delta";
    static const char  block_delta[] = "content_block_delta";

    u->events++;

    if ((ev->type_len == sizeof(text_delta) - 1
         && memcmp(ev->type, text_delta, ev->type_len) == 0)
        || (ev->type_len == sizeof(block_delta) - 1
            && memcmp(ev->type, block_delta, ev->type_len) == 0))
    {
        u->content++;
        u->in_event = 0;

        return 0;
    }

    if (!u->in_event) {
        return 0;                        /* empty data */
    }

    u->in_event = 0;

    if (agw_answer_ref_finish(&u->answer) != AGW_JSON_OK) {
        if (u->data_len != 6 || memcmp(u->head, "[DONE]", 6) != 0) {
            u->broken++;
        }

        return 0;
    }

    if (u->answer.usage.has_total || u->answer.usage.has_input
        || u->answer.usage.has_output)
    {
        agw_usage_merge(&u->usage, &u->answer.usage);
        u->stream_usage = 1;
    }

    if (u->answer.content
        || u->answer.type == AGW_ANSWER_TYPE_TEXT_DELTA)
    {
        u->content++;
    }

    return 0;
}


static void
agw_usage_ref_reader_init(agw_usage_ref_reader_t *u, unsigned mode)
{
    memset(u, 0, sizeof(agw_usage_ref_reader_t));

    u->mode = mode;

    if (mode == AGW_USAGE_SSE) {
        agw_sse_init_stream(&u->sse, agw_usage_ref_data, agw_usage_ref_event,
                            u);

    } else {
        agw_answer_ref_init(&u->answer);
    }
}


static void
agw_usage_ref_reader_feed(agw_usage_ref_reader_t *u, const uint8_t *p,
    size_t len)
{
    if (u->mode == AGW_USAGE_SSE) {
        (void) agw_sse_feed(&u->sse, p, len);

    } else {
        (void) agw_answer_ref_feed(&u->answer, p, len);
    }
}


static int
agw_usage_ref_reader_usage(const agw_usage_ref_reader_t *u,
    agw_usage_t *usage)
{
    const agw_usage_t  *src;

    src = (u->mode == AGW_USAGE_SSE) ? &u->usage : &u->answer.usage;

    if (u->mode == AGW_USAGE_SSE && !u->stream_usage) {
        memset(usage, 0, sizeof(agw_usage_t));
        return 0;
    }

    *usage = *src;

    return src->has_total || src->has_input || src->has_output;
}


/*
 * Whether the reference has found broken JSON: a JSON answer's tokenizer
 * failed, or that of the stream's event being read, or an event before
 * it was neither JSON nor [DONE].  The lib's readers skim what they do not
 * read (AGW_JSON_SKIP), so from there on the two may part.
 */

static int
agw_usage_ref_reader_broken(const agw_usage_ref_reader_t *u)
{
    if (u->mode == AGW_USAGE_SSE && u->broken) {
        return 1;
    }

    return (u->mode == AGW_USAGE_JSON || u->in_event)
           && u->answer.json.rc != AGW_JSON_OK;
}
