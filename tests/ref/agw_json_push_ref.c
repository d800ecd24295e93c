
/*
 * The reference for lib/agw_json_push.c: the push tokenizer as it was at
 * commit 2e6ea49 (a byte-at-a-time state machine with fast paths over
 * string runs and digit runs), kept as it was so that tests can hold the
 * faster tokenizer to exactly the same results: the same events (type,
 * depth, text, full length) in the same order, the same verdict from
 * every feed and from finish, for every input cut anywhere
 * (tests/unit/test_answer_diff.c on generated answers and their
 * mutations, tests/fuzz/fuzz_answer_diff.c on whatever the fuzzer makes).
 *
 * Included by those tests, never built into the module: the entry points
 * are agw_json_push_ref_init(), _feed() and _finish(), static, over their
 * own state type agw_json_push_ref_t; the events are lib's
 * agw_json_event_t.
 */


#include <string.h>

#include "agw_json_push.h"


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
} agw_json_push_ref_t;


/* where the tokenizer is */
enum {
    AGW_P_VALUE = 0,                     /* a value */
    AGW_P_VALUE_OR_CLOSE,                /* after '[' */
    AGW_P_KEY_OR_CLOSE,                  /* after '{' */
    AGW_P_KEY,                           /* after ',' in an object */
    AGW_P_COLON,
    AGW_P_AFTER,                         /* ',' or the container's close */
    AGW_P_STRING,
    AGW_P_ESCAPE,                        /* after '\' */
    AGW_P_HEX,                           /* a \u escape: sub hex digits read */
    AGW_P_NUMBER,                        /* sub: number state */
    AGW_P_LITERAL,                       /* sub: letters matched */
    AGW_P_DONE                           /* only whitespace may follow */
};

/* number states; the accepting ones are ZERO, INT, FRAC and EXP */
enum {
    AGW_N_MINUS = 0,
    AGW_N_ZERO,
    AGW_N_INT,
    AGW_N_DOT,
    AGW_N_FRAC,
    AGW_N_E,
    AGW_N_ESIGN,
    AGW_N_EXP
};


static void
agw_json_push_ref_init(agw_json_push_ref_t *j, agw_json_event_pt handler,
    void *ctx)
{
    memset(j, 0, sizeof(agw_json_push_ref_t));

    j->handler = handler;
    j->ctx = ctx;
    j->state = AGW_P_VALUE;
}


static void
agw_json_push_ref_emit(agw_json_push_ref_t *j, unsigned type)
{
    agw_json_event_t  ev;

    ev.type = type;
    ev.depth = j->depth;
    ev.text = j->text;
    ev.text_len = j->text_len;
    ev.full_len = j->full_len;

    if (j->handler && j->handler(j->ctx, &ev) != 0) {
        j->rc = AGW_JSON_ESTOP;
    }
}


static void
agw_json_push_ref_text(agw_json_push_ref_t *j, uint32_t cp)
{
    size_t  n;

    n = agw_json_utf8_len(cp);

    if (j->text_len + n <= AGW_JSON_TEXT_MAX) {
        agw_json_utf8_put(j->text + j->text_len, cp);
        j->text_len += n;
    }

    j->full_len += n;
}


static void
agw_json_push_ref_value_done(agw_json_push_ref_t *j)
{
    j->state = j->depth ? AGW_P_AFTER : AGW_P_DONE;
}


static int
agw_json_push_ref_open(agw_json_push_ref_t *j, int object)
{
    if (j->depth == AGW_JSON_MAX_DEPTH) {
        return AGW_JSON_EDEPTH;
    }

    agw_json_push_ref_emit(j, object ? AGW_JSON_OBJECT : AGW_JSON_ARRAY);

    if (object) {
        j->stack |= (uint64_t) 1 << j->depth;
    } else {
        j->stack &= ~((uint64_t) 1 << j->depth);
    }

    j->depth++;
    j->state = object ? AGW_P_KEY_OR_CLOSE : AGW_P_VALUE_OR_CLOSE;

    return AGW_JSON_OK;
}


