
/*
 * Cache key digests.
 *
 * A cache entry is named by a digest of everything that must match for a
 * stored response to be the right answer: the configured key text (by
 * default method, scheme, host and URI), for a request with a body (and
 * every POST) the whole body, and, when caching of authorized requests is
 * on, the credential headers present.
 * proxy_cache hashes the key string alone and leaves the rest to
 * `$request_body` in the key, which is empty once the body is buffered to a
 * temp file, so two large prompts share one key.  Here the body enters as
 * its own SHA-256, computed over every buffer wherever nginx keeps it.
 *
 * Hashing a plain concatenation would be ambiguous: key "ab" with body
 * digest D is one string, key "a" followed by "b" || D another, and an
 * absent body and an empty one would look alike; so would the key parts
 * "http" + "sexample.com" and "https" + "example.com".  So every field is
 * encoded as a one-byte tag, its length as a LEB128 varint (7 bits a byte,
 * the high bit set on every byte but the last: one byte below 128) and the
 * bytes:
 *
 *     'V' len "agw-key-v4"   always first: bump it to retire every old key
 *     'K' len key part       one per part of the key text, in order (the
 *                            module splits the key at each variable)
 *     'B' 32  body digest    only when the request is keyed on its body
 *     'A' 32  cred digest    only when credentials are part of the key
 *
 * The body digest is itself tagged: SHA-256 of 'R' and the body's bytes,
 * or of 'J' and its canonical JSON form (ai_gateway_cache_key_json), so a
 * body keyed by its bytes and another keyed by its canonical form never
 * share a digest, even when the bytes of one are the form of the other
 * (a location with key_json off and one with it on, sharing a store and a
 * key text).
 *
 * Versions: v3 digested the body without its tag; v4 (the tag) changed
 * every key of a request with a body, so the version changed every key:
 * entries stored under v3 are never found again and expire with their TTL
 * (Redis) or go with the zone (a shared-memory zone refuses a reload
 * across the change, NGX_HTTP_AI_GATEWAY_SHM_VERSION).
 *
 * The tags make a missing field different from an empty one and stop the
 * fields from sliding into each other; the lengths make the split of the
 * key text unambiguous.  The encoding is prefix-free for a given number of
 * key parts (fixed by the configuration), so distinct inputs give distinct
 * hash inputs and only a SHA-256 collision could merge them.  The short
 * lengths keep a usual key (version, method, scheme, host, URI) within one
 * SHA-256 block of 55 bytes: every HIT and MISS hashes its key.
 *
 * The credentials go in as a digest, not verbatim, so the key material the
 * module may log or keep around never holds a credential.  That digest is
 * made of the same fields: 'N' header name, 'C' value, for every credential
 * header present.
 * The hex form of the digest is the Redis key suffix (`gw:v1:<hex>`) and
 * the shared-memory tree key.
 */


#include <string.h>

#include "agw_attr.h"
#include "agw_key.h"


static AGW_NOINLINE void agw_key_slot_digest(uint8_t out[AGW_KEY_SLOT_LEN],
    const uint8_t *key, size_t len);


#define AGW_KEY_VERSION  "agw-key-v4"


void
agw_digest_field(agw_sha256_t *ctx, uint8_t tag, const uint8_t *data,
    size_t len)
{
    uint8_t   hdr[1 + 10];
    uint64_t  n;
    unsigned  i;

    hdr[0] = tag;
    n = len;
    i = 1;

    while (n >= 0x80) {
        hdr[i++] = (uint8_t) (n | 0x80);
        n >>= 7;
    }

    hdr[i++] = (uint8_t) n;

    agw_sha256_update(ctx, hdr, i);
    agw_sha256_update(ctx, data, len);
}


void
agw_key_init(agw_key_t *k)
{
    agw_sha256_init(&k->sha);

    agw_digest_field(&k->sha, 'V', (const uint8_t *) AGW_KEY_VERSION,
                     sizeof(AGW_KEY_VERSION) - 1);
}


void
agw_key_part(agw_key_t *k, const uint8_t *data, size_t len)
{
    agw_digest_field(&k->sha, 'K', data, len);
}


void
agw_key_final(agw_key_t *k, agw_digest_t *out, const agw_digest_t *body,
    const agw_digest_t *cred)
{
    if (body != NULL) {
        agw_digest_field(&k->sha, 'B', body->bytes, AGW_DIGEST_LEN);
    }

    if (cred != NULL) {
        agw_digest_field(&k->sha, 'A', cred->bytes, AGW_DIGEST_LEN);
    }

    agw_sha256_final(&k->sha, out->bytes);
}


void
agw_key_digest(agw_digest_t *out, const uint8_t *key, size_t key_len,
    const agw_digest_t *body, const agw_digest_t *cred)
{
    agw_key_t  k;

    agw_key_init(&k);
    agw_key_part(&k, key, key_len);
    agw_key_final(&k, out, body, cred);
}


void
agw_digest_buf(agw_digest_t *out, const uint8_t *data, size_t len)
{
    agw_sha256(data, len, out->bytes);
}


void
agw_key_slot(uint8_t out[AGW_KEY_SLOT_LEN], const uint8_t *key, size_t len)
{
    if (len >= AGW_KEY_SLOT_LEN) {
        agw_key_slot_digest(out, key, len);
        return;
    }

    /* the length byte keeps "a" and "a\0" apart */

    memset(out, 0, AGW_KEY_SLOT_LEN);
    out[0] = (uint8_t) len;

    if (len) {
        memcpy(out + 1, key, len);
    }
}


/*
 * apart, and never inlined, so that the short keys' path (every request
 * limited by address) carries no digest buffer and no stack-protector check
 */

static AGW_NOINLINE void
agw_key_slot_digest(uint8_t out[AGW_KEY_SLOT_LEN], const uint8_t *key,
    size_t len)
{
    uint8_t  digest[AGW_SHA256_DIGEST_LEN];

    agw_sha256(key, len, digest);

    out[0] = AGW_KEY_SLOT_DIGEST;
    memcpy(out + 1, digest, AGW_KEY_SLOT_LEN - 1);
}


void
agw_digest_final(agw_digest_t *out, agw_sha256_t *ctx)
{
    agw_sha256_final(ctx, out->bytes);
}


void
agw_body_digest_init(agw_sha256_t *ctx, uint8_t form)
{
    agw_sha256_init(ctx);
    agw_sha256_update(ctx, &form, 1);
}


void
agw_digest_hex(const agw_digest_t *d, char out[AGW_DIGEST_HEX_LEN + 1])
{
    unsigned           i;
    static const char  hex[] = "0123456789abcdef";

    for (i = 0; i < AGW_DIGEST_LEN; i++) {
        out[2 * i] = hex[d->bytes[i] >> 4];
        out[2 * i + 1] = hex[d->bytes[i] & 0xf];
    }

    out[AGW_DIGEST_HEX_LEN] = '\0';
}
