/*
 * ai-sim: continuous batching's admission, as a FIFO queue in front of a
 * fixed number of decode slots (--slots).
 *
 * Pure code with no libevent include: the caller embeds a link in each
 * request, enters it when the request arrives, starts it when it is
 * RUNNING, and leaves when the request ends however it ends (answered,
 * cut, client gone); after a leave, sim_slots_next() hands out the
 * requests that may start now, oldest first.
 *
 * With a token limit (--kv-cache-tokens) a sequence also needs room in
 * the KV cache: the caller sets link->tokens (its prompt plus the tokens
 * it may generate) before it enters, and it starts only while the running
 * sequences' tokens plus its own fit in the limit, or when nothing runs
 * (a sequence larger than the cache runs alone).  The queue stays FIFO:
 * a small sequence behind a large one waits for it.
 */

#ifndef _SIM_SLOTS_H_INCLUDED_
#define _SIM_SLOTS_H_INCLUDED_


#include <stdint.h>


#define SIM_SLOTS_MAX        1000000U

#define SIM_SLOT_IDLE        0           /* not entered, or left */
#define SIM_SLOT_WAITING     1
#define SIM_SLOT_RUNNING     2


typedef struct sim_slot_link_s  sim_slot_link_t;

struct sim_slot_link_s {
    sim_slot_link_t          *prev;
    sim_slot_link_t          *next;
    unsigned                  state;     /* SIM_SLOT_* */
    uint64_t                  tokens;    /* KV tokens it reserves */
};


typedef struct {
    unsigned                  limit;     /* 0: no limit, nothing waits */
    uint64_t                  token_limit;   /* 0: tokens do not count */
    uint64_t                  tokens;    /* reserved by running links */
    unsigned                  running;
    unsigned                  waiting;
    sim_slot_link_t           queue;     /* sentinel; next is the oldest */
} sim_slots_t;


void sim_slots_init(sim_slots_t *s, unsigned limit);
void sim_slots_set_token_limit(sim_slots_t *s, uint64_t tokens);

/* SIM_SLOT_RUNNING: start it now; SIM_SLOT_WAITING: it was queued */
unsigned sim_slots_enter(sim_slots_t *s, sim_slot_link_t *l);

/* from any state; a running link frees its slot, a waiting one its place */
void sim_slots_leave(sim_slots_t *s, sim_slot_link_t *l);

/* the oldest waiting link, now RUNNING, if a slot is free; else NULL */
sim_slot_link_t *sim_slots_next(sim_slots_t *s);


#endif /* _SIM_SLOTS_H_INCLUDED_ */
