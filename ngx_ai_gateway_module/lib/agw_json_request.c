
/*
 * The request facts: what the token limiter needs from an inference
 * request, read in the scanner's pass over the body (agw_json_scan.c), the
 * same pass that checks it for the cache key's canonical form, so the
 * gateway reads a body once for both.
 *
 * The prompt is what the model reads before it writes, and every form an
 * API lets a client send it in counts, since a form left out is a prompt
 * that reserves nothing (20 requests of 3,000 tokens each reserved one
 * token apiece when token ids were not counted):
 *
 *     prompt, input                  a string, a token id (a number), or an
 *                                    array of strings, of ids, of arrays of
 *                                    ids (completions, embeddings) or of
 *                                    messages and items (the Responses
 *                                    API's usual form)
 *     messages[]                     Chat Completions, Anthropic
 *     system, instructions           Anthropic's and the Responses API's
 *                                    system prompt
 *     tools, functions               the tool schemas, which the provider
 *                                    renders into the prompt
 *
 * and, in a message or an item:
 *
 *     content                        a string, or an array of parts whose
 *                                    `text` counts (text, input_text,
 *                                    output_text), whose `content` counts
 *                                    (Anthropic's tool_result) and whose
 *                                    `input` counts by size (tool_use)
 *     tool_calls, function_call      by size: names and arguments
 *     arguments, output, text        an item's function call, its output,
 *                                    a bare text part
 *
 * Text counts in unescaped bytes (agw_tokens.c turns them into tokens at
 * four a token); a token id counts one token; a schema or a call counts by
 * its size as written (AGW_JSON_ROLE_RAW), JSON syntax and all, which
 * errs on the side of the budget.  A member whose name holds escapes,
 * wherever a member would count, counts by its size too: a parser
 * upstream reads "m\u0065ssages" as messages.  A body that is valid JSON
 * but holds none of the prompt fields (an API this code does not know)
 * counts whole, by its size, as a body that is not JSON does.
 *
 * Also read:
 *
 *     model                          the model's name, as written
 *     max_completion_tokens,         what the model may write; the
 *     max_output_tokens, max_tokens  first two win over max_tokens
 *     stream, stream_options.include_usage
 *
 * Only those paths count: a "model" inside a message, or a "content"
 * outside messages, is not the request's.  A max_tokens with a sign, a
 * fraction or an exponent is not read, and one above AGW_JSON_MAX_INT is
 * read as that.
 */


#include <string.h>

#include "agw_json_request.h"


/* what a value means to the request */
enum {
    AGW_R_NONE = AGW_JSON_ROLE_NONE,
    AGW_R_TOP = AGW_JSON_ROLE_TOP,
    AGW_R_RAW = AGW_JSON_ROLE_RAW,       /* counts by its size */
    AGW_R_MODEL,
    AGW_R_PROMPT,                        /* prompt, input: a string, an id,
                                            or an array of items */
    AGW_R_ITEM,                          /* an element of prompt or input:
                                            a string, an id, an array of
                                            ids, or a message */
    AGW_R_IDS,                           /* an array of token ids */
    AGW_R_TEXT,                          /* a string that counts */
    AGW_R_MESSAGES,                      /* array of messages */
    AGW_R_MESSAGE,                       /* a message or an item */
    AGW_R_CONTENT,                       /* string or array of parts */
    AGW_R_PART,                          /* a content part */
    AGW_R_MAX_TOKENS,
    AGW_R_MAX_COMPLETION,
    AGW_R_STREAM,
    AGW_R_STREAM_OPTIONS,
    AGW_R_INCLUDE_USAGE
};


void
agw_json_request_start(agw_json_request_read_t *rd, agw_json_request_t *req,
    size_t len)
{
    memset(rd, 0, sizeof(agw_json_request_read_t));

    rd->req = req;
    rd->len = len;

    if (req) {
        memset(req, 0, sizeof(agw_json_request_t));
    }
}


#define agw_json_name_eq(p, n, s)                                            \
    ((n) == sizeof(s) - 1 && memcmp(p, s, sizeof(s) - 1) == 0)


