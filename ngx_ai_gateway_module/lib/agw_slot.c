
/*
 * Redis Cluster's key slot, as keyHashSlot() in Redis' cluster.c.
 */


#include "agw_slot.h"

#include <string.h>


uint16_t
agw_crc16(const void *data, size_t len)
{
    size_t          i;
    unsigned        bit;
    uint16_t        crc;
    const uint8_t  *p;

    p = data;
    crc = 0;

    for (i = 0; i < len; i++) {
        crc ^= (uint16_t) (p[i] << 8);

        for (bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000) ? (uint16_t) ((crc << 1) ^ 0x1021)
                                 : (uint16_t) (crc << 1);
        }
    }

    return crc;
}


unsigned
agw_cluster_slot(const void *key, size_t len)
{
    size_t          s, e;
    const uint8_t  *p;

    p = key;

    for (s = 0; s < len; s++) {
        if (p[s] == '{') {
            break;
        }
    }

    if (s < len) {
        for (e = s + 1; e < len; e++) {
            if (p[e] == '}') {
                break;
            }
        }

        /* "{}" or no '}': the whole key */
        if (e < len && e != s + 1) {
            return agw_crc16(p + s + 1, e - s - 1) & (AGW_SLOTS - 1);
        }
    }

    return agw_crc16(p, len) & (AGW_SLOTS - 1);
}
