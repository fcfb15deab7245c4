/* hexz-test-guest.c: check the state of the test guest from its memory and disk
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The guest writes every value little-endian; these helpers decode with
 * GUINT32_FROM_LE so they do not depend on the host's byte order. Messages
 * are for test logs and are not translated.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "hexz-test-guest.h"

G_DEFINE_QUARK (hexz-test-guest-error-quark, hexz_test_guest_error)

G_STATIC_ASSERT (sizeof (struct hexz_guest_record) == HEXZ_GUEST_RECORD_SIZE);
G_STATIC_ASSERT (sizeof (struct hexz_guest_status) == HEXZ_GUEST_STATUS_SIZE);

static guint32
read_le32 (const guint8 *data,
           gsize         offset)
{
  guint32 value;

  memcpy (&value, data + offset, sizeof value);
  return GUINT32_FROM_LE (value);
}

/* Reads the field @field of the little-endian struct @type at @data. */
#define READ_FIELD(data, type, field) \
  read_le32 ((data), G_STRUCT_OFFSET (type, field))

/**
 * hexz_test_guest_get_path:
 *
 * Returns the path of the built guest, from the HEXZ_TEST_GUEST environment
 * variable that the test suite sets.
 *
 * Returns: (nullable): the path of hexz-test-guest.elf, or %NULL when the
 *   guest was not built (the compiler cannot produce 32-bit x86 code) or
 *   the test runs outside `meson test`
 */
const char *
hexz_test_guest_get_path (void)
{
  const char *path = g_getenv ("HEXZ_TEST_GUEST");

  if (path == NULL || *path == '\0')
    return NULL;

  return path;
}

/**
 * hexz_test_guest_qemu_args:
 * @append: the guest's command line, such as "fill=8M dirty=1M"
 * @disk_path: (nullable): a raw image for IDE primary master, or %NULL to
 *   run the guest without a disk
 *
 * Builds the QEMU arguments that boot the guest on the `pc` machine with
 * 64 MiB of RAM and no other devices, without accelerator and QMP options,
 * as hexz_test_qemu_start() takes them. The disk uses
 * `cache=writethrough`, so every record the guest flushes is in the image
 * file at once.
 *
 * Returns: (transfer full) (nullable): the arguments, or %NULL when
 *   hexz_test_guest_get_path() returns %NULL
 */
GStrv
hexz_test_guest_qemu_args (const char *append,
                           const char *disk_path)
{
  const char *guest = hexz_test_guest_get_path ();
  g_autoptr(GStrvBuilder) builder = NULL;

  g_return_val_if_fail (append != NULL, NULL);

  if (guest == NULL)
    return NULL;

  builder = g_strv_builder_new ();
  g_strv_builder_add_many (builder,
                           "-nodefaults", "-no-reboot",
                           "-machine", "pc", "-m", "64", "-display", "none",
                           "-kernel", guest, "-append", append,
                           NULL);

  if (disk_path != NULL)
    {
      g_autofree char *drive = g_strconcat ("file=", disk_path,
                                            ",format=raw,if=ide,cache=writethrough", NULL);

      g_strv_builder_add_many (builder, "-drive", drive, NULL);
    }

  return g_strv_builder_end (builder);
}

/**
 * hexz_test_guest_create_disk:
 * @path: where to create the image; the file must not exist
 * @error: return location for a #GError
 *
 * Creates a sparse raw disk image of HEXZ_TEST_GUEST_DISK_SIZE bytes with
 * mode 0600, large enough for the guest's record sector.
 *
 * Returns: %TRUE if the image was created
 */
gboolean
hexz_test_guest_create_disk (const char  *path,
                             GError     **error)
{
  int saved_errno;
  int fd;

  g_return_val_if_fail (path != NULL, FALSE);

  fd = g_open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    {
      saved_errno = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                   "Could not create disk image %s: %s", path, g_strerror (saved_errno));
      return FALSE;
    }

  if (ftruncate (fd, HEXZ_TEST_GUEST_DISK_SIZE) != 0)
    {
      saved_errno = errno;
      g_close (fd, NULL);
      g_unlink (path);
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                   "Could not resize disk image %s to %u bytes: %s",
                   path, HEXZ_TEST_GUEST_DISK_SIZE, g_strerror (saved_errno));
      return FALSE;
    }

  return g_close (fd, error);
}

/**
 * hexz_test_guest_state_to_string:
 * @state: a HEXZ_GUEST_STATE_* value
 *
 * Returns: (transfer none): the name of @state, or "unknown"
 */
const char *
hexz_test_guest_state_to_string (guint32 state)
{
  switch (state)
    {
    case HEXZ_GUEST_STATE_BOOTING:
      return "booting";
    case HEXZ_GUEST_STATE_FILLING:
      return "filling";
    case HEXZ_GUEST_STATE_RUNNING:
      return "running";
    default:
      return "unknown";
    }
}

