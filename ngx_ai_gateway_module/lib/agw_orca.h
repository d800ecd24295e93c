
/*
 * A replica's own load report: the ORCA `endpoint-load-metrics` response
 * header in its text form, as vLLM sends it (SPEC 8.1).  See agw_orca.c.
 */


#ifndef _AGW_ORCA_H_INCLUDED_
#define _AGW_ORCA_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* counts above this are read as this: no replica queues a million */
#define AGW_ORCA_MAX_REQUESTS  1000000

/* kv_cache_usage_perc is kept in millionths, 0..AGW_ORCA_PPM */
#define AGW_ORCA_PPM           1000000

/* the longest header value read; a longer one is not a report */
#define AGW_ORCA_MAX_LEN       4096


typedef struct {
    uint32_t  running;                   /* num_requests_running */
    uint32_t  waiting;                   /* num_requests_waiting */
    uint32_t  kv_ppm;                    /* kv_cache_usage_perc, in
                                            millionths of the cache */
    unsigned  has_running:1;
    unsigned  has_waiting:1;
    unsigned  has_kv:1;
} agw_orca_report_t;


/*
 * Reads a header value "TEXT named_metrics.num_requests_running=R, ...".
 * Returns 1 when the value is in the text form and names at least one of
 * the three metrics (rep says which), else 0 (rep is cleared).  Never
 * reads past in[len - 1]; any bytes are safe.
 */
int agw_orca_parse(const uint8_t *in, size_t len, agw_orca_report_t *rep);


#endif /* _AGW_ORCA_H_INCLUDED_ */
