
/*
 * Server-Sent Events, read as they pass.
 *
 * An inference stream is text/event-stream (the WHATWG HTML "server-sent
 * events" section): lines ended by CR LF, LF or CR; "field: value" lines,
 * one optional space after the colon; a line starting with a colon is a
 * comment; a blank line ends an event.  "data" lines join with '\n' into
 * the event's data, "event" names its type ("message" if none), "id" and
 * "retry" do not matter here.  An event with no data line is not
 * dispatched, and neither is an event the stream ends inside.
 *
 * The gateway sees the stream in whatever pieces the upstream connection
 * delivers, cut at any byte: inside a field name, between the CR and the
 * LF of one line end (so a CR at the end of a piece is remembered, and an
 * LF at the start of the next one is not a second, blank line).  The
 * parser is a byte-at-a-time state machine with a fast path over value
 * bytes, and it copies nothing but the current event's data, into a
 * buffer the caller sizes: an event larger than that is an error that
 * sticks (the stream is not storable), never a reallocation.  In streaming
 * mode it copies nothing at all: the data goes to a handler piece by piece
 * as it passes (agw_usage.c reads an event's usage that way, whatever its
 * size).  The leading
 * byte order mark the spec allows is not skipped: no inference API sends
 * one.
 *
 * agw_sse_inspect() says what an event means to the gateway, for the
 * three streaming APIs it caches: Chat Completions ends with a
 * "data: [DONE]" event; the Responses API with an event of type
 * response.completed; Anthropic's Messages API with message_stop (the
 * type is in the event field and in the data's "type"; either counts).
 * The data's JSON is read by agw_answer_t for usage and content.
 *
 * agw_sse_error() says whether an event reports a failed generation
 * (OpenAI and vLLM send {"error":{...}} and then [DONE]; Anthropic an
 * "error" event; the Responses API response.failed or
 * response.incomplete): such a stream ends "cleanly" but is no answer to
 * keep.  Only the data's top level counts: a Responses object carries
 * "error": null inside its "response", and text may say "error" anywhere.
 */


#include <string.h>

#include "agw_sse.h"


enum {
    AGW_SSE_FIELD = 0,                   /* reading the field name */
    AGW_SSE_SPACE,                       /* after the colon */
    AGW_SSE_VALUE,
    AGW_SSE_SKIP                         /* a comment, or a field ignored */
};

enum {
    AGW_SSE_F_OTHER = 0,
    AGW_SSE_F_DATA,
    AGW_SSE_F_EVENT
};


void
agw_sse_init(agw_sse_t *s, uint8_t *data, size_t cap,
    agw_sse_handler_pt handler, void *ctx)
{
    memset(s, 0, sizeof(agw_sse_t));

    s->data = data;
    s->cap = cap;
    s->handler = handler;
    s->ctx = ctx;
}


void
agw_sse_init_stream(agw_sse_t *s, agw_sse_data_pt on_data,
    agw_sse_handler_pt handler, void *ctx)
{
    memset(s, 0, sizeof(agw_sse_t));

    s->on_data = on_data;
    s->handler = handler;
    s->ctx = ctx;
}


static void
agw_sse_append(agw_sse_t *s, const uint8_t *p, size_t n)
{
    if (s->field == AGW_SSE_F_DATA && s->on_data) {
        if (n) {
            s->on_data(s->ctx, p, n);
            s->data_len += n;
        }

        return;
    }

    if (s->field == AGW_SSE_F_DATA) {
        if (n > s->cap - s->data_len) {
            s->rc = AGW_SSE_ETOOBIG;
            return;
        }

        memcpy(s->data + s->data_len, p, n);
        s->data_len += n;

    } else if (s->field == AGW_SSE_F_EVENT) {
        if (n > AGW_SSE_TYPE_MAX - s->type_len) {
            s->rc = AGW_SSE_ETOOBIG;
            return;
        }

        memcpy(s->type + s->type_len, p, n);
        s->type_len += n;
    }
}


/* the field name is complete: what the value goes to */

static void
agw_sse_field(agw_sse_t *s)
{
    s->pending = 1;

    if (s->name_len == 4 && memcmp(s->name, "data", 4) == 0) {
        s->field = AGW_SSE_F_DATA;

        if (s->has_data) {
            agw_sse_append(s, (const uint8_t *) "\n", 1);
        }

        s->has_data = 1;

    } else if (s->name_len == 5 && memcmp(s->name, "event", 5) == 0) {
        s->field = AGW_SSE_F_EVENT;
        s->type_len = 0;

    } else {
        s->field = AGW_SSE_F_OTHER;
    }
}


