/*
 * The metrics as /cachez shows them (SPEC 8.3).
 *
 * Prometheus: the conventions' histograms with their names in Prometheus
 * form (dots to underscores, the unit as a suffix), one line a bucket
 * (cumulative, le ascending, then +Inf), _sum and _count, every family
 * with its # HELP and # TYPE; a series' histogram that has counted
 * nothing yet (a JSON answer's time per output token) is left out.
 *
 * JSON: "models" and "servers", each figure summed over the other labels;
 * ttft_ms p50/p90/p99 estimated from the summed buckets as Prometheus's
 * histogram_quantile() does (lib/agw_metrics.c), null before the first
 * observation.  Requests naming no model are in "servers" (and in the
 * Prometheus series, with an empty gen_ai_request_model) but not in
 * "models".
 *
 * A view is taken once per /cachez request: the series that exist then
 * (a set's list of series only ever grows at its head, so the list from
 * the head seen then is fixed), for the buffer to be sized exactly; the
 * counters themselves are read as they are when written out, each bucket
 * an atomic read.
 */

#include "base/ngx_http_ai_gateway_histogram.h"
#include "core/ngx_http_ai_gateway_metrics.h"


/* a model's or a peer's figures, summed (JSON) */
typedef struct {
    ngx_http_ai_gateway_label_t        *label;
    uint64_t                            requests;
    uint64_t                            hits;
    uint64_t                            tokens_input;
    uint64_t                            tokens_output;
    uint64_t                            ttft[
                                        NGX_HTTP_AI_GATEWAY_METRICS_BUCKETS];
} ngx_http_ai_gateway_metrics_row_t;


struct ngx_http_ai_gateway_metrics_view_s {
    ngx_http_ai_gateway_hist_t         *hist;
    ngx_uint_t                          prometheus;
    ngx_http_ai_gateway_series_t       *newest[
                                            NGX_HTTP_AI_GATEWAY_METRICS_SETS];
    ngx_array_t                         models;   /* rows */
    ngx_array_t                         servers;
    size_t                              size;
};


typedef struct {
    const char                         *name;
    const char                         *help;
    ngx_uint_t                          hist;
} ngx_http_ai_gateway_metrics_family_t;


static ngx_http_ai_gateway_metrics_family_t
    ngx_http_ai_gateway_metrics_families[] = {

    { "gen_ai_server_time_to_first_token_seconds",
      "Time to generate first token for successful responses: from sending"
      " the request upstream to the first body byte (JSON) or content event"
      " (stream).", NGX_HTTP_AI_GATEWAY_METRICS_TTFT },

    { "gen_ai_server_time_per_output_token_seconds",
      "Time per output token generated after the first token for successful"
      " streamed responses: (last content event - first) /"
      " (output tokens - 1).", NGX_HTTP_AI_GATEWAY_METRICS_TPOT },

    { "gen_ai_server_request_duration_seconds",
      "Generative AI server request duration: from sending the request"
      " upstream to the answer's last byte, any status.",
      NGX_HTTP_AI_GATEWAY_METRICS_DURATION },

    { "gen_ai_client_token_usage",
      "Number of input and output tokens used, as the answer's usage says"
      " (a stream without usage: its content events as output).",
      NGX_HTTP_AI_GATEWAY_METRICS_INPUT },
};


#define NGX_HTTP_AI_GATEWAY_METRICS_FAMILIES                                  \
    (sizeof(ngx_http_ai_gateway_metrics_families)                             \
     / sizeof(ngx_http_ai_gateway_metrics_family_t))

/* a line's bytes besides its labels' values: name, label names, le, count */
#define NGX_HTTP_AI_GATEWAY_METRICS_LINE   (384 + 2 * NGX_ATOMIC_T_LEN)

/* a JSON row's bytes besides its name */
#define NGX_HTTP_AI_GATEWAY_METRICS_ROW    (256 + 8 * NGX_ATOMIC_T_LEN)


static ngx_int_t ngx_http_ai_gateway_metrics_rows(
    ngx_http_ai_gateway_metrics_view_t *view);
static ngx_http_ai_gateway_metrics_row_t *ngx_http_ai_gateway_metrics_row(
    ngx_array_t *rows, ngx_http_ai_gateway_label_t *label);
static int ngx_http_ai_gateway_metrics_cmp(const void *one,
    const void *two);