/**
 * hexz_test_guest_parse_record:
 * @data: (array length=size): a record in the guest's layout
 * @size: bytes at @data, at least HEXZ_GUEST_RECORD_SIZE
 * @record: (out caller-allocates): the decoded record
 * @error: return location for a #GError
 *
 * Decodes one record and checks its magic, version and checksum.
 *
 * Returns: %TRUE if the record is valid
 */
gboolean
hexz_test_guest_parse_record (const guint8         *data,
                              gsize                 size,
                              HexzTestGuestRecord  *record,
                              GError              **error)
{
  guint32 checksum = HEXZ_GUEST_CHECKSUM_INIT;
  guint32 magic, version, stored_checksum;

  g_return_val_if_fail (data != NULL, FALSE);
  g_return_val_if_fail (record != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (size < HEXZ_GUEST_RECORD_SIZE)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Guest record is %" G_GSIZE_FORMAT " bytes, expected %u",
                   size, HEXZ_GUEST_RECORD_SIZE);
      return FALSE;
    }

  magic = READ_FIELD (data, struct hexz_guest_record, magic);
  if (magic != HEXZ_GUEST_RECORD_MAGIC)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Guest record has magic 0x%08x, expected 0x%08x",
                   magic, HEXZ_GUEST_RECORD_MAGIC);
      return FALSE;
    }

  version = READ_FIELD (data, struct hexz_guest_record, version);
  if (version != HEXZ_GUEST_LAYOUT_VERSION)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Guest record has layout version %u, expected %u",
                   version, HEXZ_GUEST_LAYOUT_VERSION);
      return FALSE;
    }

  for (gsize offset = 0; offset < HEXZ_GUEST_RECORD_SIZE - 4; offset += 4)
    checksum = hexz_guest_checksum_add (checksum, read_le32 (data, offset));

  stored_checksum = READ_FIELD (data, struct hexz_guest_record, checksum);
  if (stored_checksum != checksum)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Guest record %u has checksum 0x%08x, computed 0x%08x",
                   READ_FIELD (data, struct hexz_guest_record, sequence),
                   stored_checksum, checksum);
      return FALSE;
    }

  record->sequence = READ_FIELD (data, struct hexz_guest_record, sequence);
  record->counter = READ_FIELD (data, struct hexz_guest_record, counter_lo) |
                    (guint64) READ_FIELD (data, struct hexz_guest_record, counter_hi) << 32;
  record->uptime_ms = READ_FIELD (data, struct hexz_guest_record, uptime_ms);
  record->seed = READ_FIELD (data, struct hexz_guest_record, seed);
  record->fill_base = READ_FIELD (data, struct hexz_guest_record, fill_base);
  record->fill_size = READ_FIELD (data, struct hexz_guest_record, fill_size);
  record->pattern_checksum = READ_FIELD (data, struct hexz_guest_record, pattern_checksum);

  if (record->sequence == 0)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Guest record has sequence number 0, which no written record has");
      return FALSE;
    }

  return TRUE;
}

/* Decode the record @sequence from its slot in the status area @data. */
static gboolean
parse_status_slot (const guint8         *data,
                   guint32               sequence,
                   const char           *role,
                   HexzTestGuestRecord  *record,
                   GError              **error)
{
  gsize offset = HEXZ_GUEST_STATUS_SLOTS_OFFSET + (sequence % 2) * HEXZ_GUEST_RECORD_SIZE;
  g_autoptr(GError) local_error = NULL;

  if (!hexz_test_guest_parse_record (data + offset, HEXZ_GUEST_RECORD_SIZE,
                                     record, &local_error))
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Status area: %s record %u in slot %u is invalid: %s",
                   role, sequence, sequence % 2, local_error->message);
      return FALSE;
    }

  if (record->sequence != sequence)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Status area: slot %u contains record %u, expected %s record %u",
                   sequence % 2, record->sequence, role, sequence);
      return FALSE;
    }

  return TRUE;
}

/**
 * hexz_test_guest_parse_status:
 * @data: (array length=size): the guest's memory from HEXZ_GUEST_STATUS_ADDR
 * @size: bytes at @data, at least HEXZ_GUEST_STATUS_SIZE
 * @status: (out caller-allocates): the decoded status
 * @error: return location for a #GError
 *
 * Decodes the status area and the records its sequence numbers point to.
 *
 * A dump of a running guest can catch a record while the guest rewrites
 * it, which fails with %HEXZ_TEST_GUEST_ERROR_INVALID: stop the VM first,
 * or dump again.
 *
 * Returns: %TRUE if the status area and its records are valid
 */
