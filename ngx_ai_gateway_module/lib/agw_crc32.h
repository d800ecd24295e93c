
/*
 * CRC-32 (IEEE 802.3, reflected polynomial 0xedb88320), computed by zlib's
 * crc32(): the same checksum as nginx's ngx_crc32_long(), so a key
 * checksum computed here can be compared with one computed by either.
 */


#ifndef _AGW_CRC32_H_INCLUDED_
#define _AGW_CRC32_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* streaming, as ngx_crc32_init() / ngx_crc32_update() / ngx_crc32_final() */
#define agw_crc32_init(crc)                                                   \
    crc = 0xffffffff

#define agw_crc32_final(crc)                                                  \
    crc ^= 0xffffffff


uint32_t agw_crc32_update(uint32_t crc, const void *data, size_t len);
uint32_t agw_crc32(const void *data, size_t len);


#endif /* _AGW_CRC32_H_INCLUDED_ */