static void
agw_sse_dispatch(agw_sse_t *s)
{
    agw_sse_event_t  ev;

    if (s->has_data) {
        if (s->type_len) {
            ev.type = s->type;
            ev.type_len = s->type_len;

        } else {
            ev.type = (const uint8_t *) "message";
            ev.type_len = sizeof("message") - 1;
        }

        ev.data = s->data;
        ev.data_len = s->data_len;

        s->events++;

        if (s->handler && s->handler(s->ctx, &ev) != 0) {
            s->rc = AGW_SSE_ESTOP;
        }
    }

    s->data_len = 0;
    s->type_len = 0;
    s->has_data = 0;
    s->pending = 0;
}


static void
agw_sse_eol(agw_sse_t *s)
{
    if (s->state == AGW_SSE_FIELD) {
        if (s->name_len == 0) {
            agw_sse_dispatch(s);         /* a blank line */

        } else {
            agw_sse_field(s);            /* a field with no colon: the
                                            value is empty */
        }
    }

    s->state = AGW_SSE_FIELD;
    s->name_len = 0;
}


/* what ends a field name: its colon, or the line */

static const uint8_t  agw_sse_name_end[256] = {
    [':'] = 1,
    ['\r'] = 1,
    ['\n'] = 1
};


int
agw_sse_feed(agw_sse_t *s, const uint8_t *p, size_t len)
{
    size_t          n;
    uint8_t         c;
    const uint8_t  *end, *q, *r;

    end = p + len;

    while (p < end && s->rc == AGW_SSE_OK) {
        c = *p;

        if (s->cr) {
            s->cr = 0;

            if (c == '\n') {             /* the LF of a CR LF */
                p++;
                continue;
            }
        }

        if (c == '\r' || c == '\n') {
            s->cr = (c == '\r');
            agw_sse_eol(s);
            p++;
            continue;
        }

        switch (s->state) {

        case AGW_SSE_FIELD:
            if (c == ':') {
                if (s->name_len == 0) {
                    s->state = AGW_SSE_SKIP;     /* a comment */

                } else {
                    agw_sse_field(s);
                    s->state = AGW_SSE_SPACE;
                }

                p++;
                break;
            }

            /* the name's bytes up to its colon or line end, at once */

            for (q = p; q < end && !agw_sse_name_end[*q]; q++) {
                /* void */
            }

            if (s->name_len < sizeof(s->name)) {
                n = sizeof(s->name) - s->name_len;
                memcpy(s->name + s->name_len, p,
                       (size_t) (q - p) < n ? (size_t) (q - p) : n);
            }

            s->name_len += (size_t) (q - p);
            p = q;
            break;

        case AGW_SSE_SPACE:
            s->state = AGW_SSE_VALUE;

            if (c == ' ') {
                p++;
            }

            break;

        default:                         /* VALUE, SKIP */

            /* lines end in LF or CR LF: the first LF, then a CR before it */

            q = memchr(p, '\n', (size_t) (end - p));

            if (q == NULL) {
                q = end;
            }

            r = memchr(p, '\r', (size_t) (q - p));

            if (r != NULL) {
                q = r;
            }

            if (s->state == AGW_SSE_VALUE) {
                agw_sse_append(s, p, (size_t) (q - p));
            }

            p = q;
        }
    }

    return s->rc;
}


int
agw_sse_finish(agw_sse_t *s)
{
    if (s->rc != AGW_SSE_OK) {
        return s->rc;
    }

    return (s->pending || s->state != AGW_SSE_FIELD || s->name_len) ? 1
                                                                   : 0;
}


static int
agw_sse_is(const uint8_t *p, size_t len, const char *s)
{
    return len == strlen(s) && memcmp(p, s, len) == 0;
}


