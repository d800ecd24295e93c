/*
 * ai-sim: the prefix cache; see sim_prefix.h for the model.
 *
 * The blocks live in one array allocated at start, indexed by uint32_t;
 * a hash table of bucket heads finds a block by its chain hash, and an
 * intrusive LRU list orders the blocks that no running sequence pins.
 * A block is never freed, only evicted and reused, so the cache costs
 * no allocation per request.
 */

#include <stdlib.h>
#include <string.h>

#include "sim_model.h"
#include "sim_prefix.h"


#define SIM_PREFIX_NONE      UINT32_MAX


/*
 * Block k's hash starts from block k-1's (0 for the first block), fed as
 * fixed little-endian bytes so that the hash does not depend on the
 * host's byte order.
 */
static uint64_t
sim_prefix_chain_start(uint64_t prev)
{
    int            i;
    unsigned char  b[8];

    for (i = 0; i < 8; i++) {
        b[i] = (unsigned char) (prev >> (8 * i));
    }

    return sim_fnv1a64(SIM_FNV1A64_INIT, b, sizeof(b));
}


/* FNV's low bits are weak; a bucket index gets splitmix64's finalizer */
static uint32_t
sim_prefix_bucket(const sim_prefix_cache_t *c, uint64_t hash)
{
    hash = (hash ^ (hash >> 30)) * 0xbf58476d1ce4e5b9ULL;
    hash = (hash ^ (hash >> 27)) * 0x94d049bb133111ebULL;
    hash ^= hash >> 31;

    return (uint32_t) hash & c->mask;
}


int
sim_prefix_cache_init(sim_prefix_cache_t *c, uint64_t tokens)
{
    uint32_t  n, i;

    memset(c, 0, sizeof(sim_prefix_cache_t));

    c->lru_head = SIM_PREFIX_NONE;
    c->lru_tail = SIM_PREFIX_NONE;

    if (tokens > SIM_PREFIX_MAX_TOKENS) {
        tokens = SIM_PREFIX_MAX_TOKENS;
    }

    c->capacity = (uint32_t) (tokens / SIM_PREFIX_BLOCK_TOKENS);

    if (c->capacity == 0) {
        return 0;
    }

    /* about one block a bucket */
    for (n = 1; n < c->capacity; n <<= 1) { /* void */ }

    c->blocks = calloc(c->capacity, sizeof(sim_prefix_block_t));
    c->buckets = malloc((size_t) n * sizeof(uint32_t));

    if (c->blocks == NULL || c->buckets == NULL) {
        sim_prefix_cache_free(c);
        return -1;
    }

    for (i = 0; i < n; i++) {
        c->buckets[i] = SIM_PREFIX_NONE;
    }

    c->mask = n - 1;

    return 0;
}


void
sim_prefix_cache_free(sim_prefix_cache_t *c)
{
    free(c->blocks);
    free(c->buckets);

    c->blocks = NULL;
    c->buckets = NULL;
    c->capacity = 0;
    c->used = 0;
    c->pinned = 0;
}


double
sim_prefix_usage(const sim_prefix_cache_t *c)
{
    if (c->capacity == 0) {
        return 0;
    }

    return (double) c->used / c->capacity;
}


/* sequences */


void
sim_prefix_seq_init(sim_prefix_seq_t *seq, int hashing)
{
    memset(seq, 0, sizeof(sim_prefix_seq_t));

    seq->hashing = hashing ? 1 : 0;
    seq->cur = sim_prefix_chain_start(0);
}


static int
sim_prefix_seq_push(sim_prefix_seq_t *seq, uint64_t hash)
{
    size_t     cap;
    uint64_t  *p;

    if (seq->nblocks == seq->cap) {
        cap = (seq->cap == 0) ? 16 : seq->cap * 2;

        p = realloc(seq->hashes, cap * sizeof(uint64_t));
        if (p == NULL) {
            return -1;
        }

        seq->hashes = p;
        seq->cap = cap;
    }

    seq->hashes[seq->nblocks++] = hash;

    return 0;
}


int
sim_prefix_seq_add(sim_prefix_seq_t *seq, const void *data, size_t len)
{
    size_t                n;
    const unsigned char  *p;

    seq->bytes += len;

    if (!seq->hashing) {
        return 0;
    }

    p = data;

    while (len > 0) {
        n = SIM_PREFIX_BLOCK_BYTES - seq->fill;

        if (n > len) {
            n = len;
        }

        seq->cur = sim_fnv1a64(seq->cur, p, n);
        seq->fill += n;
        p += n;
        len -= n;

        if (seq->fill == SIM_PREFIX_BLOCK_BYTES) {
            if (sim_prefix_seq_push(seq, seq->cur) != 0) {
                return -1;
            }

            seq->cur = sim_prefix_chain_start(seq->cur);
            seq->fill = 0;
        }
    }

    return 0;
}


uint64_t
sim_prefix_seq_tokens(const sim_prefix_seq_t *seq)
{
    return (seq->bytes + SIM_PREFIX_TOKEN_BYTES - 1) / SIM_PREFIX_TOKEN_BYTES;
}


void
sim_prefix_seq_free(sim_prefix_seq_t *seq)
{
    free(seq->hashes);

    seq->hashes = NULL;
    seq->nblocks = 0;
    seq->cap = 0;
}


/* the LRU list and the hash table */


