
/*
 * Cache entry codec and headers blob: round trips, every truncation,
 * single-byte corruption, trailing garbage, hostile lengths, malformed
 * blobs and encoder refusals.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agw_crc32.h"
#include "agw_entry.h"


#define nitems(a)  (sizeof(a) / sizeof((a)[0]))
#define S(s)       (const uint8_t *) (s), sizeof(s) - 1


static const char  key[] = "POSThttpapi.local/v1/chat/completions";
static const char  headers[] = "Content-Type: application/json\r\n"
                               "X-Server-Id: 42\r\n"
                               "Vary: Accept-Encoding\r\n";
static const char  body[] = "{\"id\":\"cmpl-1\",\"choices\":[]}";


static void
sample(agw_entry_t *e)
{
    e->status = 200;
    e->created = 1700000000;
    e->fresh_until = 1700000060;
    e->key = (const uint8_t *) key;
    e->key_len = sizeof(key) - 1;
    e->headers = (const uint8_t *) headers;
    e->headers_len = sizeof(headers) - 1;
    e->body = (const uint8_t *) body;
    e->body_len = sizeof(body) - 1;
}


static size_t
encode_sample(uint8_t *buf, size_t len)
{
    size_t       n;
    agw_entry_t  e;

    sample(&e);
    n = agw_entry_encode(buf, len, &e);
    assert_int_equal(n, agw_entry_size(&e));

    return n;
}


static void
assert_entry_equal(const agw_entry_t *a, const agw_entry_t *b)
{
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->created, b->created);
    assert_int_equal(a->fresh_until, b->fresh_until);
    assert_int_equal(a->key_len, b->key_len);
    assert_int_equal(a->headers_len, b->headers_len);
    assert_int_equal(a->body_len, b->body_len);
    assert_memory_equal(a->key, b->key, a->key_len);
    assert_memory_equal(a->headers, b->headers, a->headers_len);
    assert_memory_equal(a->body, b->body, a->body_len);
}


static void
test_entry_layout(void **state)
{
    size_t   n;
    uint8_t  buf[512];

    n = encode_sample(buf, sizeof(buf));

    assert_int_equal(n, AGW_ENTRY_HEADER_SIZE + sizeof(key) - 1
                        + sizeof(headers) - 1 + sizeof(body) - 1);

    /* fixed little-endian fields at fixed offsets */

    assert_memory_equal(buf, "AGWE", 4);
    assert_memory_equal(buf + 4, "\x02\x00", 2);
    assert_memory_equal(buf + 6, "\xc8\x00", 2);
    assert_memory_equal(buf + 8, "\x00\xf1\x53\x65\x00\x00\x00\x00", 8);
    assert_memory_equal(buf + 16, "\x3c\xf1\x53\x65\x00\x00\x00\x00", 8);
    assert_int_equal(buf[24] | buf[25] << 8 | buf[26] << 16
                     | (uint32_t) buf[27] << 24,
                     agw_crc32(key, sizeof(key) - 1));
    assert_int_equal(buf[28], sizeof(key) - 1);
    assert_int_equal(buf[32], sizeof(headers) - 1);
    assert_int_equal(buf[36], sizeof(body) - 1);
    assert_memory_equal(buf + 40, key, sizeof(key) - 1);
}