unsigned
agw_json_request_member(agw_json_request_read_t *rd, unsigned role,
    const uint8_t *name, size_t n, int escaped)
{
    unsigned  child;

    if (escaped) {
        /* where a member could count, one we cannot name counts by size */

        switch (role) {
        case AGW_R_TOP:
        case AGW_R_MESSAGE:
        case AGW_R_PART:
            return AGW_R_RAW;
        default:
            return AGW_R_NONE;
        }
    }

    switch (role) {

    case AGW_R_TOP:
        if (agw_json_name_eq(name, n, "model")) {
            return AGW_R_MODEL;
        }

        child = AGW_R_NONE;

        if (agw_json_name_eq(name, n, "prompt")
            || agw_json_name_eq(name, n, "input"))
        {
            child = AGW_R_PROMPT;

        } else if (agw_json_name_eq(name, n, "messages")) {
            child = AGW_R_MESSAGES;

        } else if (agw_json_name_eq(name, n, "system")
                   || agw_json_name_eq(name, n, "instructions"))
        {
            child = AGW_R_CONTENT;
        }

        if (child != AGW_R_NONE) {
            rd->req->has_prompt = 1;
            return child;
        }

        if (agw_json_name_eq(name, n, "tools")
            || agw_json_name_eq(name, n, "functions"))
        {
            return AGW_R_RAW;
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
        if (agw_json_name_eq(name, n, "content")
            || agw_json_name_eq(name, n, "output"))
        {
            return AGW_R_CONTENT;
        }
        if (agw_json_name_eq(name, n, "text")
            || agw_json_name_eq(name, n, "arguments"))
        {
            return AGW_R_TEXT;
        }
        if (agw_json_name_eq(name, n, "tool_calls")
            || agw_json_name_eq(name, n, "function_call"))
        {
            return AGW_R_RAW;
        }
        return AGW_R_NONE;

    case AGW_R_PART:
        if (agw_json_name_eq(name, n, "text")) {
            return AGW_R_TEXT;
        }
        if (agw_json_name_eq(name, n, "content")) {
            return AGW_R_CONTENT;
        }
        if (agw_json_name_eq(name, n, "input")) {
            return AGW_R_RAW;
        }
        return AGW_R_NONE;

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
        return AGW_R_ITEM;
    case AGW_R_ITEM:
        return AGW_R_IDS;
    case AGW_R_MESSAGES:
        return AGW_R_MESSAGE;
    case AGW_R_CONTENT:
        return AGW_R_PART;
    default:
        return AGW_R_NONE;
    }
}


unsigned
agw_json_request_object(unsigned role)
{
    switch (role) {
    case AGW_R_PROMPT:
    case AGW_R_ITEM:
        return AGW_R_MESSAGE;
    case AGW_R_CONTENT:
        return AGW_R_PART;
    default:
        return role;
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
               || role == AGW_R_ITEM || role == AGW_R_IDS
               || role == AGW_R_CONTENT)
    {
        rd->req->prompt_bytes += unescaped_len;
    }
}


void
agw_json_request_number(agw_json_request_read_t *rd, unsigned role,
    const uint8_t *digits, const uint8_t *end, int integer)
{
    uint64_t  v;

    if (role == AGW_R_PROMPT || role == AGW_R_ITEM || role == AGW_R_IDS) {
        /* a token id, whatever it looks like: one token */
        rd->req->prompt_tokens++;
        return;
    }

    if (!integer
        || (role != AGW_R_MAX_TOKENS && role != AGW_R_MAX_COMPLETION))
    {
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
agw_json_request_raw(agw_json_request_read_t *rd, size_t len)
{
    rd->req->prompt_bytes += len;
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

    if (!req->has_prompt) {
        /* JSON of an API we do not know: the whole body may be prompt */
        req->prompt_bytes = rd->len;
        req->prompt_tokens = 0;
    }

    if (rd->has_max_completion) {
        req->max_tokens = rd->max_completion;
        req->has_max_tokens = 1;

    } else if (rd->has_max_tokens) {
        req->max_tokens = rd->max_tokens;
        req->has_max_tokens = 1;
    }
}