static void
sim_prefix_lru_unlink(sim_prefix_cache_t *c, uint32_t i)
{
    sim_prefix_block_t  *b;

    b = &c->blocks[i];

    if (b->prev != SIM_PREFIX_NONE) {
        c->blocks[b->prev].next = b->next;

    } else {
        c->lru_head = b->next;
    }

    if (b->next != SIM_PREFIX_NONE) {
        c->blocks[b->next].prev = b->prev;

    } else {
        c->lru_tail = b->prev;
    }

    b->prev = SIM_PREFIX_NONE;
    b->next = SIM_PREFIX_NONE;
}


static void
sim_prefix_lru_push_head(sim_prefix_cache_t *c, uint32_t i)
{
    sim_prefix_block_t  *b;

    b = &c->blocks[i];

    b->prev = SIM_PREFIX_NONE;
    b->next = c->lru_head;

    if (c->lru_head != SIM_PREFIX_NONE) {
        c->blocks[c->lru_head].prev = i;

    } else {
        c->lru_tail = i;
    }

    c->lru_head = i;
}


static uint32_t
sim_prefix_find(const sim_prefix_cache_t *c, uint64_t hash)
{
    uint32_t  i;

    for (i = c->buckets[sim_prefix_bucket(c, hash)];
         i != SIM_PREFIX_NONE;
         i = c->blocks[i].chain)
    {
        if (c->blocks[i].hash == hash) {
            return i;
        }
    }

    return SIM_PREFIX_NONE;
}


static void
sim_prefix_unhash(sim_prefix_cache_t *c, uint32_t i)
{
    uint32_t  *p;

    for (p = &c->buckets[sim_prefix_bucket(c, c->blocks[i].hash)];
         *p != SIM_PREFIX_NONE;
         p = &c->blocks[*p].chain)
    {
        if (*p == i) {
            *p = c->blocks[i].chain;
            return;
        }
    }
}


static void
sim_prefix_pin(sim_prefix_cache_t *c, uint32_t i)
{
    if (c->blocks[i].refs++ == 0) {
        sim_prefix_lru_unlink(c, i);
        c->pinned++;
    }
}


/*
 * A block for a new hash: a never used one while there are, else the
 * least recently used unpinned one; none when running sequences pin the
 * whole cache.
 */
static uint32_t
sim_prefix_alloc(sim_prefix_cache_t *c, uint64_t hash)
{
    uint32_t             i, *bucket;
    sim_prefix_block_t  *b;

    if (c->used < c->capacity) {
        i = c->used++;

    } else if (c->lru_tail != SIM_PREFIX_NONE) {
        i = c->lru_tail;
        sim_prefix_lru_unlink(c, i);
        sim_prefix_unhash(c, i);

    } else {
        return SIM_PREFIX_NONE;
    }

    b = &c->blocks[i];
    bucket = &c->buckets[sim_prefix_bucket(c, hash)];

    b->hash = hash;
    b->refs = 1;
    b->prev = SIM_PREFIX_NONE;
    b->next = SIM_PREFIX_NONE;
    b->chain = *bucket;
    *bucket = i;
    c->pinned++;

    return i;
}


/* lookup, commit, release */


uint64_t
sim_prefix_lookup(sim_prefix_cache_t *c, sim_prefix_seq_t *seq)
{
    size_t    k, max;
    uint32_t  i;
    uint64_t  tokens;

    if (c->capacity == 0 || seq->hashes == NULL) {
        return 0;
    }

    tokens = sim_prefix_seq_tokens(seq);

    /*
     * As vLLM: the last prompt token is always computed, for its logits,
     * so a hit never covers it; a prompt of exactly 16 tokens never hits.
     */
    max = (tokens > 0) ? (size_t) ((tokens - 1) / SIM_PREFIX_BLOCK_TOKENS)
                       : 0;

    if (max > seq->nblocks) {
        max = seq->nblocks;
    }

    for (k = seq->pinned; k < max; k++) {
        i = sim_prefix_find(c, seq->hashes[k]);
        if (i == SIM_PREFIX_NONE) {
            break;
        }

        sim_prefix_pin(c, i);
    }

    seq->hit = (uint32_t) k;
    seq->pinned = (uint32_t) k;

    c->query_tokens += tokens;
    c->hit_tokens += (uint64_t) k * SIM_PREFIX_BLOCK_TOKENS;

    return (uint64_t) k * SIM_PREFIX_BLOCK_TOKENS;
}


void
sim_prefix_commit(sim_prefix_cache_t *c, sim_prefix_seq_t *seq)
{
    size_t    k;
    uint32_t  i;

    if (c->capacity == 0) {
        return;
    }

    for (k = seq->pinned; k < seq->nblocks; k++) {
        i = sim_prefix_find(c, seq->hashes[k]);

        if (i != SIM_PREFIX_NONE) {
            /* another sequence computed it meanwhile */
            sim_prefix_pin(c, i);
            continue;
        }

        /* a chain stops at its first block that does not fit */
        if (sim_prefix_alloc(c, seq->hashes[k]) == SIM_PREFIX_NONE) {
            break;
        }
    }

    seq->pinned = (uint32_t) k;
}


void
sim_prefix_release(sim_prefix_cache_t *c, sim_prefix_seq_t *seq)
{
    uint32_t             i, k;
    sim_prefix_block_t  *b;

    /*
     * Tail first, so that the chain's first block ends up the most
     * recently used and is evicted last: an eviction then cuts chains
     * from their ends, as vLLM's free block queue does.
     */
    for (k = seq->pinned; k-- > 0; /* void */) {
        i = sim_prefix_find(c, seq->hashes[k]);
        if (i == SIM_PREFIX_NONE) {
            continue;
        }

        b = &c->blocks[i];

        if (b->refs > 0 && --b->refs == 0) {
            sim_prefix_lru_push_head(c, i);
            c->pinned--;
        }
    }

    seq->pinned = 0;
}
