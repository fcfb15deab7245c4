/* hexz-test-guest-layout.h: memory and disk layout of the test guest
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * This header is shared by the freestanding guest (built with -m32
 * -ffreestanding) and by the checker that runs on the host, so it uses only
 * <stdint.h> and plain C. Every multi-byte value is little-endian, which is
 * the byte order of both the guest and the dump files QEMU writes.
 *
 * Physical memory of a running guest:
 *
 *   0x00100000  the guest's own image (code, data, stack), below 0x001f0000
 *   0x00200000  the status area (struct hexz_guest_status, 256 bytes)
 *   0x00400000  the dirty region (dirty=SIZE, at most 12 MiB, default 0)
 *   0x01000000  the pattern region (fill=SIZE, default 16 MiB), clamped to
 *               the RAM that multiboot reports in mem_upper
 *
 * Disk: the record (struct hexz_guest_record) is written to LBA 2048, that
 * is byte offset 1 MiB of the first IDE disk, followed by zero bytes up to
 * the end of the 512-byte sector.
 */

#ifndef HEXZ_TEST_GUEST_LAYOUT_H
#define HEXZ_TEST_GUEST_LAYOUT_H

#include <stdint.h>

#define HEXZ_GUEST_STATUS_ADDR      0x00200000u
#define HEXZ_GUEST_STATUS_SIZE      256u
#define HEXZ_GUEST_DIRTY_BASE       0x00400000u
#define HEXZ_GUEST_DIRTY_MAX        (12u << 20)
#define HEXZ_GUEST_FILL_BASE        0x01000000u
#define HEXZ_GUEST_FILL_DEFAULT     (16u << 20)
#define HEXZ_GUEST_SEED_DEFAULT     0x48455a5au
#define HEXZ_GUEST_INTERVAL_DEFAULT 200u   /* milliseconds between records */

#define HEXZ_GUEST_SECTOR_SIZE      512u
#define HEXZ_GUEST_RECORD_LBA       2048u
#define HEXZ_GUEST_RECORD_OFFSET    ((uint64_t) HEXZ_GUEST_RECORD_LBA * HEXZ_GUEST_SECTOR_SIZE)

#define HEXZ_GUEST_STATUS_MAGIC     0x535a5848u  /* "HXZS" in memory order */
#define HEXZ_GUEST_RECORD_MAGIC     0x525a5848u  /* "HXZR" in memory order */
#define HEXZ_GUEST_LAYOUT_VERSION   1u

/* Values of hexz_guest_status.state, in the order the guest goes through
 * them. */
enum {
  HEXZ_GUEST_STATE_BOOTING = 1,
  HEXZ_GUEST_STATE_FILLING = 2,
  HEXZ_GUEST_STATE_RUNNING = 3,
};

/* Bits of hexz_guest_status.flags. */
enum {
  /* No ATA disk responded as IDE primary master, so no record is written. */
  HEXZ_GUEST_FLAG_NO_DISK = 1u << 0,
  /* The disk is too small to hold the record sector. */
  HEXZ_GUEST_FLAG_DISK_TOO_SMALL = 1u << 1,
  /* A write or flush failed or timed out. The guest stops writing records
   * and leaves in_flight_sequence set, because the failed write may or may
   * not have reached the disk. */
  HEXZ_GUEST_FLAG_DISK_ERROR = 1u << 2,
  /* The RAM above HEXZ_GUEST_FILL_BASE was smaller than fill=. */
  HEXZ_GUEST_FLAG_FILL_CLAMPED = 1u << 3,
  /* Calibrating the TSC against the PIT failed: records are written every
   * HEXZ_GUEST_FALLBACK_ITERATIONS counter steps instead of by time. */
  HEXZ_GUEST_FLAG_NO_TIMER = 1u << 4,
};

#define HEXZ_GUEST_FALLBACK_ITERATIONS (1u << 22)

/* One record, as written to the disk sector and kept in the status area.
 * The checksum covers the 44 bytes before it. */
