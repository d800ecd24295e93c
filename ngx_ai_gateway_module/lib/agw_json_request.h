
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
    uint64_t        prompt_bytes;        /* unescaped bytes of the prompt's
                                            text, the size of its tool
                                            schemas and calls; without any
                                            prompt field, the body's size */
    uint64_t        prompt_tokens;       /* token ids given as numbers */
    uint64_t        max_tokens;          /* max_completion_tokens, else
                                            max_tokens, <= AGW_JSON_MAX_INT */
    unsigned        valid:1;             /* the input is valid JSON (the
                                            fields below are meaningful) */
    unsigned        model_escaped:1;     /* model holds backslash escapes */
    unsigned        has_max_tokens:1;
    unsigned        stream:1;            /* "stream": true */
    unsigned        include_usage:1;     /* stream_options.include_usage */
    unsigned        has_prompt:1;        /* a prompt field was found */
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
/*
 * a value that counts by its size as written (a tool's schema, a call's
 * arguments object): the scanner hands its length to
 * agw_json_request_raw() once it ends, and gives its members and elements
 * no role
 */
#define AGW_JSON_ROLE_RAW   2

/* a request being read */
typedef struct {
    agw_json_request_t  *req;
    uint64_t             len;            /* of the whole input */
    uint64_t             max_tokens;
    uint64_t             max_completion;
    unsigned             has_max_tokens:1;
    unsigned             has_max_completion:1;
} agw_json_request_read_t;

/* req, if not NULL, is cleared and read into; len: the input's */
void agw_json_request_start(agw_json_request_read_t *rd,
    agw_json_request_t *req, size_t len);

/*
 * the role of a member of a value of this role; escaped: the name holds
 * escapes (name is then its raw content)
 */
unsigned agw_json_request_member(agw_json_request_read_t *rd,
    unsigned role, const uint8_t *name, size_t len, int escaped);

/*
 * the role an object of this role reads its members with: an item of
 * prompt or input is a message (a Responses API item); a single content
 * part stands for an array of one
 */
unsigned agw_json_request_object(unsigned role);

/* the role of the elements of an array of this role */
unsigned agw_json_request_element(unsigned role);

/*
 * a string: content is its raw content (between the quotes), len bytes,
 * unescaped_len once unescaped
 */
void agw_json_request_string(agw_json_request_read_t *rd, unsigned role,
    const uint8_t *content, size_t len, uint64_t unescaped_len,
    int escaped);

/*
 * a number: its digits (after any sign) up to the fraction or exponent;
 * integer: it has no sign, fraction or exponent
 */
void agw_json_request_number(agw_json_request_read_t *rd, unsigned role,
    const uint8_t *digits, const uint8_t *end, int integer);

/* a value of role AGW_JSON_ROLE_RAW ended: len bytes as written */
void agw_json_request_raw(agw_json_request_read_t *rd, size_t len);

/* true or false */
void agw_json_request_boolean(agw_json_request_read_t *rd, unsigned role,
    int value);

/*
 * the scan is over; valid: the input was one JSON value (else the request
 * is cleared)
 */
void agw_json_request_finish(agw_json_request_read_t *rd, int valid);


#endif /* _AGW_JSON_REQUEST_H_INCLUDED_ */
