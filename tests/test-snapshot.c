/* test-snapshot.c: writing and reading snapshot files
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <utime.h>
#include <unistd.h>

#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>

#include "hexz.h"
#include "hexz-snapshot-private.h"
#include "hexz-test-snapshot-util.h"

typedef struct {
  char *dir;
  char *path;
} Fixture;

static void
fixture_setup (Fixture       *fixture,
               gconstpointer  data)
{
  fixture->dir = test_make_tmp_dir ();
  fixture->path = g_build_filename (fixture->dir, "test.hxz", NULL);
}

static void
fixture_teardown (Fixture       *fixture,
                  gconstpointer  data)
{
  test_remove_tree (fixture->dir);
  g_free (fixture->dir);
  g_free (fixture->path);
}

static HexzSnapshot *
open_ok (const char *path)
{
  g_autoptr(GError) error = NULL;
  HexzSnapshot *snapshot = hexz_snapshot_open_path (path, NULL, &error);

  g_assert_no_error (error);
  g_assert_nonnull (snapshot);

  return snapshot;
}

/* Checks @stream against @expected: in one read, in small reads at
 * offsets that cross block boundaries, and through an input stream. */
static void
assert_stream_equals (HexzSnapshot *snapshot,
                      HexzStream    stream,
                      const guint8 *expected,
                      gsize         size)
{
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *buffer = g_malloc (size + 1);
  g_autoptr(GInputStream) input = NULL;
  g_autoptr(GRand) rand = g_rand_new_with_seed (7);
  gsize total = 0;

  g_assert_cmpuint (hexz_snapshot_get_stream_size (snapshot, stream), ==, size);

  g_assert_true (hexz_snapshot_read (snapshot, stream, 0, buffer, size, NULL,
                                     &error));
  g_assert_no_error (error);
  g_assert_true (memcmp (buffer, expected, size) == 0);

  for (guint i = 0; i < 64 && size > 0; i++)
    {
      guint64 offset = g_rand_int_range (rand, 0, size);
      gsize count = g_rand_int_range (rand, 1, 200000);

      count = MIN (count, size - offset);

      g_assert_true (hexz_snapshot_read (snapshot, stream, offset, buffer,
                                         count, NULL, &error));
      g_assert_no_error (error);
      g_assert_true (memcmp (buffer, expected + offset, count) == 0);
    }

  input = hexz_snapshot_open_stream (snapshot, stream);
  for (;;)
    {
      gssize n = g_input_stream_read (input, buffer + total,
                                      MIN (size + 1 - total, 100003), NULL,
                                      &error);

      g_assert_no_error (error);
      g_assert_cmpint (n, >=, 0);
      if (n == 0)
        break;
      total += n;
    }
  g_assert_cmpuint (total, ==, size);
  g_assert_true (memcmp (buffer, expected, size) == 0);
}

typedef struct {
  HexzCodec codec;
  guint     block_size;
  gboolean  dictionary;
} RoundTrip;

static guint16
read_minor_version (const char *path)
{
  g_autofree char *contents = NULL;
  gsize length;

  g_assert_true (g_file_get_contents (path, &contents, &length, NULL));
  g_assert_cmpuint (length, >=, 12);

  return (guint8) contents[10] | (guint8) contents[11] << 8;
}

static void
test_roundtrip_random (Fixture       *fixture,
                       gconstpointer  data)
{
  const RoundTrip *rt = data;
  gsize size = 3 * 1024 * 1024 + 12345;
  g_autofree guint8 *disk = g_malloc (size);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;

  test_fill_random (disk, size, 1);
  test_write_snapshot (fixture->path, rt->codec, rt->block_size, rt->dictionary,
                       disk, size, NULL, 0);

  snapshot = open_ok (fixture->path);
  g_assert_cmpuint (hexz_snapshot_get_block_size (snapshot), ==, rt->block_size);
  g_assert_false (hexz_snapshot_has_memory (snapshot));
  assert_stream_equals (snapshot, HEXZ_STREAM_DISK, disk, size);

  /* Random blocks are stored raw, so a trained LZ4 dictionary saves
   * nothing and the writer drops it: no codec 4, format 1.0. */
  if (rt->dictionary)
    {
      HexzBlockStats stats;

      g_assert_true (hexz_snapshot_get_block_stats (snapshot, HEXZ_STREAM_DISK, &stats, NULL,
                                                    &error));
      g_assert_no_error (error);
      g_assert_cmpuint (stats.dictionary_blocks, ==, 0);
      g_assert_cmpuint (read_minor_version (fixture->path), ==, 0);
    }

  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);
}

static void
test_roundtrip_text (Fixture       *fixture,
                     gconstpointer  data)
{
  const RoundTrip *rt = data;
  gsize size = 10 * 1024 * 1024 + 7;
  g_autofree guint8 *disk = g_malloc (size);
  g_autofree guint8 *memory = g_malloc (size / 3);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  gboolean dictionary_used;
  gboolean lz4_dictionary;

  /* 1 MiB blocks of text have history enough of their own, so the writer
   * finds that a dictionary does not pay off and drops it. */
  dictionary_used = rt->dictionary && rt->block_size < 1024 * 1024;
  lz4_dictionary = dictionary_used && rt->codec == HEXZ_CODEC_LZ4;

  test_fill_text (disk, size, 2);
  test_fill_text (memory, size / 3, 3);
  test_write_snapshot (fixture->path, rt->codec, rt->block_size, rt->dictionary,
                       disk, size, memory, size / 3);

  /* Text compresses: the file must be clearly smaller than its content,
   * unless stored raw. */
  if (rt->codec != HEXZ_CODEC_RAW)
    g_assert_cmpuint (test_file_size (fixture->path), <, (size + size / 3) / 2);

  snapshot = open_ok (fixture->path);
  g_assert_true (hexz_snapshot_has_memory (snapshot));

  if (rt->dictionary)
    {
      HexzBlockEntry entry;

      g_assert_true (hexz_snapshot_get_block_entry (snapshot, HEXZ_STREAM_DISK,
                                                    3, &entry, &error));
      g_assert_no_error (error);
      if (rt->codec == HEXZ_CODEC_ZSTD)
        g_assert_cmpuint (entry.codec, ==, dictionary_used ? HEXZ_STORED_ZSTD_DICT
                                                           : HEXZ_STORED_ZSTD);
      else
        g_assert_cmpuint (entry.codec, ==, dictionary_used ? HEXZ_STORED_LZ4_DICT
                                                           : HEXZ_STORED_LZ4);
    }

  /* Only LZ4 with the dictionary needs format 1.1. */
  g_assert_cmpuint (read_minor_version (fixture->path), ==, lz4_dictionary ? 1 : 0);

  assert_stream_equals (snapshot, HEXZ_STREAM_DISK, disk, size);
  assert_stream_equals (snapshot, HEXZ_STREAM_MEMORY, memory, size / 3);

  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);
}

static void
test_roundtrip_zeros (Fixture       *fixture,
                      gconstpointer  data)
{
  gsize size = 64 * 1024 * 1024 + 100;
  g_autofree guint8 *disk = g_malloc0 (size);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;

  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, 64 * 1024, FALSE,
                       disk, size, NULL, 0);

  /* Zero blocks take no room: header, index and metadata only. */
  g_assert_cmpuint (test_file_size (fixture->path), <, 8192);

  snapshot = open_ok (fixture->path);
  assert_stream_equals (snapshot, HEXZ_STREAM_DISK, disk, size);
  g_assert_true (hexz_snapshot_is_zero (snapshot, HEXZ_STREAM_DISK, 0, size,
                                        &error));
  g_assert_no_error (error);
  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);
}

static void
test_roundtrip_empty (Fixture       *fixture,
                      gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GInputStream) input = NULL;
  g_autoptr(GError) error = NULL;
  guint8 buffer[16];

  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_MEMORY,
                                                    0, &error));
  g_assert_true (hexz_snapshot_writer_end_stream (writer, NULL, &error));
  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);

  snapshot = open_ok (fixture->path);
  g_assert_cmpuint (hexz_snapshot_get_memory_size (snapshot), ==, 0);
  g_assert_false (hexz_snapshot_has_memory (snapshot));
  g_assert_true (hexz_snapshot_read (snapshot, HEXZ_STREAM_MEMORY, 0, buffer,
                                     0, NULL, &error));
  g_assert_no_error (error);

  /* The disk stream was never written. */
  g_assert_false (hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, 0, buffer, 1,
                                      NULL, &error));
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_NO_STREAM);
  g_clear_error (&error);

  input = hexz_snapshot_open_stream (snapshot, HEXZ_STREAM_DISK);
  g_assert_cmpint (g_input_stream_read (input, buffer, sizeof buffer, NULL,
                                        &error), ==, -1);
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_NO_STREAM);
  g_clear_error (&error);

  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);
}

static void
test_roundtrip_no_streams (Fixture       *fixture,
                           gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);

  snapshot = open_ok (fixture->path);
  g_assert_cmpuint (hexz_snapshot_get_disk_size (snapshot), ==, 0);
  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);
}

/* Writes of odd sizes, zero runs in the middle of blocks, the memory
 * stream before the disk stream. */
