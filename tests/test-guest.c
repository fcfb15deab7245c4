/* test-guest.c: tests of the test guest and of its checker
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The /guest/checker/ cases feed the checker hand-made memory and disk
 * contents. The /guest/qemu/ cases boot the guest (HEXZ_TEST_GUEST) in
 * QEMU under TCG, or KVM with HEXZ_TEST_ACCEL=kvm, and check it through
 * QMP dumps of its memory and through its disk image.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "hexz-test-guest.h"
#include "hexz-test-qemu.h"

/* Deadlines, generous for a loaded machine running TCG. */
#define BOOT_TIMEOUT_S   30
#define QMP_TIMEOUT_S    30

/* Size of the disk the QEMU tests give the guest. */
#define TEST_DISK_SIZE   HEXZ_TEST_GUEST_DISK_SIZE

/* Building blocks for hand-made guest memory. */

static void
finish_record (struct hexz_guest_record *record)
{
  const guint32 *words = (const guint32 *) record;
  guint32 checksum = HEXZ_GUEST_CHECKSUM_INIT;

  for (guint i = 0; i < HEXZ_GUEST_RECORD_SIZE / 4 - 1; i++)
    checksum = hexz_guest_checksum_add (checksum, GUINT32_FROM_LE (words[i]));
  record->checksum = GUINT32_TO_LE (checksum);
}

static void
make_record (struct hexz_guest_record *record,
             guint32                   sequence,
             guint64                   counter,
             guint32                   pattern_checksum)
{
  memset (record, 0, sizeof *record);
  record->magic = GUINT32_TO_LE (HEXZ_GUEST_RECORD_MAGIC);
  record->version = GUINT32_TO_LE (HEXZ_GUEST_LAYOUT_VERSION);
  record->sequence = GUINT32_TO_LE (sequence);
  record->counter_lo = GUINT32_TO_LE ((guint32) counter);
  record->counter_hi = GUINT32_TO_LE ((guint32) (counter >> 32));
  record->uptime_ms = GUINT32_TO_LE (sequence * 200);
  record->seed = GUINT32_TO_LE (HEXZ_GUEST_SEED_DEFAULT);
  record->fill_base = GUINT32_TO_LE (HEXZ_GUEST_FILL_BASE);
  record->fill_size = GUINT32_TO_LE (64 * 1024);
  record->pattern_checksum = GUINT32_TO_LE (pattern_checksum);
  finish_record (record);
}

/* A running guest with a 64 KiB pattern that finished record @last_done and
 * is writing record @in_flight (0 for none). */
static void
make_status (struct hexz_guest_status *status,
             guint32                   last_done,
             guint32                   in_flight)
{
  guint32 pattern_checksum = hexz_test_guest_pattern_checksum (HEXZ_GUEST_FILL_BASE, 64 * 1024,
                                                               HEXZ_GUEST_SEED_DEFAULT);

  memset (status, 0, sizeof *status);
  status->magic = GUINT32_TO_LE (HEXZ_GUEST_STATUS_MAGIC);
  status->version = GUINT32_TO_LE (HEXZ_GUEST_LAYOUT_VERSION);
  status->state = GUINT32_TO_LE (HEXZ_GUEST_STATE_RUNNING);
  status->counter_lo = GUINT32_TO_LE (1000000);
  status->seed = GUINT32_TO_LE (HEXZ_GUEST_SEED_DEFAULT);
  status->fill_base = GUINT32_TO_LE (HEXZ_GUEST_FILL_BASE);
  status->fill_size = GUINT32_TO_LE (64 * 1024);
  status->fill_done = status->fill_size;
  status->pattern_checksum = GUINT32_TO_LE (pattern_checksum);
  status->interval_ms = GUINT32_TO_LE (200);
  status->last_done_sequence = GUINT32_TO_LE (last_done);
  status->in_flight_sequence = GUINT32_TO_LE (in_flight);
  status->disk_writes = GUINT32_TO_LE (last_done);

  if (last_done != 0)
    make_record (&status->slots[last_done % 2], last_done, last_done * 1000, pattern_checksum);
  if (in_flight != 0 && in_flight != last_done)
    make_record (&status->slots[in_flight % 2], in_flight, in_flight * 1000, pattern_checksum);
}

static void
make_sector (guint8                         *sector,
             const struct hexz_guest_record *record)
{
  memset (sector, 0, HEXZ_GUEST_SECTOR_SIZE);
  if (record != NULL)
    memcpy (sector, record, sizeof *record);
}

/* /guest/checker/ */

