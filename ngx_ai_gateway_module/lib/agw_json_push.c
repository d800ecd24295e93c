
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
 * A handler may also answer a key with AGW_JSON_SKIP: the member's value
 * is then skimmed, unchecked (agw_json_push_feed.c).
 *
 * This file is the state machine, which takes any byte in any state
 * (agw_json_push_byte()); agw_json_push_feed() (agw_json_push_feed.c)
 * takes the common bytes and tokens itself and hands it the rest.
 */


#include <string.h>

#include "agw_json_push.h"
#include "agw_json_push_state.h"


void
agw_json_push_init(agw_json_push_t *j, agw_json_event_pt handler, void *ctx)
{
    memset(j, 0, sizeof(agw_json_push_t));

    j->handler = handler;
    j->ctx = ctx;
    j->state = AGW_P_VALUE;
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


int
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


int
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


int
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

        agw_json_push_string_open(j, 1);
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
