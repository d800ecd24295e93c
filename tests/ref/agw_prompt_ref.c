
/*
 * The reference for lib/agw_prompt.c: its first implementation (commit
 * 639a034), byte at a time, kept as it was so that tests can hold the
 * faster reader to exactly the same results: the same return code, the
 * same length and the same bytes, for every input and every buffer size
 * (tests/unit/test_prompt.c on a corpus of requests and their mutations,
 * tests/fuzz/fuzz_prompt.c on whatever the fuzzer makes).
 *
 * Included by those tests, never built into the module: the entry point
 * is agw_prompt_ref_prefix(), static; the helpers keep their names, which
 * are static too and do not meet lib/agw_prompt.c's in one unit.
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


#define agw_prompt_full(pp)  ((pp)->n == (pp)->cap)

#define AGW_PROMPT_MEMBERS   4           /* looked for at the top level */


static const uint8_t *agw_prompt_skip_value(const uint8_t *p,
    const uint8_t *end, unsigned depth);


static const uint8_t *
agw_prompt_ws(const uint8_t *p, const uint8_t *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
    }

    return p;
}


/* p at '"': past the closing quote, or NULL */
static const uint8_t *
agw_prompt_skip_string(const uint8_t *p, const uint8_t *end)
{
    for (p++; p < end; p++) {
        if (*p == '"') {
            return p + 1;
        }

        if (*p == '\\') {
            p++;
        }
    }

    return NULL;
}


static const uint8_t *
agw_prompt_skip_container(const uint8_t *p, const uint8_t *end,
    unsigned depth)
{
    uint8_t  close;

    close = (*p == '{') ? '}' : ']';

    p = agw_prompt_ws(p + 1, end);

    if (p < end && *p == close) {
        return p + 1;
    }

    for ( ;; ) {
        if (close == '}') {
            if (p == end || *p != '"') {
                return NULL;
            }

            p = agw_prompt_skip_string(p, end);
            if (p == NULL) {
                return NULL;
            }

            p = agw_prompt_ws(p, end);

            if (p == end || *p != ':') {
                return NULL;
            }

            p = agw_prompt_ws(p + 1, end);
        }

        p = agw_prompt_skip_value(p, end, depth + 1);
        if (p == NULL) {
            return NULL;
        }

        p = agw_prompt_ws(p, end);

        if (p == end) {
            return NULL;
        }

        if (*p == close) {
            return p + 1;
        }

        if (*p != ',') {
            return NULL;
        }

        p = agw_prompt_ws(p + 1, end);
    }
}


/* p at a value (no whitespace before it): past it, or NULL */
static const uint8_t *
agw_prompt_skip_value(const uint8_t *p, const uint8_t *end, unsigned depth)
{
    const uint8_t  *start;

    if (p == NULL || p == end || depth > AGW_JSON_MAX_DEPTH) {
        return NULL;
    }

    switch (*p) {

    case '"':
        return agw_prompt_skip_string(p, end);

    case '{':
    case '[':
        return agw_prompt_skip_container(p, end, depth);
    }

    /* a number or a literal: its characters, whatever they make */

    for (start = p; p < end; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
              || *p == '-' || *p == '+' || *p == '.' || *p == 'E'))
        {
            break;
        }
    }

    return p == start ? NULL : p;
}


/* ""-less name, no escapes: as agw_json_request.c compares member names */
static int
agw_prompt_name_is(const uint8_t *name, const uint8_t *name_end,
    const char *s)
{
    size_t  len;

    len = strlen(s);

    return (size_t) (name_end - name) == len && memcmp(name, s, len) == 0;
}


/*
 * p at '{': the value of the first member of each name, or NULL; returns
 * past the object, or NULL if it is broken
 */
static const uint8_t *
agw_prompt_members(const uint8_t *p, const uint8_t *end, const char **names,
    const uint8_t **values, size_t count)
{
    size_t          i;
    const uint8_t  *name, *name_end;

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

        name_end = p - 1;

        p = agw_prompt_ws(p, end);

        if (p == end || *p != ':') {
            return NULL;
        }

        p = agw_prompt_ws(p + 1, end);

        for (i = 0; i < count; i++) {
            if (values[i] == NULL
                && agw_prompt_name_is(name, name_end, names[i]))
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


/* p at '"': its content unescaped, as far as it fits; -1 if broken */
static int
agw_prompt_string(agw_prompt_t *pp, const uint8_t *p)
{
    size_t          n;
    uint8_t         utf8[4];
    uint32_t        cp;
    const uint8_t  *q, *end;

    end = pp->end;

    for (p++; !agw_prompt_full(pp); ) {

        for (q = p; q < end && *q != '"' && *q != '\\'; q++) {
            /* void */
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
    const char     *text[1] = { "text" };
    const uint8_t  *value[1], *end;

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
    const char     *names[2] = { "role", "content" };
    const uint8_t  *values[2], *next, *end;

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


static int
agw_prompt_ref_prefix(const uint8_t *in, size_t len, uint8_t *out,
    size_t cap, size_t *n)
{
    int             rc;
    const uint8_t  *p, *end, *v[AGW_PROMPT_MEMBERS];
    agw_prompt_t    pp;
    static const char  *names[AGW_PROMPT_MEMBERS] = {
        "messages", "system", "prompt", "input"
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
