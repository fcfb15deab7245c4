/* hexz-test-guest.h: check the state of the test guest from its memory and disk
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The test guest is built from tests/guest/ as hexz-test-guest.elf, and the
 * test suite passes its path in the HEXZ_TEST_GUEST environment variable.
 * It keeps a status area at physical address HEXZ_GUEST_STATUS_ADDR
 * (0x00200000, 256 bytes), a pattern region at HEXZ_GUEST_FILL_BASE
 * (0x01000000) and a record in disk sector HEXZ_GUEST_RECORD_LBA (2048,
 * byte offset 1 MiB). The full layout is in guest/hexz-test-guest-layout.h
 * and guest/README.md.
 *
 * These helpers take plain data: bytes a test read with QMP `pmemsave`
 * (`val` = address, `size`, `filename`) or with the HMP command `xp`, and
 * raw disk images. They do not talk to QEMU themselves.
 *
 * Start it with hexz_test_qemu_start (args) where args come from
 * hexz_test_guest_qemu_args() and the disk from
 * hexz_test_guest_create_disk(). A typical check of a paused guest:
 *
 * |[<!-- language="C" -->
 * // QMP: stop, then pmemsave val=HEXZ_GUEST_STATUS_ADDR size=256
 * hexz_test_guest_load_status (status_dump, &status, &error);
 * hexz_test_guest_read_disk_record (disk_image, &record, &error);
 * hexz_test_guest_check_consistent (&status, &record, &error);
 * // QMP: pmemsave val=status.fill_base size=status.fill_size
 * hexz_test_guest_verify_pattern_file (pattern_dump, status.fill_base,
 *                                      status.seed, &bad_address, &error);
 * ]|
 */

#pragma once

#include <glib.h>

#include "guest/hexz-test-guest-layout.h"

G_BEGIN_DECLS

#define HEXZ_TEST_GUEST_ERROR (hexz_test_guest_error_quark ())

/**
 * HexzTestGuestError:
 * @HEXZ_TEST_GUEST_ERROR_INVALID: a dump, record or disk image is not in
 *   the guest's layout (wrong magic, version, checksum or size)
 * @HEXZ_TEST_GUEST_ERROR_PATTERN: a word of the pattern region differs
 *   from the expected pattern
 * @HEXZ_TEST_GUEST_ERROR_INCONSISTENT: memory and disk, or two states of
 *   the same guest, do not fit together
 * @HEXZ_TEST_GUEST_ERROR_STATE: the guest is not in a state that can be
 *   checked (not running yet, no disk, a disk error)
 */
typedef enum {
  HEXZ_TEST_GUEST_ERROR_INVALID,
  HEXZ_TEST_GUEST_ERROR_PATTERN,
  HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
  HEXZ_TEST_GUEST_ERROR_STATE,
} HexzTestGuestError;

/**
 * HexzTestGuestRecord:
 * @sequence: record number, 1 for the first; 0 for "no record" (an
 *   all-zero disk sector)
 * @counter: the guest's counter when it made the record
 * @uptime_ms: milliseconds since boot, 0 when the guest has no timer
 * @seed: pattern seed
 * @fill_base: physical address of the pattern region
 * @fill_size: size of the pattern region in bytes
 * @pattern_checksum: checksum the guest read back from the pattern region
 *
 * A decoded record, from the disk sector or from the status area.
 */
typedef struct {
  guint32 sequence;
  guint64 counter;
  guint32 uptime_ms;
  guint32 seed;
  guint32 fill_base;
  guint32 fill_size;
  guint32 pattern_checksum;
} HexzTestGuestRecord;

/**
 * HexzTestGuestStatus:
 * @state: a HEXZ_GUEST_STATE_* value
 * @flags: HEXZ_GUEST_FLAG_* bits
 * @counter: live counter
 * @seed: pattern seed
 * @fill_base: physical address of the pattern region
 * @fill_size: size of the pattern region in bytes, after clamping to RAM
 * @fill_done: bytes of the pattern written so far
 * @pattern_checksum: checksum of the pattern, valid in state RUNNING
 * @dirty_base: physical address of the dirty region
 * @dirty_size: size of the dirty region in bytes
 * @interval_ms: time between two records
 * @tsc_khz: calibrated TSC rate, 0 when calibration failed
 * @ram_top: end of RAM as multiboot reported it, in bytes
 * @last_done_sequence: number of the last record written and flushed
 * @in_flight_sequence: number of the record being written, or 0
 * @disk_writes: records written and flushed
 * @disk_errors: failed record writes
 * @ata_status: ATA status (bits 0-7) and error (bits 8-15) at the last error
 * @disk_sectors: LBA28 capacity of the disk
 * @last_done: record @last_done_sequence, valid when that is not 0
 * @in_flight: record @in_flight_sequence, valid when that is not 0
 *
 * The decoded status area of the guest.
 */
