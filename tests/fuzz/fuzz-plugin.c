/* fuzz-plugin.c: the nbdkit plugin's disk driven by fuzzed requests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Calls the functions of tools/hexz-plugin-disk.h, which the plugin's
 * request callbacks call, with fuzzer-chosen requests, and checks every
 * read against a model of the disk: the base snapshot's bytes with the
 * writes and zeroings applied. Input layout:
 *
 *   u8 flags   bit 0: before opening, read a u8 count N and a u32 size,
 *              then write the next N * 8 bytes as the `.meta` file and an
 *              overlay file of that size (hostile page lists; the model is
 *              then unknown and reads are not compared)
 *   requests   each: u8 kind, u32 offset, u32 length; kind % 6 picks read,
 *              write, zero, flush, extent query or snapshot reopen
 *
 * Offsets and lengths reach past the disk's end, where a request must
 * fail. A ZERO extent must read as zeros. At the end the disk is closed
 * and opened again from its files, and the whole disk must read as the
 * model says: every page `.meta` lists points at data that was written.
 */

#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "hexz.h"
#include "hexz-plugin-disk.h"

#include "fuzz-common.h"

#define FLAG_PRELOAD_META (1u << 0)

/* Not a multiple of the page size, so the last page is short; blocks of
 * 16 KiB span four overlay pages. */
#define DISK_SIZE  (256 * 1024 + 1000)
#define BLOCK_SIZE (16 * 1024)

/* Requests reach this far past the end, and are at most this long. */
#define PAST_END    (3 * 4096)
#define MAX_REQUEST (3 * BLOCK_SIZE)
#define MAX_REQUESTS 64

enum {
  REQUEST_READ,
  REQUEST_WRITE,
  REQUEST_ZERO,
  REQUEST_FLUSH,
  REQUEST_EXTENT,
  REQUEST_REOPEN,
  N_REQUESTS
};

static char *fuzz_dir;
static char *base_path;
static char *overlay_path;
static char *meta_path;
static guint8 *base_disk;

static void
remove_fuzz_dir (void)
{
  fuzz_remove_dir (fuzz_dir);
}

static void
write_base (void)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (base_path);
  g_autoptr(GError) error = NULL;

  /* Text-like bytes, then a zero block, then bytes that differ per page. */
  base_disk = g_malloc0 (DISK_SIZE);
  for (gsize i = 0; i < DISK_SIZE; i++)
    {
      if (i < BLOCK_SIZE)
        base_disk[i] = "hexz plugin "[i % 12];
      else if (i >= 2 * BLOCK_SIZE)
        base_disk[i] = (guint8) (i / 4096 * 7 + i % 13);
    }

  hexz_snapshot_writer_set_block_size (writer, BLOCK_SIZE);
  if (!hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, DISK_SIZE, &error) ||
      !hexz_snapshot_writer_write (writer, base_disk, DISK_SIZE, NULL, &error) ||
      !hexz_snapshot_writer_close (writer, NULL, &error))
    g_error ("Cannot write the base snapshot %s: %s", base_path, error->message);
}

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  g_autoptr(GError) error = NULL;

  fuzz_init_logging ();

  fuzz_dir = g_dir_make_tmp ("hexz-fuzz-plugin-XXXXXX", &error);
  g_assert_no_error (error);
  base_path = g_build_filename (fuzz_dir, "base.hxz", NULL);
  overlay_path = g_build_filename (fuzz_dir, "disk.overlay", NULL);
  meta_path = hexz_overlay_get_meta_path_for (overlay_path);
  atexit (remove_fuzz_dir);

  write_base ();

  return 0;
}

static void
preload_meta (FuzzInput *input)
{
  gsize n_entries = fuzz_input_take_u8 (input);
  guint32 overlay_size = fuzz_input_take_u32 (input) % (2 * DISK_SIZE);
  gsize meta_size = MIN (n_entries * 8, input->size);
  int fd;

  fuzz_write_file (fuzz_dir, "disk.meta", input->data, meta_size);
  input->data += meta_size;
  input->size -= meta_size;

  fd = open (overlay_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate (fd, overlay_size) != 0)
    g_error ("Cannot write the overlay %s: %s", overlay_path, g_strerror (errno));
  close (fd);
}

static gboolean
in_range (guint64 offset,
          guint64 length)
{
  return offset <= DISK_SIZE && length <= DISK_SIZE - offset;
}

static void
fill_pattern (guint8  *buffer,
              gsize    length,
              guint    seed)
{
  for (gsize i = 0; i < length; i++)
    buffer[i] = (guint8) (seed * 151 + i * 7 + 1);
}

static void
check_read (HexzPluginDisk *disk,
            const guint8   *model,
            guint64         offset,
            gsize           length)
{
  g_autofree guint8 *buffer = g_malloc (MAX (length, 1));
  g_autoptr(GError) error = NULL;
  gboolean ok;

  ok = hexz_plugin_disk_read (disk, buffer, length, offset, &error);
  if (!in_range (offset, length))
    {
      if (ok)
        g_error ("A read of %" G_GSIZE_FORMAT " bytes at %" G_GUINT64_FORMAT
                 " past the end succeeded", length, offset);
      return;
    }

  if (!ok)
    {
      /* Reads fail only on damaged files, which a model run never makes. */
      if (model != NULL)
        g_error ("Read of %" G_GSIZE_FORMAT " bytes at %" G_GUINT64_FORMAT " failed: %s",
                 length, offset, error->message);
      return;
    }

  if (model != NULL && memcmp (buffer, model + offset, length) != 0)
    g_error ("Read of %" G_GSIZE_FORMAT " bytes at %" G_GUINT64_FORMAT
             " differs from what was written", length, offset);
}