static int
agw_json_push_ref_close(agw_json_push_ref_t *j, int object)
{
    if (j->depth == 0
        || ((j->stack >> (j->depth - 1)) & 1) != (uint64_t) object)
    {
        return AGW_JSON_EINVAL;
    }

    j->depth--;
    j->text_len = 0;
    j->full_len = 0;
    agw_json_push_ref_emit(j, object ? AGW_JSON_OBJECT_END
                                     : AGW_JSON_ARRAY_END);
    agw_json_push_ref_value_done(j);

    return AGW_JSON_OK;
}


/* a value starts with c */

static int
agw_json_push_ref_value(agw_json_push_ref_t *j, uint8_t c)
{
    j->text_len = 0;
    j->full_len = 0;

    switch (c) {

    case '{':
        return agw_json_push_ref_open(j, 1);

    case '[':
        return agw_json_push_ref_open(j, 0);

    case '"':
        j->key = 0;
        j->state = AGW_P_STRING;
        return AGW_JSON_OK;

    case 't':
        j->literal = "true";
        break;

    case 'f':
        j->literal = "false";
        break;

    case 'n':
        j->literal = "null";
        break;

    default:
        if (c == '-') {
            j->sub = AGW_N_MINUS;
        } else if (c == '0') {
            j->sub = AGW_N_ZERO;
        } else if (c >= '1' && c <= '9') {
            j->sub = AGW_N_INT;
        } else {
            return AGW_JSON_EINVAL;
        }

        agw_json_push_ref_text(j, c);
        j->state = AGW_P_NUMBER;
        return AGW_JSON_OK;
    }

    j->sub = 1;
    j->state = AGW_P_LITERAL;

    return AGW_JSON_OK;
}


/* the next number state, or -1 if c ends the number (or is an error) */

static int
agw_json_push_ref_number(unsigned s, uint8_t c)
{
    int  digit;

    digit = (c >= '0' && c <= '9');

    switch (s) {
    case AGW_N_MINUS:
        return c == '0' ? AGW_N_ZERO : digit ? AGW_N_INT : -1;
    case AGW_N_ZERO:
    case AGW_N_INT:
        if (c == '.') {
            return AGW_N_DOT;
        }
        if (c == 'e' || c == 'E') {
            return AGW_N_E;
        }
        return s == AGW_N_INT && digit ? AGW_N_INT : -1;
    case AGW_N_DOT:
    case AGW_N_FRAC:
        if (digit) {
            return AGW_N_FRAC;
        }
        return s == AGW_N_FRAC && (c == 'e' || c == 'E') ? AGW_N_E : -1;
    case AGW_N_E:
        if (c == '+' || c == '-') {
            return AGW_N_ESIGN;
        }
        /* fall through */
    default:                             /* ESIGN, EXP */
        return digit ? AGW_N_EXP : -1;
    }
}


static int
agw_json_push_ref_accepting(unsigned s)
{
    return s == AGW_N_ZERO || s == AGW_N_INT || s == AGW_N_FRAC
           || s == AGW_N_EXP;
}


static int
agw_json_push_ref_ws(uint8_t c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}


