/*
 * ai-sim: deterministic text generation and token counting.
 *
 * Pure code with no libevent or cJSON includes: the same request must give
 * the same words on every replica and every run, so everything here is a
 * function of its arguments only.
 */

#ifndef _SIM_MODEL_H_INCLUDED_
#define _SIM_MODEL_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define SIM_FNV1A64_INIT     0xcbf29ce484222325ULL
#define SIM_FNV1A64_PRIME    0x100000001b3ULL

#define SIM_MAX_TOKENS_MIN   1
#define SIM_MAX_TOKENS_MAX   4096
#define SIM_MAX_TOKENS_DEF   16

#define SIM_MODEL_DEFAULT    "sim-small"
#define SIM_MODEL_CREATED    1700000000


typedef struct {
    uint64_t                  state;
} sim_rng_t;


uint64_t sim_fnv1a64(uint64_t hash, const void *data, size_t len);
uint64_t sim_model_hash(const char *model, const char *prompt,
    size_t prompt_len, unsigned max_tokens);

void sim_rng_seed(sim_rng_t *rng, uint64_t seed);
uint64_t sim_rng_next(sim_rng_t *rng);
double sim_rng_uniform(sim_rng_t *rng);

const char *sim_model_word(sim_rng_t *rng, size_t *len);
char *sim_model_generate(uint64_t hash, unsigned tokens, size_t *len);
unsigned sim_model_count_tokens(const char *text, size_t len);


#endif /* _SIM_MODEL_H_INCLUDED_ */
