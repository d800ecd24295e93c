/*
 * agw-load: the report (JSON) and the per-request lines (CSV).
 *
 * Percentiles are nearest-rank over every request that reached the
 * moment measured: time to the response headers over requests that had
 * them, time to the first "data:" event over those that had one, time to
 * the end over the ones that ended well (ok).  All from the request's
 * start, which includes connecting when the connection was new.
 */

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "load.h"


static const char  *load_err_names[LOAD_ERR_COUNT] = {
    "none", "connect", "timeout", "eof", "invalid", "buffer", "cancel",
    "too_long", "no_done"
};


const char *
load_err_name(unsigned err)
{
    return (err < LOAD_ERR_COUNT) ? load_err_names[err] : "unknown";
}


static int
load_cmp_i64(const void *a, const void *b)
{
    int64_t  x, y;

    x = *(const int64_t *) a;
    y = *(const int64_t *) b;

    return (x > y) - (x < y);
}


static void
load_json_string(FILE *f, const char *s)
{
    fputc('"', f);

    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\') {
            fprintf(f, "\\%c", *s);

        } else if ((unsigned char) *s < 0x20) {
            fprintf(f, "\\u%04x", (unsigned char) *s);

        } else {
            fputc(*s, f);
        }
    }

    fputc('"', f);
}


static int
load_ok(const load_rec_t *r)
{
    return r->ended && r->error == LOAD_ERR_NONE && r->status / 100 == 2;
}


/* which moment of a request: its time from the start, or -1 */
typedef enum {
    LOAD_AT_HEADERS,
    LOAD_AT_FIRST_EVENT,
    LOAD_AT_END
} load_at_e;


static int64_t
load_at(const load_rec_t *r, load_at_e at)
{
    switch (at) {
    case LOAD_AT_HEADERS:
        return (r->headers >= 0) ? r->headers - r->start : -1;
    case LOAD_AT_FIRST_EVENT:
        return (r->first_event >= 0) ? r->first_event - r->start : -1;
    default:
        return load_ok(r) ? r->end - r->start : -1;
    }
}


/* {"n":..,"p50":..,...} in ms over the requests of class klass (-1: all) */
static void
load_json_latency(FILE *f, load_ctx_t *ctx, uint64_t n, int64_t *tmp,
    load_at_e at, int klass)
{
    double    sum;
    int64_t   v;
    uint64_t  i, m;

    m = 0;
    sum = 0;

    for (i = 0; i < n; i++) {
        if (klass >= 0 && load_rec(ctx, i)->klass != klass) {
            continue;
        }

        v = load_at(load_rec(ctx, i), at);

        if (v >= 0) {
            tmp[m++] = v;
            sum += (double) v;
        }
    }

    if (m == 0) {
        fprintf(f, "{\"n\":0}");
        return;
    }

    qsort(tmp, m, sizeof(int64_t), load_cmp_i64);

#define LOAD_RANK(q)  (tmp[(uint64_t) ((q) * (double) m + 0.999999) - 1] \
                       / 1000.0)

    fprintf(f, "{\"n\":%llu,\"min\":%.3f,\"p50\":%.3f,\"p90\":%.3f,"
            "\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f}",
            (unsigned long long) m, tmp[0] / 1000.0, LOAD_RANK(0.50),
            LOAD_RANK(0.90), LOAD_RANK(0.99), LOAD_RANK(0.999),
            tmp[m - 1] / 1000.0, sum / (double) m / 1000.0);

#undef LOAD_RANK
}


static void
load_json_latencies(FILE *f, load_ctx_t *ctx, uint64_t n, int64_t *tmp,
    int klass)
{
    fprintf(f, "{\"headers\":");
    load_json_latency(f, ctx, n, tmp, LOAD_AT_HEADERS, klass);
    fprintf(f, ",\"first_event\":");
    load_json_latency(f, ctx, n, tmp, LOAD_AT_FIRST_EVENT, klass);
    fprintf(f, ",\"end\":");
    load_json_latency(f, ctx, n, tmp, LOAD_AT_END, klass);
    fprintf(f, "}");
}


/* "name": {"value": count, ...} of one recorded response header */
static void
load_json_values(FILE *f, load_ctx_t *ctx, uint64_t n, unsigned h)
{
    int              first;
    unsigned         v;
    uint64_t         i, counts[256];
    load_values_t   *t;

    memset(counts, 0, sizeof(counts));

    for (i = 0; i < n; i++) {
        if (load_rec(ctx, i)->headers >= 0) {
            counts[load_rec(ctx, i)->values[h]]++;
        }
    }

    t = &ctx->values[h];
    first = 1;

    load_json_string(f, ctx->conf.recorded[h]);
    fprintf(f, ":{");

    for (v = 0; v < 256; v++) {
        if (counts[v] == 0) {
            continue;
        }

        fprintf(f, "%s", first ? "" : ",");
        first = 0;

        load_json_string(f, v == 0 ? "-"
                            : v == LOAD_VALUE_OTHER ? "(other)"
                            : t->values[v]);
        fprintf(f, ":%llu", (unsigned long long) counts[v]);
    }

    fprintf(f, "}");
}