static void
test_entry_round_trip(void **state)
{
    size_t       i, n, m;
    uint8_t      buf[512], again[512];
    agw_entry_t  e, d;

    static const struct {
        unsigned     status;
        uint64_t     created;
        const char  *key;
        const char  *headers;
        const char  *body;
    } rows[] = {
        { 200, 1700000000, key, headers, body },
        { 200, 0, "", "", "" },
        { 100, UINT64_MAX, "k", "", "" },
        { 599, 1, "", "A: \r\n", "\0\r\n" },
        { 404, 2, "k\r\n\0", "X: a b\tc\r\n", "binary\xff" },
    };

    for (i = 0; i < nitems(rows); i++) {
        e.status = (uint16_t) rows[i].status;
        e.created = rows[i].created;
        e.fresh_until = rows[i].created ^ (uint64_t) i << 40;
        e.key = (const uint8_t *) rows[i].key;
        e.key_len = strlen(rows[i].key);
        e.headers = (const uint8_t *) rows[i].headers;
        e.headers_len = strlen(rows[i].headers);
        e.body = (const uint8_t *) rows[i].body;
        e.body_len = strlen(rows[i].body);

        n = agw_entry_encode(buf, sizeof(buf), &e);

        if (n == 0 || n != agw_entry_size(&e)) {
            print_error("entry encode failed: row %zu: size %zu, got %zu\n",
                        i, agw_entry_size(&e), n);
            fail();
        }

        /* exactly enough room works, one byte less does not */

        assert_int_equal(agw_entry_encode(buf, n, &e), n);
        assert_int_equal(agw_entry_encode(buf, n - 1, &e), 0);

        if (agw_entry_decode(buf, n, &d) != 0) {
            print_error("entry decode failed: row %zu\n", i);
            fail();
        }

        assert_entry_equal(&e, &d);

        m = agw_entry_encode(again, sizeof(again), &d);
        assert_int_equal(m, n);
        assert_memory_equal(buf, again, n);
    }

    /* NULL pointers with zero lengths */

    memset(&e, 0, sizeof(e));
    e.status = 204;

    n = agw_entry_encode(buf, sizeof(buf), &e);
    assert_int_equal(n, AGW_ENTRY_HEADER_SIZE);
    assert_int_equal(agw_entry_decode(buf, n, &d), 0);
    assert_int_equal(d.status, 204);
    assert_int_equal(d.key_len + d.headers_len + d.body_len, 0);
}


/* an entry in parts: the head, then the body written after it */
static void
test_entry_head(void **state)
{
    size_t       n, head, len, total;
    uint8_t      whole[512], parts[512], *copy;
    agw_entry_t  e, d;

    sample(&e);
    n = agw_entry_encode(whole, sizeof(whole), &e);
    head = agw_entry_head_size(&e);

    assert_int_equal(head, n - e.body_len);
    assert_int_equal(agw_entry_encode_head(parts, head - 1, &e), 0);
    assert_int_equal(agw_entry_encode_head(parts, sizeof(parts), &e), head);
    memcpy(parts + head, e.body, e.body_len);
    assert_memory_equal(parts, whole, n);

    /* the head size from the fixed part alone */
    assert_int_equal(agw_entry_head_length(whole, n), head);
    assert_int_equal(agw_entry_head_length(whole, head), head);
    assert_int_equal(agw_entry_head_length(whole, head - 1), 0);
    assert_int_equal(agw_entry_head_length(whole,
                                           AGW_ENTRY_HEADER_SIZE - 1), 0);

    /* the head decodes given the whole length; the body is not read */
    assert_int_equal(agw_entry_decode_head(whole, head, n, &d), 0);
    assert_null(d.body);
    assert_int_equal(d.body_len, e.body_len);
    assert_int_equal(d.status, 200);
    assert_memory_equal(d.key, e.key, e.key_len);
    assert_memory_equal(d.headers, e.headers, e.headers_len);

    /* any prefix shorter than the head is refused, without overreading */
    for (len = 0; len < head; len++) {
        copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, whole, len);
        assert_int_equal(agw_entry_decode_head(copy, len, n, &d), -1);
        free(copy);
    }

    /* a total that disagrees with the body length is refused */
    for (total = head; total < n + 3; total++) {
        assert_int_equal(agw_entry_decode_head(whole, head, total, &d),
                         total == n ? 0 : -1);
    }

    /* fewer bytes than claimed to hold */
    assert_int_equal(agw_entry_decode_head(whole, n, n - 1, &d), -1);

    /* a body of its own length, empty too */
    e.body = NULL;
    e.body_len = 0;
    head = agw_entry_encode_head(parts, sizeof(parts), &e);
    assert_int_equal(head, agw_entry_size(&e));
    assert_int_equal(agw_entry_decode(parts, head, &d), 0);
}


static void
test_entry_truncated(void **state)
{
    size_t       n, len;
    uint8_t      buf[512], *copy;
    agw_entry_t  d;

    n = encode_sample(buf, sizeof(buf));

    /* each prefix in its own heap block, so ASan sees any overread */

    for (len = 0; len < n; len++) {
        copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, buf, len);

        if (agw_entry_decode(copy, len, &d) != -1) {
            print_error("truncated entry accepted: %zu of %zu bytes\n",
                        len, n);
            fail();
        }

        free(copy);
    }
}