static void
test_roundtrip_mixed_writes (Fixture       *fixture,
                             gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  gsize size = 5 * 1024 * 1024 + 333;
  g_autofree guint8 *disk = g_malloc0 (size);
  g_autofree guint8 *memory = g_malloc (1000001);
  g_autoptr(GRand) rand = g_rand_new_with_seed (11);
  gsize position = 0;

  hexz_snapshot_writer_set_block_size (writer, 16 * 1024);
  hexz_snapshot_writer_set_codec (writer, HEXZ_CODEC_ZSTD);
  hexz_snapshot_writer_set_level (writer, 1);
  hexz_snapshot_writer_set_threads (writer, 3);

  test_fill_text (memory, 1000001, 12);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_MEMORY,
                                                    1000001, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, memory, 1000001, NULL, &error));
  g_assert_no_error (error);

  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK,
                                                    size, &error));
  g_assert_no_error (error);

  while (position < size)
    {
      gsize n = g_rand_int_range (rand, 1, 100000);

      n = MIN (n, size - position);

      if (g_rand_boolean (rand))
        {
          test_fill_random (disk + position, n, position);
          g_assert_true (hexz_snapshot_writer_write (writer, disk + position, n,
                                                     NULL, &error));
        }
      else
        g_assert_true (hexz_snapshot_writer_write_zeros (writer, n, NULL, &error));
      g_assert_no_error (error);
      position += n;
    }

  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);

  snapshot = open_ok (fixture->path);
  assert_stream_equals (snapshot, HEXZ_STREAM_DISK, disk, size);
  assert_stream_equals (snapshot, HEXZ_STREAM_MEMORY, memory, 1000001);
  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);
}

static void
test_dedup_stored_once (Fixture       *fixture,
                        gconstpointer  data)
{
  guint block_size = 64 * 1024;
  gsize size = 40 * block_size;
  g_autofree guint8 *disk = g_malloc (size);
  g_autofree guint8 *memory = g_malloc (4 * block_size);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  HexzBlockEntry first, other;
  HexzBlockStats stats;

  /* Two distinct random blocks repeated, and the memory stream repeating
   * them once more. Random data does not compress, so two stored blocks
   * take two block sizes. */
  test_fill_random (disk, block_size, 21);
  test_fill_random (disk + block_size, block_size, 22);
  for (guint i = 2; i < 40; i++)
    memcpy (disk + i * block_size, disk + (i % 2) * block_size, block_size);
  memcpy (memory, disk, 4 * block_size);

  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, block_size, FALSE,
                       disk, size, memory, 4 * block_size);
  g_assert_cmpuint (test_file_size (fixture->path), >=, 2 * block_size);
  g_assert_cmpuint (test_file_size (fixture->path), <, 2 * block_size + 8192);

  snapshot = open_ok (fixture->path);
  assert_stream_equals (snapshot, HEXZ_STREAM_DISK, disk, size);
  assert_stream_equals (snapshot, HEXZ_STREAM_MEMORY, memory, 4 * block_size);

  g_assert_true (hexz_snapshot_get_block_entry (snapshot, HEXZ_STREAM_DISK, 0,
                                                &first, &error));
  g_assert_true (hexz_snapshot_get_block_entry (snapshot, HEXZ_STREAM_MEMORY, 2,
                                                &other, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (first.stored_offset, ==, other.stored_offset);

  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);

  g_assert_true (hexz_snapshot_get_block_stats (snapshot, HEXZ_STREAM_DISK, &stats, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (stats.blocks, ==, 40);
  g_assert_cmpuint (stats.raw_blocks, ==, 2);
  g_assert_cmpuint (stats.shared_blocks, ==, 38);
  g_assert_cmpuint (stats.stored_bytes, ==, 2 * block_size);

  /* Every memory block names bytes the disk stream stored. */
  g_assert_true (hexz_snapshot_get_block_stats (snapshot, HEXZ_STREAM_MEMORY, &stats, NULL,
                                                &error));
  g_assert_no_error (error);
  g_assert_cmpuint (stats.blocks, ==, 4);
  g_assert_cmpuint (stats.shared_blocks, ==, 4);
  g_assert_cmpuint (stats.stored_bytes, ==, 0);
}

/* Blocks that agree in their first bytes must not be merged. */
static void
test_dedup_same_prefix (Fixture       *fixture,
                        gconstpointer  data)
{
  guint block_size = 4096;
  gsize size = 3 * block_size;
  g_autofree guint8 *disk = g_malloc (size);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  HexzBlockEntry a, b, c;

  test_fill_random (disk, block_size, 31);
  memcpy (disk + block_size, disk, block_size);
  memcpy (disk + 2 * block_size, disk, block_size);
  disk[2 * block_size - 1] ^= 1;
  disk[3 * block_size - 100] ^= 0x80;

  test_write_snapshot (fixture->path, HEXZ_CODEC_RAW, block_size, FALSE,
                       disk, size, NULL, 0);
  g_assert_cmpuint (test_file_size (fixture->path), >=, 3 * block_size);

  snapshot = open_ok (fixture->path);
  assert_stream_equals (snapshot, HEXZ_STREAM_DISK, disk, size);
  g_assert_true (hexz_snapshot_get_block_entry (snapshot, HEXZ_STREAM_DISK, 0, &a, &error));
  g_assert_true (hexz_snapshot_get_block_entry (snapshot, HEXZ_STREAM_DISK, 1, &b, &error));
  g_assert_true (hexz_snapshot_get_block_entry (snapshot, HEXZ_STREAM_DISK, 2, &c, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (a.stored_offset, !=, b.stored_offset);
  g_assert_cmpuint (a.stored_offset, !=, c.stored_offset);
  g_assert_cmpuint (b.stored_offset, !=, c.stored_offset);
}

/* With a hash over the first 16 bytes only, blocks that agree there
 * collide. The byte compare must keep them apart and still share the
 * block that really repeats. */
static void
test_dedup_collision (Fixture       *fixture,
                      gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  guint block_size = 4096;
  gsize size = 4 * block_size;
  g_autofree guint8 *disk = g_malloc (size);
  HexzBlockEntry entries[4];

  test_fill_random (disk, block_size, 33);
  for (guint i = 1; i < 4; i++)
    memcpy (disk + i * block_size, disk, block_size);
  disk[block_size + 100] ^= 1;
  disk[2 * block_size + 4095] ^= 1;

  hexz_snapshot_writer_set_weak_hash_for_testing (writer, TRUE);
  hexz_snapshot_writer_set_block_size (writer, block_size);
  hexz_snapshot_writer_set_codec (writer, HEXZ_CODEC_LZ4);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, size, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, disk, size, NULL, &error));
  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);

  snapshot = open_ok (fixture->path);
  assert_stream_equals (snapshot, HEXZ_STREAM_DISK, disk, size);
  for (guint i = 0; i < 4; i++)
    {
      g_assert_true (hexz_snapshot_get_block_entry (snapshot, HEXZ_STREAM_DISK,
                                                    i, &entries[i], &error));
      g_assert_no_error (error);
    }

  g_assert_cmpuint (entries[1].stored_offset, !=, entries[0].stored_offset);
  g_assert_cmpuint (entries[2].stored_offset, !=, entries[0].stored_offset);
  g_assert_cmpuint (entries[2].stored_offset, !=, entries[1].stored_offset);
  g_assert_cmpuint (entries[3].stored_offset, ==, entries[0].stored_offset);
  g_assert_cmpuint (test_file_size (fixture->path), >=, 3 * block_size);
  g_assert_cmpuint (test_file_size (fixture->path), <, 4 * block_size);

  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);
}

/* Streams of many index pages: more pages than the reader keeps loaded,
 * in both streams, the memory stream written first. */
static void
test_many_pages (Fixture       *fixture,
                 gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  guint64 zeros = G_GUINT64_CONSTANT (4) << 30;
  gsize head = 8 * 1024 * 1024;
  gsize tail = 1024 * 1024 + 5;
  gsize memory_size = 20 * 1024 * 1024;
  g_autofree guint8 *disk_head = g_malloc (head);
  g_autofree guint8 *disk_tail = g_malloc (tail);
  g_autofree guint8 *memory = g_malloc (memory_size);
  g_autofree guint8 *buffer = g_malloc (head);

  test_fill_random (disk_head, head, 171);
  test_fill_text (disk_tail, tail, 172);
  test_fill_text (memory, memory_size, 173);

  hexz_snapshot_writer_set_block_size (writer, 4096);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_MEMORY, 0, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, memory, memory_size, NULL, &error));
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, disk_head, head, NULL, &error));
  g_assert_true (hexz_snapshot_writer_write_zeros (writer, zeros, NULL, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, disk_tail, tail, NULL, &error));
  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);

  snapshot = open_ok (fixture->path);
  g_assert_cmpuint (hexz_snapshot_get_disk_size (snapshot), ==, head + zeros + tail);
  assert_stream_equals (snapshot, HEXZ_STREAM_MEMORY, memory, memory_size);

  /* Walks every page of the zero run, evicting pages on the way. */
  g_assert_true (hexz_snapshot_is_zero (snapshot, HEXZ_STREAM_DISK, head, zeros, &error));
  g_assert_no_error (error);
  g_assert_false (hexz_snapshot_is_zero (snapshot, HEXZ_STREAM_DISK, head - 1, 2, &error));
  g_assert_no_error (error);

  g_assert_true (hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, 0, buffer, head, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (buffer, head, disk_head, head);
  g_assert_true (hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, head + zeros, buffer, tail,
                                     NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (buffer, tail, disk_tail, tail);
  g_assert_true (hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, head + zeros / 2, buffer,
                                     100000, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_is_all_zero (buffer, 100000));

  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);
}

