
/*
 * libFuzzer target for agw_json and the answer scanner, in the shape of
 * nginx/unit's fuzzing/nxt_json_fuzz.c: bounded input, then properties
 * rather than a crash check alone:
 *
 *   - canonicalising never reads or writes out of bounds (ASan), with the
 *     documented scratch size and with less;
 *   - what canonicalises, canonicalises again to the very same bytes, and
 *     the canonical form carries the same request fields;
 *   - the request scan agrees with the canonicaliser's pass;
 *   - the push tokenizer accepts whatever the strict parser accepts, and
 *     gives the same events and verdict when the input is cut in three
 *     pieces anywhere, or byte by byte; so does the usage scanner.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agw_json_canonical.h"
#include "agw_json_push.h"
#include "agw_json_scan.h"
#include "agw_tokens.h"


#define FUZZ_MAX_SIZE  (64 * 1024)       /* bytes */


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


typedef struct {
    uint64_t  hash;
    uint64_t  count;
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
    fuzz_trace_t  *t;

    t = ctx;
    t->count++;

    if (ev->text_len > AGW_JSON_TEXT_MAX || ev->text_len > ev->full_len
        || ev->depth > AGW_JSON_MAX_DEPTH)
    {
        abort();
    }

    fuzz_mix(t, &ev->type, sizeof(ev->type));
    fuzz_mix(t, &ev->depth, sizeof(ev->depth));
    fuzz_mix(t, &ev->full_len, sizeof(ev->full_len));
    fuzz_mix(t, ev->text, ev->text_len);

    return 0;
}


static int
fuzz_push(const uint8_t *data, size_t size, size_t a, size_t b,
    fuzz_trace_t *t)
{
    agw_json_push_t  j;

    memset(t, 0, sizeof(fuzz_trace_t));
    agw_json_push_init(&j, fuzz_event, t);

    agw_json_push_feed(&j, data, a);
    agw_json_push_feed(&j, data + a, b - a);
    agw_json_push_feed(&j, data + b, size - b);

    return agw_json_push_finish(&j);
}


/* one byte at a time: no run of string bytes or digits is ever whole */

static int
fuzz_push_bytes(const uint8_t *data, size_t size, fuzz_trace_t *t)
{
    size_t           i;
    agw_json_push_t  j;

    memset(t, 0, sizeof(fuzz_trace_t));
    agw_json_push_init(&j, fuzz_event, t);

    for (i = 0; i < size; i++) {
        agw_json_push_feed(&j, data + i, 1);
    }

    return agw_json_push_finish(&j);
}


static int
fuzz_usage(const uint8_t *data, size_t size, size_t a, size_t b,
    agw_answer_t *ans)
{
    agw_answer_init(ans);

    agw_answer_feed(ans, data, a);
    agw_answer_feed(ans, data + a, b - a);
    agw_answer_feed(ans, data + b, size - b);

    return agw_answer_finish(ans);
}


