/*
 * agw-load: the request bodies.
 *
 * Either one fixed body (--body FILE) for every request, or a chat
 * completion built for request i from a small workload model:
 *
 *   --prompts distinct   a prompt of its own per request
 *   --prompts identical  --groups K prompts, request i asks prompt i mod K
 *                        (K = 1: all the same, which coalescing serves)
 *   --prompts prefix     --tenants T, each with a system prompt of
 *                        --prefix-tokens words, and a short user turn of
 *                        its own; the tenant uniform or Zipf(--zipf)
 *   --mix M:W,...        max_tokens drawn from classes by weight (the
 *                        class is kept per request for the report)
 *
 * Every draw for request i comes from a generator seeded with (--seed,
 * i), so the same request gets the same body whatever order requests
 * start in.  Words are three letters and a space: ai-sim counts a token
 * per word, and OpenAI's tokenizers average about four bytes a token.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"


static const char  load_consonants[] = "bcdfghjklmnprstvz";
static const char  load_vowels[] = "aeiou";


/* splitmix64: the seed of one request's generator */
static uint64_t
load_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;

    return x ^ (x >> 31);
}


/* xorshift64* */
uint64_t
load_rng_next(uint64_t *state)
{
    uint64_t  x;

    x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;

    return x * 0x2545f4914f6cdd1dULL;
}