static u_char *ngx_http_ai_gateway_metrics_json_rows(u_char *p,
    ngx_array_t *rows, ngx_uint_t model);
static u_char *ngx_http_ai_gateway_metrics_value(u_char *p,
    ngx_http_ai_gateway_label_t *label);
static u_char *ngx_http_ai_gateway_metrics_histogram(u_char *p,
    ngx_http_ai_gateway_hist_t *h, ngx_http_ai_gateway_series_t *s,
    ngx_uint_t hist, const char *name, const char *type);
static u_char *ngx_http_ai_gateway_metrics_labels(u_char *p,
    ngx_http_ai_gateway_series_t *s, const char *type);


ngx_http_ai_gateway_metrics_view_t *
ngx_http_ai_gateway_metrics_view(ngx_http_request_t *r, ngx_uint_t prometheus)
{
    size_t                                    labels;
    ngx_uint_t                                i, k, lines;
    ngx_http_ai_gateway_series_t             *s;
    ngx_http_ai_gateway_hist_t               *h;
    ngx_http_ai_gateway_metrics_row_t        *row;
    ngx_http_ai_gateway_metrics_view_t       *view;
    ngx_http_ai_gateway_metrics_main_conf_t  *mmcf;

    mmcf = ngx_http_get_module_main_conf(r,
                                         ngx_http_ai_gateway_metrics_module);

    view = ngx_pcalloc(r->pool, sizeof(ngx_http_ai_gateway_metrics_view_t));
    if (view == NULL) {
        return NULL;
    }

    h = mmcf->hist;
    view->hist = h;
    view->prometheus = prometheus;

    for (i = 0; i < NGX_HTTP_AI_GATEWAY_METRICS_SETS; i++) {
        view->newest[i] = ngx_http_ai_gateway_hist_newest(h, i);
    }

    if (!prometheus) {
        if (ngx_array_init(&view->models, r->pool, 8,
                           sizeof(ngx_http_ai_gateway_metrics_row_t))
            != NGX_OK
            || ngx_array_init(&view->servers, r->pool, 8,
                              sizeof(ngx_http_ai_gateway_metrics_row_t))
               != NGX_OK
            || ngx_http_ai_gateway_metrics_rows(view) != NGX_OK)
        {
            return NULL;
        }

        view->size = sizeof(",\"models\":{},\"servers\":{}");

        row = view->models.elts;
        for (i = 0; i < view->models.nelts; i++) {
            view->size += 2 * row[i].label->len
                          + NGX_HTTP_AI_GATEWAY_METRICS_ROW;
        }

        row = view->servers.elts;
        for (i = 0; i < view->servers.nelts; i++) {
            view->size += 2 * row[i].label->len
                          + NGX_HTTP_AI_GATEWAY_METRICS_ROW;
        }

        return view;
    }

    /*
     * every family's HELP and TYPE (and the requests' and refused counts'),
     * every line of every series
     */

    view->size = (NGX_HTTP_AI_GATEWAY_METRICS_FAMILIES + 2)
                 * (512 + NGX_HTTP_AI_GATEWAY_METRICS_LINE);

    lines = 0;

    for (k = 0; k < NGX_HTTP_AI_GATEWAY_METRICS_HISTS; k++) {
        lines += h->sets[NGX_HTTP_AI_GATEWAY_METRICS_SERVER].hist[k]->n + 3;
    }

    for (i = 0; i < NGX_HTTP_AI_GATEWAY_METRICS_SETS; i++) {
        for (s = view->newest[i]; s; s = s->older) {
            labels = 0;

            for (k = 0; k < h->sets[i].nlabels; k++) {
                labels += 2 * s->label[k]->len;
            }

            view->size += (i == NGX_HTTP_AI_GATEWAY_METRICS_SERVER ? lines : 1)
                          * (labels + NGX_HTTP_AI_GATEWAY_METRICS_LINE);
        }
    }

    return view;
}


size_t
ngx_http_ai_gateway_metrics_size(ngx_http_ai_gateway_metrics_view_t *view)
{
    return view->size;
}


/* the JSON rows, summed over the other labels, read once */

