/*
 * ai-sim: deterministic text generation and token counting.
 */

#include <stdlib.h>
#include <string.h>

#include "sim_model.h"


/*
 * A fixed vocabulary: changing it changes every output, and with it every
 * cached body and test expectation, so it is append-only in spirit.
 */
static const char  *sim_vocabulary[] = {
    "the", "model", "token", "gateway", "cache", "limit", "request",
    "answer", "stream", "latency", "replica", "upstream", "bucket",
    "window", "memory", "shared", "zone", "event", "loop", "timer",
    "nginx", "proxy", "worker", "signal", "socket", "buffer", "header",
    "body", "chunk", "prompt", "output", "usage", "quota", "tenant",
    "key", "value", "hash", "entry", "store", "redis", "reply", "client",
    "server", "route", "path", "method", "status", "error", "retry",
    "fast", "slow", "simple", "quiet", "steady", "bright", "small",
    "large", "first", "last", "next", "every", "some", "many", "each"
};

#define SIM_VOCABULARY_N                                                      \
    (sizeof(sim_vocabulary) / sizeof(sim_vocabulary[0]))


uint64_t
sim_fnv1a64(uint64_t hash, const void *data, size_t len)
{
    const unsigned char  *p, *last;

    p = data;
    last = p + len;

    while (p < last) {
        hash ^= *p++;
        hash *= SIM_FNV1A64_PRIME;
    }

    return hash;
}


uint64_t
sim_model_hash(const char *model, const char *prompt, size_t prompt_len,
    unsigned max_tokens)
{
    uint64_t       hash;
    unsigned char  sep, n[4];

    /*
     * A NUL separates the fields so that ("ab", "c") and ("a", "bc") hash
     * apart; max_tokens goes in as fixed little-endian bytes so the hash
     * does not depend on the host's byte order.
     */
    sep = '\0';
    n[0] = max_tokens & 0xff;
    n[1] = (max_tokens >> 8) & 0xff;
    n[2] = (max_tokens >> 16) & 0xff;
    n[3] = (max_tokens >> 24) & 0xff;

    hash = sim_fnv1a64(SIM_FNV1A64_INIT, model, strlen(model));
    hash = sim_fnv1a64(hash, &sep, 1);
    hash = sim_fnv1a64(hash, prompt, prompt_len);
    hash = sim_fnv1a64(hash, &sep, 1);
    hash = sim_fnv1a64(hash, n, sizeof(n));

    return hash;
}


/*
 * splitmix64: tiny, fast and statistically fine for picking words and
 * jitter; it is seeded from the request hash for text, so it must never
 * be shared with the jitter generator.
 */
void
sim_rng_seed(sim_rng_t *rng, uint64_t seed)
{
    rng->state = seed;
}


uint64_t
sim_rng_next(sim_rng_t *rng)
{
    uint64_t  z;

    rng->state += 0x9e3779b97f4a7c15ULL;

    z = rng->state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


double
sim_rng_uniform(sim_rng_t *rng)
{
    /* 53 random bits: uniform in [0, 1) */
    return (sim_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}


const char *
sim_model_word(sim_rng_t *rng, size_t *len)
{
    const char  *word;

    word = sim_vocabulary[sim_rng_next(rng) % SIM_VOCABULARY_N];
    *len = strlen(word);

    return word;
}


char *
sim_model_generate(uint64_t hash, unsigned tokens, size_t *len)
{
    char        *out, *p;
    size_t       n, size;
    unsigned     i;
    sim_rng_t    rng;
    const char  *word;

    /* the longest word plus a space, per token, plus the NUL */
    size = (size_t) tokens * 16 + 1;

    out = malloc(size);
    if (out == NULL) {
        return NULL;
    }

    sim_rng_seed(&rng, hash);
    p = out;

    for (i = 0; i < tokens; i++) {
        word = sim_model_word(&rng, &n);

        if (i > 0) {
            *p++ = ' ';
        }

        memcpy(p, word, n);
        p += n;
    }

    *p = '\0';
    *len = p - out;

    return out;
}


unsigned
sim_model_count_tokens(const char *text, size_t len)
{
    int          in_word;
    unsigned     n;
    const char  *p, *last;

    n = 0;
    in_word = 0;
    last = text + len;

    for (p = text; p < last; p++) {
        switch (*p) {
        case ' ':
        case '\t':
        case '\n':
        case '\r':
        case '\f':
        case '\v':
            in_word = 0;
            break;

        default:
            if (!in_word) {
                n++;
                in_word = 1;
            }
        }
    }

    /* a prompt of only blanks still costs the model one token */
    if (n == 0 && len > 0) {
        n = 1;
    }

    return n;
}