struct hexz_guest_record {
  uint32_t magic;             /*  0: HEXZ_GUEST_RECORD_MAGIC */
  uint32_t version;           /*  4: HEXZ_GUEST_LAYOUT_VERSION */
  uint32_t sequence;          /*  8: 1 for the first record, then +1 */
  uint32_t counter_lo;        /* 12: counter when the record was made */
  uint32_t counter_hi;        /* 16 */
  uint32_t uptime_ms;         /* 20: 0 when the timer is not calibrated */
  uint32_t seed;              /* 24: pattern seed */
  uint32_t fill_base;         /* 28: pattern physical address */
  uint32_t fill_size;         /* 32: pattern size in bytes */
  uint32_t pattern_checksum;  /* 36: hexz_guest_checksum over the pattern */
  uint32_t reserved;          /* 40: 0 */
  uint32_t checksum;          /* 44: hexz_guest_checksum over bytes 0-43 */
};

#define HEXZ_GUEST_RECORD_SIZE 48u

/* The status area at HEXZ_GUEST_STATUS_ADDR.
 *
 * Records live in two slots: record number N is in slot N % 2. The guest
 * writes a record in this order, so that a VM paused at any instruction
 * shows a state the checker can decide:
 *
 *   1. fill slot N % 2 with record N (the slot held N - 2, unused by now);
 *   2. in_flight_sequence = N;
 *   3. ATA WRITE SECTORS, then FLUSH CACHE;
 *   4. last_done_sequence = N;
 *   5. in_flight_sequence = 0.
 *
 * So the disk sector contains record last_done_sequence, or record
 * in_flight_sequence when that is not 0. Sequence 0 means "none". */
struct hexz_guest_status {
  uint32_t magic;               /*   0: HEXZ_GUEST_STATUS_MAGIC */
  uint32_t version;             /*   4: HEXZ_GUEST_LAYOUT_VERSION */
  uint32_t state;               /*   8: HEXZ_GUEST_STATE_* */
  uint32_t flags;               /*  12: HEXZ_GUEST_FLAG_* */
  uint32_t counter_lo;          /*  16: live counter, +1 per loop step */
  uint32_t counter_hi;          /*  20 */
  uint32_t seed;                /*  24 */
  uint32_t fill_base;           /*  28 */
  uint32_t fill_size;           /*  32: after clamping to RAM */
  uint32_t fill_done;           /*  36: bytes of the pattern written so far */
  uint32_t pattern_checksum;    /*  40: valid from state RUNNING on */
  uint32_t dirty_base;          /*  44 */
  uint32_t dirty_size;          /*  48 */
  uint32_t interval_ms;         /*  52: time between records */
  uint32_t tsc_khz;             /*  56: calibrated TSC rate, 0 if none */
  uint32_t ram_top;             /*  60: end of RAM from mem_upper, bytes */
  uint32_t last_done_sequence;  /*  64 */
  uint32_t in_flight_sequence;  /*  68 */
  uint32_t disk_writes;         /*  72: records written and flushed */
  uint32_t disk_errors;         /*  76 */
  uint32_t ata_status;          /*  80: ATA status at the last error */
  uint32_t disk_sectors;        /*  84: LBA28 capacity from IDENTIFY */
  uint32_t reserved[2];         /*  88 */
  struct hexz_guest_record slots[2];  /* 96 and 144 */
  uint32_t tail[16];            /* 192: 0 */
};

#define HEXZ_GUEST_STATUS_SLOTS_OFFSET 96u

/* Value of the pattern word at physical address @address: a 32-bit
 * integer hash of the address mixed with the seed, so that every word
 * differs from its neighbours and from the same word under another seed. */
static inline uint32_t
hexz_guest_pattern_word (uint32_t address,
                         uint32_t seed)
{
  uint32_t x = address ^ seed;

  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;

  return x;
}

/* Checksums are FNV-1a applied to whole little-endian 32-bit words. Start
 * with HEXZ_GUEST_CHECKSUM_INIT and feed each word in address order. */
#define HEXZ_GUEST_CHECKSUM_INIT 0x811c9dc5u

static inline uint32_t
hexz_guest_checksum_add (uint32_t checksum,
                         uint32_t word)
{
  return (checksum ^ word) * 0x01000193u;
}

#endif /* HEXZ_TEST_GUEST_LAYOUT_H */
