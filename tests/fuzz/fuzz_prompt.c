
/*
 * libFuzzer target for the prompt prefix reader (lib/agw_prompt.c):
 * bounded input, then properties rather than a crash check alone:
 *
 *   - the reader never reads outside the input nor writes past the
 *     buffer's size (ASan: both are allocated to their exact sizes);
 *   - it writes at most cap bytes, and none unless it found a prompt;
 *   - a smaller buffer gets the start of what a larger one gets;
 *   - whatever the strict scanner accepts as JSON, the reader walks: a
 *     valid request is never INVALID (its looser walk accepts all JSON);
 *   - it returns what its first, byte at a time, implementation returns
 *     (tests/ref/agw_prompt_ref.c): the same code, length and bytes.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agw_json_scan.h"
#include "agw_prompt.h"
#include "../ref/agw_prompt_ref.c"


#define FUZZ_MAX_SIZE  (64 * 1024)       /* bytes */
#define FUZZ_MAX_CAP   4096              /* bytes of prefix */


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                  rc, rc2, ref_rc;
    size_t               cap, small, n, n2, ref_n;
    uint8_t             *in, *out, *out2, *ref;
    agw_json_request_t   req;

    if (size < 2 || size > FUZZ_MAX_SIZE) {
        return 0;
    }

    cap = ((size_t) data[0] << 8 | data[1]) % (FUZZ_MAX_CAP + 1);
    data += 2;
    size -= 2;

    in = malloc(size ? size : 1);
    out = malloc(cap ? cap : 1);
    out2 = malloc(cap ? cap : 1);
    ref = malloc(cap ? cap : 1);

    if (in == NULL || out == NULL || out2 == NULL || ref == NULL) {
        goto done;
    }

    memcpy(in, data, size);

    rc = agw_prompt_prefix(in, size, out, cap, &n);

    if (n > cap || (rc != AGW_PROMPT_FOUND && n != 0)) {
        abort();
    }

    if (rc != AGW_PROMPT_FOUND && rc != AGW_PROMPT_NONE
        && rc != AGW_PROMPT_INVALID)
    {
        abort();
    }

    /* the reference reader: the same answer */

    ref_rc = agw_prompt_ref_prefix(in, size, ref, cap, &ref_n);

    if (rc != ref_rc || n != ref_n || memcmp(out, ref, n) != 0) {
        abort();
    }

    /* a smaller buffer: the start of the same text */

    small = cap / 2;
    rc2 = agw_prompt_prefix(in, size, out2, small, &n2);
    ref_rc = agw_prompt_ref_prefix(in, size, ref, small, &ref_n);

    if (rc2 != ref_rc || n2 != ref_n || memcmp(out2, ref, n2) != 0) {
        abort();
    }

    if (rc == AGW_PROMPT_FOUND) {
        if (rc2 != AGW_PROMPT_FOUND || n2 != (n < small ? n : small)
            || memcmp(out, out2, n2) != 0)
        {
            abort();
        }
    }

    /* valid JSON with an object at the top is walked, whatever it holds */

    if (agw_json_scan_request(in, size, &req) == 0 && req.valid) {
        n = 0;

        while (n < size && (in[n] == ' ' || in[n] == '\t' || in[n] == '\r'
                            || in[n] == '\n'))
        {
            n++;
        }

        if (n < size && in[n] == '{' && rc == AGW_PROMPT_INVALID) {
            abort();
        }
    }

done:

    free(in);
    free(out);
    free(out2);
    free(ref);

    return 0;
}
