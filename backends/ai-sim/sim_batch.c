/*
 * ai-sim: the time of a decode step as a function of the KV tokens the
 * running batch holds.
 */

#include <stdint.h>

#include "sim_batch.h"


void
sim_batch_init(sim_batch_t *b, double us_per_token)
{
    b->us_per_token = us_per_token;
    b->tokens = 0;
}


void
sim_batch_hold(sim_batch_t *b, uint64_t tokens)
{
    b->tokens += tokens;
}


void
sim_batch_release(sim_batch_t *b, uint64_t tokens)
{
    /* a release never takes more than was held: the count stays sane */
    b->tokens = (tokens < b->tokens) ? b->tokens - tokens : 0;
}


double
sim_batch_step_ms(const sim_batch_t *b, double base_ms)
{
    return base_ms + (double) b->tokens * b->us_per_token / 1000.0;
}
