
/*
 * The pure side of the gateway's metrics (SPEC 8.3): the OpenTelemetry
 * GenAI conventions' histograms (their bucket boundaries, and which
 * operation an API path is), a histogram's bucket of a value, quantiles
 * estimated from bucket counts, and label values: which ones may be shown
 * by name, and how they are escaped.  See agw_metrics.c.
 */


#ifndef _AGW_METRICS_H_INCLUDED_
#define _AGW_METRICS_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/*
 * A histogram's fixed buckets.  Observations are integers in the
 * histogram's own unit (microseconds for times, tokens for token counts);
 * the exposition shows them divided by scale (seconds: 1000000).
 */
typedef struct {
    size_t              n;               /* finite boundaries */
    const uint64_t     *bound;           /* ascending, in the unit */
    const char *const  *le;              /* each as le="..." shows it */
    uint64_t            scale;           /* units in the exposed unit */
} agw_metrics_bounds_t;


/* the conventions' ExplicitBucketBoundaries */
extern const agw_metrics_bounds_t  agw_metrics_ttft;     /* time to first
                                                            token, us */
extern const agw_metrics_bounds_t  agw_metrics_tpot;     /* time per output
                                                            token, us */
extern const agw_metrics_bounds_t  agw_metrics_duration; /* request, us */
extern const agw_metrics_bounds_t  agw_metrics_tokens;   /* token usage */


/* the bucket of v: the first i with v <= bound[i], else n (+Inf) */
size_t agw_metrics_bucket(const agw_metrics_bounds_t *b, uint64_t v);

/*
 * The q-quantile (0 <= q <= 1), in the histogram's unit, of the
 * observations counted in count[0..n] (count[i]: observations in bucket
 * i, not cumulative; count[n]: above the last boundary), as Prometheus's
 * histogram_quantile() estimates it: linearly within the bucket that holds
 * the rank, from 0 for the first bucket; a rank in the +Inf bucket is the
 * last boundary.  -1 if nothing was counted.
 */
double agw_metrics_quantile(const agw_metrics_bounds_t *b,
    const uint64_t *count, double q);


/* the conventions' gen_ai.operation.name values the gateway tells apart */
enum {
    AGW_METRICS_OP_CHAT = 0,
    AGW_METRICS_OP_TEXT_COMPLETION,
    AGW_METRICS_OP_EMBEDDINGS,
    AGW_METRICS_OP_GENERATE_CONTENT,
    AGW_METRICS_OP_OTHER,
    AGW_METRICS_OPS
};

/* the operation an API path names (see agw_metrics.c) */
unsigned agw_metrics_operation(const uint8_t *path, size_t len);

/* "chat", "text_completion", ... */
const char *agw_metrics_operation_name(unsigned op);


/* the longest label value shown by name */
#define AGW_METRICS_LABEL_MAX  128

/*
 * 1 if a label value from a client may be shown as it is: 1 to
 * AGW_METRICS_LABEL_MAX bytes of UTF-8 (RFC 3629) without control
 * characters; 0 if it must be counted under another name
 */
int agw_metrics_label_ok(const uint8_t *s, size_t len);

/*
 * a label value (agw_metrics_label_ok()) escaped for the inside of a
 * Prometheus label value's or a JSON string's quotes: '\' and '"' get a
 * backslash, which both formats read alike; returns the length written
 * (at most 2 * len), or with out NULL, the length it would be
 */
size_t agw_metrics_escape(uint8_t *out, const uint8_t *s, size_t len);


#endif /* _AGW_METRICS_H_INCLUDED_ */
