/*
 * ai-sim: the running batch's KV cache, as a decode step's cost
 * (--decode-us-per-kv-token) and as an admission limit
 * (--kv-cache-tokens).
 *
 * A decode step of a real engine is memory-bandwidth bound: it reads the
 * weights once, and the keys and values of every token each running
 * sequence holds (its prompt and what it generated so far).  So a step
 * takes longer the more tokens the batch holds, for every sequence of
 * the batch alike, and the step that yields a new sequence's first token
 * (its prefill shares the step with the running decodes, as vLLM's
 * chunked prefill) too.
 *
 * Pure code with no libevent include: the scheduler holds a sequence's
 * tokens when it starts, one more for each token it decodes, and
 * releases them all when it ends.
 */

#ifndef _SIM_BATCH_H_INCLUDED_
#define _SIM_BATCH_H_INCLUDED_


#include <stdint.h>


#define SIM_BATCH_MAX_US       1000.0            /* per KV token */
#define SIM_BATCH_MAX_TOKENS   (1ULL << 32)


typedef struct {
    double                    us_per_token;      /* 0: steps do not grow */
    uint64_t                  tokens;            /* held by running seqs */
} sim_batch_t;


void sim_batch_init(sim_batch_t *b, double us_per_token);
void sim_batch_hold(sim_batch_t *b, uint64_t tokens);
void sim_batch_release(sim_batch_t *b, uint64_t tokens);

/* one step of the batch as it is now: base_ms plus its KV reads, in ms */
double sim_batch_step_ms(const sim_batch_t *b, double base_ms);


#endif /* _SIM_BATCH_H_INCLUDED_ */