static int
agw_json_push_ref_byte(agw_json_push_ref_t *j, uint8_t c)
{
    int       d, n;
    uint32_t  cp;

    switch (j->state) {

    case AGW_P_VALUE_OR_CLOSE:
        if (c == ']') {
            return agw_json_push_ref_close(j, 0);
        }
        /* fall through */

    case AGW_P_VALUE:
        if (agw_json_push_ref_ws(c)) {
            return AGW_JSON_OK;
        }
        return agw_json_push_ref_value(j, c);

    case AGW_P_KEY_OR_CLOSE:
        if (c == '}') {
            return agw_json_push_ref_close(j, 1);
        }
        /* fall through */

    case AGW_P_KEY:
        if (agw_json_push_ref_ws(c)) {
            return AGW_JSON_OK;
        }

        if (c != '"') {
            return AGW_JSON_EINVAL;
        }

        j->text_len = 0;
        j->full_len = 0;
        j->key = 1;
        j->state = AGW_P_STRING;
        return AGW_JSON_OK;

    case AGW_P_COLON:
        if (agw_json_push_ref_ws(c)) {
            return AGW_JSON_OK;
        }

        if (c != ':') {
            return AGW_JSON_EINVAL;
        }

        j->state = AGW_P_VALUE;
        return AGW_JSON_OK;

    case AGW_P_AFTER:
        if (agw_json_push_ref_ws(c)) {
            return AGW_JSON_OK;
        }

        if (c == ',') {
            j->state = ((j->stack >> (j->depth - 1)) & 1) ? AGW_P_KEY
                                                          : AGW_P_VALUE;
            return AGW_JSON_OK;
        }

        if (c == '}' || c == ']') {
            return agw_json_push_ref_close(j, c == '}');
        }

        return AGW_JSON_EINVAL;

    case AGW_P_STRING:
        if (j->hi && c != '\\') {
            return AGW_JSON_EINVAL;      /* a high surrogate alone */
        }

        if (c == '"') {
            if (j->key) {
                agw_json_push_ref_emit(j, AGW_JSON_KEY);
                j->state = AGW_P_COLON;

            } else {
                agw_json_push_ref_emit(j, AGW_JSON_STRING);
                agw_json_push_ref_value_done(j);
            }

            return AGW_JSON_OK;
        }

        if (c == '\\') {
            j->state = AGW_P_ESCAPE;
            return AGW_JSON_OK;
        }

        if (c < 0x20) {
            return AGW_JSON_EINVAL;
        }

        if (j->text_len < AGW_JSON_TEXT_MAX) {
            j->text[j->text_len++] = c;
        }

        j->full_len++;
        return AGW_JSON_OK;

    case AGW_P_ESCAPE:
        if (j->hi && c != 'u') {
            return AGW_JSON_EINVAL;
        }

        j->state = AGW_P_STRING;

        switch (c) {
        case '"':
        case '\\':
        case '/':
            cp = c;
            break;
        case 'b': cp = 0x08; break;
        case 'f': cp = 0x0c; break;
        case 'n': cp = 0x0a; break;
        case 'r': cp = 0x0d; break;
        case 't': cp = 0x09; break;
        case 'u':
            j->state = AGW_P_HEX;
            j->sub = 0;
            j->ucp = 0;
            return AGW_JSON_OK;
        default:
            return AGW_JSON_EINVAL;
        }

        agw_json_push_ref_text(j, cp);
        return AGW_JSON_OK;

    case AGW_P_HEX:
        d = agw_json_hex(c);
        if (d < 0) {
            return AGW_JSON_EINVAL;
        }

        j->ucp = j->ucp << 4 | (uint32_t) d;

        if (++j->sub < 4) {
            return AGW_JSON_OK;
        }

        j->state = AGW_P_STRING;
        cp = j->ucp;

        if (j->hi) {
            if (cp < 0xdc00 || cp > 0xdfff) {
                return AGW_JSON_EINVAL;
            }

            cp = 0x10000 + ((j->hi - 0xd800) << 10) + (cp - 0xdc00);
            j->hi = 0;

        } else if (cp >= 0xd800 && cp <= 0xdbff) {
            j->hi = cp;
            return AGW_JSON_OK;

        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            return AGW_JSON_EINVAL;
        }

        agw_json_push_ref_text(j, cp);
        return AGW_JSON_OK;

    case AGW_P_NUMBER:
        n = agw_json_push_ref_number(j->sub, c);

        if (n >= 0) {
            j->sub = (unsigned) n;
            agw_json_push_ref_text(j, c);
            return AGW_JSON_OK;
        }

        if (!agw_json_push_ref_accepting(j->sub)) {
            return AGW_JSON_EINVAL;
        }

        agw_json_push_ref_emit(j, AGW_JSON_NUMBER);
        agw_json_push_ref_value_done(j);

        if (j->rc != AGW_JSON_OK) {
            return j->rc;
        }

        return agw_json_push_ref_byte(j, c);  /* c belongs to what follows */

    case AGW_P_LITERAL:
        if (c != (uint8_t) j->literal[j->sub]) {
            return AGW_JSON_EINVAL;
        }

        if (j->literal[++j->sub] != '\0') {
            return AGW_JSON_OK;
        }

        agw_json_push_ref_emit(j, j->literal[0] == 't' ? AGW_JSON_TRUE
                              : j->literal[0] == 'f' ? AGW_JSON_FALSE
                              : AGW_JSON_NULL);
        agw_json_push_ref_value_done(j);
        return AGW_JSON_OK;

    default:                             /* AGW_P_DONE */
        return agw_json_push_ref_ws(c) ? AGW_JSON_OK : AGW_JSON_EINVAL;
    }
}