static void
test_is_zero (Fixture       *fixture,
              gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  guint8 block[4096];

  test_fill_random (block, sizeof block, 41);
  hexz_snapshot_writer_set_block_size (writer, 4096);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
  g_assert_true (hexz_snapshot_writer_write_zeros (writer, 8192, NULL, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, block, sizeof block, NULL, &error));
  g_assert_true (hexz_snapshot_writer_write_zeros (writer, 4096, NULL, &error));
  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);

  snapshot = open_ok (fixture->path);
  g_assert_true (hexz_snapshot_is_zero (snapshot, HEXZ_STREAM_DISK, 0, 8192, &error));
  g_assert_true (hexz_snapshot_is_zero (snapshot, HEXZ_STREAM_DISK, 100, 5000, &error));
  g_assert_no_error (error);
  g_assert_false (hexz_snapshot_is_zero (snapshot, HEXZ_STREAM_DISK, 4096, 8192, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_snapshot_is_zero (snapshot, HEXZ_STREAM_DISK, 12288, 4096, &error));
  g_assert_no_error (error);

  g_assert_false (hexz_snapshot_is_zero (snapshot, HEXZ_STREAM_DISK, 12288, 4097, &error));
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
}

static void
test_read_past_end (Fixture       *fixture,
                    gconstpointer  data)
{
  guint8 disk[10000];
  guint8 buffer[100];
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) bytes = NULL;

  test_fill_random (disk, sizeof disk, 51);
  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, 4096, FALSE,
                       disk, sizeof disk, NULL, 0);
  snapshot = open_ok (fixture->path);

  g_assert_false (hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, 9950, buffer,
                                      100, NULL, &error));
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "test.hxz"));
  g_clear_error (&error);

  bytes = hexz_snapshot_read_bytes (snapshot, HEXZ_STREAM_DISK, 0, G_MAXSIZE,
                                    NULL, &error);
  g_assert_null (bytes);
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  bytes = hexz_snapshot_read_bytes (snapshot, HEXZ_STREAM_DISK, 9900, 100,
                                    NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (g_bytes_get_data (bytes, NULL), 100, disk + 9900, 100);

  g_assert_false (hexz_snapshot_read (snapshot, HEXZ_STREAM_MEMORY, 0, buffer,
                                      1, NULL, &error));
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_NO_STREAM);
}

static void
test_input_stream_seek (Fixture       *fixture,
                        gconstpointer  data)
{
  gsize size = 300000;
  g_autofree guint8 *disk = g_malloc (size);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GInputStream) input = NULL;
  g_autoptr(GError) error = NULL;
  guint8 buffer[1000];
  gsize n;

  test_fill_random (disk, size, 61);
  test_write_snapshot (fixture->path, HEXZ_CODEC_ZSTD, 4096, FALSE,
                       disk, size, NULL, 0);
  snapshot = open_ok (fixture->path);
  input = hexz_snapshot_open_stream (snapshot, HEXZ_STREAM_DISK);

  g_assert_true (G_IS_SEEKABLE (input));
  g_assert_true (g_seekable_seek (G_SEEKABLE (input), 123456, G_SEEK_SET, NULL, &error));
  g_assert_true (g_input_stream_read_all (input, buffer, sizeof buffer, &n, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (n, ==, sizeof buffer);
  g_assert_cmpmem (buffer, n, disk + 123456, n);
  g_assert_cmpint (g_seekable_tell (G_SEEKABLE (input)), ==, 124456);

  g_assert_true (g_seekable_seek (G_SEEKABLE (input), -10, G_SEEK_END, NULL, &error));
  g_assert_true (g_input_stream_read_all (input, buffer, sizeof buffer, &n, NULL, &error));
  g_assert_cmpuint (n, ==, 10);
  g_assert_cmpmem (buffer, n, disk + size - 10, 10);

  g_assert_false (g_seekable_seek (G_SEEKABLE (input), 1, G_SEEK_END, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
}

typedef struct {
  HexzSnapshot *snapshot;
  const guint8 *expected;
  gsize         size;
  guint32       seed;
} ReaderThread;

static gpointer
reader_thread (gpointer data)
{
  ReaderThread *reader = data;
  g_autoptr(GRand) rand = g_rand_new_with_seed (reader->seed);
  g_autofree guint8 *buffer = g_malloc (70000);

  for (guint i = 0; i < 300; i++)
    {
      guint64 offset = g_rand_int_range (rand, 0, reader->size - 70000);
      gsize count = g_rand_int_range (rand, 1, 70000);
      g_autoptr(GError) error = NULL;

      g_assert_true (hexz_snapshot_read (reader->snapshot, HEXZ_STREAM_DISK,
                                         offset, buffer, count, NULL, &error));
      g_assert_no_error (error);
      g_assert_true (memcmp (buffer, reader->expected + offset, count) == 0);
    }

  return NULL;
}

/* Small reads from several threads share the page and block caches. */
static void
test_read_threads (Fixture       *fixture,
                   gconstpointer  data)
{
  gsize size = 8 * 1024 * 1024;
  g_autofree guint8 *disk = g_malloc (size);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  ReaderThread readers[4];
  GThread *threads[4];

  test_fill_text (disk, size, 71);
  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, 4096, FALSE,
                       disk, size, NULL, 0);
  snapshot = open_ok (fixture->path);

  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    {
      readers[i] = (ReaderThread) { snapshot, disk, size, 100 + i };
      threads[i] = g_thread_new ("reader", reader_thread, &readers[i]);
    }

  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    g_thread_join (threads[i]);
}

/* The NBD plugin reads in 4 KiB pages: reads that cover part of a block
 * decode it once while it stays among the 16 most recently cached blocks,
 * and whole-block reads decode straight into the caller's buffer. */
static void
test_read_block_cache (Fixture       *fixture,
                       gconstpointer  data)
{
  const gsize block_size = 65536;
  const gsize n_blocks = 20;
  gsize size = block_size * n_blocks;
  g_autofree guint8 *disk = g_malloc (size);
  g_autofree guint8 *buffer = g_malloc (block_size);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  guint decoded;

  test_fill_text (disk, size, 29);
  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, block_size, FALSE, disk, size, NULL, 0);
  snapshot = open_ok (fixture->path);
  decoded = hexz_snapshot_get_n_blocks_decoded (snapshot);

  /* Sixteen pages of block 0: one decode. */
  for (gsize offset = 0; offset < block_size; offset += 4096)
    {
      g_assert_true (hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, offset, buffer, 4096,
                                         NULL, &error));
      g_assert_no_error (error);
      g_assert_cmpmem (buffer, 4096, disk + offset, 4096);
    }
  g_assert_cmpuint (hexz_snapshot_get_n_blocks_decoded (snapshot), ==, decoded + 1);

  /* One page of each of blocks 1 to 16 evicts block 0, the oldest. */
  for (gsize block = 1; block <= 16; block++)
    {
      g_assert_true (hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, block * block_size + 100,
                                         buffer, 4096, NULL, &error));
      g_assert_no_error (error);
      g_assert_cmpmem (buffer, 4096, disk + block * block_size + 100, 4096);
    }
  g_assert_cmpuint (hexz_snapshot_get_n_blocks_decoded (snapshot), ==, decoded + 17);

  g_assert_true (hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, 16 * block_size, buffer, 4096,
                                     NULL, &error));
  g_assert_cmpuint (hexz_snapshot_get_n_blocks_decoded (snapshot), ==, decoded + 17);
  g_assert_true (hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, 8192, buffer, 4096,
                                     NULL, &error));
  g_assert_cmpuint (hexz_snapshot_get_n_blocks_decoded (snapshot), ==, decoded + 18);
  g_assert_cmpmem (buffer, 4096, disk + 8192, 4096);

  /* A whole block bypasses the cache, even when the block is cached. */
  g_assert_true (hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, 0, buffer, block_size,
                                     NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (buffer, block_size, disk, block_size);
  g_assert_cmpuint (hexz_snapshot_get_n_blocks_decoded (snapshot), ==, decoded + 19);
}

static void
test_metadata (Fixture       *fixture,
               gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ram = json_node_new (JSON_NODE_VALUE);
  g_autoptr(JsonNode) qemu = json_node_new (JSON_NODE_VALUE);
  JsonObject *metadata;
  const char *created;

  json_node_set_int (ram, 1073741824);
  json_node_set_string (qemu, "7.2.0");
  hexz_snapshot_writer_set_metadata (writer, "ram-size", ram);
  hexz_snapshot_writer_set_metadata (writer, "qemu-version", qemu);
  hexz_snapshot_writer_set_metadata (writer, "qemu-version", NULL);
  hexz_snapshot_writer_set_message (writer, "before the upgrade “ü”");
  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);

  /* Snapshots may hold guest memory: only the owner may read them. */
  {
    GStatBuf st;

    g_assert_cmpint (g_stat (fixture->path, &st), ==, 0);
    g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  }

  snapshot = open_ok (fixture->path);
  metadata = hexz_snapshot_get_metadata (snapshot);
  g_assert_nonnull (metadata);
  g_assert_cmpint (json_object_get_int_member (metadata, "ram-size"), ==, 1073741824);
  g_assert_false (json_object_has_member (metadata, "qemu-version"));
  g_assert_cmpstr (json_object_get_string_member (metadata, "message"), ==,
                   "before the upgrade “ü”");
  g_assert_cmpstr (json_object_get_string_member (metadata, "tool-version"), ==,
                   "hexz-glib " PACKAGE_VERSION);
  created = json_object_get_string_member (metadata, "created");
  g_assert_nonnull (created);
  g_assert_true (g_str_has_suffix (created, "Z"));
  g_assert_cmpuint (strlen (hexz_snapshot_get_id (snapshot)), ==, 36);
}

