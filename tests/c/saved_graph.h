/*
 * saved_graph.h -- for tests that make up saved graphs (ag_graph_load's
 * bytes, format in csrc/serialize.c): the little-endian fields and the
 * header's CRC-32, computed here bit by bit -- independently of the
 * engine's table-driven one, so that each checks the other.
 */
#ifndef AG_TEST_SAVED_GRAPH_H
#define AG_TEST_SAVED_GRAPH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { SG_HEADER = 16, SG_CRC_AT = 8, SG_CRC_FROM = 12, SG_COUNT_AT = 12 };

/* zlib's CRC-32, one bit at a time. */
static inline uint32_t sg_crc32(const uint8_t *p, size_t n) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    return crc ^ 0xFFFFFFFFu;
}

static inline void sg_put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void sg_put64(uint8_t *p, double d) {
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(bits >> (8 * i));
}

/* Write the CRC of blob[SG_CRC_FROM..len) into its header (len >= 16). */
static inline void sg_reseal(uint8_t *blob, size_t len) {
    sg_put32(blob + SG_CRC_AT, sg_crc32(blob + SG_CRC_FROM, len - SG_CRC_FROM));
}

/* A version-1 header for n nodes, CRC left 0 (sg_reseal once whole). */
static inline void sg_header(uint8_t *blob, uint32_t n) {
    memcpy(blob, "AGCG\x01\x00\x00\x00", 8);
    sg_put32(blob + SG_CRC_AT, 0);
    sg_put32(blob + SG_COUNT_AT, n);
}

#endif /* AG_TEST_SAVED_GRAPH_H */
