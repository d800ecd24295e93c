
/*
 * libFuzzer target holding the push tokenizer and the answer readers to
 * their references (tests/ref/agw_json_push_ref.c, agw_usage_ref.c: the
 * byte-at-a-time tokenizer and the readers over it, as they were before
 * the fast paths).  The input's first two bytes choose where it is cut
 * in three; the rest is the answer.  For it:
 *
 *   - the tokenizer gives the reference's events (type, depth, text, full
 *     length, in order) and verdicts, cut in three and byte by byte, and
 *     when its handler stops it at some event;
 *   - the JSON answer reader gives the reference's usage and type, and
 *     its verdict where the reference's is AGW_JSON_OK, and the stream
 *     reader (the input as SSE) the reference's usage, content events
 *     and events after every piece, as long as the reference has found
 *     no broken JSON (the readers skim what they do not read,
 *     AGW_JSON_SKIP, so they may part there:
 *     agw_usage_ref_reader_broken()).
 *
 * Any difference aborts.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agw_json_push.h"
#include "agw_usage.h"
#include "../ref/agw_usage_ref.c"


#define FUZZ_MAX_SIZE  (64 * 1024)       /* bytes */


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


typedef struct {
    uint64_t  hash;
    uint64_t  count;
    uint64_t  stop_at;                   /* 0: never */
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
fuzz_event(void *ctx, const agw_json_event_t *ev)
{
    fuzz_trace_t  *t = ctx;

    fuzz_mix(t, &ev->type, sizeof(ev->type));
    fuzz_mix(t, &ev->depth, sizeof(ev->depth));
    fuzz_mix(t, &ev->full_len, sizeof(ev->full_len));
    fuzz_mix(t, &ev->text_len, sizeof(ev->text_len));
    fuzz_mix(t, ev->text, ev->text_len);

    return ++t->count == t->stop_at;
}


/* the pieces end at cuts[0] <= cuts[1] <= size; or one byte each */

static void
fuzz_push(const uint8_t *data, size_t size, const size_t *cuts, int bytes,
    uint64_t stop_at, uint64_t *events)
{
    int                  a, b;
    size_t               i, from, to;
    fuzz_trace_t         tl, tr;
    agw_json_push_t      j;
    agw_json_push_ref_t  r;

    memset(&tl, 0, sizeof(fuzz_trace_t));
    memset(&tr, 0, sizeof(fuzz_trace_t));
    tl.stop_at = stop_at;
    tr.stop_at = stop_at;

    agw_json_push_init(&j, fuzz_event, &tl);
    agw_json_push_ref_init(&r, fuzz_event, &tr);

    for (i = 0, from = 0; i < (bytes ? size : 3); i++, from = to) {
        to = bytes ? from + 1 : i < 2 ? cuts[i] : size;

        if (to < from) {
            to = from;
        }

        a = agw_json_push_feed(&j, data + from, to - from);
        b = agw_json_push_ref_feed(&r, data + from, to - from);

        if (a != b || tl.hash != tr.hash || tl.count != tr.count) {
            abort();
        }
    }

    a = agw_json_push_finish(&j);
    b = agw_json_push_ref_finish(&r);

    if (a != b || tl.hash != tr.hash || tl.count != tr.count) {
        abort();
    }

    *events = tl.count;
}


static void
fuzz_same(agw_usage_reader_t *lib, agw_usage_ref_reader_t *ref)
{
    int          a, b;
    agw_usage_t  ua, ub;

    if (agw_usage_ref_reader_broken(ref)) {
        return;                          /* the lib skims: they may part */
    }

    a = agw_usage_reader_usage(lib, &ua);
    b = agw_usage_ref_reader_usage(ref, &ub);

    if (a != b
        || ua.has_total != ub.has_total || ua.total != ub.total
        || ua.has_input != ub.has_input || ua.input != ub.input
        || ua.has_output != ub.has_output || ua.output != ub.output
        || ua.has_cached != ub.has_cached || ua.cached != ub.cached
        || ua.has_cache_read != ub.has_cache_read
        || ua.cache_read != ub.cache_read
        || ua.has_cache_write != ub.has_cache_write
        || ua.cache_write != ub.cache_write
        || lib->content != ref->content || lib->events != ref->events
        || lib->stream_usage != ref->stream_usage
        || (lib->mode == AGW_USAGE_SSE
            && lib->answer.content != ref->answer.content)
        || lib->answer.type != ref->answer.type)
    {
        abort();
    }
}


static void
fuzz_usage(unsigned mode, const uint8_t *data, size_t size,
    const size_t *cuts)
{
    size_t                  i, from, to;
    agw_usage_reader_t      lib;
    agw_usage_ref_reader_t  ref;

    agw_usage_reader_init(&lib, mode);
    agw_usage_ref_reader_init(&ref, mode);

    for (i = 0, from = 0; i < 3; i++, from = to) {
        to = i < 2 ? cuts[i] : size;

        if (to < from) {
            to = from;
        }

        agw_usage_reader_feed(&lib, data + from, to - from);
        agw_usage_ref_reader_feed(&ref, data + from, to - from);
        fuzz_same(&lib, &ref);
    }

    if (mode == AGW_USAGE_JSON) {
        if (agw_answer_ref_finish(&ref.answer) == AGW_JSON_OK
            && agw_answer_finish(&lib.answer) != AGW_JSON_OK)
        {
            abort();
        }

        fuzz_same(&lib, &ref);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t    cuts[2];
    uint64_t  events, ignored;

    if (size < 2 || size > FUZZ_MAX_SIZE) {
        return 0;
    }

    cuts[0] = data[0];
    cuts[1] = data[0] + (size_t) data[1] * 4;
    data += 2;
    size -= 2;

    cuts[0] = cuts[0] < size ? cuts[0] : size;
    cuts[1] = cuts[1] < size ? cuts[1] : size;

    fuzz_push(data, size, cuts, 0, 0, &events);
    fuzz_push(data, size, cuts, 1, 0, &ignored);

    if (events) {
        fuzz_push(data, size, cuts, 0, 1 + (data[0] * 31 + size) % events,
                  &ignored);
    }

    fuzz_usage(AGW_USAGE_JSON, data, size, cuts);
    fuzz_usage(AGW_USAGE_SSE, data, size, cuts);

    return 0;
}