/* Thin snapshots */

static void
write_child (const char   *path,
             HexzSnapshot *parent,
             guint         block_size,
             const guint8 *disk,
             gsize         size,
             const guint8 *previous)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (path);
  g_autoptr(GError) error = NULL;
  guint64 parent_size = hexz_snapshot_get_disk_size (parent);
  gsize position = 0;

  hexz_snapshot_writer_set_parent (writer, parent);
  hexz_snapshot_writer_set_block_size (writer, block_size);
  hexz_snapshot_writer_set_codec (writer, HEXZ_CODEC_ZSTD);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK,
                                                    size, &error));
  g_assert_no_error (error);

  /* Blocks equal to the previous image become parent references. */
  while (position < size)
    {
      gsize n = MIN (block_size, size - position);

      if (position + n <= parent_size &&
          memcmp (disk + position, previous + position, n) == 0 &&
          (n == block_size || position + n == parent_size))
        g_assert_true (hexz_snapshot_writer_write_parent (writer, n, NULL, &error));
      else
        g_assert_true (hexz_snapshot_writer_write (writer, disk + position, n,
                                                   NULL, &error));
      g_assert_no_error (error);
      position += n;
    }

  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);
}

/* A parent of random, text, zero and random blocks, and a thin child that
 * keeps two of them, rewrites the text and zeroes the last one. */
static void
test_block_stats (Fixture       *fixture,
                  gconstpointer  data)
{
  guint block_size = 64 * 1024;
  g_autofree guint8 *parent_disk = g_malloc0 (4 * block_size);
  g_autofree guint8 *child_disk = NULL;
  g_autofree char *child_path = g_build_filename (fixture->dir, "child.hxz", NULL);
  g_autoptr(HexzSnapshot) parent = NULL;
  g_autoptr(HexzSnapshot) child = NULL;
  g_autoptr(GError) error = NULL;
  HexzBlockStats stats;

  test_fill_random (parent_disk, block_size, 31);
  for (guint i = 0; i < block_size; i++)
    parent_disk[block_size + i] = "block statistics "[i % 17];
  test_fill_random (parent_disk + 3 * block_size, block_size, 32);
  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, block_size, FALSE,
                       parent_disk, 4 * block_size, NULL, 0);
  parent = open_ok (fixture->path);

  g_assert_true (hexz_snapshot_get_block_stats (parent, HEXZ_STREAM_DISK, &stats, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (stats.blocks, ==, 4);
  g_assert_cmpuint (stats.raw_blocks, ==, 2);
  g_assert_cmpuint (stats.lz4_blocks, ==, 1);
  g_assert_cmpuint (stats.zero_blocks, ==, 1);
  g_assert_cmpuint (stats.shared_blocks, ==, 0);

  child_disk = g_memdup2 (parent_disk, 4 * block_size);
  for (guint i = 0; i < block_size; i++)
    child_disk[block_size + i] = "rewritten text "[i % 15];
  memset (child_disk + 3 * block_size, 0, block_size);
  write_child (child_path, parent, block_size, child_disk, 4 * block_size, parent_disk);
  child = open_ok (child_path);

  g_assert_true (hexz_snapshot_get_block_stats (child, HEXZ_STREAM_DISK, &stats, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (stats.blocks, ==, 4);
  g_assert_cmpuint (stats.parent_blocks, ==, 2);
  g_assert_cmpuint (stats.zstd_blocks, ==, 1);
  g_assert_cmpuint (stats.zero_blocks, ==, 1);
  g_assert_cmpuint (stats.raw_blocks + stats.lz4_blocks + stats.shared_blocks, ==, 0);

  /* An absent stream has no blocks. */
  g_assert_true (hexz_snapshot_get_block_stats (child, HEXZ_STREAM_MEMORY, &stats, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (stats.blocks, ==, 0);
}

static void
test_thin_chain (Fixture       *fixture,
                 gconstpointer  data)
{
  gsize size = 2 * 1024 * 1024;
  gsize grown = size + 100000;
  g_autofree guint8 *base = g_malloc0 (size);
  g_autofree guint8 *one = NULL;
  g_autofree guint8 *two = NULL;
  g_autofree char *base_path = g_build_filename (fixture->dir, "base.hxz", NULL);
  g_autofree char *one_path = g_build_filename (fixture->dir, "one.hxz", NULL);
  g_autofree char *sub = g_build_filename (fixture->dir, "sub", NULL);
  g_autofree char *two_path = g_build_filename (sub, "two.hxz", NULL);
  g_autoptr(HexzSnapshot) base_snapshot = NULL;
  g_autoptr(HexzSnapshot) one_snapshot = NULL;
  g_autoptr(HexzSnapshot) two_snapshot = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_cmpint (g_mkdir (sub, 0700), ==, 0);

  /* Base: text in the first half, zeros in the second. */
  test_fill_text (base, size / 2, 81);
  test_write_snapshot (base_path, HEXZ_CODEC_LZ4, 64 * 1024, FALSE,
                       base, size, NULL, 0);
  base_snapshot = open_ok (base_path);

  /* One: a few blocks changed, 16 KiB blocks against the parent's 64 KiB. */
  one = g_memdup2 (base, size);
  test_fill_random (one + 100000, 5000, 82);
  test_fill_random (one + size - 20000, 20000, 83);
  write_child (one_path, base_snapshot, 16 * 1024, one, size, base);
  one_snapshot = open_ok (one_path);
  g_assert_cmpstr (hexz_snapshot_get_parent_path (one_snapshot), ==, "base.hxz");
  g_assert_cmpstr (hexz_snapshot_get_parent_id (one_snapshot), ==,
                   hexz_snapshot_get_id (base_snapshot));

  /* Two, in another folder: grows the disk and changes other blocks. */
  two = g_malloc0 (grown);
  memcpy (two, one, size);
  test_fill_random (two + 700000, 3, 84);
  test_fill_random (two + size, 50000, 85);
  write_child (two_path, one_snapshot, 4096, two, grown, one);

  g_clear_object (&one_snapshot);
  g_clear_object (&base_snapshot);
  two_snapshot = open_ok (two_path);
  g_assert_true (g_path_is_absolute (hexz_snapshot_get_parent_path (two_snapshot)));
  g_assert_nonnull (hexz_snapshot_get_parent (two_snapshot));
  g_assert_nonnull (hexz_snapshot_get_parent (hexz_snapshot_get_parent (two_snapshot)));

  /* The child file holds only changed blocks. */
  g_assert_cmpuint (test_file_size (two_path), <, 200000);

  assert_stream_equals (two_snapshot, HEXZ_STREAM_DISK, two, grown);

  /* Zeros through parents: the second half of the base is zeros except
   * where the children wrote. */
  g_assert_true (hexz_snapshot_is_zero (two_snapshot, HEXZ_STREAM_DISK,
                                        size / 2 + 65536, 65536, &error));
  g_assert_no_error (error);
  g_assert_false (hexz_snapshot_is_zero (two_snapshot, HEXZ_STREAM_DISK,
                                         0, 65536, &error));
  g_assert_no_error (error);

  g_assert_true (hexz_snapshot_verify (two_snapshot, NULL, &error));
  g_assert_no_error (error);
}

/* Zeros only: training finds no samples, so the file has no dictionary
 * and stays at format 1.0. */
static void
test_lz4_dictionary_zeros (Fixture       *fixture,
                           gconstpointer  data)
{
  gsize size = 9 * 1024 * 1024 + 100;
  g_autofree guint8 *disk = g_malloc0 (size);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  HexzBlockStats stats;

  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, 64 * 1024, TRUE,
                       disk, size, NULL, 0);
  g_assert_cmpuint (test_file_size (fixture->path), <, 8192);
  g_assert_cmpuint (read_minor_version (fixture->path), ==, 0);

  snapshot = open_ok (fixture->path);
  assert_stream_equals (snapshot, HEXZ_STREAM_DISK, disk, size);
  g_assert_true (hexz_snapshot_get_block_stats (snapshot, HEXZ_STREAM_DISK, &stats, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (stats.zero_blocks, ==, stats.blocks);
  g_assert_cmpuint (stats.dictionary_blocks, ==, 0);
}

/* Zero runs of any length between text writes while the dictionary is
 * trained: the runs wait for the buffered bytes before them. With
 * @data TRUE the stream is longer than the 8 MiB training buffer. */
static void
test_lz4_dictionary_zero_runs (Fixture       *fixture,
                               gconstpointer  data)
{
  gboolean long_stream = GPOINTER_TO_INT (data);
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  gsize size = long_stream ? 12 * 1024 * 1024 + 4321 : 3 * 1024 * 1024 + 99;
  g_autofree guint8 *disk = g_malloc0 (size);
  g_autoptr(GRand) rand = g_rand_new_with_seed (size);
  gsize position = 0;
  guint n_runs = 0;
  HexzBlockStats stats;

  hexz_snapshot_writer_set_block_size (writer, 16 * 1024);
  hexz_snapshot_writer_set_codec (writer, HEXZ_CODEC_LZ4);
  hexz_snapshot_writer_set_threads (writer, 2);
  hexz_snapshot_writer_set_train_dictionary (writer, TRUE);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, size, &error));
  g_assert_no_error (error);

  while (position < size)
    {
      gsize n = MIN ((gsize) g_rand_int_range (rand, 1, 200000), size - position);

      if (n_runs % 2 == 0)
        {
          test_fill_text (disk + position, n, position);
          g_assert_true (hexz_snapshot_writer_write (writer, disk + position, n, NULL, &error));
        }
      else
        g_assert_true (hexz_snapshot_writer_write_zeros (writer, n, NULL, &error));
      g_assert_no_error (error);
      position += n;
      n_runs++;
    }

  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);
  g_test_message ("%u writes of text and zeros", n_runs);

  snapshot = open_ok (fixture->path);
  assert_stream_equals (snapshot, HEXZ_STREAM_DISK, disk, size);
  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);

  g_assert_true (hexz_snapshot_get_block_stats (snapshot, HEXZ_STREAM_DISK, &stats, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (stats.zero_blocks, >, 0);
  g_assert_cmpuint (stats.dictionary_blocks, >, 0);
  g_assert_cmpuint (stats.dictionary_blocks, ==, stats.lz4_blocks);
  g_assert_cmpuint (read_minor_version (fixture->path), ==, 1);
}

/* A chain of depth 3 whose every file uses LZ4 with its own dictionary;
 * the children write parent runs while they train. */
static void
test_thin_chain_lz4_dictionary (Fixture       *fixture,
                                gconstpointer  data)
{
  guint block_size = 64 * 1024;
  gsize size = 6 * 1024 * 1024 + 4096;
  g_autoptr(GPtrArray) owned = g_ptr_array_new_with_free_func (g_free);
  guint8 *images[3] = { NULL, NULL, NULL };
  char *paths[3] = {
    g_build_filename (fixture->dir, "base.hxz", NULL),
    g_build_filename (fixture->dir, "one.hxz", NULL),
    g_build_filename (fixture->dir, "two.hxz", NULL),
  };
  g_autoptr(HexzSnapshot) last = NULL;
  g_autoptr(GError) error = NULL;

  for (guint i = 0; i < 3; i++)
    g_ptr_array_add (owned, paths[i]);

  images[0] = g_malloc0 (size);
  g_ptr_array_add (owned, images[0]);
  test_fill_text (images[0], size - 200000, 91);
  test_write_snapshot (paths[0], HEXZ_CODEC_LZ4, block_size, TRUE, images[0], size, NULL, 0);

  for (guint level = 1; level < 3; level++)
    {
      g_autoptr(HexzSnapshot) parent = open_ok (paths[level - 1]);
      g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (paths[level]);
      const guint8 *previous = images[level - 1];
      guint8 *image = images[level] = g_memdup2 (previous, size);
      gsize position = 0;

      g_ptr_array_add (owned, image);
      /* Every third block rewritten with other text. */
      for (gsize offset = level * block_size; offset < size; offset += 3 * block_size)
        test_fill_text (image + offset, MIN (block_size, size - offset), 92 + offset);

      hexz_snapshot_writer_set_parent (writer, parent);
      hexz_snapshot_writer_set_block_size (writer, block_size);
      hexz_snapshot_writer_set_codec (writer, HEXZ_CODEC_LZ4);
      hexz_snapshot_writer_set_train_dictionary (writer, TRUE);
      g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, size, &error));
      g_assert_no_error (error);

      while (position < size)
        {
          gsize n = MIN (block_size, size - position);

          if (memcmp (image + position, previous + position, n) == 0)
            g_assert_true (hexz_snapshot_writer_write_parent (writer, n, NULL, &error));
          else
            g_assert_true (hexz_snapshot_writer_write (writer, image + position, n, NULL, &error));
          g_assert_no_error (error);
          position += n;
        }

      g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
      g_assert_no_error (error);
    }

  for (guint level = 0; level < 3; level++)
    {
      g_autoptr(HexzSnapshot) snapshot = open_ok (paths[level]);
      HexzBlockStats stats;

      assert_stream_equals (snapshot, HEXZ_STREAM_DISK, images[level], size);
      g_assert_true (hexz_snapshot_get_block_stats (snapshot, HEXZ_STREAM_DISK, &stats, NULL,
                                                    &error));
      g_assert_no_error (error);
      g_assert_cmpuint (stats.dictionary_blocks, >, 0);
      g_assert_cmpuint (stats.dictionary_blocks, ==, stats.lz4_blocks);
      if (level > 0)
        g_assert_cmpuint (stats.parent_blocks, >, 0);
      g_assert_cmpuint (read_minor_version (paths[level]), ==, 1);
    }

  last = open_ok (paths[2]);
  g_assert_true (hexz_snapshot_verify (last, NULL, &error));
  g_assert_no_error (error);
}

static void
write_small_parent (const char *path,
                    guint32     seed)
{
  guint8 disk[8192];

  test_fill_random (disk, sizeof disk, seed);
  test_write_snapshot (path, HEXZ_CODEC_LZ4, 4096, FALSE, disk, sizeof disk,
                       NULL, 0);
}

static void
write_small_child (const char *path,
                   const char *parent_path)
{
  g_autoptr(HexzSnapshot) parent = open_ok (parent_path);
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (path);
  g_autoptr(GError) error = NULL;

  hexz_snapshot_writer_set_parent (writer, parent);
  hexz_snapshot_writer_set_block_size (writer, 4096);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
  g_assert_true (hexz_snapshot_writer_write_parent (writer, 8192, NULL, &error));
  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);
}

static void
test_thin_replaced_parent (Fixture       *fixture,
                           gconstpointer  data)
{
  g_autofree char *parent_path = g_build_filename (fixture->dir, "parent.hxz", NULL);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;

  write_small_parent (parent_path, 91);
  write_small_child (fixture->path, parent_path);

  /* Another snapshot at the parent's path. */
  write_small_parent (parent_path, 92);
  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_PARENT_MISMATCH);
  g_assert_nonnull (strstr (error->message, "test.hxz"));
  g_clear_error (&error);

  /* Something else at the parent's path. */
  g_assert_true (g_file_set_contents (parent_path, "not a snapshot", -1, NULL));
  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_PARENT_MISMATCH);
}

