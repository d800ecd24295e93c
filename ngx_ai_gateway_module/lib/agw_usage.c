
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
 * An event whose data is not JSON ("[DONE]") or is cut short says
 * nothing (in the parts the reader follows: what it skims, it does not
 * check).  A JSON answer's usage is taken as far as it was read, so an
 * answer cut after its usage still counts it.
 */


#include <string.h>

#include "agw_usage.h"


static void
agw_usage_data(void *ctx, const uint8_t *p, size_t len)
{
    agw_usage_reader_t  *u = ctx;

    if (!u->in_event) {
        agw_answer_init_reader(&u->answer, 1);
        u->in_event = 1;
    }

    (void) agw_answer_feed(&u->answer, p, len);
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