double
load_rng_uniform(uint64_t *state)
{
    return (double) (load_rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}


/* n words of three letters, each followed by a space */
static void
load_words(char *d, unsigned n, uint64_t seed)
{
    unsigned  i;
    uint64_t  rng, r;

    rng = load_mix(seed) | 1;

    for (i = 0; i < n; i++) {
        r = load_rng_next(&rng);
        d[0] = load_consonants[r % (sizeof(load_consonants) - 1)];
        d[1] = load_vowels[(r >> 8) % (sizeof(load_vowels) - 1)];
        d[2] = load_consonants[(r >> 16) % (sizeof(load_consonants) - 1)];
        d[3] = ' ';
        d += 4;
    }
}


static int
load_body_read(load_conf_t *conf)
{
    long   len;
    FILE  *f;

    f = fopen(conf->body_file, "rb");
    if (f == NULL) {
        perror(conf->body_file);
        return -1;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        perror(conf->body_file);
        fclose(f);
        return -1;
    }

    conf->body = malloc((size_t) len + 1);

    if (conf->body == NULL
        || fread(conf->body, 1, (size_t) len, f) != (size_t) len)
    {
        fprintf(stderr, "agw-load: cannot read %s\n", conf->body_file);
        fclose(f);
        return -1;
    }

    conf->body_len = (size_t) len;
    fclose(f);

    return 0;
}


int
load_body_init(load_ctx_t *ctx)
{
    double        sum;
    unsigned      t, len;
    load_conf_t  *conf;

    conf = &ctx->conf;

    if (conf->body_file != NULL) {
        return load_body_read(conf);
    }

    if (conf->prompts != LOAD_PROMPTS_PREFIX) {
        return 0;
    }

    ctx->tenant_prompts = calloc(conf->tenants, sizeof(char *));
    ctx->tenant_cdf = calloc(conf->tenants, sizeof(double));

    if (ctx->tenant_prompts == NULL || ctx->tenant_cdf == NULL) {
        return -1;
    }

    /* "SALT tenant T: " and the words: the same for every request of T
     * (the salt is at most 32 bytes) */
    for (t = 0; t < conf->tenants; t++) {
        ctx->tenant_prompts[t] = malloc(conf->prefix_tokens * 4 + 64);
        if (ctx->tenant_prompts[t] == NULL) {
            return -1;
        }

        len = (unsigned) sprintf(ctx->tenant_prompts[t], "%s tenant %u: ",
                                 conf->salt, t);
        load_words(ctx->tenant_prompts[t] + len, conf->prefix_tokens,
                   conf->seed * 1000003 + t);
        /* the last word's space ends the string */
        ctx->tenant_prompts[t][len + conf->prefix_tokens * 4
                               - (conf->prefix_tokens ? 1 : 0)] = '\0';
    }

    /* rank k (from 1) weighs 1 / k^s; s = 0 is uniform */
    sum = 0;

    for (t = 0; t < conf->tenants; t++) {
        sum += 1.0 / pow((double) t + 1, conf->zipf);
        ctx->tenant_cdf[t] = sum;
    }

    for (t = 0; t < conf->tenants; t++) {
        ctx->tenant_cdf[t] /= sum;
    }

    return 0;
}


void
load_body_free(load_ctx_t *ctx)
{
    unsigned  t;

    if (ctx->tenant_prompts != NULL) {
        for (t = 0; t < ctx->conf.tenants; t++) {
            free(ctx->tenant_prompts[t]);
        }

        free(ctx->tenant_prompts);
    }

    free(ctx->tenant_cdf);
    free(ctx->conf.body);
}


static unsigned
load_pick(const double *cdf, unsigned n, double u)
{
    unsigned  lo, hi, mid;

    lo = 0;
    hi = n - 1;

    while (lo < hi) {
        mid = (lo + hi) / 2;

        if (u < cdf[mid]) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return lo;
}


int
load_body_make(load_ctx_t *ctx, load_rec_t *rec, uint64_t index,
    struct evbuffer *out)
{
    char          user[4 * 256 + 64];
    size_t        n;
    unsigned      k, max_tokens, words;
    uint64_t      rng, prompt;
    load_conf_t  *conf;

    conf = &ctx->conf;

    if (conf->body != NULL) {
        /* the same bytes for every request: no copy */
        return evbuffer_add_reference(out, conf->body, conf->body_len,
                                      NULL, NULL);
    }

    rng = load_mix(conf->seed ^ load_mix(index)) | 1;

    max_tokens = conf->max_tokens;

    if (conf->nclasses) {
        double  cdf[LOAD_MAX_CLASSES];

        for (k = 0; k < conf->nclasses; k++) {
            cdf[k] = conf->classes[k].cdf;
        }

        k = load_pick(cdf, conf->nclasses, load_rng_uniform(&rng));
        rec->klass = (uint8_t) k;
        max_tokens = conf->classes[k].max_tokens;
    }

    /* which prompt: identical ones share their number, and so their
     * words */
    prompt = index;

    if (conf->prompts == LOAD_PROMPTS_IDENTICAL) {
        prompt = index % conf->groups;
    }

    if (conf->prompts == LOAD_PROMPTS_PREFIX) {
        rec->tenant = (uint16_t) load_pick(ctx->tenant_cdf, conf->tenants,
                                           load_rng_uniform(&rng));
    }

    words = conf->user_tokens;
    n = (size_t) snprintf(user, sizeof(user), "%s %s %llu: ", conf->salt,
                          conf->prompts == LOAD_PROMPTS_IDENTICAL
                          ? "prompt" : "question",
                          (unsigned long long) prompt);
    load_words(user + n, words, conf->seed * 7919 + prompt);
    user[n + words * 4 - (words ? 1 : 0)] = '\0';

    if (evbuffer_add_printf(out, "{\"model\":\"%s\",\"stream\":%s,%s"
                            "\"max_tokens\":%u,\"messages\":[",
                            conf->model, conf->stream ? "true" : "false",
                            conf->usage ? "\"stream_options\":"
                                          "{\"include_usage\":true},"
                                        : "",
                            max_tokens) < 0)
    {
        return -1;
    }

    if (conf->prompts == LOAD_PROMPTS_PREFIX
        && evbuffer_add_printf(out, "{\"role\":\"system\",\"content\":\"%s\"},",
                               ctx->tenant_prompts[rec->tenant]) < 0)
    {
        return -1;
    }

    return (evbuffer_add_printf(out, "{\"role\":\"user\",\"content\":\"%s\"}]}",
                                user) < 0) ? -1 : 0;
}
