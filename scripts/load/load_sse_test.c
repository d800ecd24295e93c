/*
 * agw-load: the SSE scanner against streams cut at every byte.
 *
 * An answer arrives in whatever pieces the server and the kernel make of
 * it; the events counted, the [DONE] seen and the time of the first event
 * must not depend on where the cuts fall.  `make test-load` runs it.
 */

#include <stdio.h>
#include <string.h>

#include "load.h"


static int  failures;


static void
load_expect(const char *what, size_t cut, long got, long want)
{
    if (got != want) {
        fprintf(stderr, "FAIL %s (cut at %zu): %ld, expected %ld\n", what,
                cut, got, want);
        failures++;
    }
}


/* the body in two pieces cut at `cut`, then in one-byte pieces */
static void
load_check(const char *name, const char *body, uint32_t events, int done)
{
    size_t       len, cut, i;
    int64_t      first_at;
    const char  *data, *lf;
    load_rec_t   rec;

    len = strlen(body);

    /* where the first event's line ends: the event is seen then */
    data = strstr(body, "data:");
    lf = (data != NULL && events > 0) ? strchr(data, '\n') : NULL;
    first_at = (lf != NULL) ? lf - body : -1;

    for (cut = 0; cut <= len; cut++) {
        memset(&rec, 0, sizeof(rec));
        rec.first_event = rec.last_event = -1;

        /* the second piece arrives at time 2: an event whose line ends
         * there was seen at 2 */
        load_sse_scan(&rec, body, cut, 1);
        load_sse_scan(&rec, body + cut, len - cut, 2);

        load_expect(name, cut, rec.events, events);
        load_expect(name, cut, rec.done, done);

        if (first_at >= 0) {
            load_expect(name, cut, rec.first_event,
                        cut > (size_t) first_at ? 1 : 2);
        }
    }

    memset(&rec, 0, sizeof(rec));
    rec.first_event = rec.last_event = -1;

    for (i = 0; i < len; i++) {
        load_sse_scan(&rec, body + i, 1, (int64_t) i);
    }

    load_expect(name, len + 1, rec.events, events);
    load_expect(name, len + 1, rec.done, done);
}


int
main(void)
{
    load_check("openai stream",
               "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n"
               "\n"
               "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n"
               "\n"
               "data: [DONE]\n"
               "\n", 2, 1);

    load_check("crlf", "data: a\r\n\r\ndata: [DONE]\r\n\r\n", 1, 1);

    load_check("no space", "data:x\n\ndata:[DONE]\n\n", 1, 1);

    load_check("comments and other fields",
               ": keep-alive\n\nevent: ping\nid: 7\ndata: 1\n\n", 1, 0);

    load_check("not done: longer line", "data: [DONE] later\n\n", 1, 0);

    load_check("not done: cut", "data: a\n\ndata: [DO", 1, 0);

    load_check("empty", "", 0, 0);

    load_check("line of exactly the head size", "data: [DONE]\r\n", 0, 1);

    load_check("json", "{\"error\":{\"message\":\"no\"}}", 0, 0);

    if (failures) {
        fprintf(stderr, "load_sse_test: %d failures\n", failures);
        return 1;
    }

    printf("load_sse_test: ok\n");

    return 0;
}
