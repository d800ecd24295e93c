
/*
 * The push tokenizer, for answers.
 *
 * Answers come in pieces (a body in buffers, a stream in events cut
 * anywhere), and the gateway reads their usage as they pass without
 * holding them.  So this tokenizer is a state machine that keeps a few
 * dozen bytes, not the text: it can be cut at any byte, and it calls the
 * handler once per token with what agw_tokens.c needs to follow a path
 * (a key's or a value's first AGW_JSON_TEXT_MAX bytes, its full length,
 * the depth).
 *
 * It is strict about structure, escapes and surrogates, as the scanner is
 * (agw_json_scan.c), but passes bytes >= 0x80 in strings through
 * unchecked: it reads usage figures out of answers, it does not key them.
 */


#include <string.h>

#include "agw_json_push.h"


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
    AGW_P_HEX,                           /* in \uXXXX, sub digits read */
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


void
agw_json_push_init(agw_json_push_t *j, agw_json_event_pt handler, void *ctx)
{
    memset(j, 0, sizeof(agw_json_push_t));

    j->handler = handler;
    j->ctx = ctx;
    j->state = AGW_P_VALUE;
}


static void
agw_json_push_emit(agw_json_push_t *j, unsigned type)
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
agw_json_push_text(agw_json_push_t *j, uint32_t cp)
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
agw_json_push_value_done(agw_json_push_t *j)
{
    j->state = j->depth ? AGW_P_AFTER : AGW_P_DONE;
}


