/* hexz-test-snapshot-util.h: helpers shared by the snapshot file tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <string.h>

#include <glib/gstdio.h>

#include "hexz.h"
#include "hexz-snapshot-private.h"

/* Fills @buffer with bytes from a generator seeded with @seed, so that
 * tests are repeatable. */
static inline void
test_fill_random (guint8  *buffer,
                  gsize    length,
                  guint32  seed)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (seed);
  gsize i;

  for (i = 0; i + 4 <= length; i += 4)
    {
      guint32 v = g_rand_int (rand);

      memcpy (buffer + i, &v, 4);
    }
  for (; i < length; i++)
    buffer[i] = g_rand_int_range (rand, 0, 256);
}

/* Fills @buffer with compressible, text-like bytes. */
static inline void
test_fill_text (guint8  *buffer,
                gsize    length,
                guint32  seed)
{
  static const char *words[] = {
    "snapshot ", "block ", "virtual ", "machine ", "memory ", "disk ",
    "index ", "page ", "zstd ", "lz4 ", "checksum\n", "the ", "of ", "a ",
  };
  g_autoptr(GRand) rand = g_rand_new_with_seed (seed);
  gsize i = 0;

  while (i < length)
    {
      const char *word = words[g_rand_int_range (rand, 0, G_N_ELEMENTS (words))];
      gsize n = MIN (strlen (word), length - i);

      memcpy (buffer + i, word, n);
      i += n;
    }
}

static inline char *
test_make_tmp_dir (void)
{
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp ("hexz-test-XXXXXX", &error);

  g_assert_no_error (error);
  return dir;
}

static inline void
test_remove_tree (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL)
    {
      g_remove (path);
      return;
    }

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      if (g_file_test (child, G_FILE_TEST_IS_DIR))
        test_remove_tree (child);
      else
        g_remove (child);
    }

  g_rmdir (path);
}

/* Counts the entries of @path, to check that no temporary file stays. */
static inline guint
test_count_files (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  guint n = 0;

  g_assert_nonnull (dir);
  while (g_dir_read_name (dir) != NULL)
    n++;

  return n;
}

static inline guint64
test_file_size (const char *path)
{
  GStatBuf st;

  g_assert_cmpint (g_stat (path, &st), ==, 0);
  return st.st_size;
}

/* A @dictionary argument of test_write_snapshot() that keeps the trained
 * dictionary even where the writer would drop it, as small files need. */
#define TEST_KEEP_DICTIONARY 2

/* Writes a snapshot of @disk and, if not NULL, @memory. @dictionary is
 * FALSE, TRUE to train one, or TEST_KEEP_DICTIONARY. */
static inline void
test_write_snapshot (const char   *path,
                     HexzCodec     codec,
                     guint         block_size,
                     gboolean      dictionary,
                     const guint8 *disk,
                     gsize         disk_size,
                     const guint8 *memory,
                     gsize         memory_size)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (path);
  g_autoptr(GError) error = NULL;

  hexz_snapshot_writer_set_codec (writer, codec);
  hexz_snapshot_writer_set_block_size (writer, block_size);
  hexz_snapshot_writer_set_threads (writer, 2);
  hexz_snapshot_writer_set_train_dictionary (writer, dictionary != FALSE);
  hexz_snapshot_writer_set_keep_dictionary_for_testing (writer,
                                                        dictionary == TEST_KEEP_DICTIONARY);

  if (disk != NULL)
    {
      g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK,
                                                        disk_size, &error));
      g_assert_no_error (error);
      g_assert_true (hexz_snapshot_writer_write (writer, disk, disk_size, NULL,
                                                 &error));
      g_assert_no_error (error);
      g_assert_true (hexz_snapshot_writer_end_stream (writer, NULL, &error));
      g_assert_no_error (error);
    }

  if (memory != NULL)
    {
      g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_MEMORY,
                                                        memory_size, &error));
      g_assert_no_error (error);
      g_assert_true (hexz_snapshot_writer_write (writer, memory, memory_size,
                                                 NULL, &error));
      g_assert_no_error (error);
    }

  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);
}
