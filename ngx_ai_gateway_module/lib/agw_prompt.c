
/*
 * The start of a prompt, in the order the model reads it.
 *
 * A prefix cache (vLLM's automatic prefix caching, ai-sim's, SPEC 8.1)
 * keys a prompt's blocks on everything before them: two requests share
 * cached work exactly as far as their texts agree from the first byte.
 * To send requests that share a start to the same replica, the prefix
 * balancer hashes the first N bytes of that text, so the text must be the
 * one the model reads, not the JSON as written: a chat is its messages in
 * order, each message's role and content followed by a newline, as a chat
 * template lays them out and as ai-sim's cache reads them
 *
 *     {"messages":[{"role":"system","content":"You are..."},
 *                  {"content":"Hi","role":"user"}]}
 *
 *     system\nYou are...\nuser\nHi\n
 *
 * whatever the order of the members in each object, whitespace and
 * escapes (a content written with \u escapes is read unescaped).  A
 * content that is an array of parts reads as its parts' `text`, one after
 * the other; a top-level `system` (Anthropic) comes first, as a system
 * message would.  Without `messages`: `prompt` (a string, or the first
 * string of an array: a batch's first prompt) or `input` (the Responses
 * API: a string, or items read as messages).
 *
 * The reader walks the request without building anything, in two steps.
 * The first walks the whole top-level object and notes where the members
 * it looks for begin: the whole, because a top-level `system` read first
 * may be written last, and because a request broken anywhere in its
 * structure is INVALID, not half read.  The second copies string
 * contents, unescaped, from those members into the caller's buffer until
 * it is full, and stops there.  The request was checked by the strict
 * scanner before (agw_json_scan.h); this reader checks only what it
 * walks, enough never to read outside the input, whatever the input is
 * (tests/fuzz/fuzz_prompt.c).
 *
 * What a request holds is mostly string contents, so both steps cross
 * them with memchr(): one call finds a string's closing quote, another
 * the first backslash before it, and a string without escapes is crossed
 * or copied without looking at its bytes one by one.  Containers are
 * skipped in a loop with a stack of their closing brackets, not by
 * recursion.  What it returns, for every input and buffer size, is what
 * the first, byte at a time, reader returned (tests/ref/agw_prompt_ref.c
 * is that reader; the unit test and the fuzzer compare the two).
 */


#include <string.h>

#include "agw_json.h"
#include "agw_prompt.h"


typedef struct {
    const uint8_t  *end;
    uint8_t        *out;
    size_t          cap;
    size_t          n;
} agw_prompt_t;


typedef struct {
    size_t          len;
    const char     *data;
} agw_prompt_name_t;


#define agw_prompt_name(s)   { sizeof(s) - 1, s }

#define agw_prompt_full(pp)  ((pp)->n == (pp)->cap)

#define AGW_PROMPT_MEMBERS   4           /* looked for at the top level */


static const uint8_t *
agw_prompt_ws(const uint8_t *p, const uint8_t *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
    }

    return p;
}


/*
 * p at '"': past the closing quote, or NULL.  A backslash takes the byte
 * after it, whatever that is: escapes are checked where they are copied.
 */
static const uint8_t *
agw_prompt_skip_string(const uint8_t *p, const uint8_t *end)
{
    const uint8_t  *quote, *bs;

    p++;
    quote = memchr(p, '"', end - p);

    for ( ;; ) {
        if (quote == NULL) {
            return NULL;
        }

        bs = memchr(p, '\\', quote - p);

        if (bs == NULL) {
            return quote + 1;
        }

        /* bs < quote: the byte after the backslash is in the input */

        p = bs + 2;

        if (p > quote) {
            /* the quote was the escaped one */
            quote = memchr(p, '"', end - p);
        }
    }
}


/* p at a member's name: at its value, past the colon, or NULL */
static const uint8_t *
agw_prompt_skip_name(const uint8_t *p, const uint8_t *end)
{
    p = agw_prompt_skip_string(p, end);

    if (p == NULL) {
        return NULL;
    }

    p = agw_prompt_ws(p, end);

    if (p == end || *p != ':') {
        return NULL;
    }

    return agw_prompt_ws(p + 1, end);
}


/*
 * p at a value (no whitespace before it) at depth depth: past it, or
 * NULL.  Any value nested deeper than AGW_JSON_MAX_DEPTH is refused; a
 * number or a literal is a run of the characters they are made of,
 * whatever the run makes.
 */
