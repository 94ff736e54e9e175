/* bitedge-run serve: slots, and the forward steps they ask for, run one at a time on the shared thread pool with
 * the decode steps of all decoding slots batched (continuous batching; see server.h and docs/serve.md). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <time.h>

#include "server.h"

/* ----------------------------------------------------------------------------------------------------------
 * slots */

serve_slot *serve_acquire_slot(serve_conn *c, int *status) {
    serve_ctx *s = c->s;
    pthread_mutex_lock(&s->mutex);
    if (s->n_busy == s->n_slots && s->n_waiting >= s->queue) {
        s->n_rejected++;
        pthread_mutex_unlock(&s->mutex);
        *status = 503;
        return NULL;
    }
    s->n_waiting++;
    while (s->n_busy == s->n_slots) {
        /* wake up now and then to notice a waiting client that gave up */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&s->slot_freed, &s->mutex, &ts);
        if (s->n_busy == s->n_slots && http_peer_closed(c->fd)) {
            s->n_waiting--;
            s->n_cancelled++;
            pthread_mutex_unlock(&s->mutex);
            *status = 0;
            return NULL;
        }
    }
    s->n_waiting--;
    serve_slot *slot = NULL;
    for (int i = 0; i < s->n_slots && !slot; i++)
        if (!s->slots[i].busy) slot = &s->slots[i];
    slot->busy = 1;
    s->n_busy++;
    pthread_mutex_unlock(&s->mutex);
    return slot;
}

void serve_release_slot(serve_ctx *s, serve_slot *slot, int cancelled) {
    pthread_mutex_lock(&s->mutex);
    slot->busy = 0;
    slot->decoding = slot->late = 0;
    s->n_busy--;
    if (cancelled) s->n_cancelled++;
    else s->n_completed++;
    pthread_cond_broadcast(&s->slot_freed);
    pthread_cond_broadcast(&s->step);  /* a gathering batch need not wait for this slot */
    pthread_mutex_unlock(&s->mutex);
}

/* ----------------------------------------------------------------------------------------------------------
 * steps */

/* How many decoding slots have asked for their next token, and how many are decoding and not late. */
static void count_decoders(const serve_ctx *s, int *asked, int *expected) {
    *asked = *expected = 0;
    for (int i = 0; i < s->n_slots; i++) {
        const serve_slot *sl = &s->slots[i];
        *asked += sl->want == SERVE_DECODE;
        *expected += sl->busy && sl->decoding && (sl->want == SERVE_DECODE || !sl->late);
    }
}

/* Runs the oldest asked-for step (mutex held on entry and exit, released during the forward pass): a prompt chunk
 * alone, or a decode step together with every other pending one, oldest first, up to decode_batch. */
static void run_step(serve_ctx *s) {
    serve_slot *first = NULL;
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].want && (!first || s->slots[i].ticket < first->ticket)) first = &s->slots[i];
    s->running = 1;
    if (first->want == SERVE_PREFILL) {
        pthread_mutex_unlock(&s->mutex);
        be_runtime rt = {&s->model, s->kernels, s->pool, &first->state, NULL};
        be_forward(&rt, first->tokens, first->n_tokens, first->pos, 0);
        pthread_mutex_lock(&s->mutex);
        first->want = SERVE_NO_STEP;
        s->n_prefill_chunks++;
    } else {
        /* gather: the slots that are decoding may still be sampling their last token; wait a little for them */
        int asked, expected;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += SERVE_GATHER_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        count_decoders(s, &asked, &expected);
        while (asked < s->decode_batch && asked < expected &&
               pthread_cond_timedwait(&s->step, &s->mutex, &until) == 0)
            count_decoders(s, &asked, &expected);
        serve_slot *batch[256];
        int32_t tokens[256];
        int positions[256], nb = 0;
        be_state *states[256];
        while (nb < s->decode_batch) {  /* oldest first */
            serve_slot *next = NULL;
            for (int i = 0; i < s->n_slots; i++) {
                serve_slot *sl = &s->slots[i];
                if (sl->want == SERVE_DECODE && (!next || sl->ticket < next->ticket)) {
                    int taken = 0;
                    for (int j = 0; j < nb && !taken; j++) taken = batch[j] == sl;
                    if (!taken) next = sl;
                }
            }
            if (!next) break;
            batch[nb] = next;
            tokens[nb] = next->tokens[0];
            positions[nb] = next->pos;
            states[nb] = &next->state;
            nb++;
        }
        for (int i = 0; i < s->n_slots; i++)  /* who did not make it this time is not waited for next time */
            s->slots[i].late = s->slots[i].decoding && s->slots[i].want != SERVE_DECODE;
        pthread_mutex_unlock(&s->mutex);
        if (nb == 1) {
            be_runtime rt = {&s->model, s->kernels, s->pool, states[0], NULL};
            be_forward(&rt, tokens, 1, positions[0], 0);
        } else {
            be_runtime rt = {&s->model, s->kernels, s->pool, &s->batch_state, NULL};
            be_forward_seqs(&rt, nb, tokens, positions, states);
        }
        pthread_mutex_lock(&s->mutex);
        for (int j = 0; j < nb; j++) batch[j]->want = SERVE_NO_STEP;
        s->n_decode_steps++;
        s->n_decoded += (unsigned long)nb;
        if ((unsigned long)nb > s->largest_batch) s->largest_batch = (unsigned long)nb;
    }
    s->running = 0;
    pthread_cond_broadcast(&s->step);
}

static void ask_step(serve_ctx *s, serve_slot *slot, int kind, const int32_t *tokens, int n, int pos) {
    pthread_mutex_lock(&s->mutex);
    slot->want = kind;
    slot->tokens = tokens;
    slot->n_tokens = n;
    slot->pos = pos;
    slot->ticket = s->next_ticket++;
    if (kind == SERVE_DECODE) slot->decoding = 1, slot->late = 0;
    pthread_cond_broadcast(&s->step);  /* a gathering batch may be waiting for this one */
    while (slot->want) {
        if (!s->running) run_step(s);  /* the pool is idle: run the oldest request (perhaps another slot's) */
        else pthread_cond_wait(&s->step, &s->mutex);
    }
    pthread_mutex_unlock(&s->mutex);
}

void serve_prefill(serve_ctx *s, serve_slot *slot, const int32_t *tokens, int n, int pos0) {
    ask_step(s, slot, SERVE_PREFILL, tokens, n, pos0);
}

void serve_decode(serve_ctx *s, serve_slot *slot, const int32_t *token, int pos) {
    ask_step(s, slot, SERVE_DECODE, token, 1, pos);
}
