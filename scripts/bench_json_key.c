/*
 * Instructions per request of the cache key of a ~4 KiB chat body: SHA-256
 * of its bytes (ai_gateway_cache_key_json off) against its canonical form
 * alone and canonical form + SHA-256 of it (key_json on), N times each;
 * and the digests every request pays: SHA-256 of a 55-byte key (one
 * block, the usual key, agw_key.c) and of a 200-byte one, CRC-32 of the
 * 200-byte key (the shm entry's check).
 *
 *   L=ngx_ai_gateway_module/lib
 *   cc -O2 -g -I$L -o /tmp/bench_json_key scripts/bench_json_key.c \
 *       $L/agw_json*.c $L/agw_sha256.c $L/agw_key.c $L/agw_crc32.c \
 *       -lcrypto -lz
 *   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
 *       /tmp/bench_json_key
 *   callgrind_annotate --inclusive=yes --threshold=100 /tmp/cg.out \
 *       | grep 'bench_.*\['
 *
 * Divide each bench_* figure by N.  Valgrind's CPU has no SHA extensions,
 * so under callgrind SHA-256 runs without them; `/tmp/bench_json_key time`
 * prints nanoseconds per call on the real CPU instead (best of 20 runs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include "agw_json_canonical.h"
#include "agw_crc32.h"
#include "agw_sha256.h"
#include "agw_key.h"

#define N 100

static uint8_t body[8192];
static size_t  len;
static uint8_t key[200];
static uint32_t scratch[8192];
static agw_digest_t d;
static uint8_t digest[AGW_SHA256_DIGEST_LEN];
static volatile uint32_t crc;

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
__attribute__((noinline)) void bench_sha_key55(void) {
    for (int i = 0; i < N; i++) agw_sha256(key, 55, digest);
}
__attribute__((noinline)) void bench_sha_key200(void) {
    for (int i = 0; i < N; i++) agw_sha256(key, sizeof(key), digest);
}
__attribute__((noinline)) void bench_crc_key200(void) {
    for (int i = 0; i < N; i++) crc = agw_crc32(key, sizeof(key));
}

static double now_ns(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
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
    for (size_t i = 0; i < sizeof(key); i++) key[i] = (uint8_t) ("POSThttpsapi.example.com/v1/chat/completions"[i % 44]);
    fprintf(stderr, "body %zu bytes, %d turns\n", len, turn);

    /* the first call of each resolves its PLT entry: keep it out */
    agw_sha256(key, 1, digest); crc = agw_crc32(key, 1);

    if (argc > 1 && strcmp(argv[1], "time") == 0) {
        struct { const char *name; void (*f)(void); } b[] = {
            { "sha 4 KiB body", bench_sha }, { "canonical", bench_canon },
            { "canonical + sha", bench_canon_sha }, { "sha 55-byte key", bench_sha_key55 },
            { "sha 200-byte key", bench_sha_key200 }, { "crc32 200-byte key", bench_crc_key200 },
        };
        for (size_t k = 0; k < sizeof(b) / sizeof(b[0]); k++) {
            double best = 1e18;
            for (int r = 0; r < 20; r++) {
                double t0 = now_ns(); b[k].f(); double t = (now_ns() - t0) / N;
                if (t < best) best = t;
            }
            printf("%-20s %8.0f ns\n", b[k].name, best);
        }
        return 0;
    }

    bench_sha(); bench_canon(); bench_canon_sha();
    bench_sha_key55(); bench_sha_key200(); bench_crc_key200();
    return 0;
}
