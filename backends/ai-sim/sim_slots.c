/*
 * ai-sim: the decode slots and their FIFO queue.
 *
 * The queue is an intrusive doubly linked list, so that a client who
 * leaves while queued gives its place back in O(1), whatever its
 * position; thousands may wait.
 */

#include <stddef.h>

#include "sim_slots.h"


void
sim_slots_init(sim_slots_t *s, unsigned limit)
{
    s->limit = limit;
    s->token_limit = 0;
    s->tokens = 0;
    s->running = 0;
    s->waiting = 0;
    s->queue.prev = &s->queue;
    s->queue.next = &s->queue;
    s->queue.state = SIM_SLOT_IDLE;
}


void
sim_slots_set_token_limit(sim_slots_t *s, uint64_t tokens)
{
    s->token_limit = tokens;
}


/* may l start now: a slot is free and its tokens fit */
static int
sim_slots_free(sim_slots_t *s, sim_slot_link_t *l)
{
    if (s->limit != 0 && s->running >= s->limit) {
        return 0;
    }

    return s->token_limit == 0
           || s->running == 0
           || s->tokens + l->tokens <= s->token_limit;
}


static void
sim_slots_run(sim_slots_t *s, sim_slot_link_t *l)
{
    l->state = SIM_SLOT_RUNNING;
    s->running++;
    s->tokens += l->tokens;
}


unsigned
sim_slots_enter(sim_slots_t *s, sim_slot_link_t *l)
{
    /*
     * A free slot goes to the queue's head first: a newcomer never
     * overtakes a request that waits (first come, first served).
     */
    if (s->waiting == 0 && sim_slots_free(s, l)) {
        l->prev = NULL;
        l->next = NULL;
        sim_slots_run(s, l);
        return SIM_SLOT_RUNNING;
    }

    l->next = &s->queue;
    l->prev = s->queue.prev;
    s->queue.prev->next = l;
    s->queue.prev = l;
    l->state = SIM_SLOT_WAITING;
    s->waiting++;

    return SIM_SLOT_WAITING;
}


static void
sim_slots_unlink(sim_slots_t *s, sim_slot_link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = NULL;
    l->next = NULL;
    s->waiting--;
}


void
sim_slots_leave(sim_slots_t *s, sim_slot_link_t *l)
{
    switch (l->state) {

    case SIM_SLOT_WAITING:
        sim_slots_unlink(s, l);
        break;

    case SIM_SLOT_RUNNING:
        s->running--;
        s->tokens -= l->tokens;
        break;

    default:
        return;
    }

    l->state = SIM_SLOT_IDLE;
}


sim_slot_link_t *
sim_slots_next(sim_slots_t *s)
{
    sim_slot_link_t  *l;

    if (s->waiting == 0 || !sim_slots_free(s, s->queue.next)) {
        return NULL;
    }

    l = s->queue.next;

    sim_slots_unlink(s, l);
    sim_slots_run(s, l);

    return l;
}