static void
test_thin_missing_parent (Fixture       *fixture,
                          gconstpointer  data)
{
  g_autofree char *parent_path = g_build_filename (fixture->dir, "parent.hxz", NULL);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;

  write_small_parent (parent_path, 93);
  write_small_child (fixture->path, parent_path);
  g_assert_cmpint (g_remove (parent_path), ==, 0);

  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_PARENT_MISSING);
  g_assert_nonnull (strstr (error->message, "parent.hxz"));
}

static void
test_thin_invalid_parent_writes (Fixture       *fixture,
                                 gconstpointer  data)
{
  g_autofree char *parent_path = g_build_filename (fixture->dir, "parent.hxz", NULL);
  g_autoptr(HexzSnapshot) parent = NULL;
  g_autoptr(GError) error = NULL;
  guint8 block[100] = { 1 };

  write_small_parent (parent_path, 94);
  parent = open_ok (parent_path);

  /* Over its own parent. */
  {
    g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (parent_path);

    hexz_snapshot_writer_set_parent (writer, parent);
    g_assert_false (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
    g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
  }

  /* Without a parent. */
  {
    g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);

    g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
    g_assert_false (hexz_snapshot_writer_write_parent (writer, 4096, NULL, &error));
    g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
  }

  /* Past the parent's end, unaligned, and appending after a partial tail. */
  {
    g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);

    hexz_snapshot_writer_set_parent (writer, parent);
    hexz_snapshot_writer_set_block_size (writer, 4096);
    g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
    g_assert_false (hexz_snapshot_writer_write_parent (writer, 3 * 4096, NULL, &error));
    g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);

    g_assert_false (hexz_snapshot_writer_write_parent (writer, 100, NULL, &error));
    g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);

    g_assert_true (hexz_snapshot_writer_write (writer, block, sizeof block, NULL, &error));
    g_assert_false (hexz_snapshot_writer_write_parent (writer, 3996, NULL, &error));
    g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);

    /* The memory stream is absent in the parent. */
    g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_MEMORY, 0, &error));
    g_assert_false (hexz_snapshot_writer_write_parent (writer, 4096, NULL, &error));
    g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
  }
}

static void
test_thin_partial_tail (Fixture       *fixture,
                        gconstpointer  data)
{
  g_autofree char *parent_path = g_build_filename (fixture->dir, "parent.hxz", NULL);
  guint8 disk[10000];
  g_autoptr(HexzSnapshot) parent = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(HexzSnapshotWriter) writer = NULL;
  g_autoptr(GError) error = NULL;

  test_fill_random (disk, sizeof disk, 95);
  test_write_snapshot (parent_path, HEXZ_CODEC_LZ4, 4096, FALSE, disk,
                       sizeof disk, NULL, 0);
  parent = open_ok (parent_path);

  writer = hexz_snapshot_writer_new_for_path (fixture->path);
  hexz_snapshot_writer_set_parent (writer, parent);
  hexz_snapshot_writer_set_block_size (writer, 4096);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, disk, 4096, NULL, &error));
  g_assert_true (hexz_snapshot_writer_write_parent (writer, sizeof disk - 4096, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (hexz_snapshot_writer_write (writer, disk, 1, NULL, &error));
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);

  snapshot = open_ok (fixture->path);
  assert_stream_equals (snapshot, HEXZ_STREAM_DISK, disk, sizeof disk);
}