static int
agw_json_push_open(agw_json_push_t *j, int object)
{
    if (j->depth == AGW_JSON_MAX_DEPTH) {
        return AGW_JSON_EDEPTH;
    }

    agw_json_push_emit(j, object ? AGW_JSON_OBJECT : AGW_JSON_ARRAY);

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
agw_json_push_close(agw_json_push_t *j, int object)
{
    if (j->depth == 0
        || ((j->stack >> (j->depth - 1)) & 1) != (uint64_t) object)
    {
        return AGW_JSON_EINVAL;
    }

    j->depth--;
    j->text_len = 0;
    j->full_len = 0;
    agw_json_push_emit(j, object ? AGW_JSON_OBJECT_END : AGW_JSON_ARRAY_END);
    agw_json_push_value_done(j);

    return AGW_JSON_OK;
}


/* a value starts with c */

static int
agw_json_push_value(agw_json_push_t *j, uint8_t c)
{
    j->text_len = 0;
    j->full_len = 0;

    switch (c) {

    case '{':
        return agw_json_push_open(j, 1);

    case '[':
        return agw_json_push_open(j, 0);

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

        agw_json_push_text(j, c);
        j->state = AGW_P_NUMBER;
        return AGW_JSON_OK;
    }

    j->sub = 1;
    j->state = AGW_P_LITERAL;

    return AGW_JSON_OK;
}


/* the next number state, or -1 if c ends the number (or is an error) */

static int
agw_json_push_number(unsigned s, uint8_t c)
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
agw_json_push_accepting(unsigned s)
{
    return s == AGW_N_ZERO || s == AGW_N_INT || s == AGW_N_FRAC
           || s == AGW_N_EXP;
}


static int
agw_json_push_ws(uint8_t c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}


static int
agw_json_push_byte(agw_json_push_t *j, uint8_t c)
{
    int       d, n;
    uint32_t  cp;

    switch (j->state) {

    case AGW_P_VALUE_OR_CLOSE:
        if (c == ']') {
            return agw_json_push_close(j, 0);
        }
        /* fall through */

    case AGW_P_VALUE:
        if (agw_json_push_ws(c)) {
            return AGW_JSON_OK;
        }
        return agw_json_push_value(j, c);

    case AGW_P_KEY_OR_CLOSE:
        if (c == '}') {
            return agw_json_push_close(j, 1);
        }
        /* fall through */

    case AGW_P_KEY:
        if (agw_json_push_ws(c)) {
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
        if (agw_json_push_ws(c)) {
            return AGW_JSON_OK;
        }

        if (c != ':') {
            return AGW_JSON_EINVAL;
        }

        j->state = AGW_P_VALUE;
        return AGW_JSON_OK;

    case AGW_P_AFTER:
        if (agw_json_push_ws(c)) {
            return AGW_JSON_OK;
        }

        if (c == ',') {
            j->state = ((j->stack >> (j->depth - 1)) & 1) ? AGW_P_KEY
                                                          : AGW_P_VALUE;
            return AGW_JSON_OK;
        }

        if (c == '}' || c == ']') {
            return agw_json_push_close(j, c == '}');
        }

        return AGW_JSON_EINVAL;

    case AGW_P_STRING:
        if (j->hi && c != '\\') {
            return AGW_JSON_EINVAL;      /* a high surrogate alone */
        }

        if (c == '"') {
            if (j->key) {
                agw_json_push_emit(j, AGW_JSON_KEY);
                j->state = AGW_P_COLON;

            } else {
                agw_json_push_emit(j, AGW_JSON_STRING);
                agw_json_push_value_done(j);
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

        agw_json_push_text(j, cp);
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

        agw_json_push_text(j, cp);
        return AGW_JSON_OK;

    case AGW_P_NUMBER:
        n = agw_json_push_number(j->sub, c);

        if (n >= 0) {
            j->sub = (unsigned) n;
            agw_json_push_text(j, c);
            return AGW_JSON_OK;
        }

        if (!agw_json_push_accepting(j->sub)) {
            return AGW_JSON_EINVAL;
        }

        agw_json_push_emit(j, AGW_JSON_NUMBER);
        agw_json_push_value_done(j);

        if (j->rc != AGW_JSON_OK) {
            return j->rc;
        }

        return agw_json_push_byte(j, c);  /* c belongs to what follows */

    case AGW_P_LITERAL:
        if (c != (uint8_t) j->literal[j->sub]) {
            return AGW_JSON_EINVAL;
        }

        if (j->literal[++j->sub] != '\0') {
            return AGW_JSON_OK;
        }

        agw_json_push_emit(j, j->literal[0] == 't' ? AGW_JSON_TRUE
                              : j->literal[0] == 'f' ? AGW_JSON_FALSE
                              : AGW_JSON_NULL);
        agw_json_push_value_done(j);
        return AGW_JSON_OK;

    default:                             /* AGW_P_DONE */
        return agw_json_push_ws(c) ? AGW_JSON_OK : AGW_JSON_EINVAL;
    }
}


/*
 * 1 for the bytes that end a run of plain string bytes: the quote, the
 * backslash and the control bytes; everything else, bytes >= 0x80 too,
 * stands for itself inside a string
 */

static const uint8_t  agw_json_push_special[256] = {
    [0x00 ... 0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1
};


/*
 * 1 for the bytes that end a run of digits (after the first digit of a
 * number's integer part, fraction or exponent, digits keep the number in
 * its state: most of its bytes)
 */

static const uint8_t  agw_json_push_not_digit[256] = {
    [0x00 ... '0' - 1] = 1,
    ['9' + 1 ... 0xff] = 1
};


/* what JSON allows between tokens, and changes nothing there */

static const uint8_t  agw_json_push_space[256] = {
    [' '] = 1,
    ['\t'] = 1,
    ['\n'] = 1,
    ['\r'] = 1
};


/*
 * A run of bytes that stand for themselves (plain string bytes, or digits
 * that keep a number in its state), up to the first byte stop[] marks or
 * the end: the text keeps what fits, full_len counts all of it.  Returns
 * where the run stopped.
 */

static const uint8_t *
agw_json_push_run(agw_json_push_t *j, const uint8_t *p, const uint8_t *end,
    const uint8_t *stop)
{
    uint8_t        *t, *full;
    const uint8_t  *q;

    t = j->text + j->text_len;
    full = j->text + AGW_JSON_TEXT_MAX;

    for (q = p; q < end && t < full && !stop[*q]; q++) {
        *t++ = *q;
    }

    j->text_len = (size_t) (t - j->text);

    while (q < end && !stop[*q]) {
        q++;
    }

    j->full_len += (uint64_t) (q - p);

    return q;
}


#if (defined __GNUC__ && defined __BYTE_ORDER__                            \
     && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)

#define AGW_JSON_PUSH_WORDS  1

#define AGW_JSON_ONES   0x0101010101010101ULL
#define AGW_JSON_HIGHS  0x8080808080808080ULL


/*
 * The special bytes of eight string bytes at once (w holds them in memory
 * order, the first in its low byte): 0 if there is none, else the lowest
 * set bit is the high bit of the first one.  Each test, "a byte below
 * 0x20" and "a byte equal to the quote, the backslash", may also flag a
 * byte above one it flags rightly (its borrow), never one below: so the
 * lowest flag of the three is exact.  Bytes >= 0x80 are never flagged
 * (~w clears their high bit).
 */

static uint64_t
agw_json_push_specials(uint64_t w)
{
    uint64_t  q, b;

    q = w ^ (AGW_JSON_ONES * '"');
    b = w ^ (AGW_JSON_ONES * '\\');

    return (((w - AGW_JSON_ONES * 0x20) & ~w)
            | ((q - AGW_JSON_ONES) & ~q)
            | ((b - AGW_JSON_ONES) & ~b))
           & AGW_JSON_HIGHS;
}

#endif


/*
 * A run of plain string bytes: as agw_json_push_run() with
 * agw_json_push_special[], eight bytes at a time where it can
 */

static const uint8_t *
agw_json_push_string_run(agw_json_push_t *j, const uint8_t *p,
    const uint8_t *end)
{
    uint8_t        *t, *full;
    const uint8_t  *q;
#if (AGW_JSON_PUSH_WORDS)
    size_t          n, room;
    uint64_t        w, m;
#endif

    q = p;
    t = j->text + j->text_len;
    full = j->text + AGW_JSON_TEXT_MAX;

#if (AGW_JSON_PUSH_WORDS)

    while (end - q >= 8) {
        memcpy(&w, q, 8);
        m = agw_json_push_specials(w);
        n = m ? (size_t) __builtin_ctzll(m) >> 3 : 8;

        /* the text keeps the n plain bytes; what it has room for */

        room = (size_t) (full - t);

        if (room >= 8) {
            memcpy(t, q, 8);             /* past t + n: not kept */
            t += n;

        } else if (room) {
            room = room < n ? room : n;
            memcpy(t, q, room);
            t += room;
        }

        q += n;

        if (n < 8) {
            goto done;
        }
    }

#endif

    for ( /* void */ ; q < end && !agw_json_push_special[*q]; q++) {
        if (t < full) {
            *t++ = *q;
        }
    }

#if (AGW_JSON_PUSH_WORDS)
done:
#endif

    j->text_len = (size_t) (t - j->text);
    j->full_len += (uint64_t) (q - p);

    return q;
}


/*
 * A literal whole in the piece: what the state machine does by letters,
 * at once.  NULL if it is cut or is not one (the state machine says so).
 */

static const uint8_t *
agw_json_push_literal(agw_json_push_t *j, const uint8_t *p,
    const uint8_t *end)
{
    size_t    n;
    unsigned  type;

    n = (size_t) (end - p);

    if (n >= 4 && memcmp(p, "true", 4) == 0) {
        type = AGW_JSON_TRUE;
        n = 4;

    } else if (n >= 5 && memcmp(p, "false", 5) == 0) {
        type = AGW_JSON_FALSE;
        n = 5;

    } else if (n >= 4 && memcmp(p, "null", 4) == 0) {
        type = AGW_JSON_NULL;
        n = 4;

    } else {
        return NULL;
    }

    j->text_len = 0;
    j->full_len = 0;
    agw_json_push_emit(j, type);
    agw_json_push_value_done(j);

    return p + n;
}


/*
 * The state machine, agw_json_push_byte(), takes any byte in any state;
 * the loop below takes the common ones itself, doing exactly what it
 * would: runs of string bytes and digits, whitespace between tokens, a
 * string's closing quote, literals, and the quote, colon and comma that
 * start or separate members.  What is left (brackets, escapes, a number's
 * first and last byte, literals cut by the piece's end, errors) goes to
 * the state machine.  The common tokens follow one another without going
 * round the loop (goto string, goto between), as long as there are bytes
 * and nothing stopped the tokenizer.
 */

int
agw_json_push_feed(agw_json_push_t *j, const uint8_t *data, size_t len)
{
    int             rc;
    uint8_t         c;
    const uint8_t  *p, *q, *end;

    p = data;
    end = data + len;

    while (p < end && j->rc == AGW_JSON_OK) {

        switch (j->state) {

        case AGW_P_STRING:
        string:
            if (j->hi) {
                break;                   /* only an escape may follow */
            }

            p = agw_json_push_string_run(j, p, end);

            if (p == end) {
                return j->rc;
            }

            if (*p != '"') {
                break;                   /* an escape or a control byte */
            }

            p++;

            if (j->key) {
                agw_json_push_emit(j, AGW_JSON_KEY);
                j->state = AGW_P_COLON;

            } else {
                agw_json_push_emit(j, AGW_JSON_STRING);
                agw_json_push_value_done(j);
            }

            if (p == end || j->rc != AGW_JSON_OK) {
                return j->rc;
            }

            goto between;

        case AGW_P_NUMBER:
            if (j->sub == AGW_N_INT || j->sub == AGW_N_FRAC
                || j->sub == AGW_N_EXP)
            {
                p = agw_json_push_run(j, p, end, agw_json_push_not_digit);

                if (p == end) {
                    return j->rc;
                }
            }

            break;

        case AGW_P_ESCAPE:
        case AGW_P_HEX:
        case AGW_P_LITERAL:
            break;

        default:                         /* between tokens */
        between:
            while (agw_json_push_space[*p]) {
                if (++p == end) {
                    return j->rc;
                }
            }

            c = *p;

            switch (j->state) {

            case AGW_P_COLON:
                if (c == ':') {
                    j->state = AGW_P_VALUE;

                    if (++p == end) {
                        return j->rc;
                    }

                    goto between;
                }

                break;

            case AGW_P_AFTER:
                if (c == ',') {
                    j->state = ((j->stack >> (j->depth - 1)) & 1)
                               ? AGW_P_KEY : AGW_P_VALUE;

                    if (++p == end) {
                        return j->rc;
                    }

                    goto between;
                }

                break;

            case AGW_P_VALUE_OR_CLOSE:
            case AGW_P_VALUE:
                if (c == 't' || c == 'f' || c == 'n') {
                    q = agw_json_push_literal(j, p, end);

                    if (q == NULL) {
                        break;           /* cut, or not one */
                    }

                    p = q;

                    if (p == end || j->rc != AGW_JSON_OK) {
                        return j->rc;
                    }

                    goto between;
                }

                /* fall through */

            case AGW_P_KEY_OR_CLOSE:
            case AGW_P_KEY:
                if (c == '"') {
                    j->text_len = 0;
                    j->full_len = 0;
                    j->key = (j->state == AGW_P_KEY_OR_CLOSE
                              || j->state == AGW_P_KEY);
                    j->state = AGW_P_STRING;

                    if (++p == end) {
                        return j->rc;
                    }

                    goto string;
                }

                break;
            }

            break;
        }

        rc = agw_json_push_byte(j, *p++);

        if (rc != AGW_JSON_OK && j->rc == AGW_JSON_OK) {
            j->rc = rc;
        }
    }

    return j->rc;
}


int
agw_json_push_finish(agw_json_push_t *j)
{
    if (j->rc != AGW_JSON_OK) {
        return j->rc;
    }

    if (j->state == AGW_P_NUMBER && j->depth == 0
        && agw_json_push_accepting(j->sub))
    {
        agw_json_push_emit(j, AGW_JSON_NUMBER);
        j->state = AGW_P_DONE;
    }

    if (j->rc == AGW_JSON_OK && j->state != AGW_P_DONE) {
        j->rc = AGW_JSON_EINVAL;
    }

    return j->rc;
}
