
/*
 * libFuzzer target for the metrics' pure side: any bytes as a label value
 * (shown by name only if agw_metrics_label_ok() says so: then escaping
 * leaves no bare quote or backslash and undoes exactly), as an API path
 * (an operation name always), and as bucket counts (every quantile within
 * 0 and the last boundary, never decreasing with q, NaN-free).
 */


#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agw_metrics.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
fuzz_label(const uint8_t *data, size_t size)
{
    size_t   n, i, k;
    uint8_t  out[2 * 512];

    if (size > 512) {
        size = 512;
    }

    n = agw_metrics_escape(NULL, data, size);

    if (n < size || n > 2 * size
        || agw_metrics_escape(out, data, size) != n)
    {
        abort();
    }

    /* unescaped back, byte for byte; no quote without its backslash */

    for (i = 0, k = 0; i < n; i++, k++) {
        if (out[i] == '\\') {
            i++;
            if (i == n || (out[i] != '\\' && out[i] != '"')) {
                abort();
            }

        } else if (out[i] == '"') {
            abort();
        }

        if (k >= size || out[i] != data[k]) {
            abort();
        }
    }

    if (k != size) {
        abort();
    }

    if (agw_metrics_label_ok(data, size)) {
        if (size == 0 || size > AGW_METRICS_LABEL_MAX) {
            abort();
        }

        for (i = 0; i < size; i++) {
            if (data[i] < 0x20 || data[i] == 0x7f) {
                abort();
            }
        }
    }
}


static void
fuzz_quantiles(const uint8_t *data, size_t size)
{
    size_t                       i;
    double                       q, v, last;
    uint64_t                     count[17];
    const agw_metrics_bounds_t  *b;

    static const agw_metrics_bounds_t  *bounds[4] = {
        &agw_metrics_ttft, &agw_metrics_tpot, &agw_metrics_duration,
        &agw_metrics_tokens
    };

    if (size < 1) {
        return;
    }

    b = bounds[data[0] % 4];
    data++;
    size--;

    memset(count, 0, sizeof(count));

    for (i = 0; i <= b->n && i * 4 + 4 <= size; i++) {
        count[i] = (uint64_t) data[i * 4] | (uint64_t) data[i * 4 + 1] << 8
                   | (uint64_t) data[i * 4 + 2] << 16
                   | (uint64_t) data[i * 4 + 3] << 24;
    }

    if (agw_metrics_bucket(b, count[0]) > b->n) {
        abort();
    }

    last = -1;

    for (q = 0; q <= 1.0; q += 0.0625) {
        v = agw_metrics_quantile(b, count, q);

        if (isnan(v) || v > (double) b->bound[b->n - 1]) {
            abort();
        }

        if (v < 0) {
            /* nothing counted: no estimate, whatever q */
            for (i = 0; i <= b->n; i++) {
                if (count[i]) {
                    abort();
                }
            }

            return;
        }

        if (v < last) {
            abort();
        }

        last = v;
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char  *op;

    fuzz_label(data, size);

    op = agw_metrics_operation_name(agw_metrics_operation(data, size));
    if (op == NULL || op[0] == '\0') {
        abort();
    }

    fuzz_quantiles(data, size);

    return 0;
}
