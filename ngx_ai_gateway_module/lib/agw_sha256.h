
/*
 * Streaming SHA-256 (FIPS 180-4) for cache keys and request body digests,
 * computed by OpenSSL's libcrypto.  See agw_sha256.c.
 */


#ifndef _AGW_SHA256_H_INCLUDED_
#define _AGW_SHA256_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include <openssl/sha.h>


#define AGW_SHA256_DIGEST_LEN  32        /* bytes */


/* a plain struct the caller owns: on the stack, in a pool, in shm */
typedef struct {
    SHA256_CTX  ctx;
} agw_sha256_t;


void agw_sha256_init(agw_sha256_t *ctx);
void agw_sha256_update(agw_sha256_t *ctx, const void *data, size_t len);
void agw_sha256_final(agw_sha256_t *ctx,
    uint8_t digest[AGW_SHA256_DIGEST_LEN]);

/* one call over a single buffer */
void agw_sha256(const void *data, size_t len,
    uint8_t digest[AGW_SHA256_DIGEST_LEN]);


#endif /* _AGW_SHA256_H_INCLUDED_ */
