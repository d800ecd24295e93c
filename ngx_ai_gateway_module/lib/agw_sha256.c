
/*
 * SHA-256 from OpenSSL's libcrypto.
 *
 * The cache names an entry by the SHA-256 of its key (agw_key.c), and a POST
 * key includes the SHA-256 of the whole request body: every HIT and MISS
 * hashes.  The digest is libcrypto's, not ours: Debian's nginx links
 * libcrypto already (the module adds no library to the process), it is
 * well kept, and its assembly picks the CPU's SHA extensions (SHA-NI) at
 * run time, else AVX2 or SSSE3 code, so one build is as fast as the CPU
 * allows.
 *
 * The interface is streaming (init, update, final) because a request body
 * arrives as a chain of buffers, some in memory and some in a temp file:
 * the module feeds each piece as it goes and never joins them.  The context
 * is a plain struct the caller owns (on the stack, in the request pool, in
 * shared memory), so the code never allocates.
 *
 * That is why this file calls SHA256_Init(), _Update() and _Final(), which
 * OpenSSL 3.0 deprecates in favour of EVP_Digest*(): an EVP_MD_CTX is
 * allocated by the library (EVP_MD_CTX_new(), and every EVP_DigestInit_ex()
 * allocates the provider's context again), so it could live in no request
 * struct or shared memory without a free on every path, and the dispatch
 * and the allocation make a short key dearer: a 200-byte key took 146 ns
 * low-level against 188 ns through EVP with a fetched EVP_MD and a reused
 * EVP_MD_CTX (7,934 against 8,583 instructions under callgrind).  The
 * low-level calls run the same block function as EVP's default provider.
 * So this file, and only this one, suppresses the deprecation warnings, as
 * nginx's own ngx_event_openssl.h does.
 */


#define OPENSSL_SUPPRESS_DEPRECATED

#include "agw_sha256.h"


void
agw_sha256_init(agw_sha256_t *ctx)
{
    (void) SHA256_Init(&ctx->ctx);
}


void
agw_sha256_update(agw_sha256_t *ctx, const void *data, size_t len)
{
    /* len 0 returns at once: data may be NULL */

    (void) SHA256_Update(&ctx->ctx, data, len);
}


void
agw_sha256_final(agw_sha256_t *ctx, uint8_t digest[AGW_SHA256_DIGEST_LEN])
{
    /* it clears the last block of message bytes from the context */

    (void) SHA256_Final(digest, &ctx->ctx);
}


void
agw_sha256(const void *data, size_t len, uint8_t digest[AGW_SHA256_DIGEST_LEN])
{
    agw_sha256_t  ctx;

    /*
     * not OpenSSL's SHA256(): in 3.0 it fetches the algorithm from the
     * provider on every call (about three times the cost of a short key)
     */

    agw_sha256_init(&ctx);
    agw_sha256_update(&ctx, data, len);
    agw_sha256_final(&ctx, digest);
}
