/*
 * ai-sim: a prefix cache in the manner of vLLM's automatic prefix caching
 * (--prefix-cache-tokens).
 *
 * A prompt's tokens are its text in 4-byte pieces, the gateway's estimate
 * (SPEC 7.1); 16 tokens make a block.  Each full block is known by a chain
 * hash that covers the block and, through the previous block's hash, all
 * the text before it, so block k of two prompts matches only when blocks
 * 0..k match.  The cache holds a fixed number of blocks; a block used by a
 * running sequence is pinned, the others wait in an LRU list and are
 * evicted least recently used first.
 *
 * A sequence's life: sim_prefix_seq_add() its text as it is read, then
 * sim_prefix_lookup() when it is scheduled (pins the cached blocks of its
 * prefix: prefill skips them), sim_prefix_commit() after its prefill (its
 * other blocks join the cache, pinned), sim_prefix_release() when it ends
 * (unpinned, most recently used).
 *
 * Pure code with no libevent include.
 */

#ifndef _SIM_PREFIX_H_INCLUDED_
#define _SIM_PREFIX_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define SIM_PREFIX_TOKEN_BYTES   4
#define SIM_PREFIX_BLOCK_TOKENS  16
#define SIM_PREFIX_BLOCK_BYTES   (SIM_PREFIX_TOKEN_BYTES                      \
                                  * SIM_PREFIX_BLOCK_TOKENS)
#define SIM_PREFIX_MAX_TOKENS    (16U * 1024 * 1024)


/* one prompt: its size and the chain hashes of its full blocks */
typedef struct {
    uint64_t                 *hashes;    /* NULL without a cache */
    size_t                    nblocks;
    size_t                    cap;
    uint64_t                  bytes;
    uint64_t                  cur;       /* hash of the block being read */
    unsigned                  fill;      /* its bytes so far */
    uint32_t                  hit;       /* blocks found at lookup */
    uint32_t                  pinned;    /* blocks 0..pinned-1 held */
    unsigned                  hashing:1;
} sim_prefix_seq_t;


typedef struct {
    uint64_t                  hash;
    uint32_t                  refs;      /* running sequences using it */
    uint32_t                  chain;     /* next in its hash bucket */
    uint32_t                  prev;      /* LRU neighbours, when refs == 0 */
    uint32_t                  next;
} sim_prefix_block_t;


typedef struct {
    sim_prefix_block_t       *blocks;    /* capacity of them */
    uint32_t                 *buckets;
    uint32_t                  mask;
    uint32_t                  capacity;  /* blocks; 0: no cache */
    uint32_t                  used;      /* blocks holding a hash */
    uint32_t                  pinned;    /* blocks with refs > 0 */
    uint32_t                  lru_head;  /* most recently used */
    uint32_t                  lru_tail;  /* evicted first */
    uint64_t                  query_tokens;
    uint64_t                  hit_tokens;
} sim_prefix_cache_t;


/* a cache of tokens / 16 blocks; 0 tokens: no cache; -1: out of memory */
int sim_prefix_cache_init(sim_prefix_cache_t *c, uint64_t tokens);
void sim_prefix_cache_free(sim_prefix_cache_t *c);

/* blocks in use, pinned or cached, as a share of the capacity: 0..1 */
double sim_prefix_usage(const sim_prefix_cache_t *c);

/* hashing 0: count the tokens only (no cache to look them up in) */
void sim_prefix_seq_init(sim_prefix_seq_t *seq, int hashing);
int sim_prefix_seq_add(sim_prefix_seq_t *seq, const void *data, size_t len);
uint64_t sim_prefix_seq_tokens(const sim_prefix_seq_t *seq);
void sim_prefix_seq_free(sim_prefix_seq_t *seq);

/* the prompt tokens found in the cache (a multiple of 16), pinned */
uint64_t sim_prefix_lookup(sim_prefix_cache_t *c, sim_prefix_seq_t *seq);
void sim_prefix_commit(sim_prefix_cache_t *c, sim_prefix_seq_t *seq);
void sim_prefix_release(sim_prefix_cache_t *c, sim_prefix_seq_t *seq);


#endif /* _SIM_PREFIX_H_INCLUDED_ */
