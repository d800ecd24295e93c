
/*
 * The pure side of the gateway's metrics.
 *
 * Bucket boundaries are the OpenTelemetry GenAI semantic conventions'
 * ExplicitBucketBoundaries ("Semantic conventions for generative AI
 * metrics", model server metrics and gen_ai.client.token.usage), kept as
 * integers of the unit the gateway measures in: microseconds for times
 * (nginx's clock has milliseconds; a time per output token is a quotient
 * and has less), tokens for token counts.  The le="..." text of each is
 * written as the conventions write the boundary.
 *
 * Quantiles are estimated as Prometheus's histogram_quantile() does
 * (promql/quantile.go, bucketQuantile): the rank q * count falls in the
 * first bucket whose cumulative count reaches it, and the value is
 * interpolated linearly between that bucket's lower and upper boundary
 * (0 for the first bucket), as if its observations were spread evenly;
 * a rank in the +Inf bucket gives the last finite boundary.  So /cachez's
 * p99 is what a Grafana panel over the same buckets would draw.
 *
 * The operation (gen_ai.operation.name) is read from the end of the path,
 * whatever prefix a location adds, as the conventions list the values:
 *
 *     .../chat/completions          chat              (OpenAI Chat)
 *     .../responses                 chat              (OpenAI Responses)
 *     .../messages                  chat              (Anthropic Messages)
 *     .../completions               text_completion   (OpenAI, legacy)
 *     .../embeddings                embeddings
 *     ...:generateContent,
 *     ...:streamGenerateContent     generate_content  (Gemini)
 *     anything else                 other
 *
 * A label value comes from a client (the model a body names): it is shown
 * by name only if it is short UTF-8 without control characters, so that
 * the exposition and the JSON stay valid whatever was sent, and then only
 * '\' and '"' need escaping, the same way in both formats.
 */


#include <string.h>

#include "agw_json.h"
#include "agw_metrics.h"


#define nitems(a)  (sizeof(a) / sizeof((a)[0]))


static const uint64_t  agw_metrics_ttft_bound[] = {
    1000, 5000, 10000, 20000, 40000, 60000, 80000, 100000, 250000, 500000,
    750000, 1000000, 2500000, 5000000, 7500000, 10000000
};

static const char *const  agw_metrics_ttft_le[] = {
    "0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1",
    "0.25", "0.5", "0.75", "1.0", "2.5", "5.0", "7.5", "10.0"
};

static const uint64_t  agw_metrics_tpot_bound[] = {
    10000, 25000, 50000, 75000, 100000, 150000, 200000, 300000, 400000,
    500000, 750000, 1000000, 2500000
};

static const char *const  agw_metrics_tpot_le[] = {
    "0.01", "0.025", "0.05", "0.075", "0.1", "0.15", "0.2", "0.3", "0.4",
    "0.5", "0.75", "1.0", "2.5"
};

static const uint64_t  agw_metrics_duration_bound[] = {
    10000, 20000, 40000, 80000, 160000, 320000, 640000, 1280000, 2560000,
    5120000, 10240000, 20480000, 40960000, 81920000
};

static const char *const  agw_metrics_duration_le[] = {
    "0.01", "0.02", "0.04", "0.08", "0.16", "0.32", "0.64", "1.28", "2.56",
    "5.12", "10.24", "20.48", "40.96", "81.92"
};

static const uint64_t  agw_metrics_tokens_bound[] = {
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
    16777216, 67108864
};

static const char *const  agw_metrics_tokens_le[] = {
    "1", "4", "16", "64", "256", "1024", "4096", "16384", "65536", "262144",
    "1048576", "4194304", "16777216", "67108864"
};


#define agw_metrics_bounds(name, scale)                                       \
    const agw_metrics_bounds_t  agw_metrics_##name = {                        \
        nitems(agw_metrics_##name##_bound), agw_metrics_##name##_bound,       \
        agw_metrics_##name##_le, scale                                        \
    }

