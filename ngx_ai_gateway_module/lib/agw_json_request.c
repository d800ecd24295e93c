
/*
 * The request facts: what the token limiter needs from an inference
 * request, read in the scanner's pass over the body (agw_json_scan.c), the
 * same pass that checks it for the cache key's canonical form, so the
 * gateway reads a body once for both.
 *
 * What counts, by the API that sends it:
 *
 *     model                                 the model's name, as written
 *     prompt, input                         a string or an array of
 *                                           strings (completions,
 *                                           embeddings, Responses)
 *     system                                Anthropic's system prompt
 *     messages[].content                    a string, or an array of parts
 *                                           whose `text` counts
 *     max_completion_tokens,                what the model may write; the
 *     max_output_tokens, max_tokens         first two win over max_tokens
 *     stream, stream_options.include_usage
 *
 * The prompt is counted in unescaped bytes: agw_tokens.c turns them into
 * an estimate.  Only those paths count: a "model" inside a message, or a
 * "content" outside messages, is not the request's.  Names compare as
 * written, with memcmp: a member name written with escapes is none of
 * them.  A max_tokens with a sign, a fraction or an exponent is not read,
 * and one above AGW_JSON_MAX_INT is read as that.
 */


#include <string.h>

#include "agw_json_request.h"


/* what a value means to the request */
enum {
    AGW_R_NONE = AGW_JSON_ROLE_NONE,
    AGW_R_TOP = AGW_JSON_ROLE_TOP,
    AGW_R_MODEL,
    AGW_R_PROMPT,                        /* string or array of strings */
    AGW_R_TEXT,                          /* a string that counts */
    AGW_R_MESSAGES,                      /* array of messages */
    AGW_R_MESSAGE,                       /* object with `content` */
    AGW_R_CONTENT,                       /* string or array of parts */
    AGW_R_PART,                          /* object with `text` */
    AGW_R_MAX_TOKENS,
    AGW_R_MAX_COMPLETION,
    AGW_R_STREAM,
    AGW_R_STREAM_OPTIONS,
    AGW_R_INCLUDE_USAGE
};


void
agw_json_request_start(agw_json_request_read_t *rd, agw_json_request_t *req)
{
    memset(rd, 0, sizeof(agw_json_request_read_t));

    rd->req = req;

    if (req) {
        memset(req, 0, sizeof(agw_json_request_t));
    }
}


#define agw_json_name_eq(p, n, s)                                            \
    ((n) == sizeof(s) - 1 && memcmp(p, s, sizeof(s) - 1) == 0)


unsigned
agw_json_request_member(unsigned role, const uint8_t *name, size_t n)
{
    switch (role) {

    case AGW_R_TOP:
        if (agw_json_name_eq(name, n, "model")) {
            return AGW_R_MODEL;
        }
        if (agw_json_name_eq(name, n, "prompt")
            || agw_json_name_eq(name, n, "input"))
        {
            return AGW_R_PROMPT;
        }
        if (agw_json_name_eq(name, n, "messages")) {
            return AGW_R_MESSAGES;
        }
        if (agw_json_name_eq(name, n, "system")) {
            return AGW_R_CONTENT;
        }
        if (agw_json_name_eq(name, n, "max_tokens")) {
            return AGW_R_MAX_TOKENS;
        }
        if (agw_json_name_eq(name, n, "max_completion_tokens")
            || agw_json_name_eq(name, n, "max_output_tokens"))
        {
            return AGW_R_MAX_COMPLETION;
        }
        if (agw_json_name_eq(name, n, "stream")) {
            return AGW_R_STREAM;
        }
        if (agw_json_name_eq(name, n, "stream_options")) {
            return AGW_R_STREAM_OPTIONS;
        }
        return AGW_R_NONE;

    case AGW_R_MESSAGE:
        return agw_json_name_eq(name, n, "content") ? AGW_R_CONTENT
                                                    : AGW_R_NONE;

    case AGW_R_PART:
        return agw_json_name_eq(name, n, "text") ? AGW_R_TEXT : AGW_R_NONE;

    case AGW_R_STREAM_OPTIONS:
        return agw_json_name_eq(name, n, "include_usage")
               ? AGW_R_INCLUDE_USAGE : AGW_R_NONE;
    }

    return AGW_R_NONE;
}


unsigned
agw_json_request_element(unsigned role)
{
    switch (role) {
    case AGW_R_PROMPT:
        return AGW_R_TEXT;
    case AGW_R_MESSAGES:
        return AGW_R_MESSAGE;
    case AGW_R_CONTENT:
        return AGW_R_PART;
    default:
        return AGW_R_NONE;
    }
}


void
agw_json_request_string(agw_json_request_read_t *rd, unsigned role,
    const uint8_t *content, size_t len, uint64_t unescaped_len, int escaped)
{
    if (role == AGW_R_MODEL) {
        rd->req->model = content;
        rd->req->model_len = len;
        rd->req->model_escaped = escaped;

    } else if (role == AGW_R_TEXT || role == AGW_R_PROMPT
               || role == AGW_R_CONTENT)
    {
        rd->req->prompt_bytes += unescaped_len;
    }
}


void
agw_json_request_integer(agw_json_request_read_t *rd, unsigned role,
    const uint8_t *digits, const uint8_t *end)
{
    uint64_t  v;

    if (role != AGW_R_MAX_TOKENS && role != AGW_R_MAX_COMPLETION) {
        return;
    }

    for (v = 0; digits < end; digits++) {
        v = v * 10 + (uint64_t) (*digits - '0');
        if (v >= AGW_JSON_MAX_INT) {
            v = AGW_JSON_MAX_INT;
            break;
        }
    }

    if (role == AGW_R_MAX_TOKENS) {
        rd->max_tokens = v;
        rd->has_max_tokens = 1;

    } else {
        rd->max_completion = v;
        rd->has_max_completion = 1;
    }
}


void
agw_json_request_boolean(agw_json_request_read_t *rd, unsigned role,
    int value)
{
    if (role == AGW_R_STREAM) {
        rd->req->stream = value;

    } else if (role == AGW_R_INCLUDE_USAGE) {
        rd->req->include_usage = value;
    }
}


void
agw_json_request_finish(agw_json_request_read_t *rd, int valid)
{
    agw_json_request_t  *req;

    req = rd->req;

    if (req == NULL) {
        return;
    }

    if (!valid) {
        memset(req, 0, sizeof(agw_json_request_t));
        return;
    }

    req->valid = 1;

    if (rd->has_max_completion) {
        req->max_tokens = rd->max_completion;
        req->has_max_tokens = 1;

    } else if (rd->has_max_tokens) {
        req->max_tokens = rd->max_tokens;
        req->has_max_tokens = 1;
    }
}
