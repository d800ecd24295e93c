
/*
 * Cache entry codec.
 *
 * The shared-memory store keeps each response as one flat byte string, in
 * the spirit of the header nginx's file cache writes in front of every
 * cached file (ngx_http_file_cache_header_t): a version first, so a layout
 * change is detected instead of misread, a CRC-32 of the key, fixed-width
 * lengths, then the variable parts.
 *
 *     offset  size  field
 *          0     4  magic "AGWE"
 *          4     2  version (2)
 *          6     2  status
 *          8     8  created, unix seconds
 *         16     8  fresh until, unix seconds (0: while kept)
 *         24     4  CRC-32 of the key
 *         28     4  key length
 *         32     4  headers length
 *         36     4  body length
 *         40     -  key, headers blob, body
 *
 * Version 2 added "fresh until": the end of the answer's own lifetime,
 * decided when it was stored.  A store may keep an entry longer than that
 * (ai_gateway_cache_stale, for stale answers); whether it is still fresh
 * is read from the entry, never recomputed from the configuration of
 * whoever reads it.  Version 1 entries do not decode: the shared-memory
 * zone that held them is refused across the change (its own version).
 *
 * Unlike nginx's header, which is a C struct written with its native byte
 * order and padding, every field here is little-endian and written byte by
 * byte: no struct punning, no alignment requirement on the buffer (a slab
 * allocation or a Redis reply), and the same bytes on every platform.  The
 * fixed part is exactly 40 bytes, no padding.
 *
 * The decoder trusts nothing: it checks the magic and version, then every
 * length against the bytes actually left, adding in size_t only after
 * checking for overflow, and accepts the entry only if the parts add up to
 * exactly the input length (trailing garbage is corruption too), the key
 * matches its CRC, the status is a real HTTP status and the headers blob
 * parses.  On success the entry points into the input, nothing is copied.
 * The libFuzzer target (tests/fuzz/fuzz_entry.c) holds the decoder to
 * never reading out of bounds, and to re-encoding whatever it accepts to
 * the same bytes: the encoding is canonical.
 *
 * The headers blob is HTTP/1.1 header lines, "Name: value\r\n" each, because
 * the Redis store keeps it verbatim in the `headers` hash field and someone
 * running HGETALL in redis-cli should be able to read it.  The format is
 * strict so that it is canonical: a token name, a colon and exactly one
 * space, a value with no CR, LF or other control (tabs and obs-text are
 * fine) and no leading or trailing whitespace.  The encoder refuses what it
 * could not write unambiguously rather than sanitize it silently: a value
 * with a CR LF in it would otherwise inject a header into every response
 * served from the cache.
 */


#include <string.h>

#include "agw_crc32.h"
#include "agw_entry.h"
#include "agw_policy.h"


static const uint8_t  agw_entry_magic[4] = { 'A', 'G', 'W', 'E' };


/*
 * RFC 7230 tchar: "!#$%&'*+-.^_`|~", DIGIT, ALPHA; a bit per byte, since
 * every HIT walks its stored headers with this test
 */

static const uint32_t  agw_tchar_map[8] = {
    0x00000000,                 /* 0x00-0x1f: controls */
    0x03ff6cfa,                 /* 0x20-0x3f: ! # $ % & ' * + - . 0-9 */
    0xc7fffffe,                 /* 0x40-0x5f: A-Z ^ _ */
    0x57ffffff,                 /* 0x60-0x7f: ` a-z | ~ */
    0, 0, 0, 0                  /* 0x80-0xff */
};


static int
agw_tchar(uint8_t c)
{
    return (agw_tchar_map[c >> 5] >> (c & 0x1f)) & 1;
}


/* field-vchar / SP / HTAB: VCHAR, obs-text, SP, HTAB; no CTL, no DEL */

static int
agw_vchar(uint8_t c)
{
    return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f);
}


int
agw_header_name_valid(const uint8_t *name, size_t len)
{
    size_t  i;

    if (len == 0) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!agw_tchar(name[i])) {
            return 0;
        }
    }

    return 1;
}


int
agw_header_value_valid(const uint8_t *value, size_t len)
{
    size_t  i;

    if (len == 0) {
        return 1;
    }

    if (value[0] == ' ' || value[0] == '\t'
        || value[len - 1] == ' ' || value[len - 1] == '\t')
    {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!agw_vchar(value[i])) {
            return 0;
        }
    }

    return 1;
}


