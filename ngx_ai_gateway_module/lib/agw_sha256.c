
/*
 * SHA-256 without a crypto library.
 *
 * The cache names an entry by the SHA-256 of its key (agw_key.c), and a POST
 * key includes the SHA-256 of the whole request body.  nginx links OpenSSL
 * only when a module asks for it, and this module must build against a
 * plain `./configure --with-compat`; pulling OpenSSL in for one hash would
 * also tie the pure library (and its unit tests and fuzzer) to a TLS stack.
 * So the hash lives here, about a hundred lines, checked against the FIPS
 * 180-2 test vectors in tests/unit/test_sha256.c.
 *
 * The interface is streaming (init, update, final) because a request body
 * arrives as a chain of buffers, some in memory and some in a temp file:
 * the module feeds each piece as it goes and never joins them.  The context
 * is a plain struct the caller owns (on the stack or in the request pool),
 * so the code never allocates.
 *
 * Words are loaded and stored byte by byte in big-endian order, never by
 * casting the input pointer, so the code is alignment-free and
 * endian-neutral, and the compiler turns the shifts into bswap anyway.
 */


#include <string.h>

#include "agw_sha256.h"


#define agw_ror32(x, n)  (((x) >> (n)) | ((x) << (32 - (n))))

#define agw_sha256_ch(x, y, z)   (((x) & (y)) ^ (~(x) & (z)))
#define agw_sha256_maj(x, y, z)  (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define agw_sha256_s0(x)                                                      \
    (agw_ror32(x, 2) ^ agw_ror32(x, 13) ^ agw_ror32(x, 22))
#define agw_sha256_s1(x)                                                      \
    (agw_ror32(x, 6) ^ agw_ror32(x, 11) ^ agw_ror32(x, 25))
#define agw_sha256_g0(x)  (agw_ror32(x, 7) ^ agw_ror32(x, 18) ^ ((x) >> 3))
#define agw_sha256_g1(x)  (agw_ror32(x, 17) ^ agw_ror32(x, 19) ^ ((x) >> 10))


static const uint32_t  agw_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
    0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
    0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
    0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};


static void
agw_sha256_block_portable(agw_sha256_t *ctx, const uint8_t *p)
{
    uint32_t    a, b, c, d, e, f, g, h, t1, t2, w[64];
    unsigned    i;

    for (i = 0; i < 16; i++) {
        w[i] = (uint32_t) p[4 * i] << 24
               | (uint32_t) p[4 * i + 1] << 16
               | (uint32_t) p[4 * i + 2] << 8
               | (uint32_t) p[4 * i + 3];
    }

    for (i = 16; i < 64; i++) {
        w[i] = agw_sha256_g1(w[i - 2]) + w[i - 7]
               + agw_sha256_g0(w[i - 15]) + w[i - 16];
    }

    a = ctx->state[0];
    b = ctx->state[1];
    c = ctx->state[2];
    d = ctx->state[3];
    e = ctx->state[4];
    f = ctx->state[5];
    g = ctx->state[6];
    h = ctx->state[7];

    for (i = 0; i < 64; i++) {
        t1 = h + agw_sha256_s1(e) + agw_sha256_ch(e, f, g)
             + agw_sha256_k[i] + w[i];
        t2 = agw_sha256_s0(a) + agw_sha256_maj(a, b, c);
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }

    ctx->state[0] += a;
    ctx->state[1] += b;
    ctx->state[2] += c;
    ctx->state[3] += d;
    ctx->state[4] += e;
    ctx->state[5] += f;
    ctx->state[6] += g;
    ctx->state[7] += h;
}


#if (defined(__x86_64__) || defined(__i386__))                             \
    && (defined(__GNUC__) || defined(__clang__))

/*
 * The same block with the x86 SHA extensions (Intel SHA-NI, AMD Zen):
 * about a tenth of the instructions, which is what a cache key or a large
 * prompt's body digest costs on every request.  The round structure is
 * Intel's published one; groups of four rounds, the message schedule
 * computed four words at a time by SHA256MSG1/MSG2.  Chosen at run time,
 * so one build serves every x86-64 CPU.
 */

