
/*
 * The strict scanner: one pass over a whole JSON text that checks it is
 * one RFC 8259 value, reads the request facts (agw_json_request.h) and,
 * for the canonical form, records every value on a tape.  See
 * agw_json_scan.c.
 */


#ifndef _AGW_JSON_SCAN_H_INCLUDED_
#define _AGW_JSON_SCAN_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "agw_json.h"
#include "agw_json_request.h"


/*
 * Only the request facts: one pass, no scratch, no output.  AGW_JSON_OK
 * when the input is valid JSON (req->valid), else why not.
 */
int agw_json_scan_request(const uint8_t *in, size_t len,
    agw_json_request_t *req);


/* for agw_json_canonical.c: the tape */

#define AGW_JSON_ESC_BIT  0x80000000u    /* node len: string has escapes */

typedef struct {
    uint32_t  start;                     /* offset of the first byte */
    uint32_t  len;                       /* strings: bytes with the quotes,
                                            | AGW_JSON_ESC_BIT; containers:
                                            first child in output order */
    uint32_t  link;                      /* next sibling in output order;
                                            members: from name to name */
} agw_json_node_t;


typedef struct agw_json_scan_s  agw_json_scan_t;

/*
 * an object closed: list links its members' name nodes in input order;
 * returns them linked in output order
 */
typedef uint32_t (*agw_json_members_pt)(agw_json_scan_t *ps, uint32_t list);

struct agw_json_scan_s {
    const uint8_t            *start;
    const uint8_t            *p;
    const uint8_t            *end;
    agw_json_node_t          *nodes;     /* NULL: no tape */
    uint32_t                  nnodes;
    uint32_t                  cap;
    unsigned                  depth;
    int                       err;       /* EDUP, ERANGE, ENOMEM: the scan
                                            goes on to read the request */
    agw_json_members_pt       members;   /* with a tape */
    void                     *data;      /* the members handler's */
    agw_json_request_read_t   request;
};

/*
 * Scans in[0..len), reading the request into req if not NULL.  The caller
 * zeroes ps and, for a tape, sets nodes, cap, nnodes (1: node 0 means
 * "none") and members, or sets err to AGW_JSON_ENOMEM for none.  Returns
 * what stopped the scan (EINVAL, EDEPTH, ERANGE for the length), else the
 * first EDUP, ERANGE or ENOMEM met, else AGW_JSON_OK; root is the tape's
 * node of the whole value.
 */
int agw_json_scan(agw_json_scan_t *ps, const uint8_t *in, size_t len,
    agw_json_request_t *req, uint32_t *root);


#endif /* _AGW_JSON_SCAN_H_INCLUDED_ */
