
/*
 * The push tokenizer's states and steps, shared by its two halves: the
 * state machine that takes any byte in any state (agw_json_push.c) and
 * the loop that takes the common bytes itself (agw_json_push_feed.c).
 * Internal to lib/.
 */


#ifndef _AGW_JSON_PUSH_STATE_H_INCLUDED_
#define _AGW_JSON_PUSH_STATE_H_INCLUDED_


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
    AGW_P_HEX,                           /* a \u escape: sub hex digits read */
    AGW_P_NUMBER,                        /* sub: number state */
    AGW_P_LITERAL,                       /* sub: letters matched */
    AGW_P_DONE,                          /* only whitespace may follow */
    AGW_P_SKIM                           /* a value the handler skips */
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


/* '{' or '[' (object 1 or 0) at a value, and their close */
int agw_json_push_open(agw_json_push_t *j, int object);
int agw_json_push_close(agw_json_push_t *j, int object);

/* the state machine: any byte in any state */
int agw_json_push_byte(agw_json_push_t *j, uint8_t c);


/*
 * the handler gets the token; a non-zero return stops the tokenizer,
 * except AGW_JSON_SKIP for a key
 */

static inline void
agw_json_push_emit(agw_json_push_t *j, unsigned type)
{
    int               rc;
    agw_json_event_t  ev;

    ev.type = type;
    ev.depth = j->depth;
    ev.text = j->text;
    ev.text_len = j->text_len;
    ev.full_len = j->full_len;

    if (j->handler) {
        rc = j->handler(j->ctx, &ev);

        if (rc == AGW_JSON_SKIP && type == AGW_JSON_KEY) {
            j->skip = 1;

        } else if (rc != 0) {
            j->rc = AGW_JSON_ESTOP;
        }
    }
}


/* a string begins (its opening quote read): a key's, or a value's */

static inline void
agw_json_push_string_open(agw_json_push_t *j, unsigned key)
{
    j->text_len = 0;
    j->full_len = 0;
    j->key = key;
    j->state = AGW_P_STRING;
}


static inline void
agw_json_push_value_done(agw_json_push_t *j)
{
    j->state = j->depth ? AGW_P_AFTER : AGW_P_DONE;
}


#endif /* _AGW_JSON_PUSH_STATE_H_INCLUDED_ */