gboolean
hexz_test_guest_parse_status (const guint8         *data,
                              gsize                 size,
                              HexzTestGuestStatus  *status,
                              GError              **error)
{
  guint32 magic, version;

  g_return_val_if_fail (data != NULL, FALSE);
  g_return_val_if_fail (status != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (size < HEXZ_GUEST_STATUS_SIZE)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Guest status area is %" G_GSIZE_FORMAT " bytes, expected %u",
                   size, HEXZ_GUEST_STATUS_SIZE);
      return FALSE;
    }

  magic = READ_FIELD (data, struct hexz_guest_status, magic);
  if (magic != HEXZ_GUEST_STATUS_MAGIC)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Guest status area at 0x%08x has magic 0x%08x, expected 0x%08x "
                   "(the guest has not booted yet, or this is not its memory)",
                   HEXZ_GUEST_STATUS_ADDR, magic, HEXZ_GUEST_STATUS_MAGIC);
      return FALSE;
    }

  version = READ_FIELD (data, struct hexz_guest_status, version);
  if (version != HEXZ_GUEST_LAYOUT_VERSION)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Guest status area has layout version %u, expected %u",
                   version, HEXZ_GUEST_LAYOUT_VERSION);
      return FALSE;
    }

  memset (status, 0, sizeof *status);
  status->state = READ_FIELD (data, struct hexz_guest_status, state);
  status->flags = READ_FIELD (data, struct hexz_guest_status, flags);
  status->counter = READ_FIELD (data, struct hexz_guest_status, counter_lo) |
                    (guint64) READ_FIELD (data, struct hexz_guest_status, counter_hi) << 32;
  status->seed = READ_FIELD (data, struct hexz_guest_status, seed);
  status->fill_base = READ_FIELD (data, struct hexz_guest_status, fill_base);
  status->fill_size = READ_FIELD (data, struct hexz_guest_status, fill_size);
  status->fill_done = READ_FIELD (data, struct hexz_guest_status, fill_done);
  status->pattern_checksum = READ_FIELD (data, struct hexz_guest_status, pattern_checksum);
  status->dirty_base = READ_FIELD (data, struct hexz_guest_status, dirty_base);
  status->dirty_size = READ_FIELD (data, struct hexz_guest_status, dirty_size);
  status->interval_ms = READ_FIELD (data, struct hexz_guest_status, interval_ms);
  status->tsc_khz = READ_FIELD (data, struct hexz_guest_status, tsc_khz);
  status->ram_top = READ_FIELD (data, struct hexz_guest_status, ram_top);
  status->last_done_sequence = READ_FIELD (data, struct hexz_guest_status, last_done_sequence);
  status->in_flight_sequence = READ_FIELD (data, struct hexz_guest_status, in_flight_sequence);
  status->disk_writes = READ_FIELD (data, struct hexz_guest_status, disk_writes);
  status->disk_errors = READ_FIELD (data, struct hexz_guest_status, disk_errors);
  status->ata_status = READ_FIELD (data, struct hexz_guest_status, ata_status);
  status->disk_sectors = READ_FIELD (data, struct hexz_guest_status, disk_sectors);

  if (status->state < HEXZ_GUEST_STATE_BOOTING || status->state > HEXZ_GUEST_STATE_RUNNING)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Guest status area has unknown state %u", status->state);
      return FALSE;
    }

  if (status->last_done_sequence != 0 &&
      !parse_status_slot (data, status->last_done_sequence, "last done",
                          &status->last_done, error))
    return FALSE;

  if (status->in_flight_sequence != 0 &&
      !parse_status_slot (data, status->in_flight_sequence, "in-flight",
                          &status->in_flight, error))
    return FALSE;

  return TRUE;
}

/**
 * hexz_test_guest_load_status:
 * @dump_path: a file written by QMP `pmemsave` from HEXZ_GUEST_STATUS_ADDR
 * @status: (out caller-allocates): the decoded status
 * @error: return location for a #GError
 *
 * Reads a dump of the status area and decodes it with
 * hexz_test_guest_parse_status().
 *
 * Returns: %TRUE if the file contains a valid status area
 */
gboolean
hexz_test_guest_load_status (const char           *dump_path,
                             HexzTestGuestStatus  *status,
                             GError              **error)
{
  g_autofree char *contents = NULL;
  g_autoptr(GError) local_error = NULL;
  gsize length = 0;

  g_return_val_if_fail (dump_path != NULL, FALSE);
  g_return_val_if_fail (status != NULL, FALSE);

  if (!g_file_get_contents (dump_path, &contents, &length, error))
    return FALSE;

  if (!hexz_test_guest_parse_status ((const guint8 *) contents, length, status, &local_error))
    {
      g_set_error (error, local_error->domain, local_error->code,
                   "%s: %s", dump_path, local_error->message);
      return FALSE;
    }

  return TRUE;
}

/**
 * hexz_test_guest_xp_command:
 * @address: physical address, a multiple of 4
 * @size: bytes to read, a multiple of 4
 *
 * Builds the HMP command that prints @size bytes of guest memory at
 * @address as 32-bit words, for QMP `human-monitor-command`.
 *
 * Returns: (transfer full): the command line, such as "xp /64wx 0x200000"
 */
