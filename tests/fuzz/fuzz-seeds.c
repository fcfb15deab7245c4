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
#include "hexz-format-private.h"
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

/* Appends @length bytes as a zstd frame of raw blocks: the bytes appear
 * as they are, so the fuzzer mutates block entries directly, and
 * fuzz-snapshot can recompute the block checksums inside them. */
static void
append_raw_zstd_frame (GByteArray   *out,
                       const guint8 *data,
                       gsize         length)
{
  const gsize max_block = 128 * 1024;
  /* Magic, then a frame header descriptor for a single segment with a
   * 4-byte content size and no checksum. */
  const guint8 frame_header[] = { 0x28, 0xb5, 0x2f, 0xfd, 0xa0 };
  guint32 content_size = GUINT32_TO_LE ((guint32) length);
  gsize offset = 0;

  g_byte_array_append (out, frame_header, sizeof frame_header);
  g_byte_array_append (out, (const guint8 *) &content_size, 4);

  do
    {
      gsize n = MIN (max_block, length - offset);
      gboolean last = offset + n == length;
      guint32 block_header = (guint32) (n << 3) | (last ? 1 : 0);
      guint8 header_bytes[3] = {
        block_header & 0xff, (block_header >> 8) & 0xff, (block_header >> 16) & 0xff,
      };

      g_byte_array_append (out, header_bytes, 3);
      g_byte_array_append (out, data + offset, n);
      offset += n;
    }
  while (offset < length);
}

/* Rewrites the snapshot at @path with every index page stored as a zstd
 * frame of raw blocks, moving the pages and directories that follow. */
static void
rewrite_pages_raw (const char *path)
{
  g_autoptr(GBytes) bytes = read_file (path);
  const guint8 *data = g_bytes_get_data (bytes, NULL);
  g_autoptr(GByteArray) out = g_byte_array_new ();
  g_autoptr(GByteArray) directories = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  guint8 header_bytes[HEXZ_HEADER_SIZE];
  HexzHeader header;
  guint64 pages_start;

  hexz_header_decode (data, g_bytes_get_size (bytes), path, &header, &error);
  g_assert_no_error (error);

  pages_start = header.data_end;
  pages_start = MAX (pages_start, header.dictionary.offset + header.dictionary.length);
  pages_start = MAX (pages_start, header.metadata.offset + header.metadata.length);
  pages_start = MAX (pages_start, header.parent.offset + header.parent.length);
  g_byte_array_append (out, data, pages_start);

  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      HexzStreamDesc *stream = &header.streams[s];
      guint dir_start = directories->len;

      for (guint p = 0; p < stream->page_count; p++)
        {
          HexzPageDesc desc;
          gboolean reserved_ok;
          gsize length;
          g_autofree guint8 *entries = NULL;
          guint8 encoded[HEXZ_PAGE_DESC_SIZE];

          hexz_page_desc_decode (data + stream->directory.offset + p * HEXZ_PAGE_DESC_SIZE,
                                 &desc, &reserved_ok);
          length = (gsize) desc.entry_count * HEXZ_ENTRY_SIZE;
          entries = g_malloc (length);
          g_assert_true (hexz_decompress_page (data + desc.offset, desc.length, entries, length));

          desc.offset = out->len;
          append_raw_zstd_frame (out, entries, length);
          desc.length = out->len - desc.offset;
          desc.checksum = hexz_checksum (out->data + desc.offset, desc.length);
          hexz_page_desc_encode (&desc, encoded);
          g_byte_array_append (directories, encoded, sizeof encoded);
        }

      stream->directory.length = directories->len - dir_start;
    }

  /* The directories follow the pages, disk first, and end the file. */
  for (guint s = 0, dir_start = 0; s < HEXZ_N_STREAMS; s++)
    {
      HexzStreamDesc *stream = &header.streams[s];

      if (stream->directory.length == 0)
        continue;
      stream->directory.offset = out->len + dir_start;
      stream->directory.checksum = hexz_checksum (directories->data + dir_start,
                                                  stream->directory.length);
      dir_start += stream->directory.length;
    }
  g_byte_array_append (out, directories->data, directories->len);

  header.file_size = out->len;
  hexz_header_encode (&header, header_bytes);
  memcpy (out->data, header_bytes, HEXZ_HEADER_SIZE);

  g_file_set_contents (path, (const char *) out->data, out->len, &error);
  g_assert_no_error (error);
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

/* Checks that the disk stream of @path has blocks compressed with the
 * file's dictionary, so that the seed reaches that codec. */
