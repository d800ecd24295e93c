
/*
 * libFuzzer target for the cache entry decoder and the headers blob parser,
 * in the shape of nginx/unit's fuzzing/nxt_json_fuzz.c: bounded input,
 * decode, and for anything accepted, encode again and require the very
 * same bytes (the encoding is canonical).
 *
 * The input is used three times: as an entry (the shared-memory layout),
 * as a bare headers blob (the Redis `headers` field, which arrives without
 * the entry around it), and as the six Redis hash fields of an entry
 * (status, headers, body, created, key, fresh_until: six little-endian
 * u16 lengths, 0xffff for a missing field, then the fields one after the
 * other) handed
 * to the Redis decoder, which must accept only what may be served.  ASan
 * catches any read past the input, which libFuzzer hands over in a heap
 * block of exactly `size` bytes.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agw_entry.h"


#define FUZZ_MAX_SIZE     (1024 * 1024)  /* bytes */
#define FUZZ_MAX_HEADERS  4096


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
fuzz_headers(const uint8_t *blob, size_t len)
{
    int           rc;
    size_t        n, pos, out_len;
    uint8_t      *out;
    agw_header_t  h[FUZZ_MAX_HEADERS];

    pos = 0;
    n = 0;

    while ((rc = agw_headers_next(blob, len, &pos, &h[n % FUZZ_MAX_HEADERS]))
           == 1)
    {
        if (pos > len) {
            abort();
        }

        n++;
    }

    if ((rc == 0) != (agw_headers_valid(blob, len) == 0)) {
        abort();
    }

    if (rc != 0 || n == 0 || n > FUZZ_MAX_HEADERS) {
        return;
    }

    /* a valid blob re-encodes to itself */

    if (agw_headers_size(h, n) != len) {
        abort();
    }

    out = malloc(len);
    if (out == NULL) {
        return;
    }

    out_len = agw_headers_encode(out, len, h, n);

    if (out_len != len || memcmp(out, blob, len) != 0) {
        abort();
    }

    free(out);
}


/* the Redis hash fields of an entry */
static void
fuzz_fields(const uint8_t *data, size_t size)
{
    size_t         i, n, left, max_size, len;
    uint8_t       *out;
    agw_field_t   *fields[6];
    agw_entry_t    e, d;
    agw_fields_t   f;
    const uint8_t *p;

    if (size < 13) {
        return;
    }

    fields[0] = &f.status;
    fields[1] = &f.headers;
    fields[2] = &f.body;
    fields[3] = &f.created;
    fields[4] = &f.key;
    fields[5] = &f.fresh_until;

    /* a small or a roomy max_entry_size, chosen by the first byte */
    max_size = (data[0] & 1) ? 1024 * 1024 : 32 + (data[0] >> 1);

    p = data + 13;
    left = size - 13;

    for (i = 0; i < 6; i++) {
        len = data[1 + 2 * i] | data[2 + 2 * i] << 8;

        if (len == 0xffff) {
            fields[i]->data = NULL;
            fields[i]->len = 0;
            continue;
        }

        len = len < left ? len : left;

        fields[i]->data = p;
        fields[i]->len = len;
        p += len;
        left -= len;
    }

    if (agw_entry_from_fields(&f, max_size, &e) != NULL) {
        return;
    }

    /* accepted: a 200 within max_size, every header fit to be replayed */

    if (e.status != 200
        || agw_entry_size(&e) == 0 || agw_entry_size(&e) > max_size
        || e.body != f.body.data || e.body_len != f.body.len
        || e.headers != f.headers.data || e.key != f.key.data
        || agw_entry_check(&e, max_size) != NULL)
    {
        abort();
    }

    /* and what the Redis store accepted, the shm store accepts too */

    n = agw_entry_size(&e);

    out = malloc(n);
    if (out == NULL) {
        return;
    }

    if (agw_entry_encode(out, n, &e) != n
        || agw_entry_decode(out, n, &d) != 0
        || agw_entry_check(&d, max_size) != NULL)
    {
        abort();
    }

    free(out);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t       n, head;
    uint8_t     *out;
    agw_entry_t  e, h;

    if (size > FUZZ_MAX_SIZE) {
        return 0;
    }

    fuzz_headers(data, size);
    fuzz_fields(data, size);

    /* the head alone agrees with the whole: as a store read in parts */

    head = agw_entry_head_length(data, size);

    if (agw_entry_decode(data, size, &e) != 0) {
        if (head && agw_entry_decode_head(data, head, size, &h) == 0) {
            /* accepted in parts, refused whole */
            abort();
        }

        return 0;
    }

    if (head != size - e.body_len
        || agw_entry_decode_head(data, head, size, &h) != 0
        || h.body != NULL || h.body_len != e.body_len
        || h.key != e.key || h.headers != e.headers)
    {
        abort();
    }

    /* what the decoder accepted is internally consistent */

    if (e.key + e.key_len > data + size
        || e.headers + e.headers_len > data + size
        || e.body + e.body_len != data + size
        || agw_headers_valid(e.headers, e.headers_len) != 0
        || !agw_status_valid(e.status))
    {
        abort();
    }

    fuzz_headers(e.headers, e.headers_len);

    /* round trip: encode again, the same bytes */

    if (agw_entry_size(&e) != size) {
        abort();
    }

    out = malloc(size);
    if (out == NULL) {
        return 0;
    }

    n = agw_entry_encode(out, size, &e);

    if (n != size || memcmp(out, data, size) != 0) {
        abort();
    }

    free(out);

    return 0;
}
