
/*
 * Strict JSON (RFC 8259), what every reader here shares: the results, the
 * depth limit, string contents (escapes, surrogates, UTF-8 as RFC 3629
 * has it) and unescaping.  The readers have a header each:
 * agw_json_scan.h (one pass over a whole text), agw_json_canonical.h (the
 * cache key's canonical form), agw_json_request.h (what the limiter reads
 * from a request) and agw_json_push.h (answers that arrive in pieces).
 */


#ifndef _AGW_JSON_H_INCLUDED_
#define _AGW_JSON_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define AGW_JSON_OK        0
#define AGW_JSON_EINVAL   -1             /* not JSON, truncated, bad UTF-8,
                                            bad escape, lone surrogate */
#define AGW_JSON_EDEPTH   -2             /* nested deeper than
                                            AGW_JSON_MAX_DEPTH */
#define AGW_JSON_EDUP     -3             /* an object repeats a member name */
#define AGW_JSON_ERANGE   -4             /* a number whose canonical
                                            exponent is beyond +-999999999,
                                            or input of 2 GiB or more */
#define AGW_JSON_ENOMEM   -5             /* scratch too small */
#define AGW_JSON_ESTOP    -6             /* a callback asked to stop */

#define AGW_JSON_MAX_DEPTH  64           /* containers, nested */


typedef struct {
    const uint8_t  *data;
    size_t          len;
} agw_json_str_t;


/*
 * Unescapes the content of a JSON string (the bytes between its quotes)
 * into out; returns the length, or -1 if it does not fit or is not a
 * valid string content.
 */
ptrdiff_t agw_json_unescape(const uint8_t *in, size_t len, uint8_t *out,
    size_t out_len);


/* for the readers in lib/: the bytes of a string's content */

#define AGW_JSON_BYTE_PLAIN      0       /* ASCII that stands for itself */
#define AGW_JSON_BYTE_QUOTE      1
#define AGW_JSON_BYTE_BACKSLASH  2
#define AGW_JSON_BYTE_CONTROL    3       /* invalid unless escaped */
#define AGW_JSON_BYTE_HIGH       4       /* >= 0x80: a UTF-8 sequence */

extern const uint8_t  agw_json_byte_class[256];


#if (defined __GNUC__ && defined __BYTE_ORDER__                            \
     && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)

/* the readers in lib/ take a string's plain bytes eight at a time */

#define AGW_JSON_WORDS  1

#define AGW_JSON_ONES   0x0101010101010101ULL
#define AGW_JSON_HIGHS  0x8080808080808080ULL


/*
 * The special bytes of eight string bytes at once (w holds them in memory
 * order, the first in its low byte): 0 if there is none, else the lowest
 * set bit is the high bit of the first one.  Each test, "a byte below
 * 0x20" and "a byte equal to the quote, the backslash", may also flag a
 * byte above one it flags rightly (its borrow), never one below: so the
 * lowest flag of the three is exact.  Bytes >= 0x80 are never flagged
 * (~w clears their high bit; w & AGW_JSON_HIGHS flags them exactly).
 * agw_json_word_quotes() alone is what ends a run in a skimmed string,
 * where control bytes go unchecked.
 */

static inline uint64_t
agw_json_word_quotes(uint64_t w)
{
    uint64_t  q, b;

    q = w ^ (AGW_JSON_ONES * '"');
    b = w ^ (AGW_JSON_ONES * '\\');

    return (((q - AGW_JSON_ONES) & ~q) | ((b - AGW_JSON_ONES) & ~b))
           & AGW_JSON_HIGHS;
}


static inline uint64_t
agw_json_word_specials(uint64_t w)
{
    return (((w - AGW_JSON_ONES * 0x20) & ~w) & AGW_JSON_HIGHS)
           | agw_json_word_quotes(w);
}

#endif

/* the value of a hex digit, -1 if c is not one */
int agw_json_hex(uint8_t c);

/*
 * the escape at p ('\'): bytes it takes, 0 if invalid; a surrogate pair is
 * one code point, a lone surrogate is invalid
 */
size_t agw_json_escape(const uint8_t *p, const uint8_t *end, uint32_t *cp);

/* the UTF-8 sequence at p (RFC 3629): its length, 0 if invalid */
size_t agw_json_utf8(const uint8_t *p, const uint8_t *end, uint32_t *cp);

/* the bytes of cp in UTF-8 */
size_t agw_json_utf8_len(uint32_t cp);

/* writes cp in UTF-8 (at most 4 bytes), returns how many */
size_t agw_json_utf8_put(uint8_t *out, uint32_t cp);


#endif /* _AGW_JSON_H_INCLUDED_ */
