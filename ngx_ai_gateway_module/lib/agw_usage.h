
/*
 * The usage an answer reports, read as the answer passes, in constant
 * memory whatever its size: a JSON answer, or a stream of Server-Sent
 * Events whose events may each be of any size.  For the limiter's
 * settlement and for anyone else who needs an answer's usage (the
 * metrics).  See agw_usage.c.
 */


#ifndef _AGW_USAGE_H_INCLUDED_
#define _AGW_USAGE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "agw_sse.h"
#include "agw_tokens.h"


#define AGW_USAGE_JSON  1                /* one JSON answer */
#define AGW_USAGE_SSE   2                /* text/event-stream */

#define AGW_USAGE_MEMO_MAX  256          /* bytes of an event's start kept */


/*
 * A stream's events start the same way, up to their content: the memo
 * keeps the start of the last event's data, and the reader as it was
 * after the part an event shared with the one before it (agw_usage.c)
 */
typedef struct {
    agw_answer_t  answer;                /* after bytes[0..len) */
    size_t        len;                   /* 0: none */
    size_t        bytes_len;
    uint8_t       bytes[AGW_USAGE_MEMO_MAX];
} agw_usage_memo_t;


typedef struct {
    unsigned           mode;             /* AGW_USAGE_JSON, _SSE */
    agw_usage_t        usage;            /* a stream's, merged */
    uint64_t           content;          /* a stream's content events */
    uint64_t           events;           /* a stream's events */
    agw_answer_t       answer;           /* the answer, or the stream's
                                            current event's data */
    agw_sse_t          sse;
    agw_usage_memo_t  *memo;             /* a stream's, or NULL */
    unsigned           stream_usage:1;   /* an event reported usage */
    unsigned           in_event:1;       /* answer holds the current event */
} agw_usage_reader_t;


void agw_usage_reader_init(agw_usage_reader_t *u, unsigned mode);

/*
 * a stream's reader takes an event that starts as the one before it up
 * from where their shared start left it, not from the event's first byte;
 * the same figures either way (tests/unit/test_usage_memo.c)
 */
void agw_usage_reader_memo(agw_usage_reader_t *u, agw_usage_memo_t *memo);

/* any split of the answer, as it passes */
void agw_usage_reader_feed(agw_usage_reader_t *u, const uint8_t *p,
    size_t len);

/*
 * the usage the answer reported so far (a stream's merged over its
 * events): 1 and *usage if it reported any, else 0
 */
int agw_usage_reader_usage(const agw_usage_reader_t *u, agw_usage_t *usage);


#endif /* _AGW_USAGE_H_INCLUDED_ */