static void
assert_dictionary_used (const char *path)
{
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  HexzBlockStats stats;

  snapshot = hexz_snapshot_open_path (path, NULL, &error);
  g_assert_no_error (error);
  hexz_snapshot_get_block_stats (snapshot, HEXZ_STREAM_DISK, &stats, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (stats.dictionary_blocks, >, 0);
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

  test_write_snapshot (child_path, HEXZ_CODEC_ZSTD, 4096, TEST_KEEP_DICTIONARY, disk, size, memory, size / 2);
  write_snapshot_seed ("zstd-dictionary", 1, child_path, NULL);
  rewrite_pages_raw (child_path);
  write_snapshot_seed ("zstd-dictionary-raw-pages", 1, child_path, NULL);

  test_write_snapshot (child_path, HEXZ_CODEC_LZ4, 4096, FALSE, disk, size, memory, size / 2);
  rewrite_pages_raw (child_path);
  write_snapshot_seed ("lz4-raw-pages", 1, child_path, NULL);

  /* LZ4 blocks with the file's dictionary (codec 4, format 1.1). */
  test_write_snapshot (child_path, HEXZ_CODEC_LZ4, 4096, TEST_KEEP_DICTIONARY, disk, size, memory, size / 2);
  assert_dictionary_used (child_path);
  write_snapshot_seed ("lz4-dictionary", 1, child_path, NULL);
  rewrite_pages_raw (child_path);
  write_snapshot_seed ("lz4-dictionary-raw-pages", 1, child_path, NULL);

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

  /* Rewriting the parent changes its seal; fuzz-snapshot's checksum fixup
   * stores the new one in the child. */
  rewrite_pages_raw (child_path);
  rewrite_pages_raw (parent_path);
  write_snapshot_seed ("thin-child-raw-pages", 3, child_path, parent_path);

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
 * (query-name), hexz-7 (getfd). */
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
    "{\"return\": {}, \"id\": \"hexz-7\"}\r\n"
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

/* Seed layout of fuzz-plugin.c: flags, then requests of u8 kind, u32
 * offset, u32 length. Kinds: 0 read, 1 write, 2 zero, 3 flush, 4 extent
 * query, 5 snapshot reopen. */
typedef struct
{
  guint8  kind;
  guint32 offset;
  guint32 length;
} PluginRequest;

static void
write_plugin_seed (const char          *name,
                   const guint8        *prefix,
                   gsize                prefix_length,
                   const PluginRequest *requests,
                   gsize                n_requests)
{
  g_autoptr(GByteArray) seed = g_byte_array_new ();
  g_autoptr(GBytes) bytes = NULL;

  g_byte_array_append (seed, prefix, prefix_length);
  for (gsize i = 0; i < n_requests; i++)
    {
      guint32 offset = GUINT32_TO_LE (requests[i].offset);
      guint32 length = GUINT32_TO_LE (requests[i].length);

      g_byte_array_append (seed, &requests[i].kind, 1);
      g_byte_array_append (seed, (const guint8 *) &offset, 4);
      g_byte_array_append (seed, (const guint8 *) &length, 4);
    }

  bytes = g_byte_array_free_to_bytes (g_steal_pointer (&seed));
  write_seed ("plugin", name, bytes);
}

static void
write_plugin_seeds (void)
{
  /* The harness's disk has 256 KiB + 1000 bytes in blocks of 16 KiB. */
  const guint32 end = 256 * 1024 + 1000;
  const PluginRequest mixed[] = {
    { 1, 100, 5000 }, { 0, 0, 16384 }, { 4, 0, 65536 }, { 2, 20000, 30000 },
    { 4, 16384, 49152 }, { 3, 0, 0 }, { 1, end - 10, 10 }, { 0, end - 4096, 4096 },
    { 5, 0, 0 }, { 0, 0, end }, { 1, end - 5, 10 }, { 2, 4096, 4096 }, { 4, end - 1, 1 },
  };
  const PluginRequest unaligned[] = {
    { 1, 4095, 2 }, { 1, 8191, 4098 }, { 2, 12289, 4094 }, { 0, 4000, 10000 },
    { 4, 4096, 8192 },
  };
  const guint8 plain[] = { 0x00 };
  /* Flags, then a .meta of two entries (pages 0 and 3) and an 8 KiB
   * overlay, so page 3 lies past the overlay's end. */
  const guint8 preloaded[] = {
    0x01, 2, 0, 0x20, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    3, 0, 0, 0, 0, 0, 0, 0,
  };
  const PluginRequest reads[] = { { 0, 0, 20000 }, { 4, 0, 20000 }, { 1, 0, 8192 } };

  write_plugin_seed ("mixed", plain, sizeof plain, mixed, G_N_ELEMENTS (mixed));
  write_plugin_seed ("unaligned", plain, sizeof plain, unaligned, G_N_ELEMENTS (unaligned));
  write_plugin_seed ("preloaded-meta", preloaded, sizeof preloaded, reads, G_N_ELEMENTS (reads));
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
  write_plugin_seeds ();

  test_remove_tree (work_dir);
  g_free (work_dir);

  return 0;
}
