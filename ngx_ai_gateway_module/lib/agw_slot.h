
/*
 * Redis Cluster's key slot: CRC16 (XMODEM: polynomial 0x1021, initial 0)
 * of the key, or of its hash tag, modulo 16384.  The hash tag is what lies
 * between the first '{' and the first '}' after it, when that is not
 * empty: keys with the same tag share a slot, hence a node.
 */


#ifndef _AGW_SLOT_H_INCLUDED_
#define _AGW_SLOT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define AGW_SLOTS  16384


uint16_t agw_crc16(const void *data, size_t len);
unsigned agw_cluster_slot(const void *key, size_t len);


#endif /* _AGW_SLOT_H_INCLUDED_ */
