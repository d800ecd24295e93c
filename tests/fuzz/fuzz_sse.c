
/*
 * libFuzzer target for the SSE parser: bounded input, parsed whole and cut
 * in three pieces at places the input picks, with the same events (types,
 * data, count) and the same ending either way; every event's data stays
 * within the buffer and is inspected (JSON, usage, terminal, error) without
 * crashing.  The streaming mode (no buffer, data handed over as it
 * passes) sees the same events with the same data, in those pieces and
 * byte by byte, and the usage reader built on it runs over the same
 * pieces.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agw_sse.h"
#include "agw_usage.h"


#define FUZZ_MAX_SIZE  (64 * 1024)       /* bytes */
#define FUZZ_EVENT_CAP 512               /* bytes of data per event */


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


typedef struct {
    uint64_t  hash;
    uint64_t  dhash;                     /* the events' data only */
    uint64_t  ehash;                     /* the current event's data */
    uint64_t  count;
    uint64_t  terminal;
    uint64_t  tokens;
    uint64_t  errors;
} fuzz_trace_t;


static void
fuzz_mix(fuzz_trace_t *t, const void *p, size_t n)
{
    size_t          i;
    const uint8_t  *b;

    b = p;

    for (i = 0; i < n; i++) {
        t->hash = (t->hash ^ b[i]) * 0x100000001b3ULL;
    }
}


static void
fuzz_dmix(uint64_t *h, const uint8_t *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        *h = (*h ^ p[i]) * 0x100000001b3ULL;
    }
}


static int
fuzz_event(void *ctx, const agw_sse_event_t *ev)
{
    uint64_t        tokens;
    fuzz_trace_t   *t;
    agw_sse_info_t  info;

    t = ctx;

    if (ev->data_len > FUZZ_EVENT_CAP || ev->type_len > AGW_SSE_TYPE_MAX
        || ev->type_len == 0 || memchr(ev->type, '\n', ev->type_len)
        || memchr(ev->type, '\r', ev->type_len)
        || memchr(ev->data, '\r', ev->data_len))
    {
        abort();
    }

    t->count++;
    t->ehash = 0;
    fuzz_dmix(&t->ehash, ev->data, ev->data_len);
    t->dhash = t->dhash * 31 + t->ehash;
    fuzz_mix(t, &ev->type_len, sizeof(ev->type_len));
    fuzz_mix(t, ev->type, ev->type_len);
    fuzz_mix(t, &ev->data_len, sizeof(ev->data_len));
    fuzz_mix(t, ev->data, ev->data_len);

    agw_sse_inspect(ev, &info);

    t->terminal += info.terminal;
    t->errors += agw_sse_error(ev);

    if (agw_usage_tokens(&info.usage, &tokens)) {
        t->tokens += tokens;
    }

    return 0;
}


static int
fuzz_run(const uint8_t *data, size_t size, size_t a, size_t b,
    fuzz_trace_t *t)
{
    uint8_t    *buf;
    agw_sse_t   s;
    int         rc;

    memset(t, 0, sizeof(fuzz_trace_t));

    /* a heap block of exactly the cap: ASan sees any overrun */

    buf = malloc(FUZZ_EVENT_CAP);
    if (buf == NULL) {
        return -100;
    }

    agw_sse_init(&s, buf, FUZZ_EVENT_CAP, fuzz_event, t);

    agw_sse_feed(&s, data, a);
    agw_sse_feed(&s, data + a, b - a);
    agw_sse_feed(&s, data + b, size - b);
    rc = agw_sse_finish(&s);

    if (s.events != t->count) {
        abort();
    }

    free(buf);

    return rc;
}


static void
fuzz_stream_data(void *ctx, const uint8_t *p, size_t n)
{
    fuzz_trace_t  *t = ctx;

    fuzz_dmix(&t->ehash, p, n);
}


static int
fuzz_stream_event(void *ctx, const agw_sse_event_t *ev)
{
    fuzz_trace_t  *t = ctx;

    if (ev->data != NULL) {
        abort();
    }

    t->count++;
    t->dhash = t->dhash * 31 + t->ehash;
    t->ehash = 0;

    return 0;
}


/* the streaming mode, in the same pieces */

static void
fuzz_stream(const uint8_t *data, size_t size, size_t a, size_t b,
    fuzz_trace_t *t)
{
    agw_sse_t           s;
    agw_usage_t         usage;
    agw_usage_reader_t  u;

    memset(t, 0, sizeof(fuzz_trace_t));

    agw_sse_init_stream(&s, fuzz_stream_data, fuzz_stream_event, t);
    agw_sse_feed(&s, data, a);
    agw_sse_feed(&s, data + a, b - a);
    agw_sse_feed(&s, data + b, size - b);

    agw_usage_reader_init(&u, AGW_USAGE_SSE);
    agw_usage_reader_feed(&u, data, a);
    agw_usage_reader_feed(&u, data + a, b - a);
    agw_usage_reader_feed(&u, data + b, size - b);
    (void) agw_usage_reader_usage(&u, &usage);

    if (u.events != t->count) {
        abort();
    }
}


/* the streaming mode one byte at a time: no name or value run is whole */

static void
fuzz_stream_bytes(const uint8_t *data, size_t size, fuzz_trace_t *t)
{
    size_t     i;
    agw_sse_t  s;

    memset(t, 0, sizeof(fuzz_trace_t));

    agw_sse_init_stream(&s, fuzz_stream_data, fuzz_stream_event, t);

    for (i = 0; i < size; i++) {
        agw_sse_feed(&s, data + i, 1);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int           rc1, rc2;
    size_t        a, b;
    fuzz_trace_t  t1, t2, t3, t4;

    if (size > FUZZ_MAX_SIZE) {
        return 0;
    }

    rc1 = fuzz_run(data, size, size, size, &t1);

    a = size ? data[0] % (size + 1) : 0;
    b = size ? a + data[size - 1] % (size - a + 1) : 0;

    rc2 = fuzz_run(data, size, a, b, &t2);

    if (rc1 == -100 || rc2 == -100) {
        return 0;
    }

    /*
     * An oversized event stops both runs at the same event; before it,
     * and without it, the runs agree on everything.
     */

    if (rc1 != rc2 || t1.count != t2.count || t1.hash != t2.hash
        || t1.terminal != t2.terminal || t1.tokens != t2.tokens
        || t1.errors != t2.errors)
    {
        abort();
    }

    /* with no event too big for the buffer, streaming sees the same */

    fuzz_stream(data, size, a, b, &t3);

    if (rc1 != AGW_SSE_ETOOBIG
        && (t3.count != t1.count || t3.dhash != t1.dhash))
    {
        abort();
    }

    /* and so does the streaming mode fed byte by byte */

    fuzz_stream_bytes(data, size, &t4);

    if (t4.count != t3.count || t4.dhash != t3.dhash) {
        abort();
    }

    return 0;
}
