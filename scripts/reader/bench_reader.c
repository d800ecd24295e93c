
/*
 * What reading an answer's usage costs (scripts/bench_reader.py): feed
 * FILE to the usage reader (lib/agw_usage.c) REPS times, in 4 KB pieces
 * as nginx's buffers bring it, as JSON or as a stream (sse, with the
 * memo the module gives a stream's reader), and print
 * the usage it found.  Run under callgrind with REPS and with 0, the
 * difference over REPS is the instructions an answer costs.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agw_json_scan.h"
#include "agw_usage.h"


#define BENCH_PIECE  4096


int
main(int argc, char **argv)
{
    int                  reps, i;
    FILE                *f;
    size_t               n, at, len;
    unsigned             mode;
    agw_usage_t          usage;
    agw_usage_reader_t   u;
    agw_usage_memo_t     memo;
    agw_json_request_t   req;
    static uint8_t       buf[1 << 24];

    if (argc != 4) {
        fprintf(stderr, "usage: bench_reader json|sse|request FILE REPS\n");
        return 2;
    }

    mode = strcmp(argv[1], "sse") == 0 ? AGW_USAGE_SSE : AGW_USAGE_JSON;
    reps = atoi(argv[3]);

    f = fopen(argv[2], "rb");
    if (f == NULL) {
        perror(argv[2]);
        return 1;
    }

    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);

    /* a request body: what the module's request scan reads of it */

    if (strcmp(argv[1], "request") == 0) {
        for (i = 0; i < reps; i++) {
            memset(&req, 0, sizeof(agw_json_request_t));
            (void) agw_json_scan_request(buf, n, &req);
        }

        printf("valid %d model %.*s\n", (int) req.valid,
               (int) req.model_len, (const char *) req.model);

        return 0;
    }

    memset(&usage, 0, sizeof(agw_usage_t));

    for (i = 0; i < reps; i++) {
        agw_usage_reader_init(&u, mode);

        if (mode == AGW_USAGE_SSE) {
            agw_usage_reader_memo(&u, &memo);     /* as the module does */
        }

        for (at = 0; at < n; at += len) {
            len = n - at < BENCH_PIECE ? n - at : BENCH_PIECE;
            agw_usage_reader_feed(&u, buf + at, len);
        }

        (void) agw_usage_reader_usage(&u, &usage);
    }

    printf("input %llu output %llu\n", (unsigned long long) usage.input,
           (unsigned long long) usage.output);

    return 0;
}