size_t
agw_headers_size(const agw_header_t *h, size_t n)
{
    size_t  i, size, line;

    size = 0;

    for (i = 0; i < n; i++) {

        /* name ": " value CRLF */

        line = h[i].name_len;

        if (line > SIZE_MAX - 4 || h[i].value_len > SIZE_MAX - 4 - line) {
            return 0;
        }

        line += h[i].value_len + 4;

        if (line > SIZE_MAX - size) {
            return 0;
        }

        size += line;
    }

    return size;
}


size_t
agw_headers_encode(uint8_t *buf, size_t len, const agw_header_t *h, size_t n)
{
    size_t    i, size;
    uint8_t  *p;

    size = agw_headers_size(h, n);

    if (size == 0 || size > len) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (!agw_header_name_valid(h[i].name, h[i].name_len)
            || !agw_header_value_valid(h[i].value, h[i].value_len))
        {
            return 0;
        }
    }

    p = buf;

    for (i = 0; i < n; i++) {
        memcpy(p, h[i].name, h[i].name_len);
        p += h[i].name_len;
        *p++ = ':';
        *p++ = ' ';

        if (h[i].value_len) {
            memcpy(p, h[i].value, h[i].value_len);
            p += h[i].value_len;
        }

        *p++ = '\r';
        *p++ = '\n';
    }

    return (size_t) (p - buf);
}


int
agw_headers_next(const uint8_t *blob, size_t len, size_t *pos,
    agw_header_t *h)
{
    size_t  i, start, colon;

    start = *pos;

    if (start >= len) {
        return start == len ? 0 : -1;
    }

    /* name: token up to ':' */

    for (i = start; i < len && blob[i] != ':'; i++) {
        if (!agw_tchar(blob[i])) {
            return -1;
        }
    }

    if (i == start || i == len) {
        return -1;
    }

    colon = i;

    /* exactly one SP after the colon */

    if (len - colon < 2 || blob[colon + 1] != ' ') {
        return -1;
    }

    /* value up to CR, which must be followed by LF */

    for (i = colon + 2; i < len && blob[i] != '\r'; i++) {
        if (!agw_vchar(blob[i])) {
            return -1;
        }
    }

    if (len - i < 2 || blob[i + 1] != '\n') {
        return -1;
    }

    /* every byte of the value passed above: only its ends are left */

    if (i > colon + 2
        && (blob[colon + 2] == ' ' || blob[colon + 2] == '\t'
            || blob[i - 1] == ' ' || blob[i - 1] == '\t'))
    {
        return -1;
    }

    h->name = blob + start;
    h->name_len = colon - start;
    h->value = blob + colon + 2;
    h->value_len = i - colon - 2;

    *pos = i + 2;

    return 1;
}


int
agw_headers_valid(const uint8_t *blob, size_t len)
{
    int           rc;
    size_t        pos;
    agw_header_t  h;

    pos = 0;

    do {
        rc = agw_headers_next(blob, len, &pos, &h);
    } while (rc == 1);

    return rc;
}


int
agw_status_valid(unsigned status)
{
    return status >= 100 && status <= 599;
}


static uint8_t *
agw_put_u16(uint8_t *p, uint16_t v)
{
    *p++ = (uint8_t) v;
    *p++ = (uint8_t) (v >> 8);

    return p;
}


static uint8_t *
agw_put_u32(uint8_t *p, uint32_t v)
{
    *p++ = (uint8_t) v;
    *p++ = (uint8_t) (v >> 8);
    *p++ = (uint8_t) (v >> 16);
    *p++ = (uint8_t) (v >> 24);

    return p;
}


static uint8_t *
agw_put_u64(uint8_t *p, uint64_t v)
{
    p = agw_put_u32(p, (uint32_t) v);
    return agw_put_u32(p, (uint32_t) (v >> 32));
}


static uint16_t
agw_get_u16(const uint8_t *p)
{
    return (uint16_t) (p[0] | p[1] << 8);
}


static uint32_t
agw_get_u32(const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8
           | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}


static uint64_t
agw_get_u64(const uint8_t *p)
{
    return (uint64_t) agw_get_u32(p) | (uint64_t) agw_get_u32(p + 4) << 32;
}


size_t
agw_entry_size(const agw_entry_t *e)
{
    size_t  size;

    /* via uint64_t: with a 32-bit size_t the test is always false */

    if ((uint64_t) e->key_len > AGW_ENTRY_MAX_FIELD
        || (uint64_t) e->headers_len > AGW_ENTRY_MAX_FIELD
        || (uint64_t) e->body_len > AGW_ENTRY_MAX_FIELD)
    {
        return 0;
    }

    size = AGW_ENTRY_HEADER_SIZE;

    if (e->key_len > SIZE_MAX - size) {
        return 0;
    }

    size += e->key_len;

    if (e->headers_len > SIZE_MAX - size) {
        return 0;
    }

    size += e->headers_len;

    if (e->body_len > SIZE_MAX - size) {
        return 0;
    }

    return size + e->body_len;
}