/* A chain of 64 snapshots opens; one more is rejected. */
static void
test_thin_depth_limit (Fixture       *fixture,
                       gconstpointer  data)
{
  g_autofree char *previous = g_build_filename (fixture->dir, "0.hxz", NULL);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;

  write_small_parent (previous, 96);

  for (guint i = 1; i < 65; i++)
    {
      g_autofree char *name = g_strdup_printf ("%u.hxz", i);
      g_autofree char *path = g_build_filename (fixture->dir, name, NULL);

      write_small_child (path, previous);
      g_free (previous);
      previous = g_steal_pointer (&path);
    }

  snapshot = hexz_snapshot_open_path (previous, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_TOO_LARGE);
  g_assert_nonnull (strstr (error->message, "64.hxz"));
}

/* Writer behaviour */

static void
on_writer_progress (HexzSnapshotWriter *writer,
                    HexzStream          stream,
                    guint64             done,
                    guint64             expected,
                    gpointer            user_data)
{
  guint64 *last = user_data;

  g_assert_cmpuint (done, >=, *last);
  g_assert_cmpuint (expected, ==, 40 * 1024 * 1024);
  *last = done;
}

static void
test_writer_progress (Fixture       *fixture,
                      gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *chunk = g_malloc0 (1024 * 1024);
  gboolean dictionary = GPOINTER_TO_INT (data);
  guint64 last = 0;

  /* With a dictionary the first 8 MiB are buffered, trained on and
   * compressed again, which must not move the progress back. */
  if (dictionary)
    {
      test_fill_text (chunk, 1024 * 1024, 5);
      hexz_snapshot_writer_set_train_dictionary (writer, TRUE);
    }

  g_signal_connect (writer, "progress", G_CALLBACK (on_writer_progress), &last);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK,
                                                    40 * 1024 * 1024, &error));
  for (guint i = 0; i < 40; i++)
    {
      /* Slow writes get progress reported while the start is buffered. */
      if (dictionary && i < 8)
        g_usleep (120 * G_TIME_SPAN_MILLISECOND);
      g_assert_true (hexz_snapshot_writer_write (writer, chunk, 1024 * 1024, NULL, &error));
    }
  g_assert_true (hexz_snapshot_writer_end_stream (writer, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (last, ==, 40 * 1024 * 1024);
  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);
}

static void
test_writer_invalid_settings (Fixture       *fixture,
                              gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  {
    g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);

    hexz_snapshot_writer_set_block_size (writer, 5000);
    g_assert_false (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
    g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
  }

  {
    g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);

    hexz_snapshot_writer_set_codec (writer, HEXZ_CODEC_ZSTD);
    hexz_snapshot_writer_set_level (writer, 99);
    g_assert_false (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
    g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
  }

  {
    g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);

    g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
    g_assert_true (hexz_snapshot_writer_end_stream (writer, NULL, &error));
    g_assert_false (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
    g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
  }

  /* Nothing was closed: no file appears. */
  g_assert_cmpuint (test_count_files (fixture->dir), ==, 0);
}

/* An existing file at the output path stays until the rename. */
static void
test_writer_abort (Fixture       *fixture,
                   gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *content = NULL;
  guint8 block[70000];

  test_fill_random (block, sizeof block, 101);
  g_assert_true (g_file_set_contents (fixture->path, "old", -1, NULL));

  {
    g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);

    g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
    g_assert_true (hexz_snapshot_writer_write (writer, block, sizeof block, NULL, &error));
    g_assert_cmpuint (test_count_files (fixture->dir), ==, 2);
    hexz_snapshot_writer_abort (writer);
    g_assert_cmpuint (test_count_files (fixture->dir), ==, 1);

    g_assert_false (hexz_snapshot_writer_write (writer, block, 1, NULL, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_clear_error (&error);
    g_assert_false (hexz_snapshot_writer_close (writer, NULL, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_clear_error (&error);
  }

  /* Dropped before closing. */
  {
    g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);

    g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
    g_assert_true (hexz_snapshot_writer_write (writer, block, sizeof block, NULL, &error));
    g_assert_no_error (error);
  }

  g_assert_cmpuint (test_count_files (fixture->dir), ==, 1);
  g_assert_true (g_file_get_contents (fixture->path, &content, NULL, NULL));
  g_assert_cmpstr (content, ==, "old");
}

/* Takes an open file description read lock on @path, as a server would,
 * and returns the descriptor that holds it. */
static int
lock_shared (const char *path)
{
  struct flock lock = { .l_type = F_RDLCK, .l_whence = SEEK_SET };
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (fcntl (fd, F_OFD_SETLK, &lock), ==, 0);

  return fd;
}

static void
assert_file_equals (const char *path,
                    GBytes     *expected)
{
  g_autofree char *content = NULL;
  gsize length;

  g_assert_true (g_file_get_contents (path, &content, &length, NULL));
  g_assert_cmpmem (content, length, g_bytes_get_data (expected, NULL), g_bytes_get_size (expected));
}

static void
test_writer_busy_output (Fixture       *fixture,
                         gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) original = NULL;
  g_autofree char *content = NULL;
  gsize length;
  guint8 block[70000];
  int lock_fd;

  test_fill_random (block, sizeof block, 131);
  write_small_parent (fixture->path, 132);
  g_assert_true (g_file_get_contents (fixture->path, &content, &length, NULL));
  original = g_bytes_new_take (g_steal_pointer (&content), length);

  /* Locked before the writer starts: nothing is written. */
  lock_fd = lock_shared (fixture->path);
  {
    g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);

    g_assert_false (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
    g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_BUSY);
    g_assert_nonnull (strstr (error->message, "test.hxz"));
    g_clear_error (&error);
    g_assert_cmpuint (test_count_files (fixture->dir), ==, 1);
  }
  close (lock_fd);
  assert_file_equals (fixture->path, original);

  /* Locked while the writer writes: the rename is refused and the
   * temporary file removed. */
  {
    g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);

    g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
    g_assert_true (hexz_snapshot_writer_write (writer, block, sizeof block, NULL, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (test_count_files (fixture->dir), ==, 2);

    lock_fd = lock_shared (fixture->path);
    g_assert_false (hexz_snapshot_writer_close (writer, NULL, &error));
    g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_BUSY);
    g_clear_error (&error);
    g_assert_cmpuint (test_count_files (fixture->dir), ==, 1);
    close (lock_fd);
  }
  assert_file_equals (fixture->path, original);

  /* Without the lock the file is replaced. */
  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, 4096, FALSE, block, sizeof block, NULL, 0);
  {
    g_autoptr(HexzSnapshot) snapshot = open_ok (fixture->path);

    g_assert_cmpuint (hexz_snapshot_get_disk_size (snapshot), ==, sizeof block);
  }
}

/* hexz_snapshot_lock_shared() locks the whole chain, so that neither the
 * child nor its parent can be replaced while a server reads them. */
static void
test_thin_lock_shared (Fixture       *fixture,
                       gconstpointer  data)
{
  g_autofree char *parent_path = g_build_filename (fixture->dir, "parent.hxz", NULL);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  const char *paths[2];

  write_small_parent (parent_path, 141);
  write_small_child (fixture->path, parent_path);
  paths[0] = fixture->path;
  paths[1] = parent_path;

  snapshot = open_ok (fixture->path);
  g_assert_true (hexz_snapshot_lock_shared (snapshot, &error));
  g_assert_no_error (error);

  for (guint i = 0; i < G_N_ELEMENTS (paths); i++)
    {
      g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (paths[i]);

      g_assert_false (hexz_snapshot_writer_close (writer, NULL, &error));
      g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_BUSY);
      g_clear_error (&error);
    }

  /* A second server may serve the same files. */
  {
    g_autoptr(HexzSnapshot) second = open_ok (fixture->path);

    g_assert_true (hexz_snapshot_lock_shared (second, &error));
    g_assert_no_error (error);
  }

  /* Closing the snapshot releases the locks. */
  g_clear_object (&snapshot);
  write_small_parent (parent_path, 142);
}