static void
test_entry_trailing_garbage(void **state)
{
    size_t       n, extra;
    uint8_t      buf[512];
    agw_entry_t  d;

    n = encode_sample(buf, sizeof(buf) - 64);

    for (extra = 1; extra <= 64; extra++) {
        memset(buf + n, extra == 1 ? 0 : 'x', extra);
        assert_int_equal(agw_entry_decode(buf, n + extra, &d), -1);
    }
}


static void
test_entry_flipped_bytes(void **state)
{
    int          rc;
    size_t       n, i, bit;
    uint8_t      buf[512], bad[512];
    agw_entry_t  e, d;

    n = encode_sample(buf, sizeof(buf));
    sample(&e);

    /*
     * any single flipped bit in the fixed header or the key: either
     * rejected, or (only the created and fresh-until times and a status
     * that stays valid are unchecked) decoded consistently with the
     * flipped bytes
     */

    for (i = 0; i < AGW_ENTRY_HEADER_SIZE + e.key_len; i++) {
        for (bit = 0; bit < 8; bit++) {
            memcpy(bad, buf, n);
            bad[i] ^= (uint8_t) (1 << bit);

            rc = agw_entry_decode(bad, n, &d);

            if (rc == -1) {
                continue;
            }

            if (i < 6 || i >= 24) {
                print_error("corrupt byte %zu bit %zu accepted\n", i, bit);
                fail();
            }

            assert_int_equal(d.status, bad[6] | bad[7] << 8);
            assert_true(agw_status_valid(d.status));
            assert_int_equal(d.key_len, e.key_len);
            assert_memory_equal(d.key, e.key, e.key_len);
            assert_memory_equal(d.body, e.body, e.body_len);
        }
    }
}


static void
put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) v;
    p[1] = (uint8_t) (v >> 8);
    p[2] = (uint8_t) (v >> 16);
    p[3] = (uint8_t) (v >> 24);
}


static void
test_entry_hostile_lengths(void **state)
{
    size_t       n, i;
    uint8_t      buf[512], bad[512];
    agw_entry_t  d, e;

    static const struct {
        uint32_t  key_len;
        uint32_t  headers_len;
        uint32_t  body_len;
    } rows[] = {
        { 0xffffffff, 0, 0 },
        { 0, 0xffffffff, 0 },
        { 0, 0, 0xffffffff },
        { 0xffffffff, 0xffffffff, 0xffffffff },
        { 0x80000000, 0x80000000, 0 },
        { 37, 0xffffffff, 2 },
        { 37, 73, 0xffffffff - 109 },
    };

    n = encode_sample(buf, sizeof(buf));

    for (i = 0; i < nitems(rows); i++) {
        memcpy(bad, buf, n);
        put_u32(bad + 28, rows[i].key_len);
        put_u32(bad + 32, rows[i].headers_len);
        put_u32(bad + 36, rows[i].body_len);

        if (agw_entry_decode(bad, n, &d) != -1) {
            print_error("hostile lengths accepted: row %zu\n", i);
            fail();
        }
    }

    /* the encoder refuses lengths that do not fit the u32 fields */

    sample(&e);
    e.body_len = (size_t) 0xffffffff;
    assert_int_not_equal(agw_entry_size(&e), 0);

    if (sizeof(size_t) > 4) {
        e.body_len = (size_t) 0xffffffff + 1;
        assert_int_equal(agw_entry_size(&e), 0);
        assert_int_equal(agw_entry_encode(buf, sizeof(buf), &e), 0);
    }

    e.body_len = SIZE_MAX;
    assert_int_equal(agw_entry_size(&e), 0);
}