void
agw_sse_inspect(const agw_sse_event_t *ev, agw_sse_info_t *info)
{
    agw_answer_t  a;

    memset(info, 0, sizeof(agw_sse_info_t));

    if (agw_sse_is(ev->data, ev->data_len, "[DONE]")
        || agw_sse_is(ev->type, ev->type_len, "response.completed")
        || agw_sse_is(ev->type, ev->type_len, "message_stop"))
    {
        info->terminal = 1;
    }

    if (agw_sse_is(ev->type, ev->type_len, "content_block_delta")
        || agw_sse_is(ev->type, ev->type_len, "response.output_text.delta"))
    {
        info->content = 1;
    }

    agw_answer_init(&a);

    if (agw_answer_feed(&a, ev->data, ev->data_len) != AGW_JSON_OK
        || agw_answer_finish(&a) != AGW_JSON_OK)
    {
        return;
    }

    info->json = 1;
    info->usage = a.usage;
    info->has_usage = a.usage.has_total || a.usage.has_input
                      || a.usage.has_output;

    switch (a.type) {
    case AGW_ANSWER_TYPE_COMPLETED:
    case AGW_ANSWER_TYPE_MESSAGE_STOP:
        info->terminal = 1;
        break;
    case AGW_ANSWER_TYPE_TEXT_DELTA:
        info->content = 1;
        break;
    }

    if (a.content) {
        info->content = 1;
    }
}


/* the error scan of one event's data: top-level members only */
typedef struct {
    agw_json_push_t  json;
    unsigned         key;                /* the depth-1 member being read */
    unsigned         error:1;
} agw_sse_error_scan_t;


enum {
    AGW_SSE_K_OTHER = 0,
    AGW_SSE_K_ERROR,
    AGW_SSE_K_OBJECT,
    AGW_SSE_K_TYPE
};


static int
agw_sse_error_type(const uint8_t *p, size_t len)
{
    return agw_sse_is(p, len, "error")
           || agw_sse_is(p, len, "response.failed")
           || agw_sse_is(p, len, "response.incomplete");
}


static int
agw_sse_error_event(void *ctx, const agw_json_event_t *ev)
{
    agw_sse_error_scan_t  *scan = ctx;

    int  complete;

    if (ev->depth != 1) {
        return 0;
    }

    complete = (ev->full_len == ev->text_len);

    switch (ev->type) {

    case AGW_JSON_KEY:
        scan->key = AGW_SSE_K_OTHER;

        if (complete && agw_sse_is(ev->text, ev->text_len, "error")) {
            scan->key = AGW_SSE_K_ERROR;

        } else if (complete && agw_sse_is(ev->text, ev->text_len, "object"))
        {
            scan->key = AGW_SSE_K_OBJECT;

        } else if (complete && agw_sse_is(ev->text, ev->text_len, "type")) {
            scan->key = AGW_SSE_K_TYPE;
        }

        return 0;

    case AGW_JSON_OBJECT_END:
    case AGW_JSON_ARRAY_END:
        /* the end of a value inside the top-level object */
        return 0;

    case AGW_JSON_NULL:
    case AGW_JSON_FALSE:
        break;

    case AGW_JSON_STRING:
        if (scan->key == AGW_SSE_K_ERROR
            || (complete && scan->key == AGW_SSE_K_OBJECT
                && agw_sse_is(ev->text, ev->text_len, "error"))
            || (complete && scan->key == AGW_SSE_K_TYPE
                && agw_sse_error_type(ev->text, ev->text_len)))
        {
            scan->error = 1;
        }

        break;

    default:                             /* OBJECT, ARRAY, NUMBER, TRUE */
        if (scan->key == AGW_SSE_K_ERROR) {
            scan->error = 1;
        }
    }

    scan->key = AGW_SSE_K_OTHER;

    /* found: stop reading */
    return scan->error;
}


static int
agw_sse_has(const uint8_t *p, size_t len, const char *s)
{
    size_t  n;

    n = strlen(s);

    for ( /* void */ ; len >= n; p++, len--) {
        if (*p == (uint8_t) s[0] && memcmp(p, s, n) == 0) {
            return 1;
        }
    }

    return 0;
}


int
agw_sse_error(const agw_sse_event_t *ev)
{
    agw_sse_error_scan_t  scan;

    if (agw_sse_error_type(ev->type, ev->type_len)) {
        return 1;
    }

    /* most events name none of it: no JSON pass for them */
    if (!agw_sse_has(ev->data, ev->data_len, "error")
        && !agw_sse_has(ev->data, ev->data_len, "response.failed")
        && !agw_sse_has(ev->data, ev->data_len, "response.incomplete"))
    {
        return 0;
    }

    memset(&scan, 0, sizeof(agw_sse_error_scan_t));
    agw_json_push_init(&scan.json, agw_sse_error_event, &scan);

    /* a handler that found one stops the tokenizer: what it saw counts */
    (void) agw_json_push_feed(&scan.json, ev->data, ev->data_len);

    return scan.error;
}
