/* fuzz-seeds.c: write the seed corpora of the fuzz harnesses
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Usage: fuzz-seeds OUTPUT_DIR
 *
 * Writes OUTPUT_DIR/snapshot, OUTPUT_DIR/meta and OUTPUT_DIR/qmp, one
 * file per seed in the input layout of fuzz-NAME.c. Snapshot seeds are
 * real files from HexzSnapshotWriter and HexzCommit; QMP seeds are server
 * transcripts in the shape QEMU 7.2 sends (the recorded one lives in
 * tests/fuzz/seeds/qmp).
 */

#include "config.h"

#include <stdio.h>
#include <string.h>

#include "hexz.h"
#include "../hexz-test-snapshot-util.h"

static char *output_dir;
static char *work_dir;

static void
write_seed (const char *harness,
            const char *name,
            GBytes     *bytes)
{
  g_autofree char *dir = g_build_filename (output_dir, harness, NULL);
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr(GError) error = NULL;

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  g_file_set_contents (path, g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes), &error);
  g_assert_no_error (error);
}

static GBytes *
read_file (const char *path)
{
  g_autoptr(GError) error = NULL;
  char *contents;
  gsize length;

  g_file_get_contents (path, &contents, &length, &error);
  g_assert_no_error (error);

  return g_bytes_new_take (contents, length);
}

/* Seed layout of fuzz-snapshot.c: flags, [child length], child, [parent]. */
static void
write_snapshot_seed (const char *name,
                     guint8      flags,
                     const char *child_path,
                     const char *parent_path)
{
  g_autoptr(GBytes) child = read_file (child_path);
  g_autoptr(GByteArray) seed = g_byte_array_new ();
  g_autoptr(GBytes) bytes = NULL;

  g_byte_array_append (seed, &flags, 1);
  if (parent_path != NULL)
    {
      g_autoptr(GBytes) parent = read_file (parent_path);
      guint8 length[4];

      length[0] = g_bytes_get_size (child) & 0xff;
      length[1] = (g_bytes_get_size (child) >> 8) & 0xff;
      length[2] = (g_bytes_get_size (child) >> 16) & 0xff;
      length[3] = (g_bytes_get_size (child) >> 24) & 0xff;
      g_byte_array_append (seed, length, 4);
      g_byte_array_append (seed, g_bytes_get_data (child, NULL), g_bytes_get_size (child));
      g_byte_array_append (seed, g_bytes_get_data (parent, NULL), g_bytes_get_size (parent));
    }
  else
    {
      g_byte_array_append (seed, g_bytes_get_data (child, NULL), g_bytes_get_size (child));
    }

  bytes = g_byte_array_free_to_bytes (g_steal_pointer (&seed));
  write_seed ("snapshot", name, bytes);
}

static void
write_snapshot_seeds (void)
{
  g_autofree char *parent_path = g_build_filename (work_dir, "parent.hxz", NULL);
  g_autofree char *child_path = g_build_filename (work_dir, "child.hxz", NULL);
  g_autofree char *overlay_path = g_build_filename (work_dir, "disk.overlay", NULL);
  g_autoptr(HexzSnapshot) parent = NULL;
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(HexzCommit) commit = NULL;
  g_autoptr(GFile) child_file = g_file_new_for_path (child_path);
  g_autoptr(GError) error = NULL;
  gsize size = 96 * 1024;
  g_autofree guint8 *disk = g_malloc0 (size);
  g_autofree guint8 *memory = g_malloc0 (size / 2);
  g_autofree guint8 *zeros = NULL;

  /* Text, random bytes and zero blocks, so every block kind and the raw
   * fallback of incompressible blocks appear. */
  test_fill_text (disk, size / 2, 1);
  test_fill_random (disk + size / 2, 8192, 2);
  test_fill_text (memory, size / 4, 3);

  test_write_snapshot (child_path, HEXZ_CODEC_LZ4, 4096, FALSE, disk, size, memory, size / 2);
  write_snapshot_seed ("lz4-disk-memory", 1, child_path, NULL);
  write_snapshot_seed ("lz4-disk-memory-unfixed", 0, child_path, NULL);

  test_write_snapshot (child_path, HEXZ_CODEC_ZSTD, 8192, FALSE, disk, size, NULL, 0);
  write_snapshot_seed ("zstd-disk", 1, child_path, NULL);

  test_write_snapshot (child_path, HEXZ_CODEC_RAW, 4096, FALSE, disk, 10000, memory, 0);
  write_snapshot_seed ("raw-short-block-empty-memory", 1, child_path, NULL);

  test_write_snapshot (child_path, HEXZ_CODEC_ZSTD, 4096, TRUE, disk, size, memory, size / 2);
  write_snapshot_seed ("zstd-dictionary", 1, child_path, NULL);

  /* More than one index page: 4097 zero blocks of 4 KiB. */
  zeros = g_malloc0 (4097 * 4096);
  zeros[4096 * 4096] = 1;
  test_write_snapshot (child_path, HEXZ_CODEC_ZSTD, 4096, FALSE, zeros, 4097 * 4096, NULL, 0);
  write_snapshot_seed ("two-index-pages", 1, child_path, NULL);

  /* A thin child of a parent in the same folder: it stores "parent.hxz". */
  test_write_snapshot (parent_path, HEXZ_CODEC_LZ4, 4096, FALSE, disk, 32 * 1024, NULL, 0);
  parent = hexz_snapshot_open_path (parent_path, NULL, &error);
  g_assert_no_error (error);

  overlay = hexz_overlay_create_path (overlay_path, 32 * 1024, HEXZ_OVERLAY_CREATE_NONE, &error);
  g_assert_no_error (error);
  hexz_overlay_write (overlay, 4096 + 100, (const guint8 *) "changed", 7, &error);
  g_assert_no_error (error);
  hexz_overlay_write (overlay, 5 * 4096, disk, 4096, &error);
  g_assert_no_error (error);

  commit = hexz_commit_new (parent, child_file);
  hexz_commit_set_overlay (commit, overlay);
  hexz_commit_set_thin (commit, TRUE);
  hexz_commit_set_codec (commit, HEXZ_CODEC_ZSTD);
  hexz_commit_set_block_size (commit, 8192);
  hexz_commit_set_message (commit, "a thin child");
  hexz_commit_run (commit, NULL, &error);
  g_assert_no_error (error);
  write_snapshot_seed ("thin-child", 3, child_path, parent_path);
  write_snapshot_seed ("thin-child-unfixed", 2, child_path, parent_path);

  g_remove (parent_path);
  g_remove (child_path);
  g_remove (overlay_path);
  g_clear_object (&overlay);
  {
    g_autofree char *meta_path = hexz_overlay_get_meta_path_for (overlay_path);

    g_remove (meta_path);
  }
}