#include <cpuid.h>
#include <immintrin.h>

#define AGW_SHA256_HAVE_NI  1


__attribute__((target("sha,sse4.1")))
static void
agw_sha256_block_ni(agw_sha256_t *ctx, const uint8_t *p)
{
    unsigned  i;
    __m128i   state0, state1, abef, cdgh, msg, tmp, m[4];

    const __m128i  bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL,
                                          0x0405060700010203ULL);

    /* state as the instructions want it: ABEF and CDGH */
    tmp = _mm_loadu_si128((const __m128i *) &ctx->state[0]);
    state1 = _mm_loadu_si128((const __m128i *) &ctx->state[4]);
    tmp = _mm_shuffle_epi32(tmp, 0xb1);
    state1 = _mm_shuffle_epi32(state1, 0x1b);
    state0 = _mm_alignr_epi8(tmp, state1, 8);
    state1 = _mm_blend_epi16(state1, tmp, 0xf0);

    abef = state0;
    cdgh = state1;

    for (i = 0; i < 16; i++) {

        if (i < 4) {
            m[i] = _mm_shuffle_epi8(
                       _mm_loadu_si128((const __m128i *) (p + 16 * i)),
                       bswap);
        }

        msg = _mm_add_epi32(m[i & 3],
                  _mm_loadu_si128((const __m128i *) &agw_sha256_k[4 * i]));
        state1 = _mm_sha256rnds2_epu32(state1, state0, msg);

        /* words 4(i+1).. from the previous sixteen */
        if (i >= 3 && i < 15) {
            tmp = _mm_alignr_epi8(m[i & 3], m[(i + 3) & 3], 4);
            m[(i + 1) & 3] = _mm_add_epi32(m[(i + 1) & 3], tmp);
            m[(i + 1) & 3] = _mm_sha256msg2_epu32(m[(i + 1) & 3], m[i & 3]);
        }

        msg = _mm_shuffle_epi32(msg, 0x0e);
        state0 = _mm_sha256rnds2_epu32(state0, state1, msg);

        if (i >= 1 && i < 13) {
            m[(i - 1) & 3] = _mm_sha256msg1_epu32(m[(i - 1) & 3], m[i & 3]);
        }
    }

    state0 = _mm_add_epi32(state0, abef);
    state1 = _mm_add_epi32(state1, cdgh);

    /* back to A..H */
    tmp = _mm_shuffle_epi32(state0, 0x1b);
    state1 = _mm_shuffle_epi32(state1, 0xb1);
    state0 = _mm_blend_epi16(tmp, state1, 0xf0);
    state1 = _mm_alignr_epi8(state1, tmp, 8);

    _mm_storeu_si128((__m128i *) &ctx->state[0], state0);
    _mm_storeu_si128((__m128i *) &ctx->state[4], state1);
}


static int
agw_sha256_cpu_has_ni(void)
{
    unsigned  a, b, c, d;

    if (!__get_cpuid(1, &a, &b, &c, &d)
        || !(c & bit_SSSE3) || !(c & bit_SSE4_1))
    {
        return 0;
    }

    if (__get_cpuid_max(0, NULL) < 7) {
        return 0;
    }

    __cpuid_count(7, 0, a, b, c, d);

    return (b & (1u << 29)) != 0;       /* CPUID.7.0:EBX.SHA */
}

#endif


/* -1: not probed yet; races between threads only probe twice */
static int  agw_sha256_accelerated = -1;


int
agw_sha256_set_accelerated(int on)
{
#ifdef AGW_SHA256_HAVE_NI
    agw_sha256_accelerated = on && agw_sha256_cpu_has_ni();
#else
    (void) on;
    agw_sha256_accelerated = 0;
#endif

    return agw_sha256_accelerated;
}