static const uint8_t *
agw_prompt_skip_value(const uint8_t *p, const uint8_t *end, unsigned depth)
{
    unsigned        open;
    const uint8_t  *start;
    uint8_t         close[AGW_JSON_MAX_DEPTH + 1];

    open = 0;

    for ( ;; ) {

        /* p at a value, open containers deep inside the one asked for */

        if (p == end || depth + open > AGW_JSON_MAX_DEPTH) {
            return NULL;
        }

        if (*p == '"') {
            p = agw_prompt_skip_string(p, end);

            if (p == NULL) {
                return NULL;
            }

        } else if (*p == '{' || *p == '[') {
            close[open] = (*p == '{') ? '}' : ']';
            p = agw_prompt_ws(p + 1, end);

            if (p < end && *p == close[open]) {
                p++;                                 /* empty */

            } else {
                if (close[open++] == '}') {
                    if (p == end || *p != '"') {
                        return NULL;
                    }

                    p = agw_prompt_skip_name(p, end);

                    if (p == NULL) {
                        return NULL;
                    }
                }

                continue;                            /* its first value */
            }

        } else {
            for (start = p; p < end; p++) {
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
                      || *p == '-' || *p == '+' || *p == '.' || *p == 'E'))
                {
                    break;
                }
            }

            if (p == start) {
                return NULL;
            }
        }

        /* a value ended: close what ends after it, up to the next value */

        for ( ;; ) {
            if (open == 0) {
                return p;
            }

            p = agw_prompt_ws(p, end);

            if (p == end) {
                return NULL;
            }

            if (*p == close[open - 1]) {
                p++;
                open--;
                continue;
            }

            if (*p != ',') {
                return NULL;
            }

            p = agw_prompt_ws(p + 1, end);

            if (close[open - 1] == '}') {
                if (p == end || *p != '"') {
                    return NULL;
                }

                p = agw_prompt_skip_name(p, end);

                if (p == NULL) {
                    return NULL;
                }
            }

            break;
        }
    }
}


/*
 * p at '{': the value of the first member of each name, or NULL; returns
 * past the object, or NULL if it is broken.  Names are compared as
 * written, escapes and all, as agw_json_request.c compares them.
 */
static const uint8_t *
agw_prompt_members(const uint8_t *p, const uint8_t *end,
    const agw_prompt_name_t *names, const uint8_t **values, size_t count)
{
    size_t          i, len;
    const uint8_t  *name;

    for (i = 0; i < count; i++) {
        values[i] = NULL;
    }

    p = agw_prompt_ws(p + 1, end);

    if (p < end && *p == '}') {
        return p + 1;
    }

    for ( ;; ) {
        if (p == end || *p != '"') {
            return NULL;
        }

        name = p + 1;
        p = agw_prompt_skip_string(p, end);

        if (p == NULL) {
            return NULL;
        }

        len = p - 1 - name;

        p = agw_prompt_ws(p, end);

        if (p == end || *p != ':') {
            return NULL;
        }

        p = agw_prompt_ws(p + 1, end);

        for (i = 0; i < count; i++) {
            if (values[i] == NULL && names[i].len == len
                && memcmp(name, names[i].data, len) == 0)
            {
                values[i] = p;
                break;
            }
        }

        p = agw_prompt_skip_value(p, end, 1);
        if (p == NULL) {
            return NULL;
        }

        p = agw_prompt_ws(p, end);

        if (p == end) {
            return NULL;
        }

        if (*p == '}') {
            return p + 1;
        }

        if (*p != ',') {
            return NULL;
        }

        p = agw_prompt_ws(p + 1, end);
    }
}


static void
agw_prompt_put(agw_prompt_t *pp, const uint8_t *s, size_t len)
{
    if (len > pp->cap - pp->n) {
        len = pp->cap - pp->n;
    }

    memcpy(pp->out + pp->n, s, len);
    pp->n += len;
}


/*
 * p at '"': its content unescaped, as far as it fits; -1 if broken.  Each
 * round copies the run up to the next quote or backslash, as far as it
 * fits, then reads what ends the run (an escape there is checked even if
 * none of it fits, as the reference reader did); the closing quote found
 * is kept for the rounds after it.
 */
static int
agw_prompt_string(agw_prompt_t *pp, const uint8_t *p)
{
    size_t          n;
    uint8_t         utf8[4];
    uint32_t        cp;
    const uint8_t  *q, *quote, *end;

    end = pp->end;
    quote = p++;

    while (!agw_prompt_full(pp)) {

        if (quote < p) {
            quote = memchr(p, '"', end - p);

            if (quote == NULL) {
                quote = end;
            }
        }

        q = memchr(p, '\\', quote - p);

        if (q == NULL) {
            q = quote;
        }

        agw_prompt_put(pp, p, q - p);

        if (q == end) {
            return -1;
        }

        if (*q == '"') {
            return 0;
        }

        n = agw_json_escape(q, end, &cp);
        if (n == 0) {
            return -1;
        }

        agw_prompt_put(pp, utf8, agw_json_utf8_put(utf8, cp));
        p = q + n;
    }

    return 0;
}