/*
 * Linux's /proc/self/schedstat: the time this process was runnable but
 * waited for a CPU (other processes had the cores); -1 if unknown.
 */
static double
load_run_delay(void)
{
    FILE                *f;
    unsigned long long   oncpu, wait;

    f = fopen("/proc/self/schedstat", "r");
    if (f == NULL) {
        return -1;
    }

    if (fscanf(f, "%llu %llu", &oncpu, &wait) != 2) {
        fclose(f);
        return -1;
    }

    fclose(f);

    return (double) wait / 1e9;
}


/* the lag probe's percentile, to the millisecond above */
static int
load_lag_rank(load_ctx_t *ctx, double q)
{
    unsigned  i;
    uint64_t  n, seen, rank;

    n = 0;

    for (i = 0; i < LOAD_LAG_BUCKETS; i++) {
        n += ctx->lag_hist[i];
    }

    rank = (uint64_t) (q * (double) n + 0.999999);
    seen = 0;

    for (i = 0; i < LOAD_LAG_BUCKETS; i++) {
        seen += ctx->lag_hist[i];

        if (seen >= rank && seen > 0) {
            return (int) i + 1;
        }
    }

    return 0;
}


int
load_report_json(load_ctx_t *ctx, FILE *f, double wall_s)
{
    int             first;
    double          cpu, span_s;
    int64_t         t_first, t_last, *tmp;
    unsigned        h, k, s;
    uint64_t        i, n, ok, ended, events, bytes, done;
    uint64_t        errors[LOAD_ERR_COUNT], status[600];
    load_conf_t    *conf;
    load_rec_t     *r;
    struct rusage   ru;

    conf = &ctx->conf;
    n = ctx->next;                               /* requests started */

    tmp = malloc((n ? n : 1) * sizeof(int64_t));
    if (tmp == NULL) {
        return -1;
    }

    memset(errors, 0, sizeof(errors));
    memset(status, 0, sizeof(status));
    ok = ended = events = bytes = done = 0;
    t_first = t_last = -1;

    for (i = 0; i < n; i++) {
        r = load_rec(ctx, i);

        /* still in flight when the run was stopped */
        if (r->end < 0 && r->error == LOAD_ERR_NONE) {
            r->error = LOAD_ERR_CANCEL;
        }

        errors[r->error]++;
        ok += load_ok(r);
        ended += r->ended;
        events += r->events;
        bytes += r->bytes;
        done += r->done;

        if (r->headers >= 0 && r->status < 600) {
            status[r->status]++;
        }

        if (t_first < 0 || r->start < t_first) {
            t_first = r->start;
        }

        if (r->end > t_last) {
            t_last = r->end;
        }
    }

    span_s = (t_first >= 0 && t_last > t_first)
             ? (double) (t_last - t_first) / 1e6 : 0;

    getrusage(RUSAGE_SELF, &ru);
    cpu = (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
          + (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;

    fprintf(f, "{\"label\":");
    load_json_string(f, conf->label ? conf->label : "");
    fprintf(f, ",\"mode\":\"%s\",\"connections\":%u,\"requests\":%llu,"
            "\"started\":%llu,\"completed\":%llu,\"ok\":%llu,"
            "\"failed\":%llu,\"done\":%llu,",
            conf->hold ? "hold" : "sequential", conf->connections,
            (unsigned long long) conf->requests, (unsigned long long) n,
            (unsigned long long) ended, (unsigned long long) ok,
            (unsigned long long) (n - ok), (unsigned long long) done);

    fprintf(f, "\"errors\":{");
    for (k = 1, first = 1; k < LOAD_ERR_COUNT; k++) {
        fprintf(f, "%s\"%s\":%llu", first ? "" : ",", load_err_names[k],
                (unsigned long long) errors[k]);
        first = 0;
    }

    fprintf(f, "},\"status\":{");
    for (s = 0, first = 1; s < 600; s++) {
        if (status[s]) {
            fprintf(f, "%s\"%u\":%llu", first ? "" : ",", s,
                    (unsigned long long) status[s]);
            first = 0;
        }
    }

    fprintf(f, "},\"headers\":{");
    for (h = 0; h < conf->nrecorded; h++) {
        fprintf(f, "%s", h ? "," : "");
        load_json_values(f, ctx, n, h);
    }

    fprintf(f, "},\"events\":%llu,\"bytes\":%llu,\"duration_s\":%.3f,"
            "\"wall_s\":%.3f,\"rps\":%.1f,\"events_per_s\":%.1f,",
            (unsigned long long) events, (unsigned long long) bytes,
            span_s, wall_s, span_s > 0 ? (double) ok / span_s : 0,
            span_s > 0 ? (double) events / span_s : 0);

    fprintf(f, "\"latency_ms\":");
    load_json_latencies(f, ctx, n, tmp, -1);

    if (conf->nclasses) {
        fprintf(f, ",\"classes\":{");

        for (k = 0; k < conf->nclasses; k++) {
            uint64_t  cn, cok;

            cn = cok = 0;

            for (i = 0; i < n; i++) {
                if (load_rec(ctx, i)->klass == k) {
                    cn++;
                    cok += load_ok(load_rec(ctx, i));
                }
            }

            fprintf(f, "%s\"%u\":{\"max_tokens\":%u,\"requests\":%llu,"
                    "\"ok\":%llu,\"latency_ms\":", k ? "," : "",
                    conf->classes[k].max_tokens, conf->classes[k].max_tokens,
                    (unsigned long long) cn, (unsigned long long) cok);
            load_json_latencies(f, ctx, n, tmp, (int) k);
            fprintf(f, "}");
        }

        fprintf(f, "}");
    }

    fprintf(f, ",\"open\":{\"peak\":%u,\"all_open_ms\":", ctx->peak_open);

    if (ctx->all_open >= 0) {
        fprintf(f, "%.1f", ctx->all_open / 1000.0);

    } else {
        fprintf(f, "null");
    }

    fprintf(f, ",\"first_done_ms\":");

    if (ctx->first_done >= 0) {
        fprintf(f, "%.1f", ctx->first_done / 1000.0);

    } else {
        fprintf(f, "null");
    }

    fprintf(f, "},\"client\":{\"loop_lag_ms\":{\"p50\":%d,\"p99\":%d,"
            "\"max\":%.1f},", load_lag_rank(ctx, 0.5), load_lag_rank(ctx, 0.99),
            ctx->lag_max / 1000.0);

    fprintf(f, "\"runqueue_wait_s\":%.3f,", load_run_delay());

    fprintf(f, "\"user_s\":%.3f,\"sys_s\":%.3f,"
            "\"cpu_s\":%.3f,\"cpu_percent\":%.1f,\"max_rss_kib\":%ld}}\n",
            ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
            ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, cpu,
            wall_s > 0 ? cpu / wall_s * 100 : 0, ru.ru_maxrss);

    free(tmp);

    return ferror(f) ? -1 : 0;
}


static void
load_csv_ms(FILE *f, int64_t t, int64_t start)
{
    if (t < 0) {
        fputs(",", f);

    } else {
        fprintf(f, ",%.3f", (t - start) / 1000.0);
    }
}


/* RFC 4180: quoted when it holds a comma, a quote or a line break */
static void
load_csv_field(FILE *f, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }

    fputc('"', f);

    for (; *s != '\0'; s++) {
        if (*s == '"') {
            fputc('"', f);
        }

        fputc(*s, f);
    }

    fputc('"', f);
}


int
load_report_csv(load_ctx_t *ctx, FILE *f)
{
    unsigned       h, v;
    uint64_t       i;
    load_rec_t    *r;
    load_conf_t   *conf;

    conf = &ctx->conf;

    fprintf(f, "index,conn,class,max_tokens,tenant,status,error");

    for (h = 0; h < conf->nrecorded; h++) {
        fputc(',', f);
        load_csv_field(f, conf->recorded[h]);
    }

    fprintf(f, ",start_ms,headers_ms,first_byte_ms,first_event_ms,"
            "last_event_ms,end_ms,events,bytes,done\n");

    for (i = 0; i < ctx->next; i++) {
        r = load_rec(ctx, i);

        fprintf(f, "%llu,%u,%u,%u,%u,%u,%s", (unsigned long long) i,
                r->conn, r->klass,
                conf->nclasses ? conf->classes[r->klass].max_tokens
                               : conf->max_tokens,
                r->tenant, r->status, load_err_name(r->error));

        for (h = 0; h < conf->nrecorded; h++) {
            v = r->values[h];
            fputc(',', f);
            load_csv_field(f, v == 0 ? ""
                              : v == LOAD_VALUE_OTHER ? "(other)"
                              : ctx->values[h].values[v]);
        }

        fprintf(f, ",%.3f", r->start / 1000.0);
        load_csv_ms(f, r->headers, r->start);
        load_csv_ms(f, r->first_byte, r->start);
        load_csv_ms(f, r->first_event, r->start);
        load_csv_ms(f, r->last_event, r->start);
        load_csv_ms(f, r->end, r->start);
        fprintf(f, ",%u,%llu,%u\n", r->events,
                (unsigned long long) r->bytes, r->done);
    }

    return ferror(f) ? -1 : 0;
}
