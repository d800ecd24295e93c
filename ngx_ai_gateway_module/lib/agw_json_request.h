
/*
 * The request facts: what the token limiter needs from an inference
 * request (model, prompt bytes, max_tokens, stream), read by the scanner
 * (agw_json_scan.h) in the same pass as the cache key's canonical form.
 * See agw_json_request.c.
 */


#ifndef _AGW_JSON_REQUEST_H_INCLUDED_
#define _AGW_JSON_REQUEST_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "agw_json.h"


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


/*
 * For the scanner.  A value's role says what it means to the request:
 * the scanner starts the top-level value with AGW_JSON_ROLE_TOP, asks
 * agw_json_request_member() and _element() the role of each member and
 * element of a value that has one, and hands the values whose role is not
 * AGW_JSON_ROLE_NONE to the functions below.
 */

#define AGW_JSON_ROLE_NONE  0
#define AGW_JSON_ROLE_TOP   1

/* a request being read */
typedef struct {
    agw_json_request_t  *req;
    uint64_t             max_tokens;
    uint64_t             max_completion;
    unsigned             has_max_tokens:1;
    unsigned             has_max_completion:1;
} agw_json_request_read_t;

/* req, if not NULL, is cleared and read into */
void agw_json_request_start(agw_json_request_read_t *rd,
    agw_json_request_t *req);

/* the role of a member (name without escapes) of a value of this role */
unsigned agw_json_request_member(unsigned role, const uint8_t *name,
    size_t len);

/* the role of the elements of an array of this role */
unsigned agw_json_request_element(unsigned role);

/*
 * a string: content is its raw content (between the quotes), len bytes,
 * unescaped_len once unescaped
 */
void agw_json_request_string(agw_json_request_read_t *rd, unsigned role,
    const uint8_t *content, size_t len, uint64_t unescaped_len,
    int escaped);

/* a number without sign, fraction or exponent: its digits */
void agw_json_request_integer(agw_json_request_read_t *rd, unsigned role,
    const uint8_t *digits, const uint8_t *end);

/* true or false */
void agw_json_request_boolean(agw_json_request_read_t *rd, unsigned role,
    int value);

/*
 * the scan is over; valid: the input was one JSON value (else the request
 * is cleared)
 */
void agw_json_request_finish(agw_json_request_read_t *rd, int valid);


#endif /* _AGW_JSON_REQUEST_H_INCLUDED_ */