char *
hexz_test_guest_xp_command (guint32 address,
                            gsize   size)
{
  g_return_val_if_fail (address % 4 == 0, NULL);
  g_return_val_if_fail (size % 4 == 0 && size > 0, NULL);

  return g_strdup_printf ("xp /%" G_GSIZE_FORMAT "wx 0x%x", size / 4, address);
}

/**
 * hexz_test_guest_parse_xp:
 * @output: what the HMP command from hexz_test_guest_xp_command() printed
 * @address: the physical address the command started at
 * @size: the number of bytes the command read
 * @error: return location for a #GError
 *
 * Converts the output of `xp /Nwx`, lines such as
 * "0000000000200000: 0x535a5848 0x00000001 ...", back into memory bytes.
 *
 * Returns: (transfer full) (nullable): @size bytes of guest memory in
 *   guest byte order, or %NULL if @output does not cover them in order
 */
GBytes *
hexz_test_guest_parse_xp (const char  *output,
                          guint32      address,
                          gsize        size,
                          GError     **error)
{
  g_autoptr(GByteArray) bytes = g_byte_array_sized_new (size);
  g_auto(GStrv) lines = NULL;

  g_return_val_if_fail (output != NULL, NULL);
  g_return_val_if_fail (size % 4 == 0, NULL);

  lines = g_strsplit (output, "\n", -1);
  for (guint i = 0; lines[i] != NULL && bytes->len < size; i++)
    {
      g_auto(GStrv) words = NULL;
      char *line = g_strstrip (lines[i]);
      char *colon = strchr (line, ':');
      guint64 line_address;
      char *end;

      if (*line == '\0')
        continue;

      line_address = g_ascii_strtoull (line, &end, 16);
      if (colon == NULL || end != colon)
        {
          g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                       "Output of xp, line %u: expected \"ADDRESS: WORDS\", got \"%s\"",
                       i + 1, line);
          return NULL;
        }

      if (line_address != (guint64) address + bytes->len)
        {
          g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                       "Output of xp, line %u: address 0x%" G_GINT64_MODIFIER "x, expected 0x%"
                       G_GINT64_MODIFIER "x",
                       i + 1, line_address, (guint64) address + bytes->len);
          return NULL;
        }

      words = g_strsplit_set (colon + 1, " \t", -1);
      for (guint j = 0; words[j] != NULL; j++)
        {
          guint64 word;
          guint32 le_word;

          if (*words[j] == '\0')
            continue;

          if (!g_str_has_prefix (words[j], "0x") ||
              !g_ascii_string_to_unsigned (words[j] + 2, 16, 0, G_MAXUINT32, &word, NULL))
            {
              g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                           "Output of xp, line %u: \"%s\" is not a 32-bit hexadecimal word",
                           i + 1, words[j]);
              return NULL;
            }

          le_word = GUINT32_TO_LE ((guint32) word);
          g_byte_array_append (bytes, (const guint8 *) &le_word, sizeof le_word);
        }
    }

  if (bytes->len != size)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Output of xp contains %u bytes, expected %" G_GSIZE_FORMAT,
                   bytes->len, size);
      return NULL;
    }

  return g_byte_array_free_to_bytes (g_steal_pointer (&bytes));
}

/**
 * hexz_test_guest_pattern_checksum:
 * @fill_base: physical address of the pattern region
 * @fill_size: size of the pattern region in bytes
 * @seed: pattern seed
 *
 * Computes the checksum the guest stores for an intact pattern region.
 *
 * Returns: the expected pattern checksum
 */
guint32
hexz_test_guest_pattern_checksum (guint32 fill_base,
                                  guint32 fill_size,
                                  guint32 seed)
{
  guint32 checksum = HEXZ_GUEST_CHECKSUM_INIT;

  for (guint32 offset = 0; offset < fill_size; offset += 4)
    checksum = hexz_guest_checksum_add (checksum,
                                        hexz_guest_pattern_word (fill_base + offset, seed));

  return checksum;
}

/**
 * hexz_test_guest_verify_pattern:
 * @data: (array length=size): guest memory starting at @address
 * @size: bytes at @data, a multiple of 4
 * @address: physical address of @data, a multiple of 4
 * @seed: pattern seed
 * @bad_address: (out) (optional): the address of the first wrong word
 * @error: return location for a #GError
 *
 * Compares guest memory with the pattern the guest fills it with. @data may
 * be any part of the pattern region.
 *
 * Returns: %TRUE if every word matches; %FALSE with
 *   %HEXZ_TEST_GUEST_ERROR_PATTERN and @bad_address set otherwise
 */
