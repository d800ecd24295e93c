
/*
 * An answer's usage, read as it passes.
 *
 * A JSON answer goes through agw_answer_t (agw_tokens.c), the push
 * tokenizer that keeps a few dozen bytes whatever the split and follows
 * only the paths where usage lives; the values on no such path ("id",
 * "choices" with its text and logprobs, ...) are skimmed to their end
 * without a token (agw_answer_init_reader(), AGW_JSON_SKIP), a few
 * instructions a byte, where a token costs dozens.  So their errors go
 * unseen: an answer broken there still gives its usage.
 *
 * A stream goes through the SSE parser in its streaming mode
 * (agw_sse_init_stream()): the data of each event is handed over piece by
 * piece as it arrives, and fed at once to an agw_answer_t started for
 * that event; when the event ends (its blank line), the answer says what
 * the event reported: usage, content, its type.  Nothing of an event is
 * kept, so its size does not matter: the Responses API's
 * response.completed event repeats the whole output before its usage, and
 * a long answer makes it hundreds of kilobytes (a 16 KB buffer lost the
 * usage of every answer over about 4,000 tokens).  The stream's usage is
 * merged over its events (agw_usage_merge(): a total replaces everything,
 * Anthropic's message_start and message_delta figures replace their own),
 * and content events are counted for streams that never report usage.
 *
 * The events of a stream start alike: an OpenAI chunk repeats the
 * answer's id, object, creation time, model and the path to its delta's
 * content, a hundred-odd bytes and a dozen tokens before the few bytes
 * that change.  With a memo (agw_usage_reader_memo()), the start of the
 * last event's data is kept, and the reader as it was after the part that
 * event shared with the one before it, cut after its last quote (before
 * the value that changed).  An event whose data starts with that part
 * takes the reader from there: the tokenizer's state after a given prefix
 * depends on nothing else, and any split of the data reads alike, so the
 * figures are the ones the whole event would give.  An event that does
 * not starts over, and the part it shares with the last one becomes the
 * memo.  Only an event's first piece of data is looked at.
 *
 * An event whose data is not JSON ("[DONE]") or is cut short says
 * nothing (in the parts the reader follows: what it skims, it does not
 * check).  A JSON answer's usage is taken as far as it was read, so an
 * answer cut after its usage still counts it.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE              /* memrchr */
#endif

#include <string.h>

#include "agw_usage.h"


static void agw_usage_memo_start(agw_usage_reader_t *u, agw_usage_memo_t *m,
    const uint8_t *p, size_t len);
static size_t agw_usage_same(const uint8_t *a, const uint8_t *b, size_t n);


static void
agw_usage_data(void *ctx, const uint8_t *p, size_t len)
{
    agw_usage_reader_t  *u = ctx;

    if (!u->in_event) {
        u->in_event = 1;

        if (u->memo) {
            agw_usage_memo_start(u, u->memo, p, len);
            return;
        }

        agw_answer_init_reader(&u->answer, 1);
    }

    (void) agw_answer_feed(&u->answer, p, len);
}


/*
 * An event's first piece of data: read from the memo's state if the piece
 * starts with its bytes, else from the start; a longer shared start (at
 * least AGW_USAGE_MEMO_STEP bytes more, cut after a quote) becomes the memo
 */

#define AGW_USAGE_MEMO_STEP  8

static void
agw_usage_memo_start(agw_usage_reader_t *u, agw_usage_memo_t *m,
    const uint8_t *p, size_t len)
{
    size_t          same, from;
    const uint8_t  *q;

    same = agw_usage_same(p, m->bytes, len < m->bytes_len ? len
                                                          : m->bytes_len);

    if (m->len && same >= m->len) {
        u->answer = m->answer;
        from = m->len;

    } else {
        agw_answer_init_reader(&u->answer, 1);
        m->len = 0;
        from = 0;
    }

    if (same >= from + AGW_USAGE_MEMO_STEP) {
        q = memrchr(p + from, '"', same - from);

        if (q != NULL && (size_t) (q + 1 - p) >= from + AGW_USAGE_MEMO_STEP) {
            same = (size_t) (q + 1 - p);

            (void) agw_answer_feed(&u->answer, p + from, same - from);
            m->answer = u->answer;
            m->len = same;
            from = same;
        }
    }

    (void) agw_answer_feed(&u->answer, p + from, len - from);

    /* the kept start: what follows the part this piece shares with it */

    m->bytes_len = len < AGW_USAGE_MEMO_MAX ? len : AGW_USAGE_MEMO_MAX;

    if (m->bytes_len > same) {
        memcpy(m->bytes + same, p + same, m->bytes_len - same);
    }
}


/* how many of the first n bytes of a and b are the same */

static size_t
agw_usage_same(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t    i;
#if (defined __GNUC__ && defined __BYTE_ORDER__                            \
     && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
    uint64_t  x, y;

    for (i = 0; n - i >= 8; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);

        if (x != y) {
            return i + ((size_t) __builtin_ctzll(x ^ y) >> 3);
        }
    }
#else
    i = 0;
#endif

    while (i < n && a[i] == b[i]) {
        i++;
    }

    return i;
}


static int
agw_usage_event(void *ctx, const agw_sse_event_t *ev)
{
    agw_usage_reader_t  *u = ctx;

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

    if (agw_answer_finish(&u->answer) != AGW_JSON_OK) {
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


void
agw_usage_reader_init(agw_usage_reader_t *u, unsigned mode)
{
    memset(u, 0, sizeof(agw_usage_reader_t));

    u->mode = mode;

    if (mode == AGW_USAGE_SSE) {
        agw_sse_init_stream(&u->sse, agw_usage_data, agw_usage_event, u);

    } else {
        agw_answer_init_reader(&u->answer, 0);
    }
}


void
agw_usage_reader_memo(agw_usage_reader_t *u, agw_usage_memo_t *memo)
{
    memo->len = 0;
    memo->bytes_len = 0;

    u->memo = memo;
}


void
agw_usage_reader_feed(agw_usage_reader_t *u, const uint8_t *p, size_t len)
{
    if (u->mode == AGW_USAGE_SSE) {
        (void) agw_sse_feed(&u->sse, p, len);

    } else {
        (void) agw_answer_feed(&u->answer, p, len);
    }
}


int
agw_usage_reader_usage(const agw_usage_reader_t *u, agw_usage_t *usage)
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
