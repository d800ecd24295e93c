
/*
 * Token arithmetic for token zones: the admission estimate, the usage an
 * answer reports (read as it passes, in any split), and OpenAI's duration
 * format for the x-ratelimit-reset-* headers.  See agw_tokens.c.
 */


#ifndef _AGW_TOKENS_H_INCLUDED_
#define _AGW_TOKENS_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "agw_json_push.h"
#include "agw_json_request.h"


/*
 * every token figure saturates here: above any bucket (burst * 60000 ms
 * units <= 2^53), and times 60000 it still fits 64 bits
 */
#define AGW_TOKENS_MAX       AGW_JSON_MAX_INT

/* the longest agw_duration_format() output, without a NUL */
#define AGW_DURATION_LEN     32

#define AGW_TOKENS_BYTES_PER_TOKEN  4


/* a + b, saturating at AGW_TOKENS_MAX */
uint64_t agw_tokens_add(uint64_t a, uint64_t b);

/*
 * ceil(prompt_bytes / 4) + prompt_tokens + (max_tokens if given, else
 * default_max)
 */
uint64_t agw_tokens_estimate(const agw_json_request_t *req,
    uint64_t default_max);

/* the prompt alone: ceil(prompt_bytes / 4) + prompt_tokens */
uint64_t agw_tokens_prompt(uint64_t prompt_bytes, uint64_t prompt_tokens);

/* a body that is not JSON: ceil(len / 4) + default_max */
uint64_t agw_tokens_estimate_bytes(uint64_t len, uint64_t default_max);


/* usage figures of one answer or event */
typedef struct {
    uint64_t  total;                     /* usage.total_tokens */
    uint64_t  input;                     /* usage.input_tokens, or
                                            prompt_tokens */
    uint64_t  output;                    /* usage.output_tokens, or
                                            completion_tokens */
    uint64_t  cached;                    /* of the input, read from the
                                            provider's prompt cache:
                                            prompt_tokens_details. or
                                            input_tokens_details.
                                            cached_tokens */
    uint64_t  cache_read;                /* Anthropic, beyond input_tokens:
                                            cache_read_input_tokens */
    uint64_t  cache_write;               /* cache_creation_input_tokens */
    unsigned  has_total:1;
    unsigned  has_input:1;
    unsigned  has_output:1;
    unsigned  has_cached:1;
    unsigned  has_cache_read:1;
    unsigned  has_cache_write:1;
} agw_usage_t;

/* what an answer (a JSON body or one SSE event's data) says */
enum {
    AGW_ANSWER_TYPE_OTHER = 0,           /* no "type", or another one */
    AGW_ANSWER_TYPE_COMPLETED,           /* "response.completed" */
    AGW_ANSWER_TYPE_MESSAGE_STOP,        /* "message_stop" */
    AGW_ANSWER_TYPE_TEXT_DELTA,          /* "response.output_text.delta",
                                            "content_block_delta" */
    AGW_ANSWER_TYPE_MESSAGE_START,       /* "message_start" */
    AGW_ANSWER_TYPE_MESSAGE_DELTA        /* "message_delta" */
};

typedef struct {
    agw_json_push_t  json;
    agw_usage_t      usage;
    unsigned         type;               /* top-level "type" */
    unsigned         usage_depth;        /* keys of the usage object are at
                                            this depth; 0: not inside it */
    unsigned         details_depth;      /* keys of its *_tokens_details
                                            object; 0: not inside it */
    uint8_t          key[5];             /* class of the current key at
                                            depths 1 to 4 */
    unsigned         content:1;          /* choices[].delta.content or
                                            choices[].text, non-empty */
    unsigned         skims:1;            /* values on no path it follows
                                            are skimmed */
    unsigned         no_choices:1;       /* ... and "choices" too */
} agw_answer_t;

/* every token checked and read: the verdict says whether it was JSON */
void agw_answer_init(agw_answer_t *a);

/*
 * for the usage (and, with content, the content flag) only: the values on
 * no path it follows are skimmed (AGW_JSON_SKIP), so their errors go
 * unseen and a verdict of AGW_JSON_OK says less
 */
void agw_answer_init_reader(agw_answer_t *a, unsigned content);

/* feed any split of the answer; AGW_JSON_OK while it can still be JSON */
int agw_answer_feed(agw_answer_t *a, const uint8_t *data, size_t len);

/* AGW_JSON_OK if the answer was one JSON value */
int agw_answer_finish(agw_answer_t *a);

/*
 * the tokens an answer used: usage.total_tokens, else input_tokens +
 * output_tokens (Anthropic); 0 if the usage says nothing
 */
int agw_usage_tokens(const agw_usage_t *u, uint64_t *tokens);

/*
 * the usage of a stream so far, given one more event's: a total replaces
 * everything; the other figures replace their own (Anthropic sends
 * input_tokens and its cache figures in message_start, cumulative
 * output_tokens in each message_delta)
 */
void agw_usage_merge(agw_usage_t *acc, const agw_usage_t *ev);


/* how much of a stored answer's end agw_tokens_tail_total() reads */
#define AGW_TOKENS_TAIL  1024

/* "total_tokens" near the end of a stored answer (cache statistics) */
uint64_t agw_tokens_tail_total(const uint8_t *body, size_t len);


/*
 * ms as Go's time.Duration prints it, which is how OpenAI writes
 * x-ratelimit-reset-*: "0s", "20ms", "1s", "1.5s", "6m0s", "1h2m3s";
 * writes at most AGW_DURATION_LEN bytes, no NUL; returns the length
 */
size_t agw_duration_format(uint8_t *buf, uint64_t ms);


#endif /* _AGW_TOKENS_H_INCLUDED_ */