static ngx_int_t
ngx_http_ai_gateway_metrics_rows(ngx_http_ai_gateway_metrics_view_t *view)
{
    uint64_t                            v;
    ngx_uint_t                          i;
    ngx_atomic_t                       *d;
    ngx_http_ai_gateway_hist_t         *h;
    ngx_http_ai_gateway_series_t       *s;
    ngx_http_ai_gateway_metrics_row_t  *model, *peer;
    const agw_metrics_bounds_t         *b;

    h = view->hist;

    for (s = view->newest[NGX_HTTP_AI_GATEWAY_METRICS_REQUESTS];
         s;
         s = s->older)
    {
        model = ngx_http_ai_gateway_metrics_row(&view->models, s->label[0]);
        if (model == NULL) {
            return NGX_ERROR;
        }

        v = *ngx_http_ai_gateway_hist_data(h, s, 0);

        model->requests += v;

        if (s->label[1]->len == 3
            && ngx_strncmp(s->label[1]->name, "hit", 3) == 0)
        {
            model->hits += v;
        }
    }

    b = &agw_metrics_ttft;

    for (s = view->newest[NGX_HTTP_AI_GATEWAY_METRICS_SERVER];
         s;
         s = s->older)
    {
        model = ngx_http_ai_gateway_metrics_row(&view->models, s->label[0]);
        peer = ngx_http_ai_gateway_metrics_row(&view->servers, s->label[2]);

        if (model == NULL || peer == NULL) {
            return NGX_ERROR;
        }

        d = ngx_http_ai_gateway_hist_data(h, s,
                                          NGX_HTTP_AI_GATEWAY_METRICS_TTFT);

        for (i = 0; i <= b->n; i++) {
            v = d[i];
            model->ttft[i] += v;
            peer->ttft[i] += v;
        }

        d = ngx_http_ai_gateway_hist_data(h, s,
                                          NGX_HTTP_AI_GATEWAY_METRICS_INPUT);
        model->tokens_input += d[agw_metrics_tokens.n + 1];

        d = ngx_http_ai_gateway_hist_data(h, s,
                                          NGX_HTTP_AI_GATEWAY_METRICS_OUTPUT);
        model->tokens_output += d[agw_metrics_tokens.n + 1];

        /* a server's requests: its answers, as their durations count them */

        d = ngx_http_ai_gateway_hist_data(h, s,
                                          NGX_HTTP_AI_GATEWAY_METRICS_DURATION);

        for (i = 0; i <= agw_metrics_duration.n; i++) {
            peer->requests += d[i];
        }
    }

    /* by name: the same order from one poll to the next */

    ngx_qsort(view->models.elts, view->models.nelts,
              sizeof(ngx_http_ai_gateway_metrics_row_t),
              ngx_http_ai_gateway_metrics_cmp);
    ngx_qsort(view->servers.elts, view->servers.nelts,
              sizeof(ngx_http_ai_gateway_metrics_row_t),
              ngx_http_ai_gateway_metrics_cmp);

    return NGX_OK;
}


static ngx_http_ai_gateway_metrics_row_t *
ngx_http_ai_gateway_metrics_row(ngx_array_t *rows,
    ngx_http_ai_gateway_label_t *label)
{
    ngx_uint_t                          i;
    ngx_http_ai_gateway_metrics_row_t  *row;

    row = rows->elts;

    for (i = 0; i < rows->nelts; i++) {
        if (row[i].label == label) {
            return &row[i];
        }
    }

    row = ngx_array_push(rows);
    if (row == NULL) {
        return NULL;
    }

    ngx_memzero(row, sizeof(ngx_http_ai_gateway_metrics_row_t));
    row->label = label;

    return row;
}


static int
ngx_http_ai_gateway_metrics_cmp(const void *one, const void *two)
{
    int                                 rc;
    ngx_http_ai_gateway_label_t        *a, *b;

    a = ((ngx_http_ai_gateway_metrics_row_t *) one)->label;
    b = ((ngx_http_ai_gateway_metrics_row_t *) two)->label;

    rc = ngx_memcmp(a->name, b->name, ngx_min(a->len, b->len));

    return rc ? rc : (int) a->len - (int) b->len;
}


u_char *
ngx_http_ai_gateway_metrics_json(u_char *p,
    ngx_http_ai_gateway_metrics_view_t *view)
{
    p = ngx_cpymem(p, ",\"models\":{", sizeof(",\"models\":{") - 1);
    p = ngx_http_ai_gateway_metrics_json_rows(p, &view->models, 1);
    p = ngx_cpymem(p, "},\"servers\":{", sizeof("},\"servers\":{") - 1);
    p = ngx_http_ai_gateway_metrics_json_rows(p, &view->servers, 0);
    *p++ = '}';

    return p;
}