static void
test_checker_record (void)
{
  struct hexz_guest_record raw;
  HexzTestGuestRecord record;
  g_autoptr(GError) error = NULL;
  guint8 *bytes = (guint8 *) &raw;

  make_record (&raw, 7, G_GUINT64_CONSTANT (0x100000002), 0x1234);
  g_assert_true (hexz_test_guest_parse_record (bytes, sizeof raw, &record, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (record.sequence, ==, 7);
  g_assert_cmpuint (record.counter, ==, G_GUINT64_CONSTANT (0x100000002));
  g_assert_cmpuint (record.pattern_checksum, ==, 0x1234);

  /* One flipped bit in the counter breaks the checksum. */
  bytes[G_STRUCT_OFFSET (struct hexz_guest_record, counter_lo)] ^= 0x01;
  g_assert_false (hexz_test_guest_parse_record (bytes, sizeof raw, &record, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
  g_test_message ("Expected error: %s", error->message);
  g_clear_error (&error);

  make_record (&raw, 7, 1, 0x1234);
  raw.magic = 0;
  g_assert_false (hexz_test_guest_parse_record (bytes, sizeof raw, &record, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
  g_clear_error (&error);

  make_record (&raw, 7, 1, 0x1234);
  g_assert_false (hexz_test_guest_parse_record (bytes, sizeof raw - 1, &record, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
}

static void
test_checker_disk_sector (void)
{
  guint8 sector[HEXZ_GUEST_SECTOR_SIZE];
  struct hexz_guest_record raw;
  HexzTestGuestRecord record;
  g_autoptr(GError) error = NULL;

  /* A disk the guest has not written yet. */
  make_sector (sector, NULL);
  g_assert_true (hexz_test_guest_parse_disk_sector (sector, sizeof sector, &record, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (record.sequence, ==, 0);

  make_record (&raw, 3, 3000, 0x55);
  make_sector (sector, &raw);
  g_assert_true (hexz_test_guest_parse_disk_sector (sector, sizeof sector, &record, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (record.sequence, ==, 3);
  g_assert_cmpuint (record.counter, ==, 3000);

  /* Junk after the record. */
  sector[HEXZ_GUEST_SECTOR_SIZE - 1] = 0xaa;
  g_assert_false (hexz_test_guest_parse_disk_sector (sector, sizeof sector, &record, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
  g_clear_error (&error);

  /* Junk where the record should be. */
  memset (sector, 0x5a, sizeof sector);
  g_assert_false (hexz_test_guest_parse_disk_sector (sector, sizeof sector, &record, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
}

static void
test_checker_disk_image (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = g_dir_make_tmp ("hexz-test-guest-XXXXXX", &error);
  g_autofree char *image = NULL;
  g_autofree char *small_image = NULL;
  struct hexz_guest_record raw;
  HexzTestGuestRecord record;
  int fd;

  g_assert_no_error (error);
  image = g_build_filename (tmpdir, "disk.img", NULL);
  small_image = g_build_filename (tmpdir, "small.img", NULL);

  g_assert_true (hexz_test_guest_create_disk (image, &error));
  g_assert_no_error (error);

  /* A new disk has no record yet. */
  g_assert_true (hexz_test_guest_read_disk_record (image, &record, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (record.sequence, ==, 0);

  /* The image is never overwritten. */
  g_assert_false (hexz_test_guest_create_disk (image, &error));
  g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_EXIST);
  g_clear_error (&error);

  make_record (&raw, 9, 9000, 0x77);
  fd = g_open (image, O_RDWR | O_CLOEXEC, 0);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pwrite (fd, &raw, sizeof raw, HEXZ_GUEST_RECORD_OFFSET), ==, sizeof raw);
  g_assert_true (g_close (fd, NULL));

  g_assert_true (hexz_test_guest_read_disk_record (image, &record, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (record.sequence, ==, 9);
  g_assert_cmpuint (record.counter, ==, 9000);

  /* An image that ends before the record sector. */
  g_assert_true (g_file_set_contents (small_image, "x", 1, &error));
  g_assert_false (hexz_test_guest_read_disk_record (small_image, &record, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
  g_test_message ("Expected error: %s", error->message);
  g_clear_error (&error);

  g_assert_no_errno (g_unlink (image));
  g_assert_no_errno (g_unlink (small_image));
  g_assert_no_errno (g_rmdir (tmpdir));
}

static void
test_checker_status (void)
{
  struct hexz_guest_status raw;
  HexzTestGuestStatus status;
  g_autoptr(GError) error = NULL;

  make_status (&raw, 5, 6);
  g_assert_true (hexz_test_guest_parse_status ((const guint8 *) &raw, sizeof raw, &status, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (status.state, ==, HEXZ_GUEST_STATE_RUNNING);
  g_assert_cmpuint (status.counter, ==, 1000000);
  g_assert_cmpuint (status.last_done.sequence, ==, 5);
  g_assert_cmpuint (status.in_flight.sequence, ==, 6);
  g_assert_cmpuint (status.last_done.counter, ==, 5000);

  /* A status area from something else than the guest. */
  raw.magic = 0;
  g_assert_false (hexz_test_guest_parse_status ((const guint8 *) &raw, sizeof raw, &status, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
  g_clear_error (&error);

  /* The slot of the last done record was overwritten. */
  make_status (&raw, 5, 0);
  raw.slots[1].counter_lo ^= 1;
  g_assert_false (hexz_test_guest_parse_status ((const guint8 *) &raw, sizeof raw, &status, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
  g_test_message ("Expected error: %s", error->message);
  g_clear_error (&error);

  /* The slot contains another record than the sequence number names. */
  make_status (&raw, 5, 0);
  raw.last_done_sequence = GUINT32_TO_LE (7);
  g_assert_false (hexz_test_guest_parse_status ((const guint8 *) &raw, sizeof raw, &status, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
  g_clear_error (&error);

  g_assert_false (hexz_test_guest_parse_status ((const guint8 *) &raw, 100, &status, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
}

static void
check_consistent_case (guint32  last_done,
                       guint32  in_flight,
                       guint32  on_disk,
                       gboolean expected)
{
  guint8 sector[HEXZ_GUEST_SECTOR_SIZE];
  struct hexz_guest_status raw;
  HexzTestGuestStatus status;
  HexzTestGuestRecord disk_record;
  g_autoptr(GError) error = NULL;

  make_status (&raw, last_done, in_flight);
  g_assert_true (hexz_test_guest_parse_status ((const guint8 *) &raw, sizeof raw, &status, &error));
  g_assert_no_error (error);

  if (on_disk == 0)
    {
      make_sector (sector, NULL);
    }
  else
    {
      struct hexz_guest_record record;

      make_record (&record, on_disk, on_disk * 1000, GUINT32_FROM_LE (raw.pattern_checksum));
      make_sector (sector, &record);
    }
  g_assert_true (hexz_test_guest_parse_disk_sector (sector, sizeof sector, &disk_record, &error));
  g_assert_no_error (error);

  g_test_message ("last done %u, in flight %u, on disk %u", last_done, in_flight, on_disk);
  if (expected)
    {
      g_assert_true (hexz_test_guest_check_consistent (&status, &disk_record, &error));
      g_assert_no_error (error);
    }
  else
    {
      g_assert_false (hexz_test_guest_check_consistent (&status, &disk_record, &error));
      g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT);
      g_test_message ("Expected error: %s", error->message);
    }
}

static void
test_checker_consistent (void)
{
  /* Nothing written yet, and the first write may or may not have landed. */
  check_consistent_case (0, 0, 0, TRUE);
  check_consistent_case (0, 1, 0, TRUE);
  check_consistent_case (0, 1, 1, TRUE);
  check_consistent_case (0, 0, 1, FALSE);

  /* Idle between writes: only the last done record may be on disk. */
  check_consistent_case (5, 0, 5, TRUE);
  check_consistent_case (5, 0, 4, FALSE);
  check_consistent_case (5, 0, 6, FALSE);
  check_consistent_case (5, 0, 0, FALSE);

  /* One write in flight: either record may be on disk. */
  check_consistent_case (5, 6, 5, TRUE);
  check_consistent_case (5, 6, 6, TRUE);
  check_consistent_case (5, 6, 4, FALSE);
  check_consistent_case (5, 6, 7, FALSE);

  /* Paused between "last done = 6" and "in flight = 0". */
  check_consistent_case (6, 6, 6, TRUE);
  check_consistent_case (6, 6, 5, FALSE);
}

static void
test_checker_consistent_state (void)
{
  guint8 sector[HEXZ_GUEST_SECTOR_SIZE];
  struct hexz_guest_status raw;
  HexzTestGuestStatus status;
  HexzTestGuestRecord disk_record;
  g_autoptr(GError) error = NULL;

  /* A disk error leaves the state undecidable. */
  make_status (&raw, 5, 6);
  raw.flags = GUINT32_TO_LE (HEXZ_GUEST_FLAG_DISK_ERROR);
  make_sector (sector, &raw.slots[1]);
  g_assert_true (hexz_test_guest_parse_status ((const guint8 *) &raw, sizeof raw, &status, &error));
  g_assert_true (hexz_test_guest_parse_disk_sector (sector, sizeof sector, &disk_record, &error));
  g_assert_no_error (error);
  g_assert_false (hexz_test_guest_check_consistent (&status, &disk_record, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_STATE);
  g_clear_error (&error);

  /* Still filling. */
  make_status (&raw, 0, 0);
  raw.state = GUINT32_TO_LE (HEXZ_GUEST_STATE_FILLING);
  make_sector (sector, NULL);
  g_assert_true (hexz_test_guest_parse_status ((const guint8 *) &raw, sizeof raw, &status, &error));
  g_assert_true (hexz_test_guest_parse_disk_sector (sector, sizeof sector, &disk_record, &error));
  g_assert_no_error (error);
  g_assert_false (hexz_test_guest_check_consistent (&status, &disk_record, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_STATE);
  g_clear_error (&error);

  /* A pattern checksum that the seed does not give. */
  make_status (&raw, 0, 0);
  raw.pattern_checksum ^= GUINT32_TO_LE (1);
  g_assert_true (hexz_test_guest_parse_status ((const guint8 *) &raw, sizeof raw, &status, &error));
  g_assert_no_error (error);
  g_assert_false (hexz_test_guest_check_consistent (&status, &disk_record, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_PATTERN);
  g_clear_error (&error);

  /* A record whose counter is ahead of the live counter. */
  make_status (&raw, 5, 0);
  raw.counter_lo = GUINT32_TO_LE (10);
  g_assert_true (hexz_test_guest_parse_status ((const guint8 *) &raw, sizeof raw, &status, &error));
  g_assert_no_error (error);
  make_sector (sector, &raw.slots[1]);
  g_assert_true (hexz_test_guest_parse_disk_sector (sector, sizeof sector, &disk_record, &error));
  g_assert_false (hexz_test_guest_check_consistent (&status, &disk_record, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT);
}

static void
test_checker_progress (void)
{
  struct hexz_guest_status raw;
  HexzTestGuestStatus before, after;
  g_autoptr(GError) error = NULL;

  make_status (&raw, 5, 0);
  g_assert_true (hexz_test_guest_parse_status ((const guint8 *) &raw, sizeof raw, &before, &error));
  raw.counter_lo = GUINT32_TO_LE (2000000);
  g_assert_true (hexz_test_guest_parse_status ((const guint8 *) &raw, sizeof raw, &after, &error));
  g_assert_no_error (error);

  g_assert_true (hexz_test_guest_check_progress (&before, &after, &error));
  g_assert_no_error (error);

  /* The counter did not move. */
  g_assert_false (hexz_test_guest_check_progress (&before, &before, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT);
  g_clear_error (&error);

  /* A guest with another seed. */
  after.seed ^= 1;
  g_assert_false (hexz_test_guest_check_progress (&before, &after, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT);
  g_clear_error (&error);
  after.seed ^= 1;

  /* A record lost. */
  after.last_done_sequence = 4;
  g_assert_false (hexz_test_guest_check_progress (&before, &after, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT);
}

static void
test_checker_pattern (void)
{
  const guint32 address = HEXZ_GUEST_FILL_BASE + 4096;
  const gsize size = 64 * 1024;
  g_autofree guint32 *words = g_new (guint32, size / 4);
  g_autoptr(GError) error = NULL;
  guint32 bad_address = 0;

  for (gsize i = 0; i < size / 4; i++)
    words[i] = GUINT32_TO_LE (hexz_guest_pattern_word (address + 4 * i, HEXZ_GUEST_SEED_DEFAULT));

  g_assert_true (hexz_test_guest_verify_pattern ((const guint8 *) words, size, address,
                                                 HEXZ_GUEST_SEED_DEFAULT, &bad_address, &error));
  g_assert_no_error (error);

  /* The same memory does not match another seed. */
  g_assert_false (hexz_test_guest_verify_pattern ((const guint8 *) words, size, address,
                                                  HEXZ_GUEST_SEED_DEFAULT + 1, &bad_address,
                                                  &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_PATTERN);
  g_assert_cmphex (bad_address, ==, address);
  g_clear_error (&error);

  /* One bit flipped deep inside. */
  words[1000] ^= GUINT32_TO_LE (0x00010000);
  g_assert_false (hexz_test_guest_verify_pattern ((const guint8 *) words, size, address,
                                                  HEXZ_GUEST_SEED_DEFAULT, &bad_address, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_PATTERN);
  g_assert_cmphex (bad_address, ==, address + 4000);
  g_test_message ("Expected error: %s", error->message);
}

static void
test_checker_xp (void)
{
  const char *output =
    "0000000000200000: 0x535a5848 0x00000001 0x00000003 0x00000000\r\n"
    "0000000000200010: 0x0000abcd 0x00000000 0x48455a5a 0x01000000\r\n";
  g_autofree char *command = hexz_test_guest_xp_command (HEXZ_GUEST_STATUS_ADDR, 32);
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GError) error = NULL;
  const guint8 *data;
  gsize size;

  g_assert_cmpstr (command, ==, "xp /8wx 0x200000");

  bytes = hexz_test_guest_parse_xp (output, HEXZ_GUEST_STATUS_ADDR, 32, &error);
  g_assert_no_error (error);
  g_assert_nonnull (bytes);
  data = g_bytes_get_data (bytes, &size);
  g_assert_cmpuint (size, ==, 32);
  g_assert_cmphex (data[0], ==, 0x48);
  g_assert_cmphex (data[3], ==, 0x53);
  g_assert_cmphex (data[16], ==, 0xcd);
  g_assert_cmphex (data[17], ==, 0xab);
  g_clear_pointer (&bytes, g_bytes_unref);

  /* Output that starts at another address. */
  bytes = hexz_test_guest_parse_xp (output, HEXZ_GUEST_STATUS_ADDR + 16, 16, &error);
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
  g_assert_null (bytes);
  g_clear_error (&error);

  /* Output shorter than requested. */
  bytes = hexz_test_guest_parse_xp (output, HEXZ_GUEST_STATUS_ADDR, 64, &error);
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
  g_assert_null (bytes);
  g_clear_error (&error);

  bytes = hexz_test_guest_parse_xp ("Cannot access memory\r\n", HEXZ_GUEST_STATUS_ADDR, 16, &error);
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
  g_assert_null (bytes);
}

/* A QEMU child (hexz-test-qemu) running the guest, with a QMP client, and a
 * private directory for the disk image and the memory dumps. */

typedef struct {
  char *tmpdir;
  char *disk_path;
  gboolean owns_disk;
  char *debug_path;
  HexzTestQemu *qemu;
  HexzQmpClient *client;
} TestVm;

/* Returns the guest path, or NULL after marking the test skipped. */
static const char *
guest_or_skip (void)
{
  const char *guest = hexz_test_guest_get_path ();
  g_autofree char *qemu = NULL;

  if (guest == NULL)
    {
      g_test_skip ("HEXZ_TEST_GUEST is not set: the test guest was not built");
      return NULL;
    }

  qemu = g_find_program_in_path ("qemu-system-x86_64");
  if (qemu == NULL)
    {
      g_test_skip ("qemu-system-x86_64 is not installed");
      return NULL;
    }

  return guest;
}

/* Size of the pattern for /guest/qemu/run. Under nested KVM the first touch
 * of each guest page costs milliseconds, so KVM gets a smaller pattern. */
static guint32
test_fill_size (void)
{
  return g_str_equal (hexz_test_qemu_choose_accel (), "tcg") ? 8u << 20 : 1u << 20;
}

typedef struct {
  gboolean done;
  JsonNode *result;
  GError *error;
} CommandResult;

static void
on_command_done (GObject      *source,
                 GAsyncResult *async_result,
                 gpointer      user_data)
{
  CommandResult *result = user_data;

  result->result = hexz_qmp_client_execute_finish (HEXZ_QMP_CLIENT (source), async_result,
                                                   &result->error);
  result->done = TRUE;
}

/* Runs a QMP command and returns its "return" member. */
static JsonNode *
qmp_execute (TestVm      *vm,
             const char  *command,
             JsonObject  *arguments,
             GError     **error)
{
  CommandResult result = { FALSE, NULL, NULL };

  hexz_qmp_client_execute_async (vm->client, command, arguments, NULL, NULL,
                                 on_command_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QMP_TIMEOUT_S * 1000);

  if (result.error != NULL)
    {
      g_propagate_error (error, result.error);
      return NULL;
    }

  return result.result;
}

static void
qmp_execute_simple (TestVm     *vm,
                    const char *command)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) result = qmp_execute (vm, command, NULL, &error);

  g_assert_no_error (error);
  g_assert_nonnull (result);
}

static void
qmp_pmemsave (TestVm     *vm,
              guint32     address,
              gsize       size,
              const char *path)
{
  g_autoptr(JsonObject) arguments = json_object_new ();
  g_autoptr(JsonNode) result = NULL;
  g_autoptr(GError) error = NULL;

  json_object_set_int_member (arguments, "val", address);
  json_object_set_int_member (arguments, "size", (gint64) size);
  json_object_set_string_member (arguments, "filename", path);
  result = qmp_execute (vm, "pmemsave", arguments, &error);
  g_assert_no_error (error);
}

static char *
qmp_human_command (TestVm     *vm,
                   const char *command_line)
{
  g_autoptr(JsonObject) arguments = json_object_new ();
  g_autoptr(JsonNode) result = NULL;
  g_autoptr(GError) error = NULL;

  json_object_set_string_member (arguments, "command-line", command_line);
  result = qmp_execute (vm, "human-monitor-command", arguments, &error);
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_VALUE (result));

  return g_strdup (json_node_get_string (result));
}

/* Starts the guest with "-append @append". @disk_mode selects its disk:
 * none, a new 4 MiB raw image, or the image of @other_vm. With @incoming,
 * QEMU waits for a migration stream on that URI. */
typedef enum {
  TEST_DISK_NONE,
  TEST_DISK_NEW,
  TEST_DISK_SHARED,
} TestDiskMode;

static TestVm *
test_vm_start_full (const char   *append,
                    TestDiskMode  disk_mode,
                    TestVm       *other_vm,
                    const char   *incoming)
{
  g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func (g_free);
  g_auto(GStrv) guest_args = NULL;
  g_autoptr(GError) error = NULL;
  TestVm *vm = g_new0 (TestVm, 1);

  vm->tmpdir = g_dir_make_tmp ("hexz-test-guest-XXXXXX", &error);
  g_assert_no_error (error);
  if (disk_mode == TEST_DISK_SHARED)
    vm->disk_path = g_strdup (other_vm->disk_path);
  else
    vm->disk_path = g_build_filename (vm->tmpdir, "disk.img", NULL);
  vm->owns_disk = disk_mode == TEST_DISK_NEW;
  vm->debug_path = g_build_filename (vm->tmpdir, "debug.log", NULL);

  if (disk_mode == TEST_DISK_NEW)
    {
      g_assert_true (hexz_test_guest_create_disk (vm->disk_path, &error));
      g_assert_no_error (error);
    }

  guest_args = hexz_test_guest_qemu_args (append,
                                          disk_mode != TEST_DISK_NONE ? vm->disk_path : NULL);
  g_assert_nonnull (guest_args);
  for (guint i = 0; guest_args[i] != NULL; i++)
    g_ptr_array_add (args, g_strdup (guest_args[i]));

  g_ptr_array_add (args, g_strdup ("-debugcon"));
  g_ptr_array_add (args, g_strconcat ("file:", vm->debug_path, NULL));

  if (incoming != NULL)
    {
      g_ptr_array_add (args, g_strdup ("-incoming"));
      g_ptr_array_add (args, g_strdup (incoming));
    }
  g_ptr_array_add (args, NULL);

  vm->qemu = hexz_test_qemu_start ((const char * const *) args->pdata);
  g_assert_nonnull (vm->qemu);
  g_test_message ("Guest runs with %s", append);
  vm->client = hexz_test_qemu_connect (vm->qemu);

  return vm;
}

static TestVm *
test_vm_start (const char *append,
               gboolean    with_disk)
{
  return test_vm_start_full (append, with_disk ? TEST_DISK_NEW : TEST_DISK_NONE,
                             NULL, NULL);
}

/* Stops QEMU by its pid and removes the test's files. */
static void
test_vm_stop (TestVm *vm)
{
  hexz_qmp_client_close (vm->client);
  g_clear_object (&vm->client);
  g_clear_pointer (&vm->qemu, hexz_test_qemu_free);

  if (vm->owns_disk)
    g_unlink (vm->disk_path);
  g_unlink (vm->debug_path);
  g_assert_no_errno (g_rmdir (vm->tmpdir));

  g_free (vm->tmpdir);
  g_free (vm->disk_path);
  g_free (vm->debug_path);
  g_free (vm);
}

/* Reads the status area with pmemsave. */
static gboolean
read_status_once (TestVm               *vm,
                  HexzTestGuestStatus  *status,
                  GError              **error)
{
  g_autofree char *path = g_build_filename (vm->tmpdir, "status.bin", NULL);
  gboolean valid;

  qmp_pmemsave (vm, HEXZ_GUEST_STATUS_ADDR, HEXZ_GUEST_STATUS_SIZE, path);
  valid = hexz_test_guest_load_status (path, status, error);
  g_unlink (path);

  return valid;
}

/* Reads the status area of a booted guest. A running guest can change a
 * record while QEMU copies it, so a failed parse is retried a few times. */
static void
read_status (TestVm              *vm,
             HexzTestGuestStatus *status)
{
  g_autoptr(GError) error = NULL;

  for (guint attempt = 0; attempt < 5; attempt++)
    {
      g_clear_error (&error);
      if (read_status_once (vm, status, &error))
        break;
      g_test_message ("Status dump attempt %u: %s", attempt + 1, error->message);
    }

  g_assert_no_error (error);
}

/* Waits until the guest runs and has finished @records disk records (0 for
 * none). */
static void
wait_running (TestVm              *vm,
              guint32              records,
              HexzTestGuestStatus *status)
{
  gint64 deadline = g_get_monotonic_time () + BOOT_TIMEOUT_S * G_USEC_PER_SEC;

  for (;;)
    {
      g_autoptr(GError) error = NULL;
      gboolean valid;

      /* Before the guest boots, the status area is all zero. */
      valid = read_status_once (vm, status, &error);
      if (valid &&
          status->state == HEXZ_GUEST_STATE_RUNNING &&
          status->last_done_sequence >= records)
        break;

      if (g_get_monotonic_time () > deadline)
        {
          g_autofree char *debug = NULL;

          g_file_get_contents (vm->debug_path, &debug, NULL, NULL);
          g_test_message ("Guest debug output after %d s: %s",
                          BOOT_TIMEOUT_S, debug != NULL ? debug : "");
          g_test_message ("Guest filled %u of %u bytes", status->fill_done, status->fill_size);
          g_assert_no_error (error);
          g_assert_cmpstr (hexz_test_guest_state_to_string (status->state), ==, "running");
          g_assert_cmpuint (status->last_done_sequence, >=, records);
        }

      g_usleep (100 * 1000);
    }
}

/* Reads the disk record of a running guest, rereading a sector that the
 * guest was writing at that moment. */
static void
read_disk_record_running (TestVm              *vm,
                          HexzTestGuestRecord *record)
{
  g_autoptr(GError) error = NULL;

  for (guint attempt = 0; attempt < 5; attempt++)
    {
      g_clear_error (&error);
      if (hexz_test_guest_read_disk_record (vm->disk_path, record, &error))
        break;
      g_usleep (10 * 1000);
    }
  g_assert_no_error (error);
}

/* /guest/qemu/ */

static void
test_qemu_run (void)
{
  const char *guest = guest_or_skip ();
  HexzTestGuestStatus first, second, paused, resumed;
  HexzTestGuestRecord disk_first, disk_second, disk_paused;
  g_autoptr(GError) error = NULL;
  g_autofree char *pattern_path = NULL;
  g_autofree char *append = NULL;
  TestVm *vm;

  if (guest == NULL)
    return;

  append = g_strdup_printf ("fill=%uK", test_fill_size () / 1024);
  vm = test_vm_start (append, TRUE);

  wait_running (vm, 1, &first);
  g_assert_cmpuint (first.flags, ==, 0);
  g_assert_cmphex (first.fill_base, ==, HEXZ_GUEST_FILL_BASE);
  g_assert_cmpuint (first.fill_size, ==, test_fill_size ());
  g_assert_cmpuint (first.fill_done, ==, test_fill_size ());
  g_assert_cmphex (first.seed, ==, HEXZ_GUEST_SEED_DEFAULT);
  g_assert_cmpuint (first.interval_ms, ==, HEXZ_GUEST_INTERVAL_DEFAULT);
  g_assert_cmpuint (first.disk_sectors, ==, TEST_DISK_SIZE / HEXZ_GUEST_SECTOR_SIZE);
  g_assert_cmpuint (first.ram_top, >, HEXZ_GUEST_FILL_BASE + test_fill_size ());
  g_assert_cmphex (first.pattern_checksum, ==,
                   hexz_test_guest_pattern_checksum (HEXZ_GUEST_FILL_BASE, test_fill_size (),
                                                     HEXZ_GUEST_SEED_DEFAULT));
  read_disk_record_running (vm, &disk_first);
  g_test_message ("First look: counter %" G_GUINT64_FORMAT ", record %u, disk record %u",
                  first.counter, first.last_done_sequence, disk_first.sequence);

  /* The counter and the disk record move while the guest runs. */
  wait_running (vm, first.last_done_sequence + 2, &second);
  g_assert_cmpuint (second.counter, >, first.counter);
  g_assert_true (hexz_test_guest_check_progress (&first, &second, &error));
  g_assert_no_error (error);
  read_disk_record_running (vm, &disk_second);
  g_assert_cmpuint (disk_second.sequence, >, disk_first.sequence);
  g_assert_cmpuint (disk_second.counter, >, disk_first.counter);

  /* Stopped, memory and disk agree. */
  qmp_execute_simple (vm, "stop");
  read_status (vm, &paused);
  g_assert_true (hexz_test_guest_read_disk_record (vm->disk_path, &disk_paused, &error));
  g_assert_no_error (error);
  g_test_message ("Paused: counter %" G_GUINT64_FORMAT ", last done %u, in flight %u, disk %u",
                  paused.counter, paused.last_done_sequence, paused.in_flight_sequence,
                  disk_paused.sequence);
  g_assert_true (hexz_test_guest_check_consistent (&paused, &disk_paused, &error));
  g_assert_no_error (error);
  /* The guest counts a write just after it marks the record done. */
  g_assert_cmpuint (paused.disk_writes, <=, paused.last_done_sequence);
  g_assert_cmpuint (paused.disk_writes + 1, >=, paused.last_done_sequence);
  g_assert_cmpuint (paused.disk_errors, ==, 0);

  /* The status area stays put while the VM is stopped. */
  read_status (vm, &resumed);
  g_assert_cmpuint (resumed.counter, ==, paused.counter);

  pattern_path = g_build_filename (vm->tmpdir, "pattern.bin", NULL);
  qmp_pmemsave (vm, paused.fill_base, paused.fill_size, pattern_path);
  g_assert_true (hexz_test_guest_verify_pattern_file (pattern_path, paused.fill_base, paused.seed,
                                                      NULL, &error));
  g_assert_no_error (error);
  g_unlink (pattern_path);

  /* After cont the guest carries on from where it was. */
  qmp_execute_simple (vm, "cont");
  wait_running (vm, paused.last_done_sequence + 1, &resumed);
  g_assert_true (hexz_test_guest_check_progress (&paused, &resumed, &error));
  g_assert_no_error (error);

  test_vm_stop (vm);
}

static void
test_qemu_corrupt_dump (void)
{
  const char *guest = guest_or_skip ();
  g_autofree char *pattern_path = NULL;
  g_autofree char *contents = NULL;
  g_autoptr(GError) error = NULL;
  HexzTestGuestStatus status;
  const gsize bad_offset = 3 * 4096 + 12;
  guint32 bad_address = 0;
  gsize length;
  TestVm *vm;

  if (guest == NULL)
    return;

  vm = test_vm_start ("fill=1M seed=0x1234", TRUE);
  wait_running (vm, 0, &status);
  g_assert_cmphex (status.seed, ==, 0x1234);
  g_assert_cmpuint (status.fill_size, ==, 1 << 20);

  qmp_execute_simple (vm, "stop");
  pattern_path = g_build_filename (vm->tmpdir, "pattern.bin", NULL);
  qmp_pmemsave (vm, status.fill_base, status.fill_size, pattern_path);

  g_assert_true (g_file_get_contents (pattern_path, &contents, &length, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (length, ==, status.fill_size);
  g_assert_true (hexz_test_guest_verify_pattern ((const guint8 *) contents, length,
                                                 status.fill_base, status.seed, NULL, &error));
  g_assert_no_error (error);

  /* The pattern belongs to its seed. */
  g_assert_false (hexz_test_guest_verify_pattern ((const guint8 *) contents, length,
                                                  status.fill_base, HEXZ_GUEST_SEED_DEFAULT,
                                                  &bad_address, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_PATTERN);
  g_clear_error (&error);

  /* One changed byte in a copy of the dump. */
  contents[bad_offset + 1] ^= 0x40;
  g_assert_true (g_file_set_contents (pattern_path, contents, length, &error));
  g_assert_false (hexz_test_guest_verify_pattern_file (pattern_path, status.fill_base,
                                                       status.seed, &bad_address, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_PATTERN);
  g_assert_cmphex (bad_address, ==, status.fill_base + bad_offset);
  g_test_message ("Expected error: %s", error->message);
  g_unlink (pattern_path);

  test_vm_stop (vm);
}

static void
test_qemu_ram_image (void)
{
  const char *guest = guest_or_skip ();
  const guint32 ram_size = HEXZ_GUEST_FILL_BASE + (2u << 20);
  const guint32 bad_offset = HEXZ_GUEST_FILL_BASE + 5 * 4096 + 8;
  g_autofree char *ram_path = NULL;
  g_autofree char *contents = NULL;
  g_autoptr(GError) error = NULL;
  HexzTestGuestStatus running, checked;
  guint32 bad_address = 0;
  gsize length;
  TestVm *vm;

  if (guest == NULL)
    return;

  vm = test_vm_start ("fill=2M", TRUE);
  wait_running (vm, 0, &running);
  qmp_execute_simple (vm, "stop");

  ram_path = g_build_filename (vm->tmpdir, "ram.bin", NULL);
  qmp_pmemsave (vm, 0, ram_size, ram_path);
  g_assert_true (hexz_test_guest_check_ram_file (ram_path, &checked, &bad_address, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (checked.fill_size, ==, 2u << 20);
  g_assert_cmpuint (checked.counter, >=, running.counter);

  /* One changed byte in the pattern. */
  g_assert_true (g_file_get_contents (ram_path, &contents, &length, &error));
  g_assert_no_error (error);
  contents[bad_offset] ^= 0x01;
  g_assert_false (hexz_test_guest_check_ram ((const guint8 *) contents, length, NULL,
                                             &bad_address, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_PATTERN);
  g_assert_cmphex (bad_address, ==, bad_offset);
  g_clear_error (&error);
  contents[bad_offset] ^= 0x01;

  /* An image that ends inside the pattern region. */
  g_assert_false (hexz_test_guest_check_ram ((const guint8 *) contents, length - 4096, NULL,
                                             &bad_address, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
  g_clear_error (&error);

  /* A status area that was overwritten. */
  contents[HEXZ_GUEST_STATUS_ADDR] ^= 0xff;
  g_assert_false (hexz_test_guest_check_ram ((const guint8 *) contents, length, NULL,
                                             &bad_address, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID);
  g_test_message ("Expected error: %s", error->message);

  g_unlink (ram_path);
  test_vm_stop (vm);
}

static void
test_qemu_xp (void)
{
  const char *guest = guest_or_skip ();
  g_autofree char *command = NULL;
  g_autofree char *output = NULL;
  g_autofree char *dump_path = NULL;
  g_autofree char *dump = NULL;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GError) error = NULL;
  HexzTestGuestStatus status;
  gsize length;
  TestVm *vm;

  if (guest == NULL)
    return;

  vm = test_vm_start ("fill=1M interval=50", TRUE);
  wait_running (vm, 1, &status);
  g_assert_cmpuint (status.interval_ms, ==, 50);
  qmp_execute_simple (vm, "stop");

  command = hexz_test_guest_xp_command (HEXZ_GUEST_STATUS_ADDR, HEXZ_GUEST_STATUS_SIZE);
  output = qmp_human_command (vm, command);
  bytes = hexz_test_guest_parse_xp (output, HEXZ_GUEST_STATUS_ADDR, HEXZ_GUEST_STATUS_SIZE,
                                    &error);
  g_assert_no_error (error);

  /* xp and pmemsave see the same bytes of a stopped guest. */
  dump_path = g_build_filename (vm->tmpdir, "status.bin", NULL);
  qmp_pmemsave (vm, HEXZ_GUEST_STATUS_ADDR, HEXZ_GUEST_STATUS_SIZE, dump_path);
  g_assert_true (g_file_get_contents (dump_path, &dump, &length, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes), dump, length);
  g_unlink (dump_path);

  g_assert_true (hexz_test_guest_parse_status (g_bytes_get_data (bytes, NULL),
                                               g_bytes_get_size (bytes), &status, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (status.state, ==, HEXZ_GUEST_STATE_RUNNING);

  test_vm_stop (vm);
}

/* Counts the pages of the dirty region whose first word differs between
 * two dumps. */
static guint
count_changed_pages (const char *first_path,
                     const char *second_path)
{
  g_autofree char *first = NULL;
  g_autofree char *second = NULL;
  g_autoptr(GError) error = NULL;
  gsize first_length, second_length;
  guint changed = 0;

  g_assert_true (g_file_get_contents (first_path, &first, &first_length, &error));
  g_assert_true (g_file_get_contents (second_path, &second, &second_length, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (first_length, ==, second_length);

  for (gsize offset = 0; offset < first_length; offset += 4096)
    {
      if (memcmp (first + offset, second + offset, 4) != 0)
        changed++;
    }

  return changed;
}

static void
test_qemu_no_disk (void)
{
  const char *guest = guest_or_skip ();
  HexzTestGuestStatus first, second;
  HexzTestGuestRecord empty = { 0 };
  g_autoptr(GError) error = NULL;
  g_autofree char *dirty_first = NULL;
  g_autofree char *dirty_second = NULL;
  guint changed;
  TestVm *vm;

  if (guest == NULL)
    return;

  vm = test_vm_start ("fill=1M dirty=256K", FALSE);
  wait_running (vm, 0, &first);
  g_assert_cmpuint (first.flags & HEXZ_GUEST_FLAG_NO_DISK, !=, 0);
  g_assert_cmphex (first.dirty_base, ==, HEXZ_GUEST_DIRTY_BASE);
  g_assert_cmpuint (first.dirty_size, ==, 256 * 1024);

  dirty_first = g_build_filename (vm->tmpdir, "dirty-1.bin", NULL);
  dirty_second = g_build_filename (vm->tmpdir, "dirty-2.bin", NULL);
  qmp_pmemsave (vm, first.dirty_base, first.dirty_size, dirty_first);

  /* The guest keeps running without writing records. */
  g_usleep (2 * first.interval_ms * 1000);
  read_status (vm, &second);
  qmp_pmemsave (vm, first.dirty_base, first.dirty_size, dirty_second);

  /* Every page of the dirty region is rewritten many times a second. */
  changed = count_changed_pages (dirty_first, dirty_second);
  g_test_message ("%u of %u dirty pages changed", changed, first.dirty_size / 4096);
  g_assert_cmpuint (changed, >, first.dirty_size / 4096 / 2);
  g_unlink (dirty_first);
  g_unlink (dirty_second);
  g_assert_cmpuint (second.counter, >, first.counter);
  g_assert_cmpuint (second.last_done_sequence, ==, 0);
  g_assert_cmpuint (second.disk_writes, ==, 0);

  g_assert_false (hexz_test_guest_check_consistent (&second, &empty, &error));
  g_assert_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_STATE);

  test_vm_stop (vm);
}

/* Reads a string member of the object a QMP command returned. */
static char *
qmp_query_string (TestVm     *vm,
                  const char *command,
                  const char *member)
{
  g_autoptr(JsonNode) result = NULL;
  g_autoptr(GError) error = NULL;

  result = qmp_execute (vm, command, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (result));

  return g_strdup (json_object_get_string_member_with_default (json_node_get_object (result),
                                                               member, ""));
}

static void
test_qemu_migrate (void)
{
  const char *guest = guest_or_skip ();
  HexzTestGuestStatus source_status, final_status, target_status, paused;
  HexzTestGuestRecord disk_record;
  g_autoptr(JsonObject) arguments = json_object_new ();
  g_autoptr(JsonNode) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *uri = NULL;
  gint64 deadline;
  TestVm *source, *target;

  if (guest == NULL)
    return;

  source = test_vm_start ("fill=1M dirty=1M", TRUE);
  wait_running (source, 2, &source_status);

  /* The target shares the disk image, which QEMU activates there only when
   * the migration completes. */
  uri = g_strconcat ("unix:", source->tmpdir, "/migrate.sock", NULL);
  target = test_vm_start_full ("fill=1M dirty=1M", TEST_DISK_SHARED, source, uri);

  json_object_set_string_member (arguments, "uri", uri);
  result = qmp_execute (source, "migrate", arguments, &error);
  g_assert_no_error (error);

  deadline = g_get_monotonic_time () + BOOT_TIMEOUT_S * G_USEC_PER_SEC;
  for (;;)
    {
      g_autofree char *state = qmp_query_string (source, "query-migrate", "status");

      if (g_str_equal (state, "completed"))
        break;
      g_assert_cmpstr (state, !=, "failed");
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (50 * 1000);
    }

  /* The source stopped at the end of the migration, the target runs on from
   * that point and keeps writing records to the shared disk. */
  read_status (source, &final_status);
  g_assert_true (hexz_test_guest_check_progress (&source_status, &final_status, &error));
  g_assert_no_error (error);

  wait_running (target, final_status.last_done_sequence + 2, &target_status);
  g_assert_true (hexz_test_guest_check_progress (&final_status, &target_status, &error));
  g_assert_no_error (error);
  g_test_message ("Migrated at counter %" G_GUINT64_FORMAT " and record %u, target at %"
                  G_GUINT64_FORMAT " and record %u",
                  final_status.counter, final_status.last_done_sequence,
                  target_status.counter, target_status.last_done_sequence);

  qmp_execute_simple (target, "stop");
  read_status (target, &paused);
  g_assert_true (hexz_test_guest_read_disk_record (target->disk_path, &disk_record, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_test_guest_check_consistent (&paused, &disk_record, &error));
  g_assert_no_error (error);

  test_vm_stop (target);
  test_vm_stop (source);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  /* hexz-test-qemu picks KVM when /dev/kvm opens. Under nested KVM this
   * guest runs about a thousand times slower than under TCG, so these
   * tests use TCG unless HEXZ_TEST_ACCEL is set. */
  g_setenv ("HEXZ_TEST_ACCEL", "tcg", FALSE);

  g_test_add_func ("/guest/checker/record", test_checker_record);
  g_test_add_func ("/guest/checker/disk-sector", test_checker_disk_sector);
  g_test_add_func ("/guest/checker/disk-image", test_checker_disk_image);
  g_test_add_func ("/guest/checker/status", test_checker_status);
  g_test_add_func ("/guest/checker/consistent", test_checker_consistent);
  g_test_add_func ("/guest/checker/consistent-state", test_checker_consistent_state);
  g_test_add_func ("/guest/checker/progress", test_checker_progress);
  g_test_add_func ("/guest/checker/pattern", test_checker_pattern);
  g_test_add_func ("/guest/checker/xp", test_checker_xp);
  g_test_add_func ("/guest/qemu/run", test_qemu_run);
  g_test_add_func ("/guest/qemu/corrupt-dump", test_qemu_corrupt_dump);
  g_test_add_func ("/guest/qemu/ram-image", test_qemu_ram_image);
  g_test_add_func ("/guest/qemu/xp", test_qemu_xp);
  g_test_add_func ("/guest/qemu/no-disk", test_qemu_no_disk);
  g_test_add_func ("/guest/qemu/migrate", test_qemu_migrate);

  return g_test_run ();
}