gboolean
hexz_test_guest_verify_pattern (const guint8  *data,
                                gsize          size,
                                guint32        address,
                                guint32        seed,
                                guint32       *bad_address,
                                GError       **error)
{
  g_return_val_if_fail (data != NULL || size == 0, FALSE);
  g_return_val_if_fail (size % 4 == 0, FALSE);
  g_return_val_if_fail (address % 4 == 0, FALSE);
  g_return_val_if_fail ((guint64) address + size <= (guint64) G_MAXUINT32 + 1, FALSE);

  for (gsize offset = 0; offset < size; offset += 4)
    {
      guint32 word_address = address + (guint32) offset;
      guint32 expected = hexz_guest_pattern_word (word_address, seed);
      guint32 actual = read_le32 (data, offset);

      if (actual != expected)
        {
          if (bad_address != NULL)
            *bad_address = word_address;
          g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_PATTERN,
                       "Pattern word at guest address 0x%08x is 0x%08x, expected 0x%08x "
                       "(seed 0x%08x)",
                       word_address, actual, expected, seed);
          return FALSE;
        }
    }

  return TRUE;
}

/**
 * hexz_test_guest_verify_pattern_file:
 * @dump_path: a file written by QMP `pmemsave` from @address
 * @address: physical address the dump starts at, a multiple of 4
 * @seed: pattern seed
 * @bad_address: (out) (optional): the address of the first wrong word
 * @error: return location for a #GError
 *
 * Runs hexz_test_guest_verify_pattern() on a dump file.
 *
 * Returns: %TRUE if every word of the dump matches the pattern
 */
gboolean
hexz_test_guest_verify_pattern_file (const char  *dump_path,
                                     guint32      address,
                                     guint32      seed,
                                     guint32     *bad_address,
                                     GError     **error)
{
  g_autoptr(GMappedFile) mapped = NULL;
  g_autoptr(GError) local_error = NULL;
  gsize size;

  g_return_val_if_fail (dump_path != NULL, FALSE);

  mapped = g_mapped_file_new (dump_path, FALSE, error);
  if (mapped == NULL)
    return FALSE;

  size = g_mapped_file_get_length (mapped);
  if (size % 4 != 0)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "%s: dump is %" G_GSIZE_FORMAT " bytes, not a whole number of "
                   "32-bit words", dump_path, size);
      return FALSE;
    }

  if (!hexz_test_guest_verify_pattern ((const guint8 *) g_mapped_file_get_contents (mapped),
                                       size, address, seed, bad_address, &local_error))
    {
      g_set_error (error, local_error->domain, local_error->code,
                   "%s: %s", dump_path, local_error->message);
      return FALSE;
    }

  return TRUE;
}

/**
 * hexz_test_guest_check_ram:
 * @ram: (array length=size): guest RAM from physical address 0, such as a
 *   QMP `pmemsave` from 0 or the RAM a snapshot restored
 * @size: bytes at @ram
 * @status: (out caller-allocates) (optional): the decoded status area
 * @bad_address: (out) (optional): the address of the first wrong pattern word
 * @error: return location for a #GError
 *
 * Decodes the status area inside a flat image of guest RAM, then checks
 * that the guest is running and that its whole pattern region is intact.
 *
 * Returns: %TRUE if the status area is valid and the pattern intact
 */
gboolean
hexz_test_guest_check_ram (const guint8         *ram,
                           gsize                 size,
                           HexzTestGuestStatus  *status,
                           guint32              *bad_address,
                           GError              **error)
{
  HexzTestGuestStatus local_status;
  guint32 expected_checksum;

  g_return_val_if_fail (ram != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (status == NULL)
    status = &local_status;

  if (size < (gsize) HEXZ_GUEST_STATUS_ADDR + HEXZ_GUEST_STATUS_SIZE)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Guest RAM image is %" G_GSIZE_FORMAT " bytes, too small to contain "
                   "the status area at 0x%08x",
                   size, HEXZ_GUEST_STATUS_ADDR);
      return FALSE;
    }

  if (!hexz_test_guest_parse_status (ram + HEXZ_GUEST_STATUS_ADDR, HEXZ_GUEST_STATUS_SIZE,
                                     status, error))
    return FALSE;

  if (status->state != HEXZ_GUEST_STATE_RUNNING)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_STATE,
                   "Guest is %s, not running, so its pattern is not complete",
                   hexz_test_guest_state_to_string (status->state));
      return FALSE;
    }

  if ((guint64) status->fill_base + status->fill_size > size)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Guest RAM image is %" G_GSIZE_FORMAT " bytes, too small to contain "
                   "the pattern at 0x%08x+0x%x",
                   size, status->fill_base, status->fill_size);
      return FALSE;
    }

  expected_checksum = hexz_test_guest_pattern_checksum (status->fill_base, status->fill_size,
                                                        status->seed);
  if (status->pattern_checksum != expected_checksum)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_PATTERN,
                   "Guest read back pattern checksum 0x%08x, expected 0x%08x for seed "
                   "0x%08x",
                   status->pattern_checksum, expected_checksum, status->seed);
      return FALSE;
    }

  return hexz_test_guest_verify_pattern (ram + status->fill_base, status->fill_size,
                                         status->fill_base, status->seed, bad_address, error);
}