static u_char *
ngx_http_ai_gateway_metrics_json_rows(u_char *p, ngx_array_t *rows,
    ngx_uint_t model)
{
    double                              q[3];
    ngx_uint_t                          i, k, first;
    ngx_http_ai_gateway_metrics_row_t  *row;

    static const double  quantiles[3] = { 0.5, 0.9, 0.99 };

    row = rows->elts;
    first = 1;

    for (i = 0; i < rows->nelts; i++) {

        /*
         * the empty value (no model named, no peer), and the series of
         * "other" labels that exists from the start but counted nothing
         */

        if (row[i].label->len == 0
            || (row[i].requests == 0 && row[i].tokens_input == 0
                && row[i].tokens_output == 0
                && agw_metrics_quantile(&agw_metrics_ttft, row[i].ttft, 0)
                   < 0))
        {
            continue;
        }

        p = ngx_sprintf(p, "%s\"", first ? "" : ",");
        p = ngx_http_ai_gateway_metrics_value(p, row[i].label);
        p = ngx_sprintf(p, "\":{\"requests\":%uL", row[i].requests);
        first = 0;

        if (model) {
            p = ngx_sprintf(p, ",\"hits\":%uL,\"tokens_input\":%uL,"
                            "\"tokens_output\":%uL", row[i].hits,
                            row[i].tokens_input, row[i].tokens_output);
        }

        for (k = 0; k < 3; k++) {
            q[k] = agw_metrics_quantile(&agw_metrics_ttft, row[i].ttft,
                                        quantiles[k]);
        }

        if (q[0] < 0) {
            p = ngx_cpymem(p, ",\"ttft_ms\":null}",
                           sizeof(",\"ttft_ms\":null}") - 1);
            continue;
        }

        /* microseconds to milliseconds */

        p = ngx_sprintf(p, ",\"ttft_ms\":{\"p50\":%.3f,\"p90\":%.3f,"
                        "\"p99\":%.3f}}", q[0] / 1000, q[1] / 1000,
                        q[2] / 1000);
    }

    return p;
}


/* a label value inside quotes, escaped for both formats alike */

static u_char *
ngx_http_ai_gateway_metrics_value(u_char *p,
    ngx_http_ai_gateway_label_t *label)
{
    return p + agw_metrics_escape(p, label->name, label->len);
}


u_char *
ngx_http_ai_gateway_metrics_prometheus(u_char *p,
    ngx_http_ai_gateway_metrics_view_t *view)
{
    ngx_uint_t                             i;
    ngx_atomic_uint_t                      n;
    ngx_http_ai_gateway_hist_t            *h;
    ngx_http_ai_gateway_series_t          *s;
    ngx_http_ai_gateway_metrics_family_t  *f;

    h = view->hist;

    for (i = 0; i < NGX_HTTP_AI_GATEWAY_METRICS_FAMILIES; i++) {
        f = &ngx_http_ai_gateway_metrics_families[i];

        p = ngx_sprintf(p, "# HELP %s %s\n# TYPE %s histogram\n",
                        f->name, f->help, f->name);

        for (s = view->newest[NGX_HTTP_AI_GATEWAY_METRICS_SERVER];
             s;
             s = s->older)
        {
            if (f->hist != NGX_HTTP_AI_GATEWAY_METRICS_INPUT) {
                p = ngx_http_ai_gateway_metrics_histogram(p, h, s, f->hist,
                                                          f->name, NULL);
                continue;
            }

            /* one family, the token type a label */

            p = ngx_http_ai_gateway_metrics_histogram(p, h, s,
                                        NGX_HTTP_AI_GATEWAY_METRICS_INPUT,
                                        f->name, "input");
            p = ngx_http_ai_gateway_metrics_histogram(p, h, s,
                                        NGX_HTTP_AI_GATEWAY_METRICS_OUTPUT,
                                        f->name, "output");
        }
    }

    p = ngx_sprintf(p, "# HELP ai_gateway_requests_total Inference requests"
                    " answered, by model and cache status (hit, coalesced"
                    " and stale answers are in no server histogram).\n"
                    "# TYPE ai_gateway_requests_total counter\n");

    for (s = view->newest[NGX_HTTP_AI_GATEWAY_METRICS_REQUESTS];
         s;
         s = s->older)
    {
        n = *ngx_http_ai_gateway_hist_data(h, s, 0);

        if (n == 0) {
            continue;                    /* "other" and "other", unused */
        }

        p = ngx_cpymem(p, "ai_gateway_requests_total{gen_ai_request_model=\"",
                       sizeof("ai_gateway_requests_total{"
                              "gen_ai_request_model=\"") - 1);
        p = ngx_http_ai_gateway_metrics_value(p, s->label[0]);
        p = ngx_cpymem(p, "\",cache=\"", sizeof("\",cache=\"") - 1);
        p = ngx_http_ai_gateway_metrics_value(p, s->label[1]);
        p = ngx_sprintf(p, "\"} %uA\n", n);
    }

    /* a full zone, which only a fleet far larger than the zone shows */

    n = ngx_http_ai_gateway_hist_refused(h);

    if (n == 0) {
        return p;
    }

    return ngx_sprintf(p, "# HELP ai_gateway_metrics_refused_total Answers"
                       " counted under \"other\" labels because the metrics"
                       " zone was full.\n"
                       "# TYPE ai_gateway_metrics_refused_total counter\n"
                       "ai_gateway_metrics_refused_total %uA\n", n);
}


