/*
 * agw-load: the SSE events in a body, as its bytes arrive.
 *
 * Only the start of each line matters: "data:" is an event, "data:
 * [DONE]" the end of an OpenAI stream.  The first LOAD_SSE_HEAD bytes of
 * the current line are kept in the record across the chunks evhttp hands
 * over (a line may be split anywhere, a CR may end it); the rest of a
 * line is skipped with memchr.  Not an HTTP parser: evhttp has already
 * taken the chunked framing off.
 */

#include <string.h>

#include "load.h"


/* the line in rec->lhead (rec->lpos bytes of it, LOAD_SSE_LONG: more)
 * has ended */
static void
load_sse_line(load_rec_t *rec, int64_t now)
{
    size_t  n;

    n = rec->lpos;

    if (n <= LOAD_SSE_HEAD && n > 0 && rec->lhead[n - 1] == '\r') {
        n--;
    }

    if (n < 5 || memcmp(rec->lhead, "data:", 5) != 0) {
        return;
    }

    if ((n == 12 && memcmp(rec->lhead, "data: [DONE]", 12) == 0)
        || (n == 11 && memcmp(rec->lhead, "data:[DONE]", 11) == 0))
    {
        rec->done = 1;
        return;
    }

    rec->events++;

    if (rec->first_event < 0) {
        rec->first_event = now;
    }

    rec->last_event = now;
}


static void
load_sse_keep(load_rec_t *rec, const char *p, size_t n)
{
    size_t  room;

    if (rec->lpos > LOAD_SSE_HEAD) {
        return;
    }

    room = LOAD_SSE_HEAD - rec->lpos;

    if (n > room) {
        memcpy(rec->lhead + rec->lpos, p, room);
        rec->lpos = LOAD_SSE_LONG;
        return;
    }

    memcpy(rec->lhead + rec->lpos, p, n);
    rec->lpos += (uint8_t) n;
}


void
load_sse_scan(load_rec_t *rec, const char *p, size_t n, int64_t now)
{
    const char  *nl, *end;

    end = p + n;

    while (p < end) {
        nl = memchr(p, '\n', (size_t) (end - p));

        if (nl == NULL) {
            load_sse_keep(rec, p, (size_t) (end - p));
            return;
        }

        load_sse_keep(rec, p, (size_t) (nl - p));
        load_sse_line(rec, now);
        rec->lpos = 0;
        p = nl + 1;
    }
}
