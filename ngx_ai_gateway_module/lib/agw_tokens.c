
/*
 * Tokens: what a request may cost, what it did cost, and when the budget
 * is back.
 *
 * Admission cannot know the cost of a generation, so it reserves an
 * estimate: the prompt at about four bytes a token (the usual rule of
 * thumb for English with OpenAI's tokenizers; the prompt is every form of
 * it agw_json_request.c reads in the same pass as the cache key: text,
 * messages, items, system prompts, tool schemas and calls), plus one token
 * per token id a prompt gives as numbers, plus what the request allows the
 * model to write: max_completion_tokens (or the Responses API's
 * max_output_tokens), else max_tokens, else the configured default.  A
 * body that is not JSON, or JSON with no prompt field, has no fields to
 * read, so its size stands in for the prompt.  Every sum saturates at
 * AGW_TOKENS_MAX, far above any bucket, so a hostile max_tokens of 10^30
 * is a cost that never fits instead of an overflow that fits.
 *
 * Settlement reads the real figure from the answer as it passes, without
 * holding it: agw_answer_t wraps the push tokenizer, which keeps a few
 * dozen bytes whatever the split, and follows only the paths it needs:
 *
 *     usage.total_tokens                    OpenAI, non-streamed answers,
 *                                           and the last chunk of a stream
 *                                           with include_usage
 *     usage.prompt_tokens, .completion_tokens
 *     usage.input_tokens, .output_tokens    Anthropic, Responses (summed
 *                                           when there is no total)
 *     usage.prompt_tokens_details.cached_tokens,
 *     usage.input_tokens_details.cached_tokens
 *                                           of the input, read from the
 *                                           provider's prompt cache
 *     usage.cache_read_input_tokens,
 *     usage.cache_creation_input_tokens     Anthropic's, beyond its input
 *     response.usage.*                      Responses API,
 *                                           response.completed event
 *     message.usage.*                       Anthropic message_start event
 *
 * Only those paths count: a "usage" inside a string, a message or a
 * nested object is not the answer's usage.  A reader for usage
 * (agw_answer_init_reader()) asks the tokenizer to skim the value of any
 * key that leaves every path (AGW_JSON_SKIP), and of "choices" when it
 * does not need the content flag.  The same scanner says whether
 * an SSE event carries content (choices[].delta.content or
 * choices[].text non-empty, or a text delta event type), for streams that
 * never report usage.
 *
 * Durations are written as Go's time.Duration.String() writes them, since
 * OpenAI's x-ratelimit-reset-* headers are Go durations; from whole
 * milliseconds the rules are:
 *
 *     0                    "0s"
 *     1 to 999 ms          "<ms>ms"                     "20ms", "120ms"
 *     1 s and more         ["<h>h"]["<m>m"]"<s>[.<f>]s" "1s", "1.5s",
 *                                                       "6m0s", "1h0m0s",
 *                                                       "1h2m3.04s"
 *
 * where hours appear if non-zero, minutes if hours or minutes are
 * non-zero, and the fraction of a second has its trailing zeros trimmed
 * (none at all when whole).
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE              /* memrchr */
#endif

#include <string.h>

#include "agw_attr.h"
#include "agw_tokens.h"


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


uint64_t
agw_tokens_add(uint64_t a, uint64_t b)
{
    if (a >= AGW_TOKENS_MAX || b >= AGW_TOKENS_MAX - a) {
        return AGW_TOKENS_MAX;
    }

    return a + b;
}


static uint64_t
agw_tokens_of_bytes(uint64_t len)
{
    return len / AGW_TOKENS_BYTES_PER_TOKEN
           + (len % AGW_TOKENS_BYTES_PER_TOKEN != 0);
}


uint64_t
agw_tokens_estimate(const agw_json_request_t *req, uint64_t default_max)
{
    return agw_tokens_add(agw_tokens_prompt(req->prompt_bytes,
                                            req->prompt_tokens),
                          req->has_max_tokens ? req->max_tokens
                                              : default_max);
}


