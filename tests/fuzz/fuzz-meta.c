/* fuzz-meta.c: open an overlay with a fuzzed .meta file and commit it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Input layout:
 *
 *   u8 flags      bit 0: open with the base snapshot's disk size instead of
 *                 the u64 below; bit 1: commit the overlay onto the base;
 *                 bit 2: a thin commit; bit 3: allow the disk to grow
 *   u64 disk_size the disk size passed to hexz_overlay_open() (0 takes the
 *                 overlay file's size)
 *   u32 file_size the overlay file's size, modulo 64 MiB (a sparse file
 *                 whose first page holds non-zero bytes)
 *   .meta bytes   the rest
 *
 * The base snapshot is written once, at start-up: a 64 KiB + 100 byte disk,
 * so the last overlay page is short.
 */

#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "hexz.h"

#include "fuzz-common.h"

#define FLAG_BASE_DISK_SIZE (1u << 0)
#define FLAG_COMMIT         (1u << 1)
#define FLAG_THIN           (1u << 2)
#define FLAG_ALLOW_GROW     (1u << 3)

#define BASE_DISK_SIZE (64 * 1024 + 100)
#define MAX_FILE_SIZE  (64 * 1024 * 1024)

/* A commit writes the whole disk, so commit only disks up to this size. */
#define MAX_COMMIT_DISK_SIZE (1024 * 1024)

/* Pages read from the overlay per input. */
#define MAX_PAGE_READS 64

static char *fuzz_dir;
static char *overlay_path;
static char *output_path;
static HexzSnapshot *base;

static void
remove_fuzz_dir (void)
{
  g_clear_object (&base);
  fuzz_remove_dir (fuzz_dir);
}

static void
write_base (const char *path)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (path);
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *disk = g_malloc (BASE_DISK_SIZE);

  for (gsize i = 0; i < BASE_DISK_SIZE; i++)
    disk[i] = (guint8) (i / 4096 + 1);

  hexz_snapshot_writer_set_block_size (writer, 16 * 1024);
  if (!hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, BASE_DISK_SIZE, &error) ||
      !hexz_snapshot_writer_write (writer, disk, BASE_DISK_SIZE, NULL, &error) ||
      !hexz_snapshot_writer_close (writer, NULL, &error))
    g_error ("Cannot write the base snapshot %s: %s", path, error->message);
}

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *base_path = NULL;

  fuzz_init_logging ();

  fuzz_dir = g_dir_make_tmp ("hexz-fuzz-meta-XXXXXX", &error);
  g_assert_no_error (error);
  overlay_path = g_build_filename (fuzz_dir, "disk.overlay", NULL);
  output_path = g_build_filename (fuzz_dir, "out.hxz", NULL);
  base_path = g_build_filename (fuzz_dir, "base.hxz", NULL);
  atexit (remove_fuzz_dir);

  write_base (base_path);
  base = hexz_snapshot_open_path (base_path, NULL, &error);
  g_assert_no_error (error);

  return 0;
}

static void
write_overlay_file (guint32 file_size)
{
  guint8 page[4096];
  int fd;

  memset (page, 0xa5, sizeof page);

  fd = open (overlay_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 ||
      ftruncate (fd, file_size) != 0 ||
      pwrite (fd, page, MIN (sizeof page, file_size), 0) < 0)
    g_error ("Cannot write the overlay %s: %s", overlay_path, g_strerror (errno));
  close (fd);
}

static void
read_overlay (HexzOverlay *overlay)
{
  g_autofree guint64 *pages = NULL;
  guint8 buffer[HEXZ_OVERLAY_PAGE_SIZE];
  guint64 disk_size = hexz_overlay_get_disk_size (overlay);
  guint64 n_disk_pages = disk_size / HEXZ_OVERLAY_PAGE_SIZE;
  gsize n_pages;

  pages = hexz_overlay_dup_modified_pages (overlay, &n_pages);
  if (n_pages != hexz_overlay_get_n_modified (overlay))
    abort ();

  for (gsize i = 0; i < n_pages && i < MAX_PAGE_READS; i++)
    {
      g_autoptr(GError) error = NULL;

      if (!hexz_overlay_is_modified (overlay, pages[i]))
        abort ();
      if (i > 0 && pages[i] <= pages[i - 1])
        abort ();
      hexz_overlay_read_page (overlay, pages[i], buffer, &error);
    }

  hexz_overlay_get_data_size (overlay);
  hexz_overlay_is_modified (overlay, n_disk_pages);
  hexz_overlay_is_modified (overlay, G_MAXUINT64);

  {
    g_autoptr(GError) error = NULL;

    if (hexz_overlay_read_page (overlay, n_disk_pages + 1, buffer, &error))
      abort ();
  }
}

static void
commit_overlay (HexzOverlay *overlay,
                guint8       flags)
{
  g_autoptr(HexzCommit) commit = NULL;
  g_autoptr(GFile) output = g_file_new_for_path (output_path);
  g_autoptr(HexzSnapshot) result = NULL;
  g_autoptr(GError) error = NULL;

  if (hexz_overlay_get_disk_size (overlay) > MAX_COMMIT_DISK_SIZE)
    return;

  commit = hexz_commit_new (base, output);
  hexz_commit_set_overlay (commit, overlay);
  hexz_commit_set_thin (commit, (flags & FLAG_THIN) != 0);
  hexz_commit_set_allow_grow (commit, (flags & FLAG_ALLOW_GROW) != 0);
  hexz_commit_set_threads (commit, 1);

  if (!hexz_commit_run (commit, NULL, &error))
    {
      g_message ("Commit: %s", error->message);
      return;
    }
  g_message ("Committed");

  /* What the commit wrote must open and verify. */
  result = hexz_snapshot_open_path (output_path, NULL, &error);
  if (result == NULL || !hexz_snapshot_verify (result, NULL, &error))
    g_error ("The committed snapshot %s is broken: %s", output_path, error->message);
  g_remove (output_path);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  FuzzInput input = { data, size };
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(GError) error = NULL;
  guint64 disk_size;
  guint32 file_size;
  guint8 flags;

  flags = fuzz_input_take_u8 (&input);
  disk_size = fuzz_input_take_u64 (&input);
  file_size = fuzz_input_take_u32 (&input) % MAX_FILE_SIZE;
  if (flags & FLAG_BASE_DISK_SIZE)
    disk_size = BASE_DISK_SIZE;

  write_overlay_file (file_size);
  fuzz_write_file (fuzz_dir, "disk.meta", input.data, input.size);

  overlay = hexz_overlay_open_path (overlay_path, disk_size, NULL, &error);
  if (overlay == NULL)
    {
      g_message ("Open: %s", error->message);
      return 0;
    }

  read_overlay (overlay);

  if (flags & FLAG_COMMIT)
    commit_overlay (overlay, flags);

  return 0;
}