/**
 * hexz_test_guest_check_ram_file:
 * @ram_path: a flat image of guest RAM from physical address 0
 * @status: (out caller-allocates) (optional): the decoded status area
 * @bad_address: (out) (optional): the address of the first wrong pattern word
 * @error: return location for a #GError
 *
 * Runs hexz_test_guest_check_ram() on a file.
 *
 * Returns: %TRUE if the status area is valid and the pattern intact
 */
gboolean
hexz_test_guest_check_ram_file (const char           *ram_path,
                                HexzTestGuestStatus  *status,
                                guint32              *bad_address,
                                GError              **error)
{
  g_autoptr(GMappedFile) mapped = NULL;
  g_autoptr(GError) local_error = NULL;

  g_return_val_if_fail (ram_path != NULL, FALSE);

  mapped = g_mapped_file_new (ram_path, FALSE, error);
  if (mapped == NULL)
    return FALSE;

  if (!hexz_test_guest_check_ram ((const guint8 *) g_mapped_file_get_contents (mapped),
                                  g_mapped_file_get_length (mapped), status, bad_address,
                                  &local_error))
    {
      g_set_error (error, local_error->domain, local_error->code,
                   "%s: %s", ram_path, local_error->message);
      return FALSE;
    }

  return TRUE;
}

/**
 * hexz_test_guest_parse_disk_sector:
 * @sector: (array length=size): the disk sector at HEXZ_GUEST_RECORD_OFFSET
 * @size: bytes at @sector, HEXZ_GUEST_SECTOR_SIZE
 * @record: (out caller-allocates): the decoded record
 * @error: return location for a #GError
 *
 * Decodes the record sector. An all-zero sector, which the guest has not
 * written yet, gives a record with sequence 0.
 *
 * Returns: %TRUE if the sector is empty or contains a valid record
 *   followed by zero bytes
 */
gboolean
hexz_test_guest_parse_disk_sector (const guint8         *sector,
                                   gsize                 size,
                                   HexzTestGuestRecord  *record,
                                   GError              **error)
{
  gboolean all_zero = TRUE;

  g_return_val_if_fail (sector != NULL, FALSE);
  g_return_val_if_fail (record != NULL, FALSE);

  if (size != HEXZ_GUEST_SECTOR_SIZE)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Record sector is %" G_GSIZE_FORMAT " bytes, expected %u",
                   size, HEXZ_GUEST_SECTOR_SIZE);
      return FALSE;
    }

  for (gsize i = 0; i < size && all_zero; i++)
    all_zero = sector[i] == 0;

  memset (record, 0, sizeof *record);
  if (all_zero)
    return TRUE;

  if (!hexz_test_guest_parse_record (sector, size, record, error))
    return FALSE;

  for (gsize i = HEXZ_GUEST_RECORD_SIZE; i < size; i++)
    {
      if (sector[i] != 0)
        {
          g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                       "Record sector has byte 0x%02x at offset %" G_GSIZE_FORMAT
                       " after record %u, expected zero padding",
                       sector[i], i, record->sequence);
          return FALSE;
        }
    }

  return TRUE;
}

/**
 * hexz_test_guest_read_disk_record:
 * @image_path: a raw disk image the guest used as IDE primary master
 * @record: (out caller-allocates): the decoded record
 * @error: return location for a #GError
 *
 * Reads the record sector at byte HEXZ_GUEST_RECORD_OFFSET of a raw image
 * and decodes it with hexz_test_guest_parse_disk_sector(). Read it while
 * the VM is stopped: a read that races a guest write may see a torn sector.
 *
 * Returns: %TRUE if the sector is empty or contains a valid record
 */
gboolean
hexz_test_guest_read_disk_record (const char           *image_path,
                                  HexzTestGuestRecord  *record,
                                  GError              **error)
{
  g_autoptr(GError) local_error = NULL;
  guint8 sector[HEXZ_GUEST_SECTOR_SIZE];
  ssize_t n_read;
  int saved_errno;
  int fd;

  g_return_val_if_fail (image_path != NULL, FALSE);
  g_return_val_if_fail (record != NULL, FALSE);

  fd = g_open (image_path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0)
    {
      saved_errno = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                   "Could not open disk image %s: %s", image_path, g_strerror (saved_errno));
      return FALSE;
    }

  do
    n_read = pread (fd, sector, sizeof sector, HEXZ_GUEST_RECORD_OFFSET);
  while (n_read < 0 && errno == EINTR);
  saved_errno = errno;
  g_close (fd, NULL);

  if (n_read < 0)
    {
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                   "Could not read disk image %s at offset %" G_GUINT64_FORMAT ": %s",
                   image_path, (guint64) HEXZ_GUEST_RECORD_OFFSET, g_strerror (saved_errno));
      return FALSE;
    }

  if ((gsize) n_read != sizeof sector)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INVALID,
                   "Disk image %s ends before the record sector at offset %" G_GUINT64_FORMAT
                   "; the guest needs a disk larger than %u sectors",
                   image_path, (guint64) HEXZ_GUEST_RECORD_OFFSET, HEXZ_GUEST_RECORD_LBA + 1);
      return FALSE;
    }

  if (!hexz_test_guest_parse_disk_sector (sector, sizeof sector, record, &local_error))
    {
      g_set_error (error, local_error->domain, local_error->code,
                   "%s: %s", image_path, local_error->message);
      return FALSE;
    }

  return TRUE;
}

