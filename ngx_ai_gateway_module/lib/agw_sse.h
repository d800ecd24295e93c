
/*
 * Incremental Server-Sent Events parser, and what an event means to the
 * gateway (the end of a stream, content, usage).  See agw_sse.c.
 */


#ifndef _AGW_SSE_H_INCLUDED_
#define _AGW_SSE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "agw_tokens.h"


#define AGW_SSE_OK        0
#define AGW_SSE_ETOOBIG  -1              /* an event's data or type is over
                                            the limit; sticky */
#define AGW_SSE_ESTOP    -2              /* the handler asked to stop */

#define AGW_SSE_TYPE_MAX  64             /* bytes of an event type */


typedef struct {
    const uint8_t  *type;                /* "message" when not given */
    size_t          type_len;
    const uint8_t  *data;                /* data lines joined by '\n' */
    size_t          data_len;
} agw_sse_event_t;

/* non-zero stops the parser with AGW_SSE_ESTOP */
typedef int (*agw_sse_handler_pt)(void *ctx, const agw_sse_event_t *ev);

/* a piece of the current event's data, as it passes (streaming mode) */
typedef void (*agw_sse_data_pt)(void *ctx, const uint8_t *p, size_t len);

typedef struct {
    agw_sse_handler_pt  handler;
    agw_sse_data_pt     on_data;         /* streaming mode: data is handed
                                            over, not kept */
    void               *ctx;
    uint8_t            *data;            /* caller's buffer for one event */
    size_t              cap;
    size_t              data_len;
    uint64_t            events;          /* dispatched so far */
    int                 rc;              /* sticky */
    unsigned            state;
    unsigned            field;           /* the line's field, once known */
    size_t              name_len;        /* field name bytes seen */
    uint8_t             name[8];
    uint8_t             type[AGW_SSE_TYPE_MAX];
    size_t              type_len;
    unsigned            cr:1;            /* the last byte was CR */
    unsigned            has_data:1;      /* the event has a data line */
    unsigned            pending:1;       /* a line of the event was seen */
} agw_sse_t;


/* data[0..cap) holds one event's data; more is AGW_SSE_ETOOBIG */
void agw_sse_init(agw_sse_t *s, uint8_t *data, size_t cap,
    agw_sse_handler_pt handler, void *ctx);

/*
 * Streaming mode: no buffer, no size limit: each piece of an event's data
 * goes to on_data as it arrives ('\n' between data lines), and the
 * handler then gets the event with data NULL and data_len its length
 */
void agw_sse_init_stream(agw_sse_t *s, agw_sse_data_pt on_data,
    agw_sse_handler_pt handler, void *ctx);

/* any split of the stream; calls the handler for each complete event */
int agw_sse_feed(agw_sse_t *s, const uint8_t *p, size_t len);

/*
 * the stream ended: AGW_SSE_OK if it ended between events (an unfinished
 * event is dropped, as the SSE spec says), 1 if an event was cut short,
 * or the sticky error
 */
int agw_sse_finish(agw_sse_t *s);


typedef struct {
    agw_usage_t  usage;                  /* from the data's JSON */
    unsigned     terminal:1;             /* the stream's last event */
    unsigned     content:1;              /* carries generated text */
    unsigned     has_usage:1;
    unsigned     json:1;                 /* the data is one JSON value */
} agw_sse_info_t;

/*
 * What an event means: terminal for "data: [DONE]" (Chat Completions),
 * type response.completed (Responses API) or message_stop (Anthropic),
 * given by the event field or by the data's "type"; content for a chunk
 * with choices[].delta.content or choices[].text non-empty, or a text
 * delta event; usage as agw_answer_t reads it.
 */
void agw_sse_inspect(const agw_sse_event_t *ev, agw_sse_info_t *info);

/*
 * 1 if the event reports a generation that failed, which a cache must
 * never keep: an event of type error (Anthropic), response.failed or
 * response.incomplete (Responses API), or data that is a JSON object with
 * such a top-level "type", a top-level "error" member that is not null or
 * false (OpenAI's and vLLM's {"error":{...}} before [DONE]), or
 * "object":"error" (older vLLM)
 */
int agw_sse_error(const agw_sse_event_t *ev);


#endif /* _AGW_SSE_H_INCLUDED_ */
