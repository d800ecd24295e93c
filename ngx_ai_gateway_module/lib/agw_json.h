
/*
 * Strict JSON (RFC 8259): a canonicaliser for cache keys that also reads
 * the request fields the token limiter needs, and an incremental push
 * tokenizer for answers that arrive in pieces.  See the essay in
 * agw_json.c.
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
#define AGW_JSON_ERANGE   -4             /* an exponent beyond +-999999999,
                                            or input of 2 GiB or more */
#define AGW_JSON_ENOMEM   -5             /* scratch too small */
#define AGW_JSON_ESTOP    -6             /* a callback asked to stop */

#define AGW_JSON_MAX_DEPTH  64           /* containers, nested */

/* max_tokens and friends above this are read as this (agw_tokens.h) */
#define AGW_JSON_MAX_INT    ((uint64_t) 1 << 40)


/* what the limiter needs from an inference request; all 0 when absent */
typedef struct {
    const uint8_t  *model;               /* raw string content, in the input,
                                            without the quotes */
    size_t          model_len;
    uint64_t        prompt_bytes;        /* unescaped bytes of `prompt` and
                                            of every messages[].content */
    uint64_t        max_tokens;          /* max_completion_tokens, else
                                            max_tokens, <= AGW_JSON_MAX_INT */
    unsigned        valid:1;             /* the input is valid JSON (the
                                            fields below are meaningful) */
    unsigned        model_escaped:1;     /* model holds backslash escapes */
    unsigned        has_max_tokens:1;
    unsigned        stream:1;            /* "stream": true */
    unsigned        include_usage:1;     /* stream_options.include_usage */
} agw_json_request_t;


typedef struct {
    const uint8_t  *data;
    size_t          len;
} agw_json_str_t;


/* receives the canonical bytes in order; non-zero stops with ESTOP */
typedef int (*agw_json_write_pt)(void *ctx, const uint8_t *data, size_t len);


/* a write callback into a caller's buffer: ctx is an agw_json_buf_t */
typedef struct {
    uint8_t  *pos;
    uint8_t  *end;
} agw_json_buf_t;

int agw_json_buf_write(void *ctx, const uint8_t *data, size_t len);


/*
 * scratch bytes that always suffice to canonicalise `len` bytes of input
 * (12 bytes per value the input could hold); less may do for real bodies,
 * and too little is AGW_JSON_ENOMEM, never an overrun
 */
size_t agw_json_scratch_size(size_t len);

/*
 * Writes the canonical form of the JSON text in[0..len) through write(),
 * leaving out top-level members named in ignore[0..nignore).  Nothing is
 * written unless the whole input is canonicalisable: on any error the
 * caller keys by the raw bytes.  req, if not NULL, is filled in the same
 * pass (req->valid says whether the input was valid JSON, even when the
 * result is EDUP, ERANGE or ENOMEM).  scratch must be aligned for
 * uint32_t.
 */
int agw_json_canonical(const uint8_t *in, size_t len,
    const agw_json_str_t *ignore, size_t nignore,
    void *scratch, size_t scratch_len,
    agw_json_write_pt write, void *ctx, agw_json_request_t *req);

/* only the request fields: one pass, no scratch, no output */
int agw_json_scan_request(const uint8_t *in, size_t len,
    agw_json_request_t *req);

/*
 * Unescapes the content of a JSON string (as agw_json_request_t.model
 * holds it) into out; returns the length, or -1 if it does not fit or is
 * not a valid string content.
 */
ptrdiff_t agw_json_unescape(const uint8_t *in, size_t len, uint8_t *out,
    size_t out_len);


/*
 * The push tokenizer: fed any split of a JSON text, it calls the handler
 * once per token.  Strings are not kept: a key or string value event
 * carries its first AGW_JSON_TEXT_MAX unescaped bytes and its full
 * unescaped length; a number carries its text the same way.
 */

#define AGW_JSON_TEXT_MAX  48

enum {
    AGW_JSON_OBJECT = 1,
    AGW_JSON_OBJECT_END,
    AGW_JSON_ARRAY,
    AGW_JSON_ARRAY_END,
    AGW_JSON_KEY,
    AGW_JSON_STRING,
    AGW_JSON_NUMBER,
    AGW_JSON_TRUE,
    AGW_JSON_FALSE,
    AGW_JSON_NULL
};

typedef struct {
    unsigned        type;                /* AGW_JSON_OBJECT ... */
    unsigned        depth;               /* containers around the token (an
                                            _END: around its container) */
    const uint8_t  *text;                /* KEY, STRING, NUMBER */
    size_t          text_len;            /* <= AGW_JSON_TEXT_MAX */
    uint64_t        full_len;            /* unescaped length */
} agw_json_event_t;

typedef int (*agw_json_event_pt)(void *ctx, const agw_json_event_t *ev);

typedef struct {
    agw_json_event_pt  handler;
    void              *ctx;
    uint64_t           stack;            /* bit d: container d is an object */
    uint64_t           full_len;
    uint32_t           ucp;              /* \u escape being read */
    uint32_t           hi;               /* pending high surrogate, or 0 */
    unsigned           depth;
    unsigned           state;
    unsigned           sub;              /* number state, literal position,
                                            hex digits read */
    int                rc;               /* sticky result */
    const char        *literal;
    unsigned           key:1;            /* the string is a member name */
    uint8_t            text[AGW_JSON_TEXT_MAX];
    size_t             text_len;
} agw_json_push_t;

void agw_json_push_init(agw_json_push_t *j, agw_json_event_pt handler,
    void *ctx);

/* AGW_JSON_OK while the input can still be JSON; errors are sticky */
int agw_json_push_feed(agw_json_push_t *j, const uint8_t *data, size_t len);

/* AGW_JSON_OK if the input was exactly one JSON value */
int agw_json_push_finish(agw_json_push_t *j);


#endif /* _AGW_JSON_H_INCLUDED_ */