/**
 * hexz_test_guest_record_equal:
 * @a: a record
 * @b: another record
 *
 * Returns: %TRUE if every field of @a and @b is equal
 */
gboolean
hexz_test_guest_record_equal (const HexzTestGuestRecord *a,
                              const HexzTestGuestRecord *b)
{
  g_return_val_if_fail (a != NULL, FALSE);
  g_return_val_if_fail (b != NULL, FALSE);

  return a->sequence == b->sequence &&
         a->counter == b->counter &&
         a->uptime_ms == b->uptime_ms &&
         a->seed == b->seed &&
         a->fill_base == b->fill_base &&
         a->fill_size == b->fill_size &&
         a->pattern_checksum == b->pattern_checksum;
}

/* Check that @record describes the pattern of @status and was made no later
 * than @status. */
static gboolean
check_record_in_status (const HexzTestGuestStatus  *status,
                        const HexzTestGuestRecord  *record,
                        const char                 *role,
                        GError                    **error)
{
  if (record->seed != status->seed ||
      record->fill_base != status->fill_base ||
      record->fill_size != status->fill_size ||
      record->pattern_checksum != status->pattern_checksum)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
                   "%s record %u describes pattern seed 0x%08x at 0x%08x+0x%x with "
                   "checksum 0x%08x; the status area has seed 0x%08x at 0x%08x+0x%x with "
                   "checksum 0x%08x",
                   role, record->sequence, record->seed, record->fill_base,
                   record->fill_size, record->pattern_checksum, status->seed,
                   status->fill_base, status->fill_size, status->pattern_checksum);
      return FALSE;
    }

  if (record->counter > status->counter)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
                   "%s record %u has counter %" G_GUINT64_FORMAT ", ahead of the live "
                   "counter %" G_GUINT64_FORMAT,
                   role, record->sequence, record->counter, status->counter);
      return FALSE;
    }

  return TRUE;
}

/* Check the state of @status on its own: running, with a disk, with an
 * intact pattern checksum and records that fit it. */
static gboolean
check_status (const HexzTestGuestStatus  *status,
              GError                    **error)
{
  guint32 expected_checksum;

  if (status->state != HEXZ_GUEST_STATE_RUNNING)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_STATE,
                   "Guest is %s, not running; wait for state running before checking it",
                   hexz_test_guest_state_to_string (status->state));
      return FALSE;
    }

  if ((status->flags & (HEXZ_GUEST_FLAG_NO_DISK | HEXZ_GUEST_FLAG_DISK_TOO_SMALL)) != 0)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_STATE,
                   "Guest writes no records (flags 0x%x): give it a raw IDE disk larger "
                   "than %u sectors",
                   status->flags, HEXZ_GUEST_RECORD_LBA + 1);
      return FALSE;
    }

  if ((status->flags & HEXZ_GUEST_FLAG_DISK_ERROR) != 0)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_STATE,
                   "Guest reported %u failed disk writes, the last with ATA status 0x%02x "
                   "and error 0x%02x",
                   status->disk_errors, status->ata_status & 0xff,
                   (status->ata_status >> 8) & 0xff);
      return FALSE;
    }

  expected_checksum = hexz_test_guest_pattern_checksum (status->fill_base, status->fill_size,
                                                        status->seed);
  if (status->pattern_checksum != expected_checksum)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_PATTERN,
                   "Guest read back pattern checksum 0x%08x from 0x%08x+0x%x, expected "
                   "0x%08x for seed 0x%08x",
                   status->pattern_checksum, status->fill_base, status->fill_size,
                   expected_checksum, status->seed);
      return FALSE;
    }

  if (status->last_done_sequence != 0 &&
      !check_record_in_status (status, &status->last_done, "Last done", error))
    return FALSE;

  if (status->in_flight_sequence != 0)
    {
      if (!check_record_in_status (status, &status->in_flight, "In-flight", error))
        return FALSE;

      if (status->in_flight_sequence != status->last_done_sequence &&
          status->in_flight_sequence != status->last_done_sequence + 1)
        {
          g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
                       "In-flight record %u does not follow last done record %u",
                       status->in_flight_sequence, status->last_done_sequence);
          return FALSE;
        }

      if (status->last_done_sequence != 0 &&
          status->in_flight.counter < status->last_done.counter)
        {
          g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
                       "In-flight record %u has counter %" G_GUINT64_FORMAT ", behind last "
                       "done record %u with counter %" G_GUINT64_FORMAT,
                       status->in_flight_sequence, status->in_flight.counter,
                       status->last_done_sequence, status->last_done.counter);
          return FALSE;
        }
    }

  return TRUE;
}