static void
test_entry_bad_fields(void **state)
{
    size_t       n, i;
    uint8_t      buf[512], bad[512];
    agw_entry_t  e, d;

    static const unsigned  bad_status[] = { 0, 99, 600, 999, 0xffff };

    n = encode_sample(buf, sizeof(buf));

    /* magic and version */

    memcpy(bad, buf, n);
    bad[0] = 'a';
    assert_int_equal(agw_entry_decode(bad, n, &d), -1);

    memcpy(bad, buf, n);
    bad[4] = 1;                          /* version 1: no fresh_until */
    assert_int_equal(agw_entry_decode(bad, n, &d), -1);

    memcpy(bad, buf, n);
    bad[4] = 3;
    assert_int_equal(agw_entry_decode(bad, n, &d), -1);

    memcpy(bad, buf, n);
    bad[5] = 1;
    assert_int_equal(agw_entry_decode(bad, n, &d), -1);

    for (i = 0; i < nitems(bad_status); i++) {

        /* on the wire */

        memcpy(bad, buf, n);
        bad[6] = (uint8_t) bad_status[i];
        bad[7] = (uint8_t) (bad_status[i] >> 8);
        assert_int_equal(agw_entry_decode(bad, n, &d), -1);

        /* and to the encoder */

        sample(&e);
        e.status = (uint16_t) bad_status[i];
        assert_int_equal(agw_entry_encode(bad, sizeof(bad), &e), 0);
    }

    /* a key that does not match its CRC */

    memcpy(bad, buf, n);
    bad[AGW_ENTRY_HEADER_SIZE + 3] ^= 0x20;
    assert_int_equal(agw_entry_decode(bad, n, &d), -1);

    /* a broken headers blob, in the entry and to the encoder */

    memcpy(bad, buf, n);
    bad[AGW_ENTRY_HEADER_SIZE + sizeof(key) - 1 + 12] = ' ';
    assert_int_equal(agw_entry_decode(bad, n, &d), -1);

    sample(&e);
    e.headers = (const uint8_t *) "X: y\n";
    e.headers_len = 5;
    assert_int_equal(agw_entry_encode(bad, sizeof(bad), &e), 0);
}


static void
test_status_valid(void **state)
{
    size_t  i;

    static const struct {
        unsigned  status;
        int       valid;
    } rows[] = {
        { 0, 0 }, { 99, 0 }, { 100, 1 }, { 200, 1 }, { 599, 1 },
        { 600, 0 }, { 65536 + 200, 0 }, { (unsigned) -1, 0 },
    };

    for (i = 0; i < nitems(rows); i++) {
        if (agw_status_valid(rows[i].status) != rows[i].valid) {
            print_error("status_valid failed: %u: expected %d\n",
                        rows[i].status, rows[i].valid);
            fail();
        }
    }
}


/* headers blob */


static void
test_headers_round_trip(void **state)
{
    int           rc;
    size_t        n, pos, i, len;
    uint8_t       buf[256];
    agw_header_t  got;

    static const agw_header_t  h[] = {
        { S("Content-Type"), S("application/json") },
        { S("X-Empty"), S("") },
        { S("x-tabs"), S("a\tb c") },
        { S("ETag"), S("\"abc\"") },
        { S("!#$%&'*+-.^_`|~09AZaz"), S("v") },
        { S("Obs"), S("caf\xc3\xa9") },
        { S("Link"), S("<https://x/y>; rel=next") },
    };

    n = agw_headers_encode(buf, sizeof(buf), h, nitems(h));
    assert_int_equal(n, agw_headers_size(h, nitems(h)));
    assert_int_equal(agw_headers_valid(buf, n), 0);

    assert_memory_equal(buf, "Content-Type: application/json\r\n"
                             "X-Empty: \r\n", 43);

    pos = 0;

    for (i = 0; i < nitems(h); i++) {
        rc = agw_headers_next(buf, n, &pos, &got);
        assert_int_equal(rc, 1);
        assert_int_equal(got.name_len, h[i].name_len);
        assert_memory_equal(got.name, h[i].name, h[i].name_len);
        assert_int_equal(got.value_len, h[i].value_len);
        assert_memory_equal(got.value, h[i].value, h[i].value_len);
    }

    assert_int_equal(agw_headers_next(buf, n, &pos, &got), 0);
    assert_int_equal(pos, n);

    /* too small a buffer, at every size */

    for (len = 0; len < n; len++) {
        assert_int_equal(agw_headers_encode(buf, len, h, nitems(h)), 0);
    }

    /* no headers: an empty blob, valid */

    assert_int_equal(agw_headers_size(h, 0), 0);
    assert_int_equal(agw_headers_encode(buf, sizeof(buf), h, 0), 0);
    assert_int_equal(agw_headers_valid(NULL, 0), 0);
    pos = 0;
    assert_int_equal(agw_headers_next(NULL, 0, &pos, &got), 0);
}


