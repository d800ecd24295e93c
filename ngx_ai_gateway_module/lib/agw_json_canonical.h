
/*
 * The canonical form of a JSON text, what the cache keys a JSON body by:
 * members sorted, numbers by value, strings with the fewest escapes.  See
 * the essay in agw_json_canonical.c.
 */


#ifndef _AGW_JSON_CANONICAL_H_INCLUDED_
#define _AGW_JSON_CANONICAL_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "agw_json.h"
#include "agw_json_request.h"


/* receives the canonical bytes in order; non-zero stops with ESTOP */
typedef int (*agw_json_write_pt)(void *ctx, const uint8_t *data, size_t len);


/* a write callback into a caller's buffer: ctx is an agw_json_buf_t */
typedef struct {
    uint8_t  *pos;
    uint8_t  *end;
} agw_json_buf_t;

int agw_json_buf_write(void *ctx, const uint8_t *data, size_t len);


/*
 * scratch bytes that always suffice to canonicalise `len` bytes of input
 * (12 bytes per value the input could hold); less may do for real bodies,
 * and too little is AGW_JSON_ENOMEM, never an overrun
 */
size_t agw_json_scratch_size(size_t len);

/*
 * Writes the canonical form of the JSON text in[0..len) through write(),
 * leaving out top-level members named in ignore[0..nignore).  Nothing is
 * written unless the whole input is canonicalisable: on any error the
 * caller keys by the raw bytes.  req, if not NULL, is filled in the same
 * pass (req->valid says whether the input was valid JSON, even when the
 * result is EDUP, ERANGE or ENOMEM).  scratch must be aligned for
 * uint32_t.
 */
int agw_json_canonical(const uint8_t *in, size_t len,
    const agw_json_str_t *ignore, size_t nignore,
    void *scratch, size_t scratch_len,
    agw_json_write_pt write, void *ctx, agw_json_request_t *req);


#endif /* _AGW_JSON_CANONICAL_H_INCLUDED_ */