static void
agw_sha256_block(agw_sha256_t *ctx, const uint8_t *p)
{
#ifdef AGW_SHA256_HAVE_NI
    if (agw_sha256_accelerated < 0) {
        (void) agw_sha256_set_accelerated(1);
    }

    if (agw_sha256_accelerated) {
        agw_sha256_block_ni(ctx, p);
        return;
    }
#endif

    agw_sha256_block_portable(ctx, p);
}


void
agw_sha256_init(agw_sha256_t *ctx)
{
    ctx->state[0] = 0x6a09e667;
    ctx->state[1] = 0xbb67ae85;
    ctx->state[2] = 0x3c6ef372;
    ctx->state[3] = 0xa54ff53a;
    ctx->state[4] = 0x510e527f;
    ctx->state[5] = 0x9b05688c;
    ctx->state[6] = 0x1f83d9ab;
    ctx->state[7] = 0x5be0cd19;

    ctx->bytes = 0;
    ctx->buffered = 0;
}


void
agw_sha256_update(agw_sha256_t *ctx, const void *data, size_t len)
{
    size_t          n;
    const uint8_t  *p;

    if (len == 0) {
        /* data may be NULL here, and memcpy(NULL) is undefined even for 0 */
        return;
    }

    p = data;
    ctx->bytes += len;

    /* complete a partial block left by the previous call */

    if (ctx->buffered) {
        n = AGW_SHA256_BLOCK_LEN - ctx->buffered;

        if (len < n) {
            memcpy(ctx->buffer + ctx->buffered, p, len);
            ctx->buffered += len;
            return;
        }

        memcpy(ctx->buffer + ctx->buffered, p, n);
        agw_sha256_block(ctx, ctx->buffer);
        p += n;
        len -= n;
        ctx->buffered = 0;
    }

    /* whole blocks straight from the input, no copy */

    while (len >= AGW_SHA256_BLOCK_LEN) {
        agw_sha256_block(ctx, p);
        p += AGW_SHA256_BLOCK_LEN;
        len -= AGW_SHA256_BLOCK_LEN;
    }

    if (len) {
        memcpy(ctx->buffer, p, len);
        ctx->buffered = len;
    }
}


void
agw_sha256_final(agw_sha256_t *ctx, uint8_t digest[AGW_SHA256_DIGEST_LEN])
{
    size_t    n;
    uint64_t  bits;
    unsigned  i;

    bits = ctx->bytes << 3;
    n = ctx->buffered;

    /* the 0x80 terminator, zeros up to 56 mod 64, then the bit length */

    ctx->buffer[n++] = 0x80;

    if (n > AGW_SHA256_BLOCK_LEN - 8) {
        memset(ctx->buffer + n, 0, AGW_SHA256_BLOCK_LEN - n);
        agw_sha256_block(ctx, ctx->buffer);
        n = 0;
    }

    memset(ctx->buffer + n, 0, AGW_SHA256_BLOCK_LEN - 8 - n);

    for (i = 0; i < 8; i++) {
        ctx->buffer[AGW_SHA256_BLOCK_LEN - 1 - i] = (uint8_t) (bits >> (8 * i));
    }

    agw_sha256_block(ctx, ctx->buffer);

    for (i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t) (ctx->state[i] >> 24);
        digest[4 * i + 1] = (uint8_t) (ctx->state[i] >> 16);
        digest[4 * i + 2] = (uint8_t) (ctx->state[i] >> 8);
        digest[4 * i + 3] = (uint8_t) ctx->state[i];
    }

    /* the context held message state; do not leave it around */

    memset(ctx, 0, sizeof(agw_sha256_t));
}


void
agw_sha256(const void *data, size_t len, uint8_t digest[AGW_SHA256_DIGEST_LEN])
{
    agw_sha256_t  ctx;

    agw_sha256_init(&ctx);
    agw_sha256_update(&ctx, data, len);
    agw_sha256_final(&ctx, digest);
}