typedef struct {
    const char  *blob;
    size_t       len;                    /* 0: strlen(blob) */
    int          valid;                  /* 0 ok, -1 malformed */
} agw_blob_test_t;


static const agw_blob_test_t  blobs[] = {
    { "", 0, 0 },
    { "A: b\r\n", 0, 0 },
    { "A: \r\n", 0, 0 },
    { "A: b\r\nC: d\r\n", 0, 0 },
    { "A: b c\r\n", 0, 0 },
    { "A: b\tc\r\n", 0, 0 },
    { "A: b:c\r\n", 0, 0 },
    { "A: \xff\r\n", 0, 0 },

    { "A: b", 0, -1 },                   /* no CRLF */
    { "A: b\r", 0, -1 },
    { "A: b\n", 0, -1 },
    { "A: b\n\r", 0, -1 },
    { "A:b\r\n", 0, -1 },                /* no space */
    { "A:  b\r\n", 0, -1 },              /* leading space in value */
    { "A: b \r\n", 0, -1 },              /* trailing space */
    { "A: b\t\r\n", 0, -1 },
    { "A:\r\n", 0, -1 },
    { "A :b\r\n", 0, -1 },
    { ": b\r\n", 0, -1 },                /* empty name */
    { "A B: c\r\n", 0, -1 },
    { "A(: c\r\n", 0, -1 },
    { "A\r\n", 0, -1 },
    { "A", 0, -1 },
    { "A:", 0, -1 },
    { "A: ", 0, -1 },
    { "\r\n", 0, -1 },
    { "A: b\r\n\r\n", 0, -1 },           /* a blank line is not a header */
    { "A: b\rc\r\n", 0, -1 },            /* bare CR */
    { "A: b\nc\r\n", 0, -1 },            /* bare LF */
    { "A: b\x7f\r\n", 0, -1 },
    { "A: b\x01\r\n", 0, -1 },
    { "A: b\0\r\n", 7, -1 },
    { "A\0: b\r\n", 7, -1 },
    { "A: b\r\nC", 0, -1 },
    { "A: b\r\n C: d\r\n", 0, -1 },     /* obsolete line folding */
};


static void
test_headers_valid_table(void **state)
{
    int     got;
    size_t  i, len;

    for (i = 0; i < nitems(blobs); i++) {
        len = blobs[i].len ? blobs[i].len : strlen(blobs[i].blob);
        got = agw_headers_valid((const uint8_t *) blobs[i].blob, len);

        if (got != blobs[i].valid) {
            print_error("headers_valid failed: row %zu \"%.*s\": "
                        "expected %d, got %d\n", i, (int) len,
                        blobs[i].blob, blobs[i].valid, got);
            fail();
        }
    }
}


static void
test_headers_truncated(void **state)
{
    int           rc;
    size_t        len, pos;
    uint8_t      *copy;
    agw_header_t  h;

    static const char  blob[] = "Content-Type: text/plain\r\nX-A: 1\r\n";

    /* a prefix ending inside a line is malformed, never read past */

    for (len = 0; len <= sizeof(blob) - 1; len++) {
        copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, blob, len);

        rc = agw_headers_valid(copy, len);
        assert_int_equal(rc, (len == 0 || len == 26 || len == 34) ? 0 : -1);

        pos = 0;
        while (agw_headers_next(copy, len, &pos, &h) == 1) {
            assert_true(pos <= len);
        }

        free(copy);
    }
}


