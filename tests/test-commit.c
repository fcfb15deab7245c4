/* test-commit.c: tests for HexzCommit and the disk merge
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include <hexz.h>

#include "hexz-commit-private.h"

#define PAGE HEXZ_OVERLAY_PAGE_SIZE

/* Not a multiple of any block size, so the last block and the last page
 * are both short. */
#define BASE_SIZE (3 * 1024 * 1024 + 3 * PAGE + 100)
#define BASE_BLOCK_SIZE (64 * 1024)
#define MEMORY_SIZE (1024 * 1024 + 17)

typedef struct {
  char *dir;
  char *base_path;
  char *overlay_path;
  char *output_path;
  guint8 *base_disk;
  guint8 *base_memory;
  guint8 *expected;
  guint64 expected_size;
  HexzSnapshot *base;
  HexzOverlay *overlay;
} Fixture;

static char *
fixture_path (Fixture    *fixture,
              const char *name)
{
  return g_build_filename (fixture->dir, name, NULL);
}

static void
fill_random (guint8  *data,
             gsize    length,
             guint32  seed)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (seed);

  for (gsize i = 0; i < length; i++)
    data[i] = g_rand_int (rand) & 0xff;
}

static void
write_snapshot (const char   *path,
                const guint8 *disk,
                gsize         disk_size,
                const guint8 *memory,
                gsize         memory_size,
                guint         block_size)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (path);
  g_autoptr(GError) error = NULL;

  hexz_snapshot_writer_set_block_size (writer, block_size);
  hexz_snapshot_writer_set_threads (writer, 2);

  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, disk_size, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_snapshot_writer_write (writer, disk, disk_size, NULL, &error));
  g_assert_no_error (error);

  if (memory != NULL)
    {
      g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_MEMORY,
                                                        memory_size, &error));
      g_assert_no_error (error);
      g_assert_true (hexz_snapshot_writer_write (writer, memory, memory_size, NULL, &error));
      g_assert_no_error (error);
    }

  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);
}

/* The base has random bytes with a zero stretch (blocks 4 to 11 of 64 KiB).
 * It also has a memory stream, which a commit must not carry over. */
static void
fixture_set_up (Fixture       *fixture,
                gconstpointer  user_data)
{
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *page = g_malloc (PAGE);
  guint64 last_page = (BASE_SIZE - 1) / PAGE;
  gsize last_length = BASE_SIZE - last_page * PAGE;

  fixture->dir = g_dir_make_tmp ("hexz-test-commit-XXXXXX", &error);
  g_assert_no_error (error);
  fixture->base_path = fixture_path (fixture, "base.hxz");
  fixture->overlay_path = fixture_path (fixture, "vm.overlay");
  fixture->output_path = fixture_path (fixture, "out.hxz");

  fixture->base_disk = g_malloc (BASE_SIZE);
  fill_random (fixture->base_disk, BASE_SIZE, 1);
  memset (fixture->base_disk + 4 * 65536, 0, 8 * 65536);
  fixture->base_memory = g_malloc (MEMORY_SIZE);
  fill_random (fixture->base_memory, MEMORY_SIZE, 2);

  write_snapshot (fixture->base_path, fixture->base_disk, BASE_SIZE,
                  fixture->base_memory, MEMORY_SIZE, BASE_BLOCK_SIZE);
  fixture->base = hexz_snapshot_open_path (fixture->base_path, NULL, &error);
  g_assert_no_error (error);

  /* The overlay: data in page 5, page 9 listed but a hole (the guest wrote
   * zeros), a run across the 1 MiB boundary (pages 250 to 260), a page in
   * the zero stretch (page 70), and the short last page. The expected image
   * applies the same changes to the base's bytes. */
  fixture->expected_size = BASE_SIZE;
  fixture->expected = g_memdup2 (fixture->base_disk, BASE_SIZE);
  fixture->overlay = hexz_overlay_create_path (fixture->overlay_path, BASE_SIZE,
                                               HEXZ_OVERLAY_CREATE_NONE, &error);
  g_assert_no_error (error);

  for (guint64 number = 0; number <= last_page; number++)
    {
      gsize length = number == last_page ? last_length : PAGE;

      if (number != 5 && number != 70 && number != last_page && (number < 250 || number > 260))
        continue;

      fill_random (page, PAGE, 1000 + number);
      g_assert_true (hexz_overlay_write (fixture->overlay, number * PAGE, page, length, &error));
      g_assert_no_error (error);
      memcpy (fixture->expected + number * PAGE, page, length);
    }

  g_assert_true (hexz_overlay_mark_pages (fixture->overlay, 9, 1, &error));
  g_assert_no_error (error);
  memset (fixture->expected + 9 * PAGE, 0, PAGE);
}

