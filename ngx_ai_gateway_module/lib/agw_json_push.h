
/*
 * The push tokenizer: a JSON text fed in any split, one event per token.
 * agw_tokens.c reads the usage of answers with it.  See agw_json_push.c.
 */


#ifndef _AGW_JSON_PUSH_H_INCLUDED_
#define _AGW_JSON_PUSH_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "agw_json.h"


/*
 * The handler is called once per token.  Strings are not kept: a key or
 * string value event carries its first AGW_JSON_TEXT_MAX unescaped bytes
 * and its full unescaped length; a number carries its text the same way.
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

/*
 * What a handler may answer a KEY event with, besides 0 (go on) and any
 * other value (stop): it needs nothing of the member's value.  A string
 * or container value is then skimmed: followed to its end (strings,
 * escapes, brackets) with no events and no other check (nor the depth
 * limit), so what it holds costs a few instructions a byte and its errors
 * go unseen; a number or a literal goes by as usual.
 */

#define AGW_JSON_SKIP  2

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
    unsigned           skip:1;           /* the handler needs nothing of the
                                            value that follows */
    unsigned           skim_str:1;       /* skimming: inside a string */
    unsigned           skim_esc:1;       /* ... after its backslash */
    uint64_t           skim_depth;       /* skimming: brackets open */
    uint8_t            text[AGW_JSON_TEXT_MAX];
    size_t             text_len;
} agw_json_push_t;

void agw_json_push_init(agw_json_push_t *j, agw_json_event_pt handler,
    void *ctx);

/* AGW_JSON_OK while the input can still be JSON; errors are sticky */
int agw_json_push_feed(agw_json_push_t *j, const uint8_t *data, size_t len);

/* AGW_JSON_OK if the input was exactly one JSON value */
int agw_json_push_finish(agw_json_push_t *j);


#endif /* _AGW_JSON_PUSH_H_INCLUDED_ */
