
/*
 * Cache entry codec (the shared-memory store's layout) and the headers blob
 * (also stored verbatim as the Redis `headers` field).  See agw_entry.c.
 */


#ifndef _AGW_ENTRY_H_INCLUDED_
#define _AGW_ENTRY_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define AGW_ENTRY_VERSION      2         /* 2: fresh_until */
#define AGW_ENTRY_HEADER_SIZE  40        /* bytes before the key */
#define AGW_ENTRY_MAX_FIELD    0xffffffffULL /* u32 length fields, bytes */


typedef struct {
    uint16_t        status;
    uint64_t        created;             /* unix seconds */
    uint64_t        fresh_until;         /* unix seconds: fresh before
                                            this, stale from it on (kept
                                            for ai_gateway_cache_stale);
                                            0: fresh while it is kept */
    const uint8_t  *key;                 /* cache key text */
    size_t          key_len;
    const uint8_t  *headers;             /* headers blob, see below */
    size_t          headers_len;
    const uint8_t  *body;
    size_t          body_len;
    const uint8_t  *model;               /* the request's model: not part of
                                            the encoding, the stores keep it
                                            beside the entry for purging */
    size_t          model_len;
} agw_entry_t;


typedef struct {
    const uint8_t  *name;
    size_t          name_len;
    const uint8_t  *value;
    size_t          value_len;
} agw_header_t;


/* 1 if 100..599 */
int agw_status_valid(unsigned status);

/* exact encoded size, 0 on overflow */
size_t agw_entry_size(const agw_entry_t *e);

/*
 * bytes written, 0 if buf is too small or the entry cannot be encoded
 * (a length over 4 GB, an invalid status or headers blob)
 */
size_t agw_entry_encode(uint8_t *buf, size_t len, const agw_entry_t *e);

/*
 * 0 ok, -1 bad magic or version, truncated, trailing garbage, key CRC
 * mismatch, invalid status or headers blob; on success the pointers in
 * *out point into buf
 */
int agw_entry_decode(const uint8_t *buf, size_t len, agw_entry_t *out);

/*
 * An entry written or read in parts (a store that holds it in pieces):
 * the head is everything before the body, the fixed part, the key and the
 * headers blob.  agw_entry_encode_head() writes the head of *e, the body
 * length taken from e->body_len (e->body is not read), and returns its
 * size, or 0 as agw_entry_encode(); the body's bytes follow it.
 */
size_t agw_entry_head_size(const agw_entry_t *e);
size_t agw_entry_encode_head(uint8_t *buf, size_t len, const agw_entry_t *e);

/*
 * the head size that the fixed part at buf gives an entry of total bytes,
 * 0 if the fixed part is not one (magic, version, lengths beyond total)
 */
size_t agw_entry_head_length(const uint8_t *buf, size_t total);

/*
 * as agw_entry_decode() for an entry of total bytes of which buf holds the
 * first len (at least the head): out->body is NULL, out->body_len the
 * bytes after the head
 */
int agw_entry_decode_head(const uint8_t *buf, size_t len, size_t total,
    agw_entry_t *out);


/*
 * The headers blob is a sequence of lines "Name: value\r\n": the name an
 * RFC 7230 token, one space after the colon, the value visible characters,
 * spaces, tabs and obs-text, neither starting nor ending with whitespace
 * (possibly empty).  An empty blob holds no headers.
 */

/* bytes needed (validity is not checked here), 0 on overflow or if n == 0 */
size_t agw_headers_size(const agw_header_t *h, size_t n);

/*
 * bytes written, 0 if buf is too small or a name or value would break the
 * format (empty name, non-token name, CR, LF or other controls in a value);
 * n == 0 also returns 0, an empty blob
 */
size_t agw_headers_encode(uint8_t *buf, size_t len, const agw_header_t *h,
    size_t n);

/* 0 ok, -1 malformed */
int agw_headers_valid(const uint8_t *blob, size_t len);

/* iterate: *pos starts at 0; 1 and *h filled, 0 at the end, -1 malformed */
int agw_headers_next(const uint8_t *blob, size_t len, size_t *pos,
    agw_header_t *h);

/* 1 if name (a token) and value may be encoded */
int agw_header_name_valid(const uint8_t *name, size_t len);
int agw_header_value_valid(const uint8_t *value, size_t len);


/*
 * Replay.  An entry may come from outside (anyone who can write to Redis),
 * so before it is served it must look like what the capture stores: a 200,
 * no larger than the store's max_entry_size, and none of the headers that
 * frame the message or concern one connection (Content-Length,
 * Transfer-Encoding, Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Upgrade, Proxy-Authenticate, Proxy-Authorization), nor Set-Cookie, nor
 * those the gateway writes fresh on every answer (Date, Server, Age,
 * X-Cache), nor those about one request or client rather than the content
 * (agw_header_per_request(): the upstream's quota such as x-ratelimit-*
 * and Retry-After, request ids, timings).
 */

/* 1 unless the header is one of the above; case-insensitive */
int agw_header_replayable(const uint8_t *name, size_t len);

/* NULL if the decoded entry may be served, else the reason it may not */
const char *agw_entry_check(const agw_entry_t *e, size_t max_size);


/* the Redis hash fields of an entry, as they arrive; data NULL: missing */
typedef struct {
    const uint8_t  *data;
    size_t          len;
} agw_field_t;

typedef struct {
    agw_field_t     status;              /* decimal, 3 digits */
    agw_field_t     headers;             /* headers blob */
    agw_field_t     body;
    agw_field_t     created;             /* decimal unix seconds */
    agw_field_t     key;                 /* cache key text */
    agw_field_t     fresh_until;         /* decimal unix seconds, the
                                            entry's fresh_until; optional:
                                            missing (an entry of an older
                                            writer) is fresh_until 0 */
} agw_fields_t;

/*
 * NULL and *out pointing into the fields if they make an entry that may be
 * served (agw_entry_check() included), else the reason; sizes are checked
 * before anything is looked at byte by byte, so the caller copies nothing
 * larger than max_size
 */
const char *agw_entry_from_fields(const agw_fields_t *f, size_t max_size,
    agw_entry_t *out);


#endif /* _AGW_ENTRY_H_INCLUDED_ */