static void
test_writer_cancelled (Fixture       *fixture,
                       gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  guint8 block[5000] = { 0 };

  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, block, sizeof block, NULL, &error));
  g_cancellable_cancel (cancellable);
  g_assert_false (hexz_snapshot_writer_write (writer, block, sizeof block,
                                              cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  g_assert_false (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (test_count_files (fixture->dir), ==, 0);
}

typedef struct {
  GMainLoop *loop;
  GAsyncResult *result;
} AsyncWait;

static void
on_async_done (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  AsyncWait *wait = user_data;

  wait->result = g_object_ref (result);
  g_main_loop_quit (wait->loop);
}

static GAsyncResult *
wait_for_result (AsyncWait *wait)
{
  g_main_loop_run (wait->loop);
  g_clear_pointer (&wait->loop, g_main_loop_unref);
  return wait->result;
}

typedef struct {
  GThread *thread;
  guint64  done;
  guint    count;
} SpliceProgress;

static void
on_splice_progress (HexzSnapshotWriter *writer,
                    HexzStream          stream,
                    guint64             done,
                    guint64             expected,
                    gpointer            user_data)
{
  SpliceProgress *progress = user_data;

  g_assert_true (g_thread_self () == progress->thread);
  g_assert_cmpint (stream, ==, HEXZ_STREAM_MEMORY);
  g_assert_cmpuint (done, >=, progress->done);
  progress->done = done;
  progress->count++;
}

static void
test_writer_splice (Fixture       *fixture,
                    gconstpointer  data)
{
  SpliceProgress progress = { g_thread_self (), 0, 0 };
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  gsize size = 7 * 1024 * 1024 + 17;
  g_autofree guint8 *memory = g_malloc (size);
  g_autoptr(GInputStream) input = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  AsyncWait wait = { g_main_loop_new (NULL, FALSE), NULL };

  test_fill_text (memory, size, 111);
  input = g_memory_input_stream_new_from_data (memory, size, NULL);

  g_signal_connect (writer, "progress", G_CALLBACK (on_splice_progress), &progress);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_MEMORY, 0, &error));
  hexz_snapshot_writer_splice_async (writer, input, NULL, on_async_done, &wait);
  result = wait_for_result (&wait);
  g_assert_cmpuint (hexz_snapshot_writer_splice_finish (writer, result, &error), ==, size);
  g_assert_no_error (error);
  g_clear_object (&result);

  wait.loop = g_main_loop_new (NULL, FALSE);
  hexz_snapshot_writer_close_async (writer, NULL, on_async_done, &wait);
  result = wait_for_result (&wait);
  g_assert_true (hexz_snapshot_writer_close_finish (writer, result, &error));
  g_assert_no_error (error);

  /* Reports posted to this context run before the callback. */
  g_assert_cmpuint (progress.count, >, 0);
  g_assert_cmpuint (progress.done, ==, size);

  snapshot = open_ok (fixture->path);
  assert_stream_equals (snapshot, HEXZ_STREAM_MEMORY, memory, size);
}

static gboolean
cancel_later (gpointer data)
{
  g_cancellable_cancel (data);
  return G_SOURCE_REMOVE;
}

/* A pipe that receives some data and then stays open: the splice blocks
 * in the middle until it is cancelled. */
static void
test_writer_splice_cancelled (Fixture       *fixture,
                              gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GInputStream) input = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  AsyncWait wait = { g_main_loop_new (NULL, FALSE), NULL };
  guint8 chunk[60000];
  int fds[2];

  g_assert_cmpint (pipe (fds), ==, 0);
  input = g_unix_input_stream_new (fds[0], TRUE);
  test_fill_random (chunk, sizeof chunk, 121);
  g_assert_cmpint (write (fds[1], chunk, sizeof chunk), ==, sizeof chunk);

  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_MEMORY, 0, &error));
  hexz_snapshot_writer_splice_async (writer, input, cancellable, on_async_done, &wait);
  g_timeout_add (200, cancel_later, cancellable);
  result = wait_for_result (&wait);

  g_assert_cmpuint (hexz_snapshot_writer_splice_finish (writer, result, &error), ==, 0);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  close (fds[1]);

  g_assert_false (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (test_count_files (fixture->dir), ==, 0);
}

static void
test_writer_splice_already_cancelled (Fixture       *fixture,
                                      gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (fixture->path);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GInputStream) input = g_memory_input_stream_new_from_data ("abc", 3, NULL);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  AsyncWait wait = { g_main_loop_new (NULL, FALSE), NULL };

  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_MEMORY, 0, &error));
  g_cancellable_cancel (cancellable);
  hexz_snapshot_writer_splice_async (writer, input, cancellable, on_async_done, &wait);
  result = wait_for_result (&wait);
  g_assert_cmpuint (hexz_snapshot_writer_splice_finish (writer, result, &error), ==, 0);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (test_count_files (fixture->dir), ==, 0);
}

/* Writing stops part way when the file size limit is reached: no output
 * appears and the existing file is untouched. Runs in a subprocess that
 * lowers its own RLIMIT_FSIZE. */
static char *
make_temp_file (Fixture    *fixture,
                const char *name,
                gint64      age_seconds)
{
  /* A killed writer leaves the header a hole. */
  static const char partial[16] = { [8] = 'p', 'a', 'r', 't', 'i', 'a', 'l' };
  char *path = g_build_filename (fixture->dir, name, NULL);
  struct utimbuf times;

  g_assert_true (g_file_set_contents (path, partial, sizeof partial, NULL));
  times.actime = times.modtime = time (NULL) - age_seconds;
  g_assert_cmpint (g_utime (path, &times), ==, 0);

  return path;
}

/* A writer removes the temporary files that killed writers of any output
 * left in its folder: unlocked and unchanged for a few seconds. It leaves
 * files that another writer holds locked, new files, and files of other
 * programs named alike. */