/**
 * hexz_test_guest_check_consistent:
 * @status: the status area of a stopped guest
 * @disk_record: the record sector of its disk at the same moment
 * @error: return location for a #GError
 *
 * Checks that memory and disk of a paused guest fit together. The guest
 * must be running, with a disk and without disk errors. Its pattern
 * checksum must be the one the seed gives, and its records must fit the
 * pattern and the counter. The disk must contain the last record the guest
 * finished, or the record it was writing when it stopped.
 *
 * The pattern region itself is not part of @status: check a dump of it with
 * hexz_test_guest_verify_pattern().
 *
 * Returns: %TRUE if @status and @disk_record are consistent
 */
gboolean
hexz_test_guest_check_consistent (const HexzTestGuestStatus  *status,
                                  const HexzTestGuestRecord  *disk_record,
                                  GError                    **error)
{
  g_return_val_if_fail (status != NULL, FALSE);
  g_return_val_if_fail (disk_record != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_status (status, error))
    return FALSE;

  if (disk_record->sequence == 0)
    {
      /* Nothing written yet, or the first write was cut by the pause. */
      if (status->last_done_sequence != 0)
        {
          g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
                       "Disk contains no record, but the guest finished writing record %u",
                       status->last_done_sequence);
          return FALSE;
        }
      return TRUE;
    }

  if (status->last_done_sequence != 0 &&
      hexz_test_guest_record_equal (disk_record, &status->last_done))
    return TRUE;

  if (status->in_flight_sequence != 0 &&
      hexz_test_guest_record_equal (disk_record, &status->in_flight))
    return TRUE;

  if (status->in_flight_sequence != 0)
    g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
                 "Disk contains record %u (counter %" G_GUINT64_FORMAT "), but memory says "
                 "record %u was the last written and record %u in flight",
                 disk_record->sequence, disk_record->counter,
                 status->last_done_sequence, status->in_flight_sequence);
  else if (status->last_done_sequence == 0)
    g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
                 "Disk contains record %u (counter %" G_GUINT64_FORMAT "), but memory says "
                 "no record was written",
                 disk_record->sequence, disk_record->counter);
  else
    g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
                 "Disk contains record %u (counter %" G_GUINT64_FORMAT "), but memory says "
                 "record %u (counter %" G_GUINT64_FORMAT ") was the last written",
                 disk_record->sequence, disk_record->counter,
                 status->last_done_sequence, status->last_done.counter);
  return FALSE;
}

/**
 * hexz_test_guest_check_progress:
 * @before: a status of a running guest
 * @after: a later status of the same guest, or of a guest restored from a
 *   snapshot taken at or after @before
 * @error: return location for a #GError
 *
 * Checks that @after continues @before: same pattern, a counter that moved
 * forward and no record lost. A restored guest passes as well, since it
 * keeps the pattern and counter of the snapshot it came from.
 *
 * Returns: %TRUE if @after continues @before
 */
gboolean
hexz_test_guest_check_progress (const HexzTestGuestStatus  *before,
                                const HexzTestGuestStatus  *after,
                                GError                    **error)
{
  g_return_val_if_fail (before != NULL, FALSE);
  g_return_val_if_fail (after != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (after->state != HEXZ_GUEST_STATE_RUNNING)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_STATE,
                   "Guest is %s, not running",
                   hexz_test_guest_state_to_string (after->state));
      return FALSE;
    }

  if (before->seed != after->seed ||
      before->fill_base != after->fill_base ||
      before->fill_size != after->fill_size ||
      (before->state == HEXZ_GUEST_STATE_RUNNING &&
       before->pattern_checksum != after->pattern_checksum))
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
                   "Pattern changed from seed 0x%08x at 0x%08x+0x%x (checksum 0x%08x) to "
                   "seed 0x%08x at 0x%08x+0x%x (checksum 0x%08x); is this the same guest?",
                   before->seed, before->fill_base, before->fill_size,
                   before->pattern_checksum, after->seed, after->fill_base,
                   after->fill_size, after->pattern_checksum);
      return FALSE;
    }

  if (after->counter <= before->counter)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
                   "Counter went from %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT
                   "; the guest did not run in between",
                   before->counter, after->counter);
      return FALSE;
    }

  if (after->last_done_sequence < before->last_done_sequence)
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
                   "Last done record went back from %u to %u",
                   before->last_done_sequence, after->last_done_sequence);
      return FALSE;
    }

  if (after->last_done_sequence == before->last_done_sequence &&
      before->last_done_sequence != 0 &&
      !hexz_test_guest_record_equal (&before->last_done, &after->last_done))
    {
      g_set_error (error, HEXZ_TEST_GUEST_ERROR, HEXZ_TEST_GUEST_ERROR_INCONSISTENT,
                   "Last done record %u changed its content (counter %" G_GUINT64_FORMAT
                   " before, %" G_GUINT64_FORMAT " after)",
                   before->last_done_sequence, before->last_done.counter,
                   after->last_done.counter);
      return FALSE;
    }

  return TRUE;
}