/* Seed layout of fuzz-meta.c: flags, u64 disk size, u32 overlay file size,
 * then the .meta entries. */
static void
write_meta_seed (const char    *name,
                 guint8         flags,
                 guint64        disk_size,
                 guint32        file_size,
                 const guint64 *pages,
                 gsize          n_pages)
{
  g_autoptr(GByteArray) seed = g_byte_array_new ();
  g_autoptr(GBytes) bytes = NULL;
  guint64 disk_size_le = GUINT64_TO_LE (disk_size);
  guint32 file_size_le = GUINT32_TO_LE (file_size);

  g_byte_array_append (seed, &flags, 1);
  g_byte_array_append (seed, (const guint8 *) &disk_size_le, 8);
  g_byte_array_append (seed, (const guint8 *) &file_size_le, 4);
  for (gsize i = 0; i < n_pages; i++)
    {
      guint64 page = GUINT64_TO_LE (pages[i]);

      g_byte_array_append (seed, (const guint8 *) &page, 8);
    }

  bytes = g_byte_array_free_to_bytes (g_steal_pointer (&seed));
  write_seed ("meta", name, bytes);
}

static void
write_meta_seeds (void)
{
  const guint64 pages[] = { 3, 0, 16, 3, 7 };
  const guint64 last_page[] = { 16 };
  const guint64 far_page[] = { G_GUINT64_CONSTANT (1) << 61 };
  guint32 base_size = 64 * 1024 + 100;

  write_meta_seed ("commit-thick", 0x03, 0, base_size, pages, G_N_ELEMENTS (pages));
  write_meta_seed ("commit-thin", 0x07, 0, base_size, pages, G_N_ELEMENTS (pages));
  write_meta_seed ("commit-grow", 0x0a, 128 * 1024, 128 * 1024, pages, G_N_ELEMENTS (pages));
  write_meta_seed ("short-last-page", 0x03, 0, base_size, last_page, 1);
  write_meta_seed ("empty", 0x01, 0, base_size, NULL, 0);
  write_meta_seed ("own-size", 0x00, 0, 1024 * 1024, pages, G_N_ELEMENTS (pages));
  write_meta_seed ("far-page", 0x00, G_MAXUINT64, 4096, far_page, 1);
}

/* QMP transcripts, one line per message as QEMU sends them. The client
 * numbers its commands hexz-1 (qmp_capabilities), hexz-2 (query-status),
 * hexz-3 (stop), hexz-4 (cont), hexz-5 (query-migrate), hexz-6
 * (query-name). */
#define GREETING \
  "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, " \
  "\"package\": \"Debian 1:7.2+dfsg-7\"}, \"capabilities\": [\"oob\"]}}\r\n"