uint64_t
agw_tokens_prompt(uint64_t prompt_bytes, uint64_t prompt_tokens)
{
    return agw_tokens_add(agw_tokens_of_bytes(prompt_bytes), prompt_tokens);
}


uint64_t
agw_tokens_estimate_bytes(uint64_t len, uint64_t default_max)
{
    return agw_tokens_add(agw_tokens_of_bytes(len), default_max);
}


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



static void agw_answer_value(agw_answer_t *a, const agw_json_event_t *ev);


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


/*
 * Most tokens are keys, and a key only sets its depth's class: it is
 * taken here, the rest by agw_answer_value(), whose frame a key does not
 * pay for.
 */

static int
agw_answer_event(void *ctx, const agw_json_event_t *ev)
{
    unsigned       k;
    agw_answer_t  *a;

    a = ctx;

    if (ev->type != AGW_JSON_KEY) {
        agw_answer_value(a, ev);
        return 0;
    }

    if (ev->depth > 4) {
        return a->skims ? AGW_JSON_SKIP : 0;     /* nothing is read there */
    }

    k = agw_tokens_key(ev);
    a->key[ev->depth] = (uint8_t) k;

    /*
     * A key of no class leaves every path agw_answer_value() follows,
     * whatever lies under it: each one names the class of the key at
     * every depth it passes, but for depth 2 under "choices", an array
     * whose elements have no key (there, an object's key is not looked
     * at)
     */

    if (a->skims
        && ((k == AGW_K_NONE && !(ev->depth == 2
                                  && a->key[1] == AGW_K_CHOICES))
            || (k == AGW_K_CHOICES && ev->depth == 1 && a->no_choices)))
    {
        return AGW_JSON_SKIP;
    }

    return 0;
}


