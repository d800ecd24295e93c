/*
 * Histograms in shared memory, for every worker and across reloads: a
 * mechanism with no idea of what is measured (core/ says that).
 *
 * A series is a set of histograms observed together under the same
 * labels (a set's histograms each have fixed buckets, lib/agw_metrics.h;
 * a "histogram" without bounds is a counter).  Each label value comes from
 * a dictionary of its label: the same value is the same shared pointer,
 * and a dictionary names at most as many values as its caller allows, the
 * rest being its "other" (the empty value and "other" itself are always
 * there).  Series and values are created on first use and never removed.
 *
 * Lookups take no lock: hash chains are only ever prepended to, a node
 * being published once written (nginx's shared memory is mapped at the
 * same address in every worker).  The zone's slab mutex is taken only to
 * create a value or a series, for the allocation and the insertion, and
 * never across a syscall (the slab does not log its failures here).  An
 * observation is two atomic additions: its bucket and its histogram's sum.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_HISTOGRAM_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_HISTOGRAM_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"
#include "agw_metrics.h"


#define NGX_HTTP_AI_GATEWAY_HIST_LABELS    4    /* labels of a series */
#define NGX_HTTP_AI_GATEWAY_HIST_DICTS     8    /* label dictionaries */
#define NGX_HTTP_AI_GATEWAY_HIST_SETS      4
#define NGX_HTTP_AI_GATEWAY_HIST_MAX       8    /* histograms of a set */
#define NGX_HTTP_AI_GATEWAY_HIST_VALUE   256    /* bytes of a label value */


/* what a set is: its labels' dictionaries and its histograms' buckets */
typedef struct {
    ngx_uint_t                          nlabels;
    ngx_uint_t                          dict[NGX_HTTP_AI_GATEWAY_HIST_LABELS];
    ngx_uint_t                          nhists;
    const agw_metrics_bounds_t         *hist[NGX_HTTP_AI_GATEWAY_HIST_MAX];
                                                 /* NULL: a counter */
} ngx_http_ai_gateway_hist_set_t;


typedef struct ngx_http_ai_gateway_label_s  ngx_http_ai_gateway_label_t;

struct ngx_http_ai_gateway_label_s {
    ngx_http_ai_gateway_label_t        *next;     /* in its hash chain */
    uint32_t                            hash;
    uint16_t                            dict;
    uint16_t                            len;
    u_char                              name[1];
};


typedef struct ngx_http_ai_gateway_series_s  ngx_http_ai_gateway_series_t;

struct ngx_http_ai_gateway_series_s {
    ngx_http_ai_gateway_series_t       *next;     /* in its hash chain */
    ngx_http_ai_gateway_series_t       *older;    /* its set's, newest
                                                     first */
    ngx_uint_t                          set;
    ngx_http_ai_gateway_label_t        *label[NGX_HTTP_AI_GATEWAY_HIST_LABELS];
    ngx_atomic_t                        data[1];  /* each histogram: its
                                                     buckets (n + 1, the
                                                     last +Inf), its sum;
                                                     a counter: its value */
};


typedef struct ngx_http_ai_gateway_hist_shm_s  ngx_http_ai_gateway_hist_shm_t;


/* a zone of histograms, as a configuration cycle sees it */
typedef struct {
    ngx_shm_zone_t                     *zone;
    ngx_slab_pool_t                    *shpool;
    ngx_http_ai_gateway_hist_shm_t     *sh;
    const ngx_http_ai_gateway_hist_set_t  *sets;
    ngx_uint_t                          nsets;
    ngx_uint_t                          ndicts;
    size_t                              offset[NGX_HTTP_AI_GATEWAY_HIST_SETS]
                                              [NGX_HTTP_AI_GATEWAY_HIST_MAX];
    size_t                              size[NGX_HTTP_AI_GATEWAY_HIST_SETS];
    uint32_t                            layout;   /* of sets: a reload with
                                                     another one starts
                                                     afresh */
} ngx_http_ai_gateway_hist_t;


/*
 * A zone of `size` bytes; the same name and size keep it, and its figures,
 * across a reload.  sets and their bounds must outlive the cycle.
 */
ngx_http_ai_gateway_hist_t *ngx_http_ai_gateway_hist_create(ngx_conf_t *cf,
    ngx_str_t *name, size_t size, const ngx_http_ai_gateway_hist_set_t *sets,
    ngx_uint_t nsets, ngx_uint_t ndicts, void *tag);

/*
 * The value of a dictionary's label: found, or created while fewer than
 * max named values exist (the empty value and "other" aside), else
 * "other".  len must be at most NGX_HTTP_AI_GATEWAY_HIST_VALUE.
 */
ngx_http_ai_gateway_label_t *ngx_http_ai_gateway_hist_label(
    ngx_http_ai_gateway_hist_t *h, ngx_uint_t dict, u_char *name, size_t len,
    ngx_uint_t max);

ngx_http_ai_gateway_label_t *ngx_http_ai_gateway_hist_other(
    ngx_http_ai_gateway_hist_t *h, ngx_uint_t dict);

/*
 * A set's series of these labels: found or created.  When the zone is
 * full, the series whose every label is "other" (it always exists).
 */
ngx_http_ai_gateway_series_t *ngx_http_ai_gateway_hist_series(
    ngx_http_ai_gateway_hist_t *h, ngx_uint_t set,
    ngx_http_ai_gateway_label_t **label);

/* series not created for lack of memory, counted under "other" instead */
ngx_atomic_uint_t ngx_http_ai_gateway_hist_refused(
    ngx_http_ai_gateway_hist_t *h);

/* the set's newest series; each one's ->older leads to the rest */
ngx_http_ai_gateway_series_t *ngx_http_ai_gateway_hist_newest(
    ngx_http_ai_gateway_hist_t *h, ngx_uint_t set);


/* a histogram's buckets (n + 1) and then its sum; a counter's value */

static ngx_inline ngx_atomic_t *
ngx_http_ai_gateway_hist_data(ngx_http_ai_gateway_hist_t *h,
    ngx_http_ai_gateway_series_t *s, ngx_uint_t hist)
{
    return s->data + h->offset[s->set][hist];
}


static ngx_inline void
ngx_http_ai_gateway_hist_observe(ngx_http_ai_gateway_hist_t *h,
    ngx_http_ai_gateway_series_t *s, ngx_uint_t hist, uint64_t v)
{
    ngx_atomic_t                *d;
    const agw_metrics_bounds_t  *b;

    d = ngx_http_ai_gateway_hist_data(h, s, hist);
    b = h->sets[s->set].hist[hist];

    if (b == NULL) {
        (void) ngx_atomic_fetch_add(d, (ngx_atomic_int_t) v);
        return;
    }

    (void) ngx_atomic_fetch_add(&d[agw_metrics_bucket(b, v)], 1);
    (void) ngx_atomic_fetch_add(&d[b->n + 1], (ngx_atomic_int_t) v);
}


#endif /* _NGX_HTTP_AI_GATEWAY_HISTOGRAM_H_INCLUDED_ */