static void
test_writer_stale_temp_files (Fixture       *fixture,
                              gconstpointer  data)
{
  g_autofree char *basename = g_path_get_basename (fixture->path);
  g_autofree char *stale_name = g_strdup_printf (".%s.AbC123.tmp", basename);
  g_autofree char *fresh_name = g_strdup_printf (".%s.DeF456.tmp", basename);
  g_autofree char *locked_name = g_strdup_printf (".%s.GhI789.tmp", basename);
  g_autofree char *odd_name = g_strdup_printf (".%s.not-a-temp.tmp", basename);
  g_autofree char *stale = make_temp_file (fixture, stale_name, 60);
  g_autofree char *fresh = make_temp_file (fixture, fresh_name, 0);
  g_autofree char *locked = make_temp_file (fixture, locked_name, 60);
  g_autofree char *odd = make_temp_file (fixture, odd_name, 60);
  g_autofree char *other = make_temp_file (fixture, ".other.hxz.JkL012.tmp", 60);
  g_autofree char *empty = make_temp_file (fixture, ".empty.hxz.MnO345.tmp", 60);
  g_autofree char *foreign = g_build_filename (fixture->dir, ".notes.txt.PqR678.tmp", NULL);
  guint8 disk[4096] = { 1 };
  struct utimbuf times;
  int lock_fd;

  /* flock() locks conflict between open file descriptions even inside one
   * process, so this stands for a live writer. */
  lock_fd = open (locked, O_RDONLY | O_CLOEXEC);
  g_assert_cmpint (lock_fd, >=, 0);
  g_assert_cmpint (flock (lock_fd, LOCK_EX | LOCK_NB), ==, 0);

  /* Killed before it wrote anything. */
  g_assert_true (g_file_set_contents (empty, "", 0, NULL));
  times.actime = times.modtime = time (NULL) - 60;
  g_assert_cmpint (g_utime (empty, &times), ==, 0);

  /* Another program's file: not a snapshot's start. */
  g_assert_true (g_file_set_contents (foreign, "some notes", -1, NULL));
  g_assert_cmpint (g_utime (foreign, &times), ==, 0);

  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, 4096, FALSE, disk, sizeof disk, NULL, 0);

  g_assert_false (g_file_test (stale, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (fresh, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (locked, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (odd, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (other, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (empty, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (foreign, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (fixture->path, G_FILE_TEST_IS_REGULAR));

  close (lock_fd);
}

static void
test_writer_atomic_fsize (Fixture       *fixture,
                          gconstpointer  data)
{
  g_autofree char *content = NULL;

  if (g_test_subprocess ())
    {
      const char *path = g_getenv ("HEXZ_TEST_OUTPUT");
      g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (path);
      g_autoptr(GError) error = NULL;
      g_autofree guint8 *data_block = g_malloc (1024 * 1024);
      struct rlimit limit = { 2 * 1024 * 1024, 2 * 1024 * 1024 };
      gboolean ok = TRUE;

      signal (SIGXFSZ, SIG_IGN);
      g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &limit), ==, 0);

      hexz_snapshot_writer_set_codec (writer, HEXZ_CODEC_RAW);
      g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
      for (guint i = 0; i < 16 && ok; i++)
        {
          test_fill_random (data_block, 1024 * 1024, 131 + i);
          ok = hexz_snapshot_writer_write (writer, data_block, 1024 * 1024, NULL, &error);
        }
      if (ok)
        ok = hexz_snapshot_writer_close (writer, NULL, &error);
      g_assert_false (ok);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
      g_test_message ("Writing failed as expected: %s", error->message);
      return;
    }

  g_assert_true (g_file_set_contents (fixture->path, "old", -1, NULL));
  g_setenv ("HEXZ_TEST_OUTPUT", fixture->path, TRUE);
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_unsetenv ("HEXZ_TEST_OUTPUT");
  g_test_trap_assert_passed ();

  g_assert_cmpuint (test_count_files (fixture->dir), ==, 1);
  g_assert_true (g_file_get_contents (fixture->path, &content, NULL, NULL));
  g_assert_cmpstr (content, ==, "old");
}

/* Reading */

static void
test_open_async (Fixture       *fixture,
                 gconstpointer  data)
{
  guint8 disk[5000];
  g_autoptr(GFile) file = g_file_new_for_path (fixture->path);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  AsyncWait wait = { g_main_loop_new (NULL, FALSE), NULL };

  test_fill_random (disk, sizeof disk, 141);
  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, 4096, FALSE, disk,
                       sizeof disk, NULL, 0);

  hexz_snapshot_open_async (file, G_PRIORITY_DEFAULT, NULL, on_async_done, &wait);
  result = wait_for_result (&wait);
  snapshot = hexz_snapshot_open_finish (result, &error);
  g_assert_no_error (error);
  g_assert_true (g_file_equal (hexz_snapshot_get_file (snapshot), file));
  assert_stream_equals (snapshot, HEXZ_STREAM_DISK, disk, sizeof disk);
}

static void
on_verify_progress (HexzSnapshot *snapshot,
                    guint64       done,
                    guint64       total,
                    gpointer      user_data)
{
  guint64 *last = user_data;

  g_assert_cmpuint (done, >=, *last);
  g_assert_cmpuint (done, <=, total);
  *last = done;
}

static void
test_verify_async (Fixture       *fixture,
                   gconstpointer  data)
{
  gsize size = 3 * 1024 * 1024;
  g_autofree guint8 *disk = g_malloc (size);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  AsyncWait wait = { g_main_loop_new (NULL, FALSE), NULL };
  guint64 last = 0;

  test_fill_text (disk, size, 151);
  test_write_snapshot (fixture->path, HEXZ_CODEC_ZSTD, 4096, TRUE, disk, size,
                       disk, size / 2);
  snapshot = open_ok (fixture->path);
  g_signal_connect (snapshot, "progress", G_CALLBACK (on_verify_progress), &last);

  hexz_snapshot_verify_async (snapshot, NULL, on_async_done, &wait);
  result = wait_for_result (&wait);
  g_assert_true (hexz_snapshot_verify_finish (snapshot, result, &error));
  g_assert_no_error (error);

  /* Progress reports posted to this context run before the callback. */
  g_assert_cmpuint (last, ==, size + size / 2);
}

static void
cancel_on_progress (HexzSnapshot *snapshot,
                    guint64       done,
                    guint64       total,
                    gpointer      user_data)
{
  if (done > 0)
    g_cancellable_cancel (user_data);
}

static void
test_verify_cancelled (Fixture       *fixture,
                       gconstpointer  data)
{
  gsize size = 80 * 1024 * 1024;
  g_autofree guint8 *disk = g_malloc (size);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;

  test_fill_text (disk, size, 161);
  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, 64 * 1024, FALSE, disk,
                       size, NULL, 0);
  snapshot = open_ok (fixture->path);

  /* Already cancelled. */
  g_cancellable_cancel (cancellable);
  g_assert_false (hexz_snapshot_verify (snapshot, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  /* Cancelled at the first progress report after the start, which comes
   * after 64 MiB of the 80 MiB at the latest. */
  g_cancellable_reset (cancellable);
  g_signal_connect (snapshot, "progress", G_CALLBACK (cancel_on_progress), cancellable);
  g_assert_false (hexz_snapshot_verify (snapshot, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

static void
test_not_a_snapshot (Fixture       *fixture,
                     gconstpointer  data)
{
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *missing = g_build_filename (fixture->dir, "missing.hxz", NULL);

  g_assert_true (g_file_set_contents (fixture->path, "hello", -1, NULL));
  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_NOT_A_SNAPSHOT);
  g_assert_nonnull (strstr (error->message, "test.hxz"));
  g_clear_error (&error);

  snapshot = hexz_snapshot_open_path (missing, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);

  snapshot = hexz_snapshot_open_path (fixture->dir, NULL, &error);
  g_assert_null (snapshot);
  g_assert_nonnull (error);
  g_clear_error (&error);

  /* A FIFO with no writer must not block. */
  g_assert_cmpint (g_remove (fixture->path), ==, 0);
  g_assert_cmpint (mkfifo (fixture->path, 0600), ==, 0);
  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  g_assert_null (snapshot);
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_NOT_A_SNAPSHOT);
}

/* Test data of the round-trip cases, freed after the run. */
static GPtrArray *roundtrips;

static void
add_roundtrip (const char *name,
               void      (*func) (Fixture *, gconstpointer),
               HexzCodec   codec,
               guint       block_size,
               gboolean    dictionary)
{
  RoundTrip *rt = g_new (RoundTrip, 1);
  g_autofree char *path = NULL;

  *rt = (RoundTrip) { codec, block_size, dictionary };
  g_ptr_array_add (roundtrips, rt);
  path = g_strdup_printf ("/snapshot/roundtrip/%s/%s/%uk%s", name,
                          hexz_codec_to_string (codec), block_size / 1024,
                          dictionary ? "/dictionary" : "");
  g_test_add (path, Fixture, rt, fixture_setup, func, fixture_teardown);
}

#define ADD(path, func) \
  g_test_add (path, Fixture, NULL, fixture_setup, func, fixture_teardown)

int
main (int   argc,
      char *argv[])
{
  static const HexzCodec codecs[] = { HEXZ_CODEC_RAW, HEXZ_CODEC_LZ4, HEXZ_CODEC_ZSTD };
  static const guint block_sizes[] = { 4096, 64 * 1024, 1024 * 1024 };

  g_autoptr(GPtrArray) cases = g_ptr_array_new_with_free_func (g_free);

  g_test_init (&argc, &argv, NULL);
  roundtrips = cases;

  for (guint c = 0; c < G_N_ELEMENTS (codecs); c++)
    for (guint b = 0; b < G_N_ELEMENTS (block_sizes); b++)
      add_roundtrip ("random", test_roundtrip_random, codecs[c], block_sizes[b], FALSE);

  for (guint c = 0; c < G_N_ELEMENTS (codecs); c++)
    add_roundtrip ("text", test_roundtrip_text, codecs[c], 64 * 1024, FALSE);
  add_roundtrip ("text", test_roundtrip_text, HEXZ_CODEC_ZSTD, 4096, TRUE);
  add_roundtrip ("text", test_roundtrip_text, HEXZ_CODEC_ZSTD, 1024 * 1024, TRUE);
  for (guint b = 0; b < G_N_ELEMENTS (block_sizes); b++)
    add_roundtrip ("text", test_roundtrip_text, HEXZ_CODEC_LZ4, block_sizes[b], TRUE);
  add_roundtrip ("random", test_roundtrip_random, HEXZ_CODEC_LZ4, 64 * 1024, TRUE);

  ADD ("/snapshot/roundtrip/zeros", test_roundtrip_zeros);
  ADD ("/snapshot/roundtrip/zeros/lz4/dictionary", test_lz4_dictionary_zeros);
  g_test_add ("/snapshot/dictionary/zero-runs/short", Fixture, GINT_TO_POINTER (FALSE),
              fixture_setup, test_lz4_dictionary_zero_runs, fixture_teardown);
  g_test_add ("/snapshot/dictionary/zero-runs/long", Fixture, GINT_TO_POINTER (TRUE),
              fixture_setup, test_lz4_dictionary_zero_runs, fixture_teardown);
  ADD ("/snapshot/roundtrip/empty-stream", test_roundtrip_empty);
  ADD ("/snapshot/roundtrip/no-streams", test_roundtrip_no_streams);
  ADD ("/snapshot/roundtrip/mixed-writes", test_roundtrip_mixed_writes);
  ADD ("/snapshot/dedup/stored-once", test_dedup_stored_once);
  ADD ("/snapshot/dedup/same-prefix", test_dedup_same_prefix);
  ADD ("/snapshot/dedup/hash-collision", test_dedup_collision);
  ADD ("/snapshot/read/is-zero", test_is_zero);
  ADD ("/snapshot/read/many-pages", test_many_pages);
  ADD ("/snapshot/read/past-end", test_read_past_end);
  ADD ("/snapshot/read/input-stream-seek", test_input_stream_seek);
  ADD ("/snapshot/read/threads", test_read_threads);
  ADD ("/snapshot/read/block-cache", test_read_block_cache);
  ADD ("/snapshot/read/open-async", test_open_async);
  ADD ("/snapshot/read/not-a-snapshot", test_not_a_snapshot);
  ADD ("/snapshot/read/verify-async", test_verify_async);
  ADD ("/snapshot/read/verify-cancelled", test_verify_cancelled);
  ADD ("/snapshot/read/block-stats", test_block_stats);
  ADD ("/snapshot/metadata", test_metadata);
  ADD ("/snapshot/thin/chain", test_thin_chain);
  ADD ("/snapshot/thin/chain/lz4/dictionary", test_thin_chain_lz4_dictionary);
  ADD ("/snapshot/thin/replaced-parent", test_thin_replaced_parent);
  ADD ("/snapshot/thin/missing-parent", test_thin_missing_parent);
  ADD ("/snapshot/thin/invalid-parent-writes", test_thin_invalid_parent_writes);
  ADD ("/snapshot/thin/partial-tail", test_thin_partial_tail);
  ADD ("/snapshot/thin/depth-limit", test_thin_depth_limit);
  ADD ("/snapshot/writer/progress", test_writer_progress);
  g_test_add ("/snapshot/writer/progress/dictionary", Fixture, GINT_TO_POINTER (TRUE),
              fixture_setup, test_writer_progress, fixture_teardown);
  ADD ("/snapshot/writer/invalid-settings", test_writer_invalid_settings);
  ADD ("/snapshot/writer/abort", test_writer_abort);
  ADD ("/snapshot/writer/cancelled", test_writer_cancelled);
  ADD ("/snapshot/writer/splice", test_writer_splice);
  ADD ("/snapshot/writer/splice-cancelled", test_writer_splice_cancelled);
  ADD ("/snapshot/writer/splice-already-cancelled", test_writer_splice_already_cancelled);
  ADD ("/snapshot/writer/atomic-fsize", test_writer_atomic_fsize);
  ADD ("/snapshot/writer/stale-temp-files", test_writer_stale_temp_files);
  ADD ("/snapshot/writer/busy-output", test_writer_busy_output);
  ADD ("/snapshot/thin/lock-shared", test_thin_lock_shared);

  return g_test_run ();
}