static AGW_NOINLINE void
agw_answer_value(agw_answer_t *a, const agw_json_event_t *ev)
{
    unsigned  d;
    uint64_t  v;

    d = ev->depth;

    switch (ev->type) {

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

        /* only where a figure is kept is the number read ("created" not) */

        if (d == 0 || (d != a->details_depth && d != a->usage_depth)) {
            break;
        }

        if (agw_tokens_integer(ev, &v) != 0) {
            break;
        }

        if (d == a->details_depth) {
            if (a->key[d] == AGW_K_CACHED) {
                a->usage.cached = v;
                a->usage.has_cached = 1;
            }

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
}


void
agw_answer_init(agw_answer_t *a)
{
    memset(a, 0, sizeof(agw_answer_t));
    agw_json_push_init(&a->json, agw_answer_event, a);
}


void
agw_answer_init_reader(agw_answer_t *a, unsigned content)
{
    agw_answer_init(a);

    a->skims = 1;
    a->no_choices = !content;
}


int
agw_answer_feed(agw_answer_t *a, const uint8_t *data, size_t len)
{
    return agw_json_push_feed(&a->json, data, len);
}


int
agw_answer_finish(agw_answer_t *a)
{
    return agw_json_push_finish(&a->json);
}


int
agw_usage_tokens(const agw_usage_t *u, uint64_t *tokens)
{
    if (u->has_total) {
        *tokens = u->total;
        return 1;
    }

    if (u->has_input || u->has_output) {
        *tokens = agw_tokens_add(u->input, u->output);
        return 1;
    }

    *tokens = 0;

    return 0;
}


void
agw_usage_merge(agw_usage_t *acc, const agw_usage_t *ev)
{
    if (ev->has_total) {
        *acc = *ev;
        return;
    }

    if (ev->has_input) {
        acc->input = ev->input;
        acc->has_input = 1;
    }

    if (ev->has_output) {
        acc->output = ev->output;
        acc->has_output = 1;
    }

    if (ev->has_cached) {
        acc->cached = ev->cached;
        acc->has_cached = 1;
    }

    if (ev->has_cache_read) {
        acc->cache_read = ev->cache_read;
        acc->has_cache_read = 1;
    }

    if (ev->has_cache_write) {
        acc->cache_write = ev->cache_write;
        acc->has_cache_write = 1;
    }
}


static size_t
agw_tokens_put_uint(uint8_t *buf, uint64_t v)
{
    size_t   n;
    uint8_t  tmp[20], *t;

    t = tmp + sizeof(tmp);

    do {
        *--t = (uint8_t) ('0' + v % 10);
        v /= 10;
    } while (v);

    n = (size_t) (tmp + sizeof(tmp) - t);
    memcpy(buf, t, n);

    return n;
}


size_t
agw_duration_format(uint8_t *buf, uint64_t ms)
{
    size_t    n;
    uint64_t  s, h, m, f;

    if (ms == 0) {
        memcpy(buf, "0s", 2);
        return 2;
    }

    if (ms < 1000) {
        n = agw_tokens_put_uint(buf, ms);
        memcpy(buf + n, "ms", 2);
        return n + 2;
    }

    s = ms / 1000;
    f = ms % 1000;
    h = s / 3600;
    m = s / 60 % 60;
    s %= 60;
    n = 0;

    if (h) {                             /* <= 5124095576030 h: 13 digits */
        n += agw_tokens_put_uint(buf + n, h);
        buf[n++] = 'h';
    }

    if (h || m) {
        n += agw_tokens_put_uint(buf + n, m);
        buf[n++] = 'm';
    }

    n += agw_tokens_put_uint(buf + n, s);

    if (f) {
        buf[n++] = '.';
        buf[n++] = (uint8_t) ('0' + f / 100);

        if (f % 100) {
            buf[n++] = (uint8_t) ('0' + f / 10 % 10);

            if (f % 10) {
                buf[n++] = (uint8_t) ('0' + f % 10);
            }
        }
    }

    buf[n++] = 's';

    return n;
}


/*
 * The usage of a stored answer, for the cache's tokens_saved: every HIT
 * would pay for a full parse of the body, so only its tail is read, where
 * OpenAI-style answers put "usage" (last in a JSON answer, in the last
 * event of a stream with include_usage).  The last "total_tokens" key in
 * the final AGW_TOKENS_TAIL bytes, followed by optional whitespace, a
 * colon and an integer; anything else is 0.  A statistic, never a charge.
 */

uint64_t
agw_tokens_tail_total(const uint8_t *body, size_t len)
{
    static const char  key[] = "\"total_tokens\"";

    size_t          klen;
    uint64_t        n;
    const uint8_t  *start, *p, *last;

    klen = sizeof(key) - 1;
    last = body + len;
    start = (len > AGW_TOKENS_TAIL) ? last - AGW_TOKENS_TAIL : body;

    if (len < klen || (size_t) (last - start) < klen) {
        return 0;
    }

    /* from the end, quote by quote: a body without quotes costs one scan */

    for (p = last - klen + 1; /* void */; /* void */) {
        p = memrchr(start, '"', p - start);

        if (p == NULL) {
            return 0;
        }

        if (memcmp(p, key, klen) == 0) {
            break;
        }
    }

    for (p += klen; p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                                 || *p == '\n'); p++) { /* void */ }

    if (p == last || *p++ != ':') {
        return 0;
    }

    for ( /* void */ ; p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                                     || *p == '\n'); p++) { /* void */ }

    n = 0;

    if (p == last || *p < '0' || *p > '9') {
        return 0;
    }

    for ( /* void */ ; p < last && *p >= '0' && *p <= '9'; p++) {
        /* n <= AGW_TOKENS_MAX (2^40): n * 10 fits */
        n = agw_tokens_add(n * 10 > AGW_TOKENS_MAX ? AGW_TOKENS_MAX : n * 10,
                           (uint64_t) (*p - '0'));
    }

    return n;
}