static int
fuzz_same_req(const agw_json_request_t *x, const agw_json_request_t *y)
{
    return x->valid == y->valid
           && x->prompt_bytes == y->prompt_bytes
           && x->prompt_tokens == y->prompt_tokens
           && x->max_tokens == y->max_tokens
           && x->has_max_tokens == y->has_max_tokens
           && x->stream == y->stream
           && x->include_usage == y->include_usage;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 rc, rc2, rc3, prc;
    size_t              a, b, out_cap, scratch_len, n0, n1;
    void               *scratch;
    uint8_t            *out, *out2;
    agw_json_buf_t      buf;
    agw_answer_t        u1, u2;
    fuzz_trace_t        t1, t2, t3;
    agw_json_request_t  req, req2, req3;

    static const agw_json_str_t  ignore[] = {
        { (const uint8_t *) "user", 4 },
        { (const uint8_t *) "metadata", 8 },
    };

    if (size > FUZZ_MAX_SIZE) {
        return 0;
    }

    /* 1e20 (4 bytes) is 21 canonical bytes: 6x bounds any output */

    out_cap = 6 * size + 64;
    scratch_len = agw_json_scratch_size(size);
    scratch = malloc(scratch_len);
    out = malloc(out_cap);
    out2 = malloc(out_cap);

    if (scratch == NULL || out == NULL || out2 == NULL) {
        goto done;
    }

    buf.pos = out;
    buf.end = out + out_cap;

    rc = agw_json_canonical(data, size, ignore, 2, scratch, scratch_len,
                            agw_json_buf_write, &buf, &req);

    if (rc == AGW_JSON_ENOMEM || rc == AGW_JSON_ESTOP) {
        abort();                         /* the documented sizes suffice */
    }

    if (rc != AGW_JSON_OK && buf.pos != out) {
        abort();                         /* nothing written on failure */
    }

    n0 = (size_t) (buf.pos - out);
    rc2 = agw_json_scan_request(data, size, &req2);

    if (!fuzz_same_req(&req, &req2)
        || (rc2 == AGW_JSON_OK) != req.valid)
    {
        abort();
    }

    if (rc == AGW_JSON_OK) {

        /* a fixed point, with the same request fields */

        n1 = n0;
        buf.pos = out2;
        buf.end = out2 + out_cap;

        free(scratch);
        scratch_len = agw_json_scratch_size(n1);
        scratch = malloc(scratch_len);
        if (scratch == NULL) {
            goto done;
        }

        rc3 = agw_json_canonical(out, n1, NULL, 0, scratch, scratch_len,
                                 agw_json_buf_write, &buf, &req3);

        if (rc3 != AGW_JSON_OK || (size_t) (buf.pos - out2) != n1
            || memcmp(out, out2, n1) != 0 || req3.valid != 1
            || req3.stream != req.stream
            || req3.include_usage != req.include_usage)
        {
            abort();
        }
    }

    /* less scratch than documented: ENOMEM or success, never overrun */

    if (size > 0) {
        free(scratch);
        scratch_len = data[0] % 64 * 4;
        scratch = malloc(scratch_len ? scratch_len : 1);
        if (scratch == NULL) {
            goto done;
        }

        buf.pos = out2;
        buf.end = out2 + out_cap;

        rc3 = agw_json_canonical(data, size, ignore, 2, scratch, scratch_len,
                                 agw_json_buf_write, &buf, &req3);

        if (rc3 != rc && rc3 != AGW_JSON_ENOMEM) {
            abort();
        }

        if (rc3 == AGW_JSON_OK
            && ((size_t) (buf.pos - out2) != n0
                || memcmp(out, out2, n0) != 0
                || !fuzz_same_req(&req3, &req)))
        {
            abort();
        }
    }

    /* the push tokenizer: strict input passes, any cut gives the same */

    prc = fuzz_push(data, size, size, size, &t1);

    if (rc == AGW_JSON_OK && prc != AGW_JSON_OK) {
        abort();
    }

    a = size ? data[size - 1] % (size + 1) : 0;
    b = size ? a + data[size / 2] % (size - a + 1) : 0;

    if (fuzz_push(data, size, a, b, &t2) != prc
        || (prc == AGW_JSON_OK
            && (t1.hash != t2.hash || t1.count != t2.count)))
    {
        abort();
    }

    if (fuzz_push_bytes(data, size, &t3) != prc
        || (prc == AGW_JSON_OK
            && (t1.hash != t3.hash || t1.count != t3.count)))
    {
        abort();
    }

    rc2 = fuzz_usage(data, size, size, size, &u1);
    rc3 = fuzz_usage(data, size, a, b, &u2);

    if (rc2 != prc || rc3 != prc
        || (prc == AGW_JSON_OK
            && (u1.usage.total != u2.usage.total
                || u1.usage.input != u2.usage.input
                || u1.usage.output != u2.usage.output
                || u1.usage.has_total != u2.usage.has_total
                || u1.usage.has_input != u2.usage.has_input
                || u1.usage.has_output != u2.usage.has_output
                || u1.type != u2.type || u1.content != u2.content)))
    {
        abort();
    }

done:

    free(scratch);
    free(out);
    free(out2);

    return 0;
}