static void
check_extent (HexzPluginDisk *disk,
              const guint8   *model,
              guint64         offset,
              guint64         max_length)
{
  g_autoptr(GError) error = NULL;
  HexzPluginExtentType type;
  guint64 length = 0;
  gboolean ok;

  if (max_length == 0)
    return;

  ok = hexz_plugin_disk_get_extent (disk, offset, max_length, &length, &type, &error);
  if (!in_range (offset, max_length))
    {
      if (ok)
        g_error ("An extent query at %" G_GUINT64_FORMAT " past the end succeeded", offset);
      return;
    }

  if (!ok)
    {
      if (model != NULL)
        g_error ("Extent query at %" G_GUINT64_FORMAT " failed: %s", offset, error->message);
      return;
    }

  if (length == 0 || length > max_length)
    g_error ("Extent query at %" G_GUINT64_FORMAT " for up to %" G_GUINT64_FORMAT
             " bytes returned %" G_GUINT64_FORMAT " bytes", offset, max_length, length);

  if (model != NULL && type == HEXZ_PLUGIN_EXTENT_ZERO)
    {
      for (guint64 i = 0; i < length; i++)
        {
          if (model[offset + i] != 0)
            g_error ("Extent of %" G_GUINT64_FORMAT " bytes at %" G_GUINT64_FORMAT
                     " is reported zero, but byte %" G_GUINT64_FORMAT " is not",
                     length, offset, offset + i);
        }
    }
}

static void
modify (HexzPluginDisk *disk,
        guint8         *model,
        guint64         offset,
        gsize           length,
        gboolean        zero,
        guint           seed)
{
  g_autofree guint8 *data = g_malloc (MAX (length, 1));
  g_autoptr(GError) error = NULL;
  gboolean ok;

  fill_pattern (data, length, seed);
  if (zero)
    ok = hexz_plugin_disk_zero (disk, length, offset, &error);
  else
    ok = hexz_plugin_disk_write (disk, data, length, offset, &error);

  if (!in_range (offset, length))
    {
      if (ok)
        g_error ("A write of %" G_GSIZE_FORMAT " bytes at %" G_GUINT64_FORMAT
                 " past the end succeeded", length, offset);
      return;
    }

  if (!ok)
    {
      if (model != NULL)
        g_error ("Write of %" G_GSIZE_FORMAT " bytes at %" G_GUINT64_FORMAT " failed: %s",
                 length, offset, error->message);
      return;
    }

  if (model != NULL)
    {
      if (zero)
        memset (model + offset, 0, length);
      else
        memcpy (model + offset, data, length);
    }
}

static void
remove_overlay (void)
{
  g_remove (overlay_path);
  g_remove (meta_path);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  FuzzInput input = { data, size };
  g_autoptr(HexzPluginDisk) disk = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *model = NULL;
  guint8 flags;

  remove_overlay ();

  flags = fuzz_input_take_u8 (&input);
  if (flags & FLAG_PRELOAD_META)
    preload_meta (&input);
  else
    model = g_memdup2 (base_disk, DISK_SIZE);

  disk = hexz_plugin_disk_open (base_path, overlay_path, TRUE, &error);
  if (disk == NULL)
    {
      if (model != NULL)
        g_error ("Cannot open a new overlay: %s", error->message);
      return 0;
    }

  if (hexz_plugin_disk_get_size (disk) != DISK_SIZE || !hexz_plugin_disk_is_writable (disk))
    g_error ("The disk has the wrong size or is not writable");

  for (guint i = 0; i < MAX_REQUESTS && input.size > 0; i++)
    {
      guint kind = fuzz_input_take_u8 (&input) % N_REQUESTS;
      guint64 offset = fuzz_input_take_u32 (&input) % (DISK_SIZE + PAST_END);
      gsize length = fuzz_input_take_u32 (&input) % (MAX_REQUEST + 1);
      g_autoptr(GError) request_error = NULL;

      switch (kind)
        {
        case REQUEST_READ:
          check_read (disk, model, offset, length);
          break;

        case REQUEST_WRITE:
        case REQUEST_ZERO:
          modify (disk, model, offset, length, kind == REQUEST_ZERO, i);
          break;

        case REQUEST_FLUSH:
          if (!hexz_plugin_disk_flush (disk, &request_error))
            g_error ("Flush failed: %s", request_error->message);
          break;

        case REQUEST_EXTENT:
          check_extent (disk, model, offset, length);
          break;

        case REQUEST_REOPEN:
          if (!hexz_plugin_disk_reopen_snapshot (disk, &request_error))
            g_error ("Reopening the snapshot failed: %s", request_error->message);
          break;

        default:
          g_assert_not_reached ();
        }
    }

  if (model == NULL)
    return 0;

  /* The files' contents after a close must match the model. */
  g_clear_pointer (&disk, hexz_plugin_disk_free);
  disk = hexz_plugin_disk_open (base_path, overlay_path, FALSE, &error);
  if (disk == NULL)
    g_error ("Cannot open the overlay again: %s", error->message);
  check_read (disk, model, 0, DISK_SIZE);

  return 0;
}