/* a content: a string, or parts whose "text" counts; anything else: "" */
static int
agw_prompt_content(agw_prompt_t *pp, const uint8_t *p)
{
    const uint8_t                   *value[1], *end;
    static const agw_prompt_name_t   text[1] = { agw_prompt_name("text") };

    if (p == NULL) {
        return 0;
    }

    if (*p == '"') {
        return agw_prompt_string(pp, p);
    }

    if (*p != '[') {
        return 0;
    }

    end = pp->end;
    p = agw_prompt_ws(p + 1, end);

    while (p < end && *p != ']' && !agw_prompt_full(pp)) {

        if (*p == '"') {
            if (agw_prompt_string(pp, p) != 0) {
                return -1;
            }

            p = agw_prompt_skip_string(p, end);

        } else if (*p == '{') {
            p = agw_prompt_members(p, end, text, value, 1);

            if (p == NULL) {
                return -1;
            }

            if (value[0] && *value[0] == '"'
                && agw_prompt_string(pp, value[0]) != 0)
            {
                return -1;
            }

        } else {
            p = agw_prompt_skip_value(p, end, 2);
        }

        if (p == NULL) {
            return -1;
        }

        p = agw_prompt_ws(p, end);

        if (p < end && *p == ',') {
            p = agw_prompt_ws(p + 1, end);
        }
    }

    return 0;
}


/* p at '[': each message's role and content, each and a newline */
static int
agw_prompt_messages(agw_prompt_t *pp, const uint8_t *p)
{
    const uint8_t                   *values[2], *next, *end;
    static const agw_prompt_name_t   names[2] = {
        agw_prompt_name("role"), agw_prompt_name("content")
    };

    end = pp->end;
    p = agw_prompt_ws(p + 1, end);

    while (p < end && *p != ']' && !agw_prompt_full(pp)) {

        if (*p == '{') {
            next = agw_prompt_members(p, end, names, values, 2);

            if (next == NULL) {
                return -1;
            }

            if (values[0] && *values[0] == '"'
                && agw_prompt_string(pp, values[0]) != 0)
            {
                return -1;
            }

            agw_prompt_put(pp, (uint8_t *) "\n", 1);

            if (agw_prompt_content(pp, values[1]) != 0) {
                return -1;
            }

            agw_prompt_put(pp, (uint8_t *) "\n", 1);

        } else if (*p == '"') {
            /* an input item that is a bare string */
            if (agw_prompt_string(pp, p) != 0) {
                return -1;
            }

            agw_prompt_put(pp, (uint8_t *) "\n", 1);
            next = agw_prompt_skip_string(p, end);

        } else {
            next = agw_prompt_skip_value(p, end, 2);
        }

        if (next == NULL) {
            return -1;
        }

        p = agw_prompt_ws(next, end);

        if (p < end && *p == ',') {
            p = agw_prompt_ws(p + 1, end);
        }
    }

    return 0;
}


int
agw_prompt_prefix(const uint8_t *in, size_t len, uint8_t *out, size_t cap,
    size_t *n)
{
    int                              rc;
    const uint8_t                   *p, *end, *v[AGW_PROMPT_MEMBERS];
    agw_prompt_t                     pp;
    static const agw_prompt_name_t   names[AGW_PROMPT_MEMBERS] = {
        agw_prompt_name("messages"), agw_prompt_name("system"),
        agw_prompt_name("prompt"), agw_prompt_name("input")
    };

    *n = 0;

    if (in == NULL) {
        return AGW_PROMPT_INVALID;
    }

    end = in + len;
    p = agw_prompt_ws(in, end);

    if (p == end || *p != '{') {
        return AGW_PROMPT_INVALID;
    }

    if (agw_prompt_members(p, end, names, v, AGW_PROMPT_MEMBERS) == NULL) {
        return AGW_PROMPT_INVALID;
    }

    pp.end = end;
    pp.out = out;
    pp.cap = cap;
    pp.n = 0;

    rc = AGW_PROMPT_FOUND;

    if (v[0] && *v[0] == '[') {
        if (v[1]) {
            agw_prompt_put(&pp, (uint8_t *) "system\n", 7);

            if (agw_prompt_content(&pp, v[1]) != 0) {
                return AGW_PROMPT_INVALID;
            }

            agw_prompt_put(&pp, (uint8_t *) "\n", 1);
        }

        if (agw_prompt_messages(&pp, v[0]) != 0) {
            return AGW_PROMPT_INVALID;
        }

    } else if (v[2] && *v[2] == '"') {
        if (agw_prompt_string(&pp, v[2]) != 0) {
            return AGW_PROMPT_INVALID;
        }

    } else if (v[2] && *v[2] == '[') {
        p = agw_prompt_ws(v[2] + 1, end);

        if (p == end || *p != '"') {
            return AGW_PROMPT_NONE;      /* token ids, or nothing */
        }

        if (agw_prompt_string(&pp, p) != 0) {
            return AGW_PROMPT_INVALID;
        }

    } else if (v[3] && *v[3] == '"') {
        if (agw_prompt_string(&pp, v[3]) != 0) {
            return AGW_PROMPT_INVALID;
        }

    } else if (v[3] && *v[3] == '[') {
        if (agw_prompt_messages(&pp, v[3]) != 0) {
            return AGW_PROMPT_INVALID;
        }

    } else {
        rc = AGW_PROMPT_NONE;
    }

    *n = pp.n;

    return rc;
}