/* a series' histogram: its buckets, cumulative, its sum and its count */

static u_char *
ngx_http_ai_gateway_metrics_histogram(u_char *p,
    ngx_http_ai_gateway_hist_t *h, ngx_http_ai_gateway_series_t *s,
    ngx_uint_t hist, const char *name, const char *type)
{
    uint64_t                     total, sum;
    uint64_t                     count[NGX_HTTP_AI_GATEWAY_METRICS_BUCKETS];
    ngx_uint_t                   i;
    ngx_atomic_t                *d;
    const agw_metrics_bounds_t  *b;

    b = h->sets[s->set].hist[hist];
    d = ngx_http_ai_gateway_hist_data(h, s, hist);

    /* read once: the lines of one histogram agree with each other */

    total = 0;

    for (i = 0; i <= b->n; i++) {
        count[i] = d[i];
        total += count[i];
    }

    if (total == 0) {
        return p;                        /* nothing counted yet */
    }

    sum = d[b->n + 1];
    total = 0;

    for (i = 0; i <= b->n; i++) {
        total += count[i];

        p = ngx_sprintf(p, "%s_bucket{", name);
        p = ngx_http_ai_gateway_metrics_labels(p, s, type);
        p = ngx_sprintf(p, ",le=\"%s\"} %uL\n",
                        i < b->n ? b->le[i] : "+Inf", total);
    }

    p = ngx_sprintf(p, "%s_sum{", name);
    p = ngx_http_ai_gateway_metrics_labels(p, s, type);

    if (b->scale == 1) {
        p = ngx_sprintf(p, "} %uL\n", sum);

    } else {
        p = ngx_sprintf(p, "} %uL.%06uL\n", sum / b->scale,
                        (sum % b->scale) * (1000000 / b->scale));
    }

    p = ngx_sprintf(p, "%s_count{", name);
    p = ngx_http_ai_gateway_metrics_labels(p, s, type);

    return ngx_sprintf(p, "} %uL\n", total);
}


static u_char *
ngx_http_ai_gateway_metrics_labels(u_char *p, ngx_http_ai_gateway_series_t *s,
    const char *type)
{
    p = ngx_cpymem(p, "gen_ai_request_model=\"",
                   sizeof("gen_ai_request_model=\"") - 1);
    p = ngx_http_ai_gateway_metrics_value(p, s->label[0]);
    p = ngx_cpymem(p, "\",gen_ai_operation_name=\"",
                   sizeof("\",gen_ai_operation_name=\"") - 1);
    p = ngx_http_ai_gateway_metrics_value(p, s->label[1]);
    p = ngx_cpymem(p, "\",server_address=\"",
                   sizeof("\",server_address=\"") - 1);
    p = ngx_http_ai_gateway_metrics_value(p, s->label[2]);
    *p++ = '"';

    if (type) {
        p = ngx_sprintf(p, ",gen_ai_token_type=\"%s\"", type);
    }

    return p;
}