static void
fixture_tear_down (Fixture       *fixture,
                   gconstpointer  user_data)
{
  g_autoptr(GDir) dir = NULL;
  const char *name;

  g_clear_object (&fixture->base);
  g_clear_object (&fixture->overlay);

  dir = g_dir_open (fixture->dir, 0, NULL);
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = fixture_path (fixture, name);

      g_unlink (path);
    }
  g_assert_cmpint (g_rmdir (fixture->dir), ==, 0);

  g_free (fixture->dir);
  g_free (fixture->base_path);
  g_free (fixture->overlay_path);
  g_free (fixture->output_path);
  g_free (fixture->base_disk);
  g_free (fixture->base_memory);
  g_free (fixture->expected);
}

static void
assert_stream_equals (HexzSnapshot *snapshot,
                      HexzStream    stream,
                      const guint8 *expected,
                      gsize         size)
{
  g_autofree guint8 *data = g_malloc (MAX (size, 1));
  g_autoptr(GError) error = NULL;

  g_assert_cmpuint (hexz_snapshot_get_stream_size (snapshot, stream), ==, size);
  g_assert_true (hexz_snapshot_read (snapshot, stream, 0, data, size, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (data, size, expected, size);
}

static guint
count_files (Fixture *fixture)
{
  g_autoptr(GDir) dir = g_dir_open (fixture->dir, 0, NULL);
  guint count = 0;

  while (g_dir_read_name (dir) != NULL)
    count++;

  return count;
}

static guint64
count_touched_blocks (Fixture *fixture,
                      guint    block_size)
{
  g_autofree guint64 *pages = NULL;
  guint64 last_block = G_MAXUINT64;
  guint64 count = 0;
  gsize n_pages;

  pages = hexz_overlay_dup_modified_pages (fixture->overlay, &n_pages);
  for (gsize i = 0; i < n_pages; i++)
    {
      guint64 block = pages[i] * PAGE / block_size;

      if (block != last_block)
        count++;
      last_block = block;
    }

  return count;
}

static HexzCommit *
new_commit (Fixture *fixture)
{
  g_autoptr(GFile) output = g_file_new_for_path (fixture->output_path);
  HexzCommit *commit = hexz_commit_new (fixture->base, output);

  hexz_commit_set_overlay (commit, fixture->overlay);
  hexz_commit_set_threads (commit, 2);

  return commit;
}

static void
test_commit_merge (Fixture       *fixture,
                   gconstpointer  user_data)
{
  guint block_size = GPOINTER_TO_UINT (user_data) & ~1u;
  gboolean thin = GPOINTER_TO_UINT (user_data) & 1;
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(HexzSnapshot) output = NULL;
  g_autoptr(GError) error = NULL;
  GStatBuf st;

  hexz_commit_set_block_size (commit, block_size);
  hexz_commit_set_thin (commit, thin);
  hexz_commit_set_message (commit, "merged");

  g_assert_true (hexz_commit_run (commit, NULL, &error));
  g_assert_no_error (error);

  output = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (hexz_snapshot_get_block_size (output), ==, block_size);
  assert_stream_equals (output, HEXZ_STREAM_DISK, fixture->expected, fixture->expected_size);

  /* The base's memory belongs to the base's disk and is dropped. */
  g_assert_false (hexz_snapshot_has_memory (output));

  if (thin)
    {
      g_assert_cmpstr (hexz_snapshot_get_parent_id (output), ==,
                       hexz_snapshot_get_id (fixture->base));
      /* Only the touched blocks are stored, plus the index and metadata. */
      g_assert_cmpuint (hexz_snapshot_get_file_size (output), <,
                        count_touched_blocks (fixture, block_size) * block_size + 64 * 1024);
    }
  else
    {
      g_assert_null (hexz_snapshot_get_parent_path (output));
      g_assert_cmpuint (hexz_snapshot_get_file_size (output), >, BASE_SIZE / 2);
    }

  g_assert_cmpstr (json_object_get_string_member (hexz_snapshot_get_metadata (output), "message"),
                   ==, "merged");

  g_assert_true (hexz_snapshot_verify (output, NULL, &error));
  g_assert_no_error (error);

  g_assert_cmpint (g_stat (fixture->output_path, &st), ==, 0);
  g_assert_cmpuint (st.st_mode & 0777, ==, 0600);
}

/* Text in pages 300 to 599 of the overlay, compressed with LZ4 and a
 * dictionary trained during the commit; thin when @user_data is set. The
 * parent runs between the changed blocks come while training goes on. */
static void
test_commit_lz4_dictionary (Fixture       *fixture,
                            gconstpointer  user_data)
{
  gboolean thin = GPOINTER_TO_UINT (user_data);
  static const char *words[] = {
    "commit ", "overlay ", "page ", "text ", "block\n", "the ", "of ", "snapshot ",
    "kernel ", "guest ", "memory ", "disk ", "a ", "checksum ", "index ", "dictionary ",
  };
  g_autoptr(GRand) rand = g_rand_new_with_seed (300);
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(HexzSnapshot) output = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *page = g_malloc (PAGE);
  HexzBlockStats stats;

  for (guint64 number = 300; number < 600; number++)
    {
      for (gsize i = 0; i < PAGE;)
        {
          const char *word = words[g_rand_int_range (rand, 0, G_N_ELEMENTS (words))];
          gsize n = MIN (strlen (word), PAGE - i);

          memcpy (page + i, word, n);
          i += n;
        }

      g_assert_true (hexz_overlay_write (fixture->overlay, number * PAGE, page, PAGE, &error));
      g_assert_no_error (error);
      memcpy (fixture->expected + number * PAGE, page, PAGE);
    }

  hexz_commit_set_codec (commit, HEXZ_CODEC_LZ4);
  hexz_commit_set_train_dictionary (commit, TRUE);
  /* Too little text to pay for the dictionary's 64 KiB in the file. */
  hexz_commit_set_keep_dictionary_for_testing (commit, TRUE);
  hexz_commit_set_block_size (commit, 16 * 1024);
  hexz_commit_set_thin (commit, thin);
  g_assert_true (hexz_commit_run (commit, NULL, &error));
  g_assert_no_error (error);

  output = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  assert_stream_equals (output, HEXZ_STREAM_DISK, fixture->expected, fixture->expected_size);
  g_assert_true (hexz_snapshot_get_block_stats (output, HEXZ_STREAM_DISK, &stats, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (stats.dictionary_blocks, >=, 75);
  g_assert_cmpuint (stats.parent_blocks > 0, ==, thin);
  g_assert_true (hexz_snapshot_verify (output, NULL, &error));
  g_assert_no_error (error);
}

static void
test_commit_no_overlay (Fixture       *fixture,
                        gconstpointer  user_data)
{
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(HexzSnapshot) output = NULL;
  g_autoptr(GError) error = NULL;

  hexz_commit_set_overlay (commit, NULL);
  hexz_commit_set_block_size (commit, 4096);

  g_assert_true (hexz_commit_run (commit, NULL, &error));
  g_assert_no_error (error);

  output = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  assert_stream_equals (output, HEXZ_STREAM_DISK, fixture->base_disk, BASE_SIZE);
}

/* An overlay that a server holds a write lock on, as the nbdkit plugin
 * does while a machine runs, is rejected before anything is written. */
static void
test_commit_overlay_in_use (Fixture       *fixture,
                            gconstpointer  user_data)
{
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(GError) error = NULL;
  struct flock lock = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  int lock_fd = open (fixture->overlay_path, O_RDWR | O_CLOEXEC);

  g_assert_cmpint (lock_fd, >=, 0);
  g_assert_cmpint (fcntl (lock_fd, F_OFD_SETLK, &lock), ==, 0);

  g_assert_false (hexz_commit_run (commit, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BUSY);
  g_assert_nonnull (strstr (error->message, "vm.overlay"));
  g_clear_error (&error);
  g_assert_false (g_file_test (fixture->output_path, G_FILE_TEST_EXISTS));

  close (lock_fd);
  {
    g_autoptr(HexzCommit) unlocked = new_commit (fixture);

    g_assert_true (hexz_commit_run (unlocked, NULL, &error));
    g_assert_no_error (error);
    g_assert_true (g_file_test (fixture->output_path, G_FILE_TEST_IS_REGULAR));
  }
}

static void
test_commit_memory_file (Fixture       *fixture,
                         gconstpointer  user_data)
{
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(HexzSnapshot) output = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *memory_path = fixture_path (fixture, "memory.bin");
  g_autoptr(GFile) memory_file = g_file_new_for_path (memory_path);
  g_autofree guint8 *memory = g_malloc (MEMORY_SIZE);

  fill_random (memory, MEMORY_SIZE, 3);
  g_file_set_contents (memory_path, (const char *) memory, MEMORY_SIZE, &error);
  g_assert_no_error (error);

  hexz_commit_set_memory_file (commit, memory_file);
  g_assert_true (hexz_commit_run (commit, NULL, &error));
  g_assert_no_error (error);

  output = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (hexz_snapshot_has_memory (output));
  assert_stream_equals (output, HEXZ_STREAM_DISK, fixture->expected, fixture->expected_size);
  assert_stream_equals (output, HEXZ_STREAM_MEMORY, memory, MEMORY_SIZE);
}

static void
test_commit_memory_file_missing (Fixture       *fixture,
                                 gconstpointer  user_data)
{
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(GError) error = NULL;
  g_autofree char *memory_path = fixture_path (fixture, "missing.bin");
  g_autoptr(GFile) memory_file = g_file_new_for_path (memory_path);
  guint n_files = count_files (fixture);

  hexz_commit_set_memory_file (commit, memory_file);
  g_assert_false (hexz_commit_run (commit, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, memory_path));
  g_assert_cmpuint (count_files (fixture), ==, n_files);
}

static void
test_commit_memory_stream (Fixture       *fixture,
                           gconstpointer  user_data)
{
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(HexzSnapshot) output = NULL;
  g_autoptr(GInputStream) stream = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *memory = g_malloc (MEMORY_SIZE);

  fill_random (memory, MEMORY_SIZE, 4);
  stream = g_memory_input_stream_new_from_data (g_memdup2 (memory, MEMORY_SIZE), MEMORY_SIZE,
                                                g_free);

  hexz_commit_set_memory_stream (commit, stream);
  hexz_commit_set_memory_size (commit, MEMORY_SIZE);
  hexz_commit_set_thin (commit, TRUE);
  g_assert_true (hexz_commit_run (commit, NULL, &error));
  g_assert_no_error (error);

  output = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  assert_stream_equals (output, HEXZ_STREAM_DISK, fixture->expected, fixture->expected_size);
  assert_stream_equals (output, HEXZ_STREAM_MEMORY, memory, MEMORY_SIZE);
}

static void
test_commit_memory_stream_short (Fixture       *fixture,
                                 gconstpointer  user_data)
{
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(GInputStream) stream = NULL;
  g_autoptr(GError) error = NULL;
  guint n_files = count_files (fixture);

  stream = g_memory_input_stream_new_from_data ("0123456789", 10, NULL);
  hexz_commit_set_memory_stream (commit, stream);
  hexz_commit_set_memory_size (commit, 11);

  g_assert_false (hexz_commit_run (commit, NULL, &error));
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
  g_assert_false (g_file_test (fixture->output_path, G_FILE_TEST_EXISTS));
  g_assert_cmpuint (count_files (fixture), ==, n_files);
}

static void
test_commit_overlay_too_large (Fixture       *fixture,
                               gconstpointer  user_data)
{
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(HexzOverlay) large = NULL;
  g_autoptr(HexzSnapshot) output = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *large_path = fixture_path (fixture, "large.overlay");
  g_autofree guint8 *expected = NULL;
  guint8 page[PAGE];
  guint64 large_size = BASE_SIZE + 5 * PAGE;
  guint64 written_page = large_size / PAGE - 2;

  large = hexz_overlay_create_path (large_path, large_size, HEXZ_OVERLAY_CREATE_NONE, &error);
  g_assert_no_error (error);
  fill_random (page, PAGE, 5);
  g_assert_true (hexz_overlay_write (large, written_page * PAGE, page, PAGE, &error));
  g_assert_no_error (error);

  hexz_commit_set_overlay (commit, large);
  g_assert_false (hexz_commit_run (commit, NULL, &error));
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
  g_test_message ("Error: %s", error->message);
  g_assert_nonnull (strstr (error->message, fixture->base_path));
  g_assert_false (g_file_test (fixture->output_path, G_FILE_TEST_EXISTS));
  g_clear_error (&error);

  /* Allowed, the disk grows: past the base's end, the unlisted bytes are
   * zeros. */
  expected = g_malloc0 (large_size);
  memcpy (expected, fixture->base_disk, BASE_SIZE);
  memcpy (expected + written_page * PAGE, page, PAGE);

  hexz_commit_set_allow_grow (commit, TRUE);
  hexz_commit_set_thin (commit, TRUE);
  hexz_commit_set_block_size (commit, 4096);
  g_assert_true (hexz_commit_run (commit, NULL, &error));
  g_assert_no_error (error);

  output = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  assert_stream_equals (output, HEXZ_STREAM_DISK, expected, large_size);
}

/* No commit replaces a snapshot of its base's chain, thin or thick: a
 * thick output over the base would break every thin snapshot made on it. */
static void
test_commit_over_base (Fixture       *fixture,
                       gconstpointer  user_data)
{
  g_autoptr(GFile) base_file = g_file_new_for_path (fixture->base_path);
  g_autoptr(HexzCommit) commit = hexz_commit_new (fixture->base, base_file);
  g_autofree char *thin_path = g_build_filename (fixture->dir, "thin.hxz", NULL);
  g_autoptr(GFile) thin_file = g_file_new_for_path (thin_path);
  g_autoptr(HexzCommit) thin_commit = hexz_commit_new (fixture->base, thin_file);
  g_autoptr(HexzCommit) child_commit = NULL;
  g_autoptr(HexzSnapshot) thin = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *before = NULL;
  g_autofree char *after = NULL;
  gsize before_length;
  gsize after_length;

  g_file_get_contents (fixture->base_path, &before, &before_length, &error);
  g_assert_no_error (error);

  hexz_commit_set_overlay (commit, fixture->overlay);
  for (int thin_output = TRUE; thin_output >= FALSE; thin_output--)
    {
      hexz_commit_set_thin (commit, thin_output);
      g_assert_false (hexz_commit_run (commit, NULL, &error));
      g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, fixture->base_path));
      g_clear_error (&error);
    }

  /* Nor the parent of a thin base. */
  hexz_commit_set_overlay (thin_commit, fixture->overlay);
  hexz_commit_set_thin (thin_commit, TRUE);
  g_assert_true (hexz_commit_run (thin_commit, NULL, &error));
  g_assert_no_error (error);
  thin = hexz_snapshot_open_path (thin_path, NULL, &error);
  g_assert_no_error (error);
  child_commit = hexz_commit_new (thin, base_file);
  g_assert_false (hexz_commit_run (child_commit, NULL, &error));
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  g_file_get_contents (fixture->base_path, &after, &after_length, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (before, before_length, after, after_length);
}

static void
write_old_output (Fixture *fixture)
{
  g_autoptr(GError) error = NULL;

  g_file_set_contents (fixture->output_path, "old output", -1, &error);
  g_assert_no_error (error);
}

static void
assert_old_output (Fixture *fixture)
{
  g_autofree char *contents = NULL;
  g_autoptr(GError) error = NULL;

  g_file_get_contents (fixture->output_path, &contents, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (contents, ==, "old output");
}

typedef struct {
  GCancellable *cancellable;
  GPtrArray *events;
  GAsyncResult *result;
  gboolean cancel_on_progress;
} AsyncData;

typedef struct {
  HexzStream stream;
  guint64 done;
  guint64 total;
} ProgressEvent;

static void
on_progress (HexzCommit *commit,
             HexzStream  stream,
             guint64     done,
             guint64     total,
             gpointer    user_data)
{
  AsyncData *data = user_data;
  ProgressEvent *event = g_new (ProgressEvent, 1);

  event->stream = stream;
  event->done = done;
  event->total = total;
  g_ptr_array_add (data->events, event);

  if (data->cancel_on_progress)
    g_cancellable_cancel (data->cancellable);
}

static void
on_run_done (GObject      *source_object,
             GAsyncResult *result,
             gpointer      user_data)
{
  AsyncData *data = user_data;

  data->result = g_object_ref (result);
}

static gboolean
run_async (HexzCommit  *commit,
           AsyncData   *data,
           GError     **error)
{
  gboolean ret;

  g_signal_connect (commit, "progress", G_CALLBACK (on_progress), data);
  hexz_commit_run_async (commit, data->cancellable, on_run_done, data);

  while (data->result == NULL)
    g_main_context_iteration (NULL, TRUE);

  ret = hexz_commit_run_finish (commit, data->result, error);
  g_clear_object (&data->result);

  /* Progress queued before the result still arrives; take it in. */
  while (g_main_context_iteration (NULL, FALSE))
    ;

  g_signal_handlers_disconnect_by_data (commit, data);

  return ret;
}

static void
test_commit_cancel_before (Fixture       *fixture,
                           gconstpointer  user_data)
{
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  AsyncData data = { cancellable, events, NULL, FALSE };
  guint n_files;

  g_cancellable_cancel (cancellable);
  g_assert_false (hexz_commit_run (commit, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (g_file_test (fixture->output_path, G_FILE_TEST_EXISTS));
  g_clear_error (&error);

  write_old_output (fixture);
  n_files = count_files (fixture);
  g_assert_false (hexz_commit_run (commit, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  assert_old_output (fixture);
  g_assert_cmpuint (count_files (fixture), ==, n_files);
  g_clear_error (&error);

  g_assert_false (run_async (commit, &data, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  assert_old_output (fixture);
  g_assert_cmpuint (count_files (fixture), ==, n_files);
}

static void
test_commit_cancel_during (Fixture       *fixture,
                           gconstpointer  user_data)
{
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  AsyncData data = { cancellable, events, NULL, TRUE };
  guint n_files;

  write_old_output (fixture);
  n_files = count_files (fixture);

  /* The first progress report, sent when the disk stream starts, cancels
   * the run; 4 KiB blocks and a slow codec keep it from ending first. */
  hexz_commit_set_block_size (commit, 4096);
  hexz_commit_set_codec (commit, HEXZ_CODEC_ZSTD);
  hexz_commit_set_level (commit, 19);

  g_assert_false (run_async (commit, &data, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  assert_old_output (fixture);
  g_assert_cmpuint (count_files (fixture), ==, n_files);
  g_clear_error (&error);

  /* The same commit runs again once the cancellation is over. */
  g_cancellable_reset (cancellable);
  data.cancel_on_progress = FALSE;
  g_assert_true (run_async (commit, &data, &error));
  g_assert_no_error (error);
}

static void
test_commit_progress (Fixture       *fixture,
                      gconstpointer  user_data)
{
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GInputStream) stream = NULL;
  g_autoptr(GError) error = NULL;
  AsyncData data = { NULL, events, NULL, FALSE };
  const ProgressEvent *first;
  const ProgressEvent *last;
  guint64 disk_done = 0;
  gboolean disk_ended = FALSE;
  gboolean memory_ended = FALSE;

  stream = g_memory_input_stream_new_from_data (g_malloc0 (MEMORY_SIZE), MEMORY_SIZE, g_free);
  hexz_commit_set_memory_stream (commit, stream);

  g_assert_true (run_async (commit, &data, &error));
  g_assert_no_error (error);

  g_assert_cmpuint (events->len, >=, 4);
  first = g_ptr_array_index (events, 0);
  g_assert_cmpint (first->stream, ==, HEXZ_STREAM_DISK);
  g_assert_cmpuint (first->done, ==, 0);
  g_assert_cmpuint (first->total, ==, BASE_SIZE);

  for (guint i = 0; i < events->len; i++)
    {
      const ProgressEvent *event = g_ptr_array_index (events, i);

      if (event->stream == HEXZ_STREAM_DISK)
        {
          g_assert_false (disk_ended);
          g_assert_cmpuint (event->done, >=, disk_done);
          disk_done = event->done;
          disk_ended = event->done == BASE_SIZE;
        }
      else
        {
          g_assert_true (disk_ended);
          memory_ended = event->done == MEMORY_SIZE;
          /* The stream's size is unknown until its end. */
          if (event->total != 0)
            g_assert_cmpuint (event->total, ==, event->done);
        }
    }

  last = g_ptr_array_index (events, events->len - 1);
  g_assert_cmpint (last->stream, ==, HEXZ_STREAM_MEMORY);
  g_assert_cmpuint (last->done, ==, MEMORY_SIZE);
  g_assert_cmpuint (last->total, ==, MEMORY_SIZE);
  g_assert_true (memory_ended);
}

/* A page source made of pages in memory, as a live snapshot that captures
 * an overlay without HexzOverlay would pass. */
static gboolean
read_memory_page (gpointer   user_data,
                  guint64    page,
                  guint8    *buffer,
                  GError   **error)
{
  memset (buffer, (int) (page & 0xff), PAGE);

  return TRUE;
}

static void
test_commit_page_source (Fixture       *fixture,
                         gconstpointer  user_data)
{
  static const guint64 pages[] = { 0, 31, 32, 700 };
  g_autoptr(HexzCommit) commit = new_commit (fixture);
  g_autoptr(HexzSnapshot) output = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *expected = g_memdup2 (fixture->base_disk, BASE_SIZE);

  for (gsize i = 0; i < G_N_ELEMENTS (pages); i++)
    memset (expected + pages[i] * PAGE, (int) (pages[i] & 0xff), PAGE);

  hexz_commit_set_page_source (commit,
                               hexz_page_source_new (pages, G_N_ELEMENTS (pages), BASE_SIZE,
                                                     read_memory_page, NULL, NULL, NULL));
  hexz_commit_set_block_size (commit, 128 * 1024);
  g_assert_true (hexz_commit_run (commit, NULL, &error));
  g_assert_no_error (error);

  output = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  assert_stream_equals (output, HEXZ_STREAM_DISK, expected, BASE_SIZE);
}

int
main (int   argc,
      char *argv[])
{
  static const guint block_sizes[] = { 4096, 64 * 1024, 1024 * 1024 };

  g_test_init (&argc, &argv, NULL);

#define ADD(path, data, func) \
  g_test_add (path, Fixture, data, fixture_set_up, func, fixture_tear_down)

  for (gsize i = 0; i < G_N_ELEMENTS (block_sizes); i++)
    {
      g_autofree char *thick = g_strdup_printf ("/commit/merge/thick/%uK", block_sizes[i] / 1024);
      g_autofree char *thin = g_strdup_printf ("/commit/merge/thin/%uK", block_sizes[i] / 1024);

      ADD (thick, GUINT_TO_POINTER (block_sizes[i]), test_commit_merge);
      ADD (thin, GUINT_TO_POINTER (block_sizes[i] | 1), test_commit_merge);
    }

  ADD ("/commit/merge/no-overlay", NULL, test_commit_no_overlay);
  ADD ("/commit/merge/lz4-dictionary/thick", GUINT_TO_POINTER (FALSE), test_commit_lz4_dictionary);
  ADD ("/commit/merge/lz4-dictionary/thin", GUINT_TO_POINTER (TRUE), test_commit_lz4_dictionary);
  ADD ("/commit/merge/page-source", NULL, test_commit_page_source);
  ADD ("/commit/memory/file", NULL, test_commit_memory_file);
  ADD ("/commit/memory/file-missing", NULL, test_commit_memory_file_missing);
  ADD ("/commit/memory/stream", NULL, test_commit_memory_stream);
  ADD ("/commit/memory/stream-short", NULL, test_commit_memory_stream_short);
  ADD ("/commit/overlay/too-large", NULL, test_commit_overlay_too_large);
  ADD ("/commit/overlay/in-use", NULL, test_commit_overlay_in_use);
  ADD ("/commit/output/over-base", NULL, test_commit_over_base);
  ADD ("/commit/cancel/before", NULL, test_commit_cancel_before);
  ADD ("/commit/cancel/during", NULL, test_commit_cancel_during);
  ADD ("/commit/progress", NULL, test_commit_progress);

#undef ADD

  return g_test_run ();
}