size_t
agw_entry_head_size(const agw_entry_t *e)
{
    size_t  size;

    size = agw_entry_size(e);

    return size ? size - e->body_len : 0;
}


size_t
agw_entry_encode_head(uint8_t *buf, size_t len, const agw_entry_t *e)
{
    size_t    size;
    uint8_t  *p;

    size = agw_entry_head_size(e);

    if (size == 0 || size > len) {
        return 0;
    }

    if (!agw_status_valid(e->status)
        || agw_headers_valid(e->headers, e->headers_len) != 0)
    {
        return 0;
    }

    p = buf;

    memcpy(p, agw_entry_magic, sizeof(agw_entry_magic));
    p += sizeof(agw_entry_magic);

    p = agw_put_u16(p, AGW_ENTRY_VERSION);
    p = agw_put_u16(p, e->status);
    p = agw_put_u64(p, e->created);
    p = agw_put_u64(p, e->fresh_until);
    p = agw_put_u32(p, agw_crc32(e->key, e->key_len));
    p = agw_put_u32(p, (uint32_t) e->key_len);
    p = agw_put_u32(p, (uint32_t) e->headers_len);
    p = agw_put_u32(p, (uint32_t) e->body_len);

    /* memcpy() wants non-NULL pointers even for 0 bytes */

    if (e->key_len) {
        memcpy(p, e->key, e->key_len);
        p += e->key_len;
    }

    if (e->headers_len) {
        memcpy(p, e->headers, e->headers_len);
        p += e->headers_len;
    }

    return (size_t) (p - buf);
}


size_t
agw_entry_encode(uint8_t *buf, size_t len, const agw_entry_t *e)
{
    size_t  size, head;

    size = agw_entry_size(e);

    if (size == 0 || size > len) {
        return 0;
    }

    head = agw_entry_encode_head(buf, len, e);

    if (head == 0) {
        return 0;
    }

    if (e->body_len) {
        memcpy(buf + head, e->body, e->body_len);
    }

    return size;
}


size_t
agw_entry_head_length(const uint8_t *buf, size_t total)
{
    size_t  key_len, headers_len;

    if (total < AGW_ENTRY_HEADER_SIZE
        || memcmp(buf, agw_entry_magic, sizeof(agw_entry_magic)) != 0
        || agw_get_u16(buf + 4) != AGW_ENTRY_VERSION)
    {
        return 0;
    }

    key_len = agw_get_u32(buf + 28);
    headers_len = agw_get_u32(buf + 32);

    /* each length against what is left; no sum that could wrap */

    if (key_len > total - AGW_ENTRY_HEADER_SIZE
        || headers_len > total - AGW_ENTRY_HEADER_SIZE - key_len)
    {
        return 0;
    }

    return AGW_ENTRY_HEADER_SIZE + key_len + headers_len;
}


int
agw_entry_decode_head(const uint8_t *buf, size_t len, size_t total,
    agw_entry_t *out)
{
    size_t          head, key_len, headers_len, body_len;
    uint16_t        status;
    const uint8_t  *p;

    if (len < AGW_ENTRY_HEADER_SIZE || len > total) {
        return -1;
    }

    head = agw_entry_head_length(buf, total);

    if (head == 0 || head > len) {
        return -1;
    }

    status = agw_get_u16(buf + 6);

    if (!agw_status_valid(status)) {
        return -1;
    }

    key_len = agw_get_u32(buf + 28);
    headers_len = agw_get_u32(buf + 32);
    body_len = agw_get_u32(buf + 36);

    if (body_len != total - head) {
        /* truncated, or trailing garbage */
        return -1;
    }

    p = buf + AGW_ENTRY_HEADER_SIZE;

    if (agw_crc32(p, key_len) != agw_get_u32(buf + 24)) {
        return -1;
    }

    if (agw_headers_valid(p + key_len, headers_len) != 0) {
        return -1;
    }

    out->status = status;
    out->created = agw_get_u64(buf + 8);
    out->fresh_until = agw_get_u64(buf + 16);
    out->key = p;
    out->key_len = key_len;
    out->headers = p + key_len;
    out->headers_len = headers_len;
    out->body = NULL;
    out->body_len = body_len;

    return 0;
}