static void
test_headers_encoder_refuses(void **state)
{
    size_t        i;
    uint8_t       buf[256];
    agw_header_t  h[2];

    static const agw_header_t  rows[] = {
        { S("") , S("v") },
        { S("A B"), S("v") },
        { S("A:"), S("v") },
        { S("A\r"), S("v") },
        { S("A\n"), S("v") },
        { S("A\0"), S("v") },
        { S("\xc3\xa9"), S("v") },
        { S("A"), S("v\r\nSet-Cookie: x=1") },
        { S("A"), S("v\r") },
        { S("A"), S("v\n") },
        { S("A"), S("\r\n") },
        { S("A"), S("v\0w") },
        { S("A"), S("v\x7f") },
        { S("A"), S(" v") },
        { S("A"), S("v ") },
        { S("A"), S("\tv") },
        { S("A"), S(" ") },
    };

    for (i = 0; i < nitems(rows); i++) {
        /* alone, and after a good header */

        h[0].name = (const uint8_t *) "Ok";
        h[0].name_len = 2;
        h[0].value = (const uint8_t *) "1";
        h[0].value_len = 1;
        h[1] = rows[i];

        if (agw_headers_encode(buf, sizeof(buf), &h[1], 1) != 0
            || agw_headers_encode(buf, sizeof(buf), h, 2) != 0)
        {
            print_error("headers_encode accepted row %zu \"%.*s: %.*s\"\n",
                        i, (int) rows[i].name_len,
                        (const char *) rows[i].name,
                        (int) rows[i].value_len,
                        (const char *) rows[i].value);
            fail();
        }
    }
}


/* what may be replayed from an entry that came from outside */

static void
test_header_replayable(void **state)
{
    size_t  i;

    static const char  *never[] = {
        "Content-Length", "content-length", "Transfer-Encoding",
        "Connection", "Keep-Alive", "Proxy-Connection", "TE", "te",
        "Trailer", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization",
        "Set-Cookie", "Date", "Server", "Age", "X-Cache", "Retry-After",
        "retry-after-ms", "RateLimit", "RateLimit-Policy",
        "ratelimit-remaining",
        /* one request's or client's (agw_header_per_request) */
        "x-ratelimit-remaining-tokens", "X-RateLimit-Limit-Requests",
        "anthropic-ratelimit-tokens-remaining", "x-request-id",
        "Request-Id", "openai-processing-ms", "cf-ray", "traceparent",
        "openai-organization", "x-should-retry"
    };

    static const char  *fine[] = {
        "Content-Type", "ETag", "X-Server-Id", "Vary", "Cache-Control",
        "Content", "T", "Rate", "Connections", "X-Connection",
        "openai-version", "x-ratelimit", "request-ids", "x-request",
        "anthropic-ratelimit"
    };

    for (i = 0; i < nitems(never); i++) {
        if (agw_header_replayable((const uint8_t *) never[i],
                                  strlen(never[i])))
        {
            print_error("%s is replayable\n", never[i]);
            fail();
        }
    }

    for (i = 0; i < nitems(fine); i++) {
        if (!agw_header_replayable((const uint8_t *) fine[i],
                                   strlen(fine[i])))
        {
            print_error("%s is not replayable\n", fine[i]);
            fail();
        }
    }
}


static void
test_entry_check(void **state)
{
    agw_entry_t  e;

    static const char  framed[] = "Content-Type: text/plain\r\n"
                                  "Transfer-Encoding: chunked\r\n";
    static const char  conn[] = "Connection: close\r\n";

    sample(&e);
    assert_null(agw_entry_check(&e, 1024 * 1024));
    assert_null(agw_entry_check(&e, agw_entry_size(&e)));
    assert_non_null(agw_entry_check(&e, agw_entry_size(&e) - 1));

    e.status = 101;
    assert_non_null(agw_entry_check(&e, 1024 * 1024));
    e.status = 404;
    assert_non_null(agw_entry_check(&e, 1024 * 1024));

    sample(&e);
    e.headers = (const uint8_t *) framed;
    e.headers_len = sizeof(framed) - 1;
    assert_non_null(agw_entry_check(&e, 1024 * 1024));

    e.headers = (const uint8_t *) conn;
    e.headers_len = sizeof(conn) - 1;
    assert_non_null(agw_entry_check(&e, 1024 * 1024));

    /* an entry with another request's quota or id is not one we wrote */
    e.headers = (const uint8_t *) "X-A: b\r\nx-ratelimit-remaining-tokens: 9"
                                  "\r\n";
    e.headers_len = strlen((const char *) e.headers);
    assert_non_null(agw_entry_check(&e, 1024 * 1024));

    e.headers = (const uint8_t *) "X-A: b\r\nBad";
    e.headers_len = 11;
    assert_non_null(agw_entry_check(&e, 1024 * 1024));

    /* no headers at all is fine */
    e.headers = (const uint8_t *) "";
    e.headers_len = 0;
    assert_null(agw_entry_check(&e, 1024 * 1024));
}


