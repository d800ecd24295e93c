
/*
 * Cache key digest: what names a cache entry in shared memory and in Redis.
 */


#ifndef _AGW_KEY_H_INCLUDED_
#define _AGW_KEY_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "agw_sha256.h"


#define AGW_DIGEST_LEN      32           /* bytes */
#define AGW_DIGEST_HEX_LEN  64           /* chars, without the NUL */


typedef struct {
    uint8_t  bytes[AGW_DIGEST_LEN];
} agw_digest_t;


/*
 * digest = SHA-256 over tagged, length-prefixed fields: the version string
 * "agw-key-v4", each part of the key text in order, the body digest if
 * keyed on the body, the credentials digest if keyed on them; a missing
 * field differs from an empty one, and no two different inputs meet by
 * concatenation: parts "http" "sexample.com" differ from "https"
 * "example.com"
 */
typedef struct {
    agw_sha256_t  sha;
} agw_key_t;

void agw_key_init(agw_key_t *k);
void agw_key_part(agw_key_t *k, const uint8_t *data, size_t len);
void agw_key_final(agw_key_t *k, agw_digest_t *out, const agw_digest_t *body,
    const agw_digest_t *cred);

/* the digest of a key of one part */
void agw_key_digest(agw_digest_t *out, const uint8_t *key, size_t key_len,
    const agw_digest_t *body, const agw_digest_t *cred);

/*
 * one tagged, length-prefixed field into a running SHA-256: what the key
 * digest is made of, and how a credentials digest takes each header name
 * and value as a field of its own
 */
void agw_digest_field(agw_sha256_t *ctx, uint8_t tag, const uint8_t *data,
    size_t len);

/* SHA-256 of one buffer, e.g. an Authorization value, as an agw_digest_t */
void agw_digest_buf(agw_digest_t *out, const uint8_t *data, size_t len);

/* finish a streaming body hash into an agw_digest_t */
void agw_digest_final(agw_digest_t *out, agw_sha256_t *ctx);

/*
 * The body digest is SHA-256 of a one-byte form tag, then the body as it
 * was keyed: its bytes, or its canonical JSON form (agw_json_canonical.h).
 * The tag keeps the two domains apart: bytes keyed as they are never give
 * the digest of a canonical form, whatever they hold.  body_init starts
 * such a hash; the body (or its form) follows with agw_sha256_update(),
 * and agw_digest_final() ends it.
 */
#define AGW_BODY_RAW        'R'
#define AGW_BODY_CANONICAL  'J'

void agw_body_digest_init(agw_sha256_t *ctx, uint8_t form);


/*
 * A fixed-size slot that identifies a rate-limit key exactly: a key of up
 * to AGW_KEY_SLOT_LEN - 1 bytes is stored as its length and its bytes (an
 * address from $binary_remote_addr costs no hashing at all); a longer key
 * as a marker byte and its SHA-256, truncated to the rest of the slot.
 */
#define AGW_KEY_SLOT_LEN     32
#define AGW_KEY_SLOT_DIGEST  0xff

void agw_key_slot(uint8_t out[AGW_KEY_SLOT_LEN], const uint8_t *key,
    size_t len);

/* lowercase hex, NUL-terminated */
void agw_digest_hex(const agw_digest_t *d, char out[AGW_DIGEST_HEX_LEN + 1]);


#endif /* _AGW_KEY_H_INCLUDED_ */
