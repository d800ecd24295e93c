
/*
 * JSON string contents: what every JSON reader here agrees a string may
 * hold, and how it reads one.
 *
 * RFC 8259 leaves much to the reader; these are strict where a cache key
 * must be.  Inside a string, '"', '\' and the C0 controls appear only
 * escaped; an escape is one of the eight short forms or \uXXXX in either
 * case, and a \u escape of a surrogate is valid only as the high half of
 * a pair followed at once by the low half (a lone one is invalid, not
 * replaced).  Other bytes must be UTF-8 as RFC 3629 defines it: no
 * overlong forms, no encoded surrogates, nothing above U+10FFFF.  Two
 * strings are equal when their unescaped UTF-8 is, so "\u00e9", "\u00E9"
 * and "é" are one name.
 */


#include "agw_json.h"


const uint8_t  agw_json_byte_class[256] = {
    [0x00 ... 0x1f] = AGW_JSON_BYTE_CONTROL,
    ['"'] = AGW_JSON_BYTE_QUOTE,
    ['\\'] = AGW_JSON_BYTE_BACKSLASH,
    [0x80 ... 0xff] = AGW_JSON_BYTE_HIGH
};


int
agw_json_hex(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


static int
agw_json_hex4(const uint8_t *p, uint32_t *cp)
{
    int       i, d;
    uint32_t  v;

    v = 0;

    for (i = 0; i < 4; i++) {
        d = agw_json_hex(p[i]);
        if (d < 0) {
            return -1;
        }

        v = v << 4 | (uint32_t) d;
    }

    *cp = v;

    return 0;
}


/*
 * the escape at p ('\'): bytes it takes, 0 if invalid; a surrogate pair is
 * one code point, a lone surrogate is invalid
 */

size_t
agw_json_escape(const uint8_t *p, const uint8_t *end, uint32_t *cp)
{
    uint32_t  lo;

    if (end - p < 2) {
        return 0;
    }

    switch (p[1]) {
    case '"':  *cp = '"'; return 2;
    case '\\': *cp = '\\'; return 2;
    case '/':  *cp = '/'; return 2;
    case 'b':  *cp = 0x08; return 2;
    case 'f':  *cp = 0x0c; return 2;
    case 'n':  *cp = 0x0a; return 2;
    case 'r':  *cp = 0x0d; return 2;
    case 't':  *cp = 0x09; return 2;
    case 'u':
        break;
    default:
        return 0;
    }

    if (end - p < 6 || agw_json_hex4(p + 2, cp) != 0) {
        return 0;
    }

    if (*cp < 0xd800 || *cp > 0xdfff) {
        return 6;
    }

    if (*cp > 0xdbff
        || end - p < 12 || p[6] != '\\' || p[7] != 'u'
        || agw_json_hex4(p + 8, &lo) != 0
        || lo < 0xdc00 || lo > 0xdfff)
    {
        return 0;
    }

    *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);

    return 12;
}


/* the UTF-8 sequence at p (RFC 3629): its length, 0 if invalid */

size_t
agw_json_utf8(const uint8_t *p, const uint8_t *end, uint32_t *cp)
{
    size_t   n, i;
    uint8_t  c, lo, hi;

    c = p[0];
    lo = 0x80;
    hi = 0xbf;

    if (c < 0x80) {
        *cp = c;
        return 1;

    } else if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        *cp = c & 0x1f;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        *cp = c & 0x0f;
        if (c == 0xe0) {
            lo = 0xa0;                   /* no overlong forms */
        } else if (c == 0xed) {
            hi = 0x9f;                   /* no surrogates */
        }

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        *cp = c & 0x07;
        if (c == 0xf0) {
            lo = 0x90;
        } else if (c == 0xf4) {
            hi = 0x8f;                   /* nothing above U+10FFFF */
        }

    } else {
        return 0;
    }

    if ((size_t) (end - p) < n || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        *cp = *cp << 6 | (p[i] & 0x3f);
    }

    return n;
}


size_t
agw_json_utf8_len(uint32_t cp)
{
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}


size_t
agw_json_utf8_put(uint8_t *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (uint8_t) cp;
        return 1;
    }

    if (cp < 0x800) {
        out[0] = (uint8_t) (0xc0 | cp >> 6);
        out[1] = (uint8_t) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        out[0] = (uint8_t) (0xe0 | cp >> 12);
        out[1] = (uint8_t) (0x80 | (cp >> 6 & 0x3f));
        out[2] = (uint8_t) (0x80 | (cp & 0x3f));
        return 3;
    }

    out[0] = (uint8_t) (0xf0 | cp >> 18);
    out[1] = (uint8_t) (0x80 | (cp >> 12 & 0x3f));
    out[2] = (uint8_t) (0x80 | (cp >> 6 & 0x3f));
    out[3] = (uint8_t) (0x80 | (cp & 0x3f));
    return 4;
}


ptrdiff_t
agw_json_unescape(const uint8_t *in, size_t len, uint8_t *out,
    size_t out_len)
{
    size_t          n, k;
    uint32_t        cp;
    const uint8_t  *p, *end;

    p = in;
    end = in + len;
    k = 0;

    while (p < end) {
        if (*p == '\\') {
            n = agw_json_escape(p, end, &cp);

        } else if (*p < 0x20 || *p == '"') {
            return -1;

        } else {
            n = agw_json_utf8(p, end, &cp);
        }

        if (n == 0 || out_len - k < agw_json_utf8_len(cp)) {
            return -1;
        }

        k += agw_json_utf8_put(out + k, cp);
        p += n;
    }

    return (ptrdiff_t) k;
}