#define F(s)  { (const uint8_t *) (s), sizeof(s) - 1 }

static void
test_entry_from_fields(void **state)
{
    agw_entry_t   e;
    agw_fields_t  f, good = {
        F("200"), F("Content-Type: application/json\r\n"), F("{}"),
        F("1700000000"), F("GET /x"), { NULL, 0 }
    };

    f = good;
    assert_null(agw_entry_from_fields(&f, 1024, &e));
    assert_int_equal(e.status, 200);
    assert_int_equal(e.created, 1700000000);
    assert_ptr_equal(e.body, good.body.data);
    assert_int_equal(e.body_len, 2);
    assert_int_equal(e.key_len, 6);

    /* the whole entry against max_size, exactly at and one over */
    assert_null(agw_entry_from_fields(&f, AGW_ENTRY_HEADER_SIZE + 32 + 2 + 6,
                                      &e));
    assert_non_null(agw_entry_from_fields(&f,
                                          AGW_ENTRY_HEADER_SIZE + 32 + 2 + 5,
                                          &e));
    assert_non_null(agw_entry_from_fields(&f, 0, &e));

    /* an absurd length is refused before any byte is read */
    f = good;
    f.body.data = (const uint8_t *) "x";
    f.body.len = SIZE_MAX;
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good;
    f.key.len = SIZE_MAX - 10;
    assert_non_null(agw_entry_from_fields(&f, SIZE_MAX, &e));

    f = good; f.status.data = NULL;
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.key.data = NULL;
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));

    f = good; f.status = (agw_field_t) F("101");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.status = (agw_field_t) F("404");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.status = (agw_field_t) F("+20");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.status = (agw_field_t) F("2000");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.status = (agw_field_t) F(" 200");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));

    f = good; f.created = (agw_field_t) F("");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.created = (agw_field_t) F("-1");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.created = (agw_field_t) F("99999999999999999999");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));

    /* fresh_until: optional (0: an older writer's), else unix seconds */
    f = good;
    assert_null(agw_entry_from_fields(&f, 1024, &e));
    assert_int_equal(e.fresh_until, 0);
    f = good; f.fresh_until = (agw_field_t) F("1700000060");
    assert_null(agw_entry_from_fields(&f, 1024, &e));
    assert_int_equal(e.fresh_until, 1700000060);
    f = good; f.fresh_until = (agw_field_t) F("");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.fresh_until = (agw_field_t) F("-5");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.fresh_until = (agw_field_t) F("1e9");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.fresh_until = (agw_field_t) F("99999999999999999999");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));

    f = good; f.headers = (agw_field_t) F("Bad Name: x\r\n");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.headers = (agw_field_t) F("X-A: a\r\nX-Injected: 1\r\n\r\n");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.headers = (agw_field_t) F("X-A: a\rb\r\n");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.headers = (agw_field_t) F("Content-Length: 5\r\n");
    assert_non_null(agw_entry_from_fields(&f, 1024, &e));
    f = good; f.headers = (agw_field_t) F("");
    assert_null(agw_entry_from_fields(&f, 1024, &e));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_entry_layout),
        cmocka_unit_test(test_entry_round_trip),
        cmocka_unit_test(test_entry_head),
        cmocka_unit_test(test_entry_truncated),
        cmocka_unit_test(test_entry_trailing_garbage),
        cmocka_unit_test(test_entry_flipped_bytes),
        cmocka_unit_test(test_entry_hostile_lengths),
        cmocka_unit_test(test_entry_bad_fields),
        cmocka_unit_test(test_status_valid),
        cmocka_unit_test(test_headers_round_trip),
        cmocka_unit_test(test_headers_valid_table),
        cmocka_unit_test(test_headers_truncated),
        cmocka_unit_test(test_headers_encoder_refuses),
        cmocka_unit_test(test_header_replayable),
        cmocka_unit_test(test_entry_check),
        cmocka_unit_test(test_entry_from_fields),
    };

    return cmocka_run_group_tests_name("entry", tests, NULL, NULL);
}
