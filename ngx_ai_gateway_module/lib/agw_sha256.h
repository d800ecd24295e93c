
/*
 * Streaming SHA-256 (FIPS 180-4) for cache keys and request body digests.
 */


#ifndef _AGW_SHA256_H_INCLUDED_
#define _AGW_SHA256_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define AGW_SHA256_DIGEST_LEN  32        /* bytes */
#define AGW_SHA256_BLOCK_LEN   64        /* bytes */


typedef struct {
    uint32_t  state[8];
    uint64_t  bytes;                     /* message length so far, bytes */
    uint8_t   buffer[AGW_SHA256_BLOCK_LEN];
    size_t    buffered;                  /* bytes waiting in buffer */
} agw_sha256_t;


void agw_sha256_init(agw_sha256_t *ctx);
void agw_sha256_update(agw_sha256_t *ctx, const void *data, size_t len);
void agw_sha256_final(agw_sha256_t *ctx,
    uint8_t digest[AGW_SHA256_DIGEST_LEN]);

/*
 * Use the CPU's SHA instructions when it has them (the default) or not;
 * returns whether they are used.  For tests of both paths.
 */
int agw_sha256_set_accelerated(int on);

/* one call over a single buffer */
void agw_sha256(const void *data, size_t len,
    uint8_t digest[AGW_SHA256_DIGEST_LEN]);


#endif /* _AGW_SHA256_H_INCLUDED_ */
