/*
 * Instructions per request of the cache key of a ~4 KiB chat body: SHA-256
 * of its bytes (ai_gateway_cache_key_json off) against its canonical form
 * alone and canonical form + SHA-256 of it (key_json on), N times each.
 *
 *   L=ngx_ai_gateway_module/lib
 *   cc -O2 -g -I$L -o /tmp/bench_json_key scripts/bench_json_key.c \
 *       $L/agw_json*.c $L/agw_sha256.c $L/agw_key.c
 *   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
 *       /tmp/bench_json_key
 *   callgrind_annotate --inclusive=yes /tmp/cg.out | grep bench_
 *
 * Divide each bench_* figure by N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "agw_json_canonical.h"
#include "agw_sha256.h"
#include "agw_key.h"

#define N 100

static uint8_t body[8192];
static size_t  len;
static uint32_t scratch[8192];
static agw_digest_t d;

static int nop_write(void *c, const uint8_t *p, size_t n) { (void) c; (void) p; (void) n; return 0; }
static int sha_write(void *c, const uint8_t *p, size_t n) { agw_sha256_update(c, p, n); return 0; }

__attribute__((noinline)) void bench_sha(void) {
    for (int i = 0; i < N; i++) {
        agw_sha256_t s; agw_sha256_init(&s); agw_sha256_update(&s, body, len); agw_digest_final(&d, &s);
    }
}
__attribute__((noinline)) void bench_canon(void) {
    agw_json_str_t ign[] = { { (const uint8_t *) "user", 4 } };
    for (int i = 0; i < N; i++) {
        agw_json_request_t req;
        if (agw_json_canonical(body, len, ign, 1, scratch, (len / 16 + 16) * 12, nop_write, NULL, &req)) abort();
    }
}
__attribute__((noinline)) void bench_canon_sha(void) {
    agw_json_str_t ign[] = { { (const uint8_t *) "user", 4 } };
    for (int i = 0; i < N; i++) {
        agw_json_request_t req; agw_sha256_t s; agw_sha256_init(&s);
        if (agw_json_canonical(body, len, ign, 1, scratch, (len / 16 + 16) * 12, sha_write, &s, &req)) abort();
        agw_digest_final(&d, &s);
    }
}
int main(void) {
    char *p = (char *) body;
    p += sprintf(p, "{\"model\": \"sim-small\", \"temperature\": 0.7, \"max_tokens\": 256, \"user\": \"u-1234\", \"messages\": [");
    p += sprintf(p, "{\"role\": \"system\", \"content\": \"You are a helpful assistant. Answer briefly and cite sources.\"}");
    int turn = 0;
    while ((size_t) (p - (char *) body) < 4096 - 300) {
        p += sprintf(p, ", {\"role\": \"%s\", \"content\": \"Turn %d: the quick brown fox jumps over the lazy dog; "
                     "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\"}",
                     turn % 2 ? "assistant" : "user", turn);
        turn++;
    }
    p += sprintf(p, "], \"stream\": false}");
    len = p - (char *) body;
    fprintf(stderr, "body %zu bytes, %d turns\n", len, turn);
    bench_sha(); bench_canon(); bench_canon_sha();
    return 0;
}