int
agw_entry_decode(const uint8_t *buf, size_t len, agw_entry_t *out)
{
    if (agw_entry_decode_head(buf, len, len, out) != 0) {
        return -1;
    }

    out->body = buf + (len - out->body_len);

    return 0;
}


/* s1 of length n against the lowercase C string s2 */

static int
agw_eq_lower(const uint8_t *s1, size_t n, const char *s2)
{
    size_t   i;
    uint8_t  c;

    for (i = 0; i < n; i++) {
        c = s1[i];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (s2[i] == '\0' || c != (uint8_t) s2[i]) {
            return 0;
        }
    }

    return s2[n] == '\0';
}


int
agw_header_replayable(const uint8_t *name, size_t len)
{
    size_t  i;

    static const char  *never[] = {
        /* framing */
        "content-length",
        "transfer-encoding",

        /* hop-by-hop (RFC 9110 7.6.1), and the old Proxy-Connection */
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",

        /* one client's, never stored */
        "set-cookie",

        /* written fresh on every answer */
        "date",
        "server",
        "age",
        "x-cache",
        NULL
    };

    for (i = 0; never[i] != NULL; i++) {
        if (agw_eq_lower(name, len, never[i])) {
            return 0;
        }
    }

    /*
     * one request's or one client's: quota (RateLimit*, x-ratelimit-*,
     * Retry-After, ...), request ids, timings (agw_policy.c)
     */

    return !agw_header_per_request(name, len);
}


const char *
agw_entry_check(const agw_entry_t *e, size_t max_size)
{
    int           rc;
    size_t        pos, size;
    agw_header_t  h;

    if (e->status != 200) {
        return "status is not 200";
    }

    size = agw_entry_size(e);

    if (size == 0 || size > max_size) {
        return "larger than max_entry_size";
    }

    pos = 0;

    while ((rc = agw_headers_next(e->headers, e->headers_len, &pos, &h))
           == 1)
    {
        if (!agw_header_replayable(h.name, h.name_len)) {
            return "hop-by-hop or framing header";
        }
    }

    if (rc != 0) {
        return "invalid headers";
    }

    return NULL;
}


/* unix seconds in decimal: 1 to 19 digits, so it fits an int64_t */

static int
agw_entry_time(const agw_field_t *f, uint64_t *out)
{
    size_t    i;
    uint64_t  t;

    if (f->len == 0 || f->len > 19) {
        return -1;
    }

    t = 0;

    for (i = 0; i < f->len; i++) {
        if (f->data[i] < '0' || f->data[i] > '9') {
            return -1;
        }

        t = t * 10 + (f->data[i] - '0');
    }

    *out = t;

    return 0;
}


const char *
agw_entry_from_fields(const agw_fields_t *f, size_t max_size,
    agw_entry_t *out)
{
    size_t    i;
    uint64_t  created, fresh;
    unsigned  status;

    if (f->status.data == NULL || f->headers.data == NULL
        || f->body.data == NULL || f->created.data == NULL
        || f->key.data == NULL)
    {
        return "a field is missing";
    }

    /* sizes first, before any byte is looked at or copied; no sum wraps */

    if (max_size < AGW_ENTRY_HEADER_SIZE
        || f->headers.len > max_size - AGW_ENTRY_HEADER_SIZE
        || f->body.len > max_size - AGW_ENTRY_HEADER_SIZE - f->headers.len
        || f->key.len > max_size - AGW_ENTRY_HEADER_SIZE - f->headers.len
                        - f->body.len)
    {
        return "larger than max_entry_size";
    }

    /* exactly three digits: no sign, no spaces */

    if (f->status.len != 3) {
        return "invalid status";
    }

    status = 0;

    for (i = 0; i < 3; i++) {
        if (f->status.data[i] < '0' || f->status.data[i] > '9') {
            return "invalid status";
        }

        status = status * 10 + (f->status.data[i] - '0');
    }

    if (!agw_status_valid(status)) {
        return "invalid status";
    }

    if (agw_entry_time(&f->created, &created) != 0) {
        return "invalid created";
    }

    fresh = 0;

    if (f->fresh_until.data != NULL
        && agw_entry_time(&f->fresh_until, &fresh) != 0)
    {
        return "invalid fresh_until";
    }

    out->status = (uint16_t) status;
    out->created = created;
    out->fresh_until = fresh;
    out->key = f->key.data;
    out->key_len = f->key.len;
    out->headers = f->headers.data;
    out->headers_len = f->headers.len;
    out->body = f->body.data;
    out->body_len = f->body.len;

    return agw_entry_check(out, max_size);
}