/*
 * 1 for the bytes that end a run of plain string bytes: the quote, the
 * backslash and the control bytes; everything else, bytes >= 0x80 too,
 * stands for itself inside a string
 */

static const uint8_t  agw_json_push_ref_special[256] = {
    [0x00 ... 0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1
};


/* the digits after a number's first one: most of its bytes */

static const uint8_t  agw_json_push_ref_digit[256] = {
    ['0' ... '9'] = 1
};


/* the text keeps what fits of a run, full_len counts all of it */

static void
agw_json_push_ref_run(agw_json_push_ref_t *j, const uint8_t *p, size_t n)
{
    size_t  room;

    room = AGW_JSON_TEXT_MAX - j->text_len;

    if (room) {
        if (room > n) {
            room = n;
        }

        memcpy(j->text + j->text_len, p, room);
        j->text_len += room;
    }

    j->full_len += n;
}


static int
agw_json_push_ref_feed(agw_json_push_ref_t *j, const uint8_t *data, size_t len)
{
    int             rc;
    const uint8_t  *p, *q, *end;

    end = data + len;

    for (p = data; p < end && j->rc == AGW_JSON_OK; p++) {

        /* plain string bytes in a run: most of an answer */

        if (j->state == AGW_P_STRING && j->hi == 0) {
            for (q = p; q < end && !agw_json_push_ref_special[*q]; q++) {
                /* void */
            }

            agw_json_push_ref_run(j, p, (size_t) (q - p));
            p = q;

            if (p == end) {
                break;
            }

        /*
         * digits that keep a number in its state (after the first digit
         * of its integer part, fraction or exponent): the state machine
         * would only append them
         */

        } else if (j->state == AGW_P_NUMBER
                   && (j->sub == AGW_N_INT || j->sub == AGW_N_FRAC
                       || j->sub == AGW_N_EXP))
        {
            for (q = p; q < end && agw_json_push_ref_digit[*q]; q++) {
                /* void */
            }

            agw_json_push_ref_run(j, p, (size_t) (q - p));
            p = q;

            if (p == end) {
                break;
            }
        }

        rc = agw_json_push_ref_byte(j, *p);

        if (rc != AGW_JSON_OK && j->rc == AGW_JSON_OK) {
            j->rc = rc;
        }
    }

    return j->rc;
}


static int
agw_json_push_ref_finish(agw_json_push_ref_t *j)
{
    if (j->rc != AGW_JSON_OK) {
        return j->rc;
    }

    if (j->state == AGW_P_NUMBER && j->depth == 0
        && agw_json_push_ref_accepting(j->sub))
    {
        agw_json_push_ref_emit(j, AGW_JSON_NUMBER);
        j->state = AGW_P_DONE;
    }

    if (j->rc == AGW_JSON_OK && j->state != AGW_P_DONE) {
        j->rc = AGW_JSON_EINVAL;
    }

    return j->rc;
}
