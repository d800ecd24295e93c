
/*
 * libFuzzer target for the ORCA header parser (lib/agw_orca.c): bounded
 * input, then properties rather than a crash check alone:
 *
 *   - the parser never reads outside the value (ASan: the input is copied
 *     to a buffer of exactly its size, no NUL after it);
 *   - every figure is within its clamp, and a report names what it has;
 *   - the same input reads the same twice;
 *   - a report written from the input's bytes in ai-sim's form, with the
 *     input appended as another pair, reads back as written.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agw_orca.h"


#define FUZZ_MAX_SIZE  (AGW_ORCA_MAX_LEN + 64)    /* bytes */


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
fuzz_check(const agw_orca_report_t *rep, int rc)
{
    if (rep->running > AGW_ORCA_MAX_REQUESTS
        || rep->waiting > AGW_ORCA_MAX_REQUESTS
        || rep->kv_ppm > AGW_ORCA_PPM)
    {
        abort();
    }

    if (rc != (rep->has_running || rep->has_waiting || rep->has_kv)) {
        abort();
    }

    if ((!rep->has_running && rep->running)
        || (!rep->has_waiting && rep->waiting)
        || (!rep->has_kv && rep->kv_ppm))
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 rc, rc2, n;
    size_t              i;
    char                text[FUZZ_MAX_SIZE + 256];
    uint8_t            *copy;
    uint32_t            running, waiting, kv;
    agw_orca_report_t   rep, rep2;

    if (size > FUZZ_MAX_SIZE) {
        return 0;
    }

    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data, size);

    rc = agw_orca_parse(copy, size, &rep);
    fuzz_check(&rep, rc);

    rc2 = agw_orca_parse(copy, size, &rep2);

    if (rc2 != rc || memcmp(&rep, &rep2, sizeof(rep)) != 0) {
        abort();
    }

    /* a well-formed report, with the input after it as a last pair */

    if (size >= 6) {
        running = (data[0] | data[1] << 8) % (AGW_ORCA_MAX_REQUESTS + 1);
        waiting = (data[2] | data[3] << 8) % (AGW_ORCA_MAX_REQUESTS + 1);
        kv = (data[4] | data[5] << 8) % 1001 * 1000;

        n = snprintf(text, sizeof(text),
                     "TEXT named_metrics.num_requests_running=%u, "
                     "named_metrics.num_requests_waiting=%u, "
                     "named_metrics.kv_cache_usage_perc=%u.%06u, x=",
                     running, waiting, kv / AGW_ORCA_PPM, kv % AGW_ORCA_PPM);

        /* the appended bytes must not start a new pair of ours */
        for (i = 0; i < size && copy[i] != ','; i++) {
            /* void */
        }

        size = i;

        if (size > sizeof(text) - n - 1) {
            size = sizeof(text) - n - 1;
        }

        memcpy(text + n, copy, size);

        if (agw_orca_parse((uint8_t *) text, n + size, &rep) != 1
            || !rep.has_running || !rep.has_waiting || !rep.has_kv
            || rep.running != running || rep.waiting != waiting
            || rep.kv_ppm != kv)
        {
            /* a value over AGW_ORCA_MAX_LEN is refused whole: not ours */
            if (n + size <= AGW_ORCA_MAX_LEN) {
                abort();
            }
        }
    }

    free(copy);

    return 0;
}
