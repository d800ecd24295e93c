
/*
 * libFuzzer target for the SSE parser: bounded input, parsed whole and cut
 * in three pieces at places the input picks, with the same events (types,
 * data, count) and the same ending either way; every event's data stays
 * within the buffer and is inspected (JSON, usage, terminal, error)
 * without crashing.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agw_sse.h"


#define FUZZ_MAX_SIZE  (64 * 1024)       /* bytes */
#define FUZZ_EVENT_CAP 512               /* bytes of data per event */


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


typedef struct {
    uint64_t  hash;
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


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int           rc1, rc2;
    size_t        a, b;
    fuzz_trace_t  t1, t2;

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

    return 0;
}