agw_metrics_bounds(ttft, 1000000);
agw_metrics_bounds(tpot, 1000000);
agw_metrics_bounds(duration, 1000000);
agw_metrics_bounds(tokens, 1);


static const char *const  agw_metrics_op_names[AGW_METRICS_OPS] = {
    "chat", "text_completion", "embeddings", "generate_content", "other"
};


typedef struct {
    const char  *suffix;
    unsigned     op;
} agw_metrics_path_t;


/* in order: the first suffix that ends the path names the operation */
static const agw_metrics_path_t  agw_metrics_paths[] = {
    { "/chat/completions", AGW_METRICS_OP_CHAT },
    { "/completions", AGW_METRICS_OP_TEXT_COMPLETION },
    { "/embeddings", AGW_METRICS_OP_EMBEDDINGS },
    { "/responses", AGW_METRICS_OP_CHAT },
    { "/messages", AGW_METRICS_OP_CHAT },
    { ":generateContent", AGW_METRICS_OP_GENERATE_CONTENT },
    { ":streamGenerateContent", AGW_METRICS_OP_GENERATE_CONTENT },
};


size_t
agw_metrics_bucket(const agw_metrics_bounds_t *b, uint64_t v)
{
    size_t  i;

    for (i = 0; i < b->n; i++) {
        if (v <= b->bound[i]) {
            break;
        }
    }

    return i;
}


double
agw_metrics_quantile(const agw_metrics_bounds_t *b, const uint64_t *count,
    double q)
{
    size_t    i;
    double    rank, start, in;
    uint64_t  total, below;

    total = 0;

    for (i = 0; i <= b->n; i++) {
        total += count[i];
    }

    if (total == 0) {
        return -1;
    }

    if (q < 0) {
        q = 0;

    } else if (q > 1) {
        q = 1;
    }

    rank = q * (double) total;
    below = 0;

    for (i = 0; i < b->n; i++) {
        if ((double) (below + count[i]) >= rank) {
            break;
        }

        below += count[i];
    }

    if (i == b->n) {
        return (double) b->bound[b->n - 1];
    }

    start = (i == 0) ? 0 : (double) b->bound[i - 1];
    in = (double) count[i];

    if (in == 0) {
        return start;                    /* q = 0 before any observation */
    }

    return start + ((double) b->bound[i] - start)
                   * ((rank - (double) below) / in);
}


unsigned
agw_metrics_operation(const uint8_t *path, size_t len)
{
    size_t  i, n;

    /* one trailing slash is the same path */

    if (len > 1 && path[len - 1] == '/') {
        len--;
    }

    for (i = 0; i < nitems(agw_metrics_paths); i++) {
        n = strlen(agw_metrics_paths[i].suffix);

        if (len >= n
            && memcmp(path + len - n, agw_metrics_paths[i].suffix, n) == 0)
        {
            return agw_metrics_paths[i].op;
        }
    }

    return AGW_METRICS_OP_OTHER;
}


const char *
agw_metrics_operation_name(unsigned op)
{
    return agw_metrics_op_names[op < AGW_METRICS_OPS ? op
                                                     : AGW_METRICS_OP_OTHER];
}


int
agw_metrics_label_ok(const uint8_t *s, size_t len)
{
    size_t          n;
    uint32_t        cp;
    const uint8_t  *end;

    if (len == 0 || len > AGW_METRICS_LABEL_MAX) {
        return 0;
    }

    for (end = s + len; s < end; s += n) {
        n = agw_json_utf8(s, end, &cp);

        if (n == 0 || cp < 0x20 || cp == 0x7f) {
            return 0;
        }
    }

    return 1;
}


size_t
agw_metrics_escape(uint8_t *out, const uint8_t *s, size_t len)
{
    size_t  i, k;

    for (i = 0, k = 0; i < len; i++) {
        if (s[i] == '\\' || s[i] == '"') {
            if (out) {
                out[k] = '\\';
            }

            k++;
        }

        if (out) {
            out[k] = s[i];
        }

        k++;
    }

    return k;
}
