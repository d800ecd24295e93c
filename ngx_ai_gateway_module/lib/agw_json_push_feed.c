
/*
 * The push tokenizer's loop: what it reads most, it reads itself.
 *
 * An answer is mostly strings, whitespace, the punctuation between
 * members, integers and literals; the state machine (agw_json_push.c)
 * would take them a byte, a call and a switch at a time.  This loop takes
 * runs of string bytes eight at a time, whole tokens where the piece
 * holds them, and goes from one token to the next where the next one's
 * state is known, doing exactly what the state machine would: the same
 * events, the same verdicts, the same state when a piece ends, whatever
 * the split.  Anything else goes to the state machine.
 * tests/unit/test_json_push_diff.c and tests/fuzz/fuzz_json_push_diff.c
 * hold it to the state machine as it was, byte at a time
 * (tests/ref/agw_json_push_ref.c).
 */


#include <string.h>

#include "agw_json_push.h"
#include "agw_json_push_state.h"


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
 * 1 for the bytes that end any number for sure and are no part of it:
 * after an integer, what follows a value in a container, or whitespace
 */

static const uint8_t  agw_json_push_number_end[256] = {
    [','] = 1,
    ['}'] = 1,
    [']'] = 1,
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
#if (AGW_JSON_WORDS)
    size_t          n, room;
    uint64_t        w, m;
#endif

    q = p;
    t = j->text + j->text_len;
    full = j->text + AGW_JSON_TEXT_MAX;

#if (AGW_JSON_WORDS)

    while (end - q >= 8) {
        memcpy(&w, q, 8);
        m = agw_json_word_specials(w);
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

#if (AGW_JSON_WORDS)
done:
#endif

    j->text_len = (size_t) (t - j->text);
    j->full_len += (uint64_t) (q - p);

    return q;
}


/* the bytes that matter in a skimmed container outside its strings */

static const uint8_t  agw_json_push_skim_stop[256] = {
    ['"'] = 1,
    ['{'] = 1,
    ['}'] = 1,
    ['['] = 1,
    [']'] = 1
};


/*
 * A value the handler skips (AGW_JSON_SKIP), from where the last piece
 * left it: its strings are followed to their closing quote (a backslash
 * takes the byte after it along), its brackets counted, nothing else
 * looked at.  Returns where the value ended, its state then AGW_P_AFTER
 * or AGW_P_DONE; or end, still AGW_P_SKIM.
 */

static const uint8_t *
agw_json_push_skim(agw_json_push_t *j, const uint8_t *p, const uint8_t *end)
{
    uint8_t   c;
#if (AGW_JSON_WORDS)
    uint64_t  w, m;
#endif

    for ( ;; ) {

        if (j->skim_str) {

            if (j->skim_esc) {
                if (p == end) {
                    return p;
                }

                p++;
                j->skim_esc = 0;
            }

#if (AGW_JSON_WORDS)
            while (end - p >= 8) {
                memcpy(&w, p, 8);
                m = agw_json_word_quotes(w);

                if (m) {
                    p += __builtin_ctzll(m) >> 3;
                    goto quote;
                }

                p += 8;
            }
#endif

            while (p < end && *p != '"' && *p != '\\') {
                p++;
            }

            if (p == end) {
                return p;
            }

#if (AGW_JSON_WORDS)
        quote:
#endif
            if (*p++ == '\\') {
                j->skim_esc = 1;
                continue;
            }

            j->skim_str = 0;

            if (j->skim_depth == 0) {
                break;                   /* a string value */
            }
        }

        while (p < end && !agw_json_push_skim_stop[*p]) {
            p++;
        }

        if (p == end) {
            return p;
        }

        c = *p++;

        if (c == '"') {
            j->skim_str = 1;

        } else if (c == '{' || c == '[') {
            j->skim_depth++;

        } else if (--j->skim_depth == 0) {
            break;                       /* the container closed */
        }
    }

    agw_json_push_value_done(j);

    return p;
}


/*
 * An integer whole in the piece and ended there (0, or digits not
 * starting with 0, then a byte of agw_json_push_number_end[]): what the
 * state machine does by digits, at once, up to its event.  NULL for any
 * other number, or one the piece cuts (the state machine takes it).
 */

static const uint8_t *
agw_json_push_integer(agw_json_push_t *j, const uint8_t *p,
    const uint8_t *end)
{
    size_t          n;
    const uint8_t  *q;

    q = p + 1;

    if (*p != '0') {
        while (q < end && *q >= '0' && *q <= '9') {
            q++;
        }
    }

    if (q == end || !agw_json_push_number_end[*q]) {
        return NULL;
    }

    n = (size_t) (q - p);

    j->text_len = n < AGW_JSON_TEXT_MAX ? n : AGW_JSON_TEXT_MAX;
    memcpy(j->text, p, j->text_len);
    j->full_len = n;
    j->sub = (*p == '0') ? AGW_N_ZERO : AGW_N_INT;

    agw_json_push_emit(j, AGW_JSON_NUMBER);

    return q;
}


/*
 * A literal whole in the piece: what the state machine does by letters,
 * at once, up to its event.  NULL if it is cut or is not one (the state
 * machine says so).
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

    return p + n;
}


/* whitespace between tokens changes nothing; p < end before and after */

#define agw_json_push_skip_space(j, p, end)                                  \
    while (agw_json_push_space[*p]) {                                        \
        if (++p == end) {                                                    \
            return j->rc;                                                    \
        }                                                                    \
    }


/*
 * The state machine, agw_json_push_byte(), takes any byte in any state;
 * the loop below takes the common ones itself, doing exactly what it
 * would: runs of string bytes and digits, whitespace between tokens,
 * strings, literals and integers whole in the piece, brackets, and the
 * colon and comma between members.  What is left (escapes, other
 * numbers, tokens the piece cuts, empty containers, errors) goes to the
 * state machine.
 *
 * The state is kept in j->state at every step, so the loop can stop and
 * the state machine take over anywhere; but between the common tokens
 * the loop goes from one to the next by goto, where the state is known,
 * as long as there are bytes and nothing stopped the tokenizer (each
 * label is entered with p < end and j->rc == AGW_JSON_OK).
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
            goto string;

        case AGW_P_COLON:
            goto colon;

        case AGW_P_AFTER:
            goto after;

        case AGW_P_KEY_OR_CLOSE:
        case AGW_P_KEY:
            goto key;

        case AGW_P_VALUE_OR_CLOSE:
        case AGW_P_VALUE:
            goto value;

        case AGW_P_NUMBER:
            if (j->sub == AGW_N_INT || j->sub == AGW_N_FRAC
                || j->sub == AGW_N_EXP)
            {
                p = agw_json_push_run(j, p, end, agw_json_push_not_digit);

                if (p == end) {
                    return j->rc;
                }
            }

            goto slow;

        case AGW_P_SKIM:
            goto skim;

        default:                         /* ESCAPE, HEX, LITERAL, DONE */
            goto slow;
        }

    string:                              /* STRING */
        if (j->hi) {
            goto slow;                   /* only an escape may follow */
        }

        p = agw_json_push_string_run(j, p, end);

        if (p == end) {
            return j->rc;
        }

        if (*p != '"') {
            goto slow;                   /* an escape or a control byte */
        }

        p++;

        if (!j->key) {
            agw_json_push_emit(j, AGW_JSON_STRING);
            goto value_done;
        }

        agw_json_push_emit(j, AGW_JSON_KEY);
        j->state = AGW_P_COLON;

        if (p == end || j->rc != AGW_JSON_OK) {
            return j->rc;
        }

    colon:                               /* COLON */
        agw_json_push_skip_space(j, p, end);

        if (*p != ':') {
            goto slow;
        }

        j->state = AGW_P_VALUE;

        if (++p == end) {
            return j->rc;
        }

    value:                               /* VALUE, VALUE_OR_CLOSE */
        agw_json_push_skip_space(j, p, end);

        c = *p;

        if (j->skip) {
            j->skip = 0;

            if (c == '"' || c == '{' || c == '[') {
                j->skim_str = (c == '"');
                j->skim_depth = (c != '"');
                j->skim_esc = 0;
                j->state = AGW_P_SKIM;
                p++;

            skim:                        /* SKIM */
                p = agw_json_push_skim(j, p, end);

                if (j->state == AGW_P_SKIM) {
                    return j->rc;        /* p == end */
                }

                if (p == end) {
                    return j->rc;
                }

                if (j->state != AGW_P_AFTER) {
                    continue;            /* DONE */
                }

                goto after;
            }
        }

        if (c == '"') {
            agw_json_push_string_open(j, 0);

            if (++p == end) {
                return j->rc;
            }

            goto string;
        }

        if (c >= '0' && c <= '9') {
            q = agw_json_push_integer(j, p, end);

        } else if (c == 't' || c == 'f' || c == 'n') {
            q = agw_json_push_literal(j, p, end);

        } else if (c == '{' || c == '[') {
            j->text_len = 0;
            j->full_len = 0;

            rc = agw_json_push_open(j, c == '{');
            p++;

            if (rc != AGW_JSON_OK) {
                j->rc = rc;
                return rc;
            }

            if (p == end || j->rc != AGW_JSON_OK) {
                return j->rc;
            }

            if (c == '[') {
                goto value;
            }

            goto key;

        } else {
            goto slow;                   /* '-', ']', or an error */
        }

        if (q == NULL) {
            goto slow;                   /* cut, or another form */
        }

        p = q;

    value_done:                          /* a value's event went out */
        agw_json_push_value_done(j);

        if (p == end || j->rc != AGW_JSON_OK) {
            return j->rc;
        }

        if (j->state != AGW_P_AFTER) {
            continue;                    /* DONE */
        }

    after:                               /* AFTER */
        agw_json_push_skip_space(j, p, end);

        c = *p;

        if (c == ',') {
            p++;

            if ((j->stack >> (j->depth - 1)) & 1) {
                j->state = AGW_P_KEY;

                if (p == end) {
                    return j->rc;
                }

                goto key;
            }

            j->state = AGW_P_VALUE;

            if (p == end) {
                return j->rc;
            }

            goto value;
        }

        if (c == '}' || c == ']') {
            rc = agw_json_push_close(j, c == '}');
            p++;

            if (rc != AGW_JSON_OK) {
                j->rc = rc;
                return rc;
            }

            /* the state is AFTER or DONE */

            if (p == end || j->rc != AGW_JSON_OK) {
                return j->rc;
            }

            if (j->state == AGW_P_AFTER) {
                goto after;
            }

            continue;
        }

        goto slow;

    key:                                 /* KEY, KEY_OR_CLOSE */
        agw_json_push_skip_space(j, p, end);

        if (*p != '"') {
            goto slow;                   /* '}', or an error */
        }

        agw_json_push_string_open(j, 1);

        if (++p == end) {
            return j->rc;
        }

        goto string;

    slow:
        rc = agw_json_push_byte(j, *p++);

        if (rc != AGW_JSON_OK && j->rc == AGW_JSON_OK) {
            j->rc = rc;
        }
    }

    return j->rc;
}