typedef struct {
  guint32 state;
  guint32 flags;
  guint64 counter;
  guint32 seed;
  guint32 fill_base;
  guint32 fill_size;
  guint32 fill_done;
  guint32 pattern_checksum;
  guint32 dirty_base;
  guint32 dirty_size;
  guint32 interval_ms;
  guint32 tsc_khz;
  guint32 ram_top;
  guint32 last_done_sequence;
  guint32 in_flight_sequence;
  guint32 disk_writes;
  guint32 disk_errors;
  guint32 ata_status;
  guint32 disk_sectors;
  HexzTestGuestRecord last_done;
  HexzTestGuestRecord in_flight;
} HexzTestGuestStatus;

GQuark       hexz_test_guest_error_quark              (void);

/* Size of the raw disk image hexz_test_guest_create_disk() creates. */
#define HEXZ_TEST_GUEST_DISK_SIZE (4u << 20)

const char  *hexz_test_guest_get_path                 (void);
GStrv        hexz_test_guest_qemu_args                (const char                *append,
                                                       const char                *disk_path);
gboolean     hexz_test_guest_create_disk              (const char                *path,
                                                       GError                   **error);

const char  *hexz_test_guest_state_to_string          (guint32                    state);

gboolean     hexz_test_guest_parse_record             (const guint8              *data,
                                                       gsize                      size,
                                                       HexzTestGuestRecord       *record,
                                                       GError                   **error);
gboolean     hexz_test_guest_parse_status             (const guint8              *data,
                                                       gsize                      size,
                                                       HexzTestGuestStatus       *status,
                                                       GError                   **error);
gboolean     hexz_test_guest_load_status              (const char                *dump_path,
                                                       HexzTestGuestStatus       *status,
                                                       GError                   **error);

char        *hexz_test_guest_xp_command               (guint32                    address,
                                                       gsize                      size);
GBytes      *hexz_test_guest_parse_xp                 (const char                *output,
                                                       guint32                    address,
                                                       gsize                      size,
                                                       GError                   **error);

guint32      hexz_test_guest_pattern_checksum         (guint32                    fill_base,
                                                       guint32                    fill_size,
                                                       guint32                    seed);
gboolean     hexz_test_guest_verify_pattern           (const guint8              *data,
                                                       gsize                      size,
                                                       guint32                    address,
                                                       guint32                    seed,
                                                       guint32                   *bad_address,
                                                       GError                   **error);
gboolean     hexz_test_guest_verify_pattern_file      (const char                *dump_path,
                                                       guint32                    address,
                                                       guint32                    seed,
                                                       guint32                   *bad_address,
                                                       GError                   **error);

gboolean     hexz_test_guest_check_ram                (const guint8              *ram,
                                                       gsize                      size,
                                                       HexzTestGuestStatus       *status,
                                                       guint32                   *bad_address,
                                                       GError                   **error);
gboolean     hexz_test_guest_check_ram_file           (const char                *ram_path,
                                                       HexzTestGuestStatus       *status,
                                                       guint32                   *bad_address,
                                                       GError                   **error);

gboolean     hexz_test_guest_parse_disk_sector        (const guint8              *sector,
                                                       gsize                      size,
                                                       HexzTestGuestRecord       *record,
                                                       GError                   **error);
gboolean     hexz_test_guest_read_disk_record         (const char                *image_path,
                                                       HexzTestGuestRecord       *record,
                                                       GError                   **error);

gboolean     hexz_test_guest_record_equal             (const HexzTestGuestRecord *a,
                                                       const HexzTestGuestRecord *b);
gboolean     hexz_test_guest_check_consistent         (const HexzTestGuestStatus *status,
                                                       const HexzTestGuestRecord *disk_record,
                                                       GError                   **error);
gboolean     hexz_test_guest_check_progress           (const HexzTestGuestStatus *before,
                                                       const HexzTestGuestStatus *after,
                                                       GError                   **error);

G_END_DECLS