static const struct
{
  const char *name;
  guint8      control;
  const char *stream;
} qmp_seeds[] = {
  { "session", 0x07,
    GREETING
    "{\"return\": {}, \"id\": \"hexz-1\"}\r\n"
    "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, \"id\": \"hexz-2\"}\r\n"
    "{\"timestamp\": {\"seconds\": 1764880000, \"microseconds\": 123456}, \"event\": \"STOP\"}\r\n"
    "{\"return\": {}, \"id\": \"hexz-3\"}\r\n"
    "{\"timestamp\": {\"seconds\": 1764880000, \"microseconds\": 223456}, \"event\": \"RESUME\"}\r\n"
    "{\"return\": {}, \"id\": \"hexz-4\"}\r\n"
    "{\"return\": {\"status\": \"completed\", \"setup-time\": 1, \"downtime\": 12, \"total-time\": 340, "
    "\"ram\": {\"total\": 134217728, \"remaining\": 0, \"transferred\": 9876543, \"duplicate\": 30000, "
    "\"normal\": 2400, \"normal-bytes\": 9830400, \"mbps\": 230.5, \"dirty-sync-count\": 3, "
    "\"postcopy-requests\": 0, \"page-size\": 4096, \"multifd-bytes\": 0, \"pages-per-second\": 0, "
    "\"precopy-bytes\": 9876543, \"downtime-bytes\": 0, \"postcopy-bytes\": 0, "
    "\"dirty-pages-rate\": 0, \"skipped\": 0}}, \"id\": \"hexz-5\"}\r\n"
    "{\"return\": {\"name\": \"hexz\"}, \"id\": \"hexz-6\"}\r\n"
    "{\"timestamp\": {\"seconds\": 1764880001, \"microseconds\": 5}, \"event\": \"MIGRATION\", \"data\": {\"status\": \"setup\"}}\r\n"
    "{\"timestamp\": {\"seconds\": 1764880001, \"microseconds\": 9}, \"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}}\r\n" },
  { "errors-split", 0x08 | 0x04,
    GREETING
    "{\"return\": {}, \"id\": \"hexz-1\"}\n"
    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"this is an error\"}, \"id\": \"hexz-2\"}\n"
    "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command stop has not been found\"}, \"id\": \"hexz-3\"}\n"
    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting value\"}}\n"
    "{\"error\": {\"class\": \"DeviceNotActive\", \"desc\": \"No migration\"}, \"id\": \"hexz-5\"}\n"
    "{\"error\": {\"class\": \"KVMMissingCap\", \"desc\": \"?\"}, \"id\": \"hexz-6\"}\n" },
  { "cancelled-stop", 0x10 | 0x07,
    GREETING
    "{\"return\": {}, \"id\": \"hexz-1\"}\n"
    "{\"return\": {\"status\": \"paused\", \"singlestep\": false, \"running\": false}, \"id\": \"hexz-2\"}\n"
    "{\"return\": {}, \"id\": \"hexz-3\"}\n"
    "{\"return\": {}, \"id\": \"hexz-4\"}\n"
    "{\"return\": {\"status\": \"failed\", \"error-desc\": \"Unable to write to socket: Broken pipe\"}, \"id\": \"hexz-5\"}\n"
    "{\"return\": {\"name\": \"x\"}, \"id\": \"hexz-99\"}\n"
    "{\"return\": {}, \"id\": 7}\n"
    "{\"QMP\": {}}\n"
    "{\"something\": 1}\n" },
  { "events-before-greeting", 0x07,
    "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n"
    "{\"event\": \"STOP\"}\n"
    GREETING
    "{\"return\": {}, \"id\": \"hexz-1\"}\n"
    "{\"event\": \"STOP\", \"data\": {}, \"timestamp\": {\"seconds\": \"x\"}}\n"
    "{\"event\": 5}\n"
    "\n   \r\n"
    "{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": \"hexz-2\"}\n" },
  { "not-qmp", 0x07, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" },
  { "invalid-json", 0x01, GREETING "{\"return\": {}, \"id\": \"hexz-1\"}\n{\"return\": [1, 2,\n" },
  { "no-newline-at-end", 0x07, GREETING "{\"return\": {}, \"id\": \"hexz-1\"}" },
};

static void
write_qmp_seeds (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (qmp_seeds); i++)
    {
      g_autoptr(GByteArray) seed = g_byte_array_new ();
      g_autoptr(GBytes) bytes = NULL;

      g_byte_array_append (seed, &qmp_seeds[i].control, 1);
      g_byte_array_append (seed, (const guint8 *) qmp_seeds[i].stream,
                           strlen (qmp_seeds[i].stream));
      bytes = g_byte_array_free_to_bytes (g_steal_pointer (&seed));
      write_seed ("qmp", qmp_seeds[i].name, bytes);
    }
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(GError) error = NULL;

  if (argc != 2)
    {
      fprintf (stderr, "Usage: %s OUTPUT_DIR\n", argv[0]);
      return 2;
    }

  output_dir = argv[1];
  work_dir = g_dir_make_tmp ("hexz-fuzz-seeds-XXXXXX", &error);
  g_assert_no_error (error);

  write_snapshot_seeds ();
  write_meta_seeds ();
  write_qmp_seeds ();

  test_remove_tree (work_dir);
  g_free (work_dir);

  return 0;
}
