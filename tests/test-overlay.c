/* test-overlay.c: tests for HexzOverlay
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include <hexz.h>

#define DISK_SIZE (64 * 1024 * 1024)
#define PAGE HEXZ_OVERLAY_PAGE_SIZE

typedef struct {
  char *dir;
  char *overlay_path;
  char *meta_path;
} Fixture;

static void
fixture_set_up (Fixture       *fixture,
                gconstpointer  user_data)
{
  g_autoptr(GError) error = NULL;

  fixture->dir = g_dir_make_tmp ("hexz-test-overlay-XXXXXX", &error);
  g_assert_no_error (error);
  fixture->overlay_path = g_build_filename (fixture->dir, "vm.overlay", NULL);
  fixture->meta_path = g_build_filename (fixture->dir, "vm.meta", NULL);
}

static void
fixture_tear_down (Fixture       *fixture,
                   gconstpointer  user_data)
{
  g_unlink (fixture->overlay_path);
  g_unlink (fixture->meta_path);
  g_assert_cmpint (g_rmdir (fixture->dir), ==, 0);

  g_free (fixture->dir);
  g_free (fixture->overlay_path);
  g_free (fixture->meta_path);
}

/* Writes a sparse overlay file of @file_size bytes with a copy of the 4 KiB
 * @contents at every page in @data_pages. */
static void
write_overlay_file (const char    *path,
                    guint64        file_size,
                    const guint64 *data_pages,
                    gsize          n_data_pages,
                    const guint8  *contents)
{
  int fd = g_open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, file_size), ==, 0);

  for (gsize i = 0; i < n_data_pages; i++)
    g_assert_cmpint (pwrite (fd, contents, PAGE, data_pages[i] * PAGE), ==, PAGE);

  g_assert_cmpint (close (fd), ==, 0);
}

static void
write_meta_file (const char    *path,
                 const guint64 *entries,
                 gsize          n_entries)
{
  g_autofree guint64 *le = g_new (guint64, n_entries + 1);
  g_autoptr(GError) error = NULL;

  for (gsize i = 0; i < n_entries; i++)
    le[i] = GUINT64_TO_LE (entries[i]);

  g_file_set_contents (path, (const char *) le, n_entries * sizeof (guint64), &error);
  g_assert_no_error (error);
}

static void
fill_pattern (guint8 *buffer,
              gsize   length,
              guint8  seed)
{
  for (gsize i = 0; i < length; i++)
    buffer[i] = (guint8) (seed + i * 7 + i / 251);
}

static void
test_overlay_read_pages (Fixture       *fixture,
                         gconstpointer  user_data)
{
  static const guint64 data_pages[] = { 5, 7 };
  static const guint64 meta[] = { 9, 5 };
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint64 *pages = NULL;
  g_autoptr(GBytes) bytes = NULL;
  guint8 expected[PAGE];
  guint8 zeros[PAGE] = { 0 };
  guint8 page[PAGE];
  gsize n_pages = 0;

  /* Page 5 contains data, page 9 is a hole the guest zeroed, page 7 contains
   * data that the .meta file does not list. */
  fill_pattern (expected, sizeof expected, 0x5a);
  write_overlay_file (fixture->overlay_path, DISK_SIZE, data_pages,
                      G_N_ELEMENTS (data_pages), expected);
  write_meta_file (fixture->meta_path, meta, G_N_ELEMENTS (meta));

  overlay = hexz_overlay_open_path (fixture->overlay_path, DISK_SIZE, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (overlay);

  g_assert_cmpuint (hexz_overlay_get_disk_size (overlay), ==, DISK_SIZE);
  g_assert_cmpuint (hexz_overlay_get_n_modified (overlay), ==, 2);
  g_assert_cmpuint (hexz_overlay_get_data_size (overlay), ==, 2 * PAGE);
  g_assert_false (hexz_overlay_is_writable (overlay));

  pages = hexz_overlay_dup_modified_pages (overlay, &n_pages);
  g_assert_cmpuint (n_pages, ==, 2);
  g_assert_cmpuint (pages[0], ==, 5);
  g_assert_cmpuint (pages[1], ==, 9);

  g_assert_true (hexz_overlay_is_modified (overlay, 5));
  g_assert_true (hexz_overlay_is_modified (overlay, 9));
  g_assert_false (hexz_overlay_is_modified (overlay, 7));
  g_assert_false (hexz_overlay_is_modified (overlay, 0));

  g_assert_true (hexz_overlay_read_page (overlay, 5, page, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (page, PAGE, expected, PAGE);

  memset (page, 0xff, sizeof page);
  g_assert_true (hexz_overlay_read_page (overlay, 9, page, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (page, PAGE, zeros, PAGE);

  bytes = hexz_overlay_read_page_bytes (overlay, 5, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes), expected, PAGE);
}

static void
test_overlay_meta_duplicates (Fixture       *fixture,
                              gconstpointer  user_data)
{
  static const guint64 meta[] = { 9, 5, 9, 5, 5, 2 };
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint64 *pages = NULL;
  gsize n_pages = 0;

  write_overlay_file (fixture->overlay_path, DISK_SIZE, NULL, 0, NULL);
  write_meta_file (fixture->meta_path, meta, G_N_ELEMENTS (meta));

  overlay = hexz_overlay_open_path (fixture->overlay_path, DISK_SIZE, NULL, &error);
  g_assert_no_error (error);

  pages = hexz_overlay_dup_modified_pages (overlay, &n_pages);
  g_assert_cmpuint (n_pages, ==, 3);
  g_assert_cmpuint (pages[0], ==, 2);
  g_assert_cmpuint (pages[1], ==, 5);
  g_assert_cmpuint (pages[2], ==, 9);
  g_assert_cmpuint (hexz_overlay_get_n_modified (overlay), ==, 3);
}

static void
test_overlay_meta_bad_length (Fixture       *fixture,
                              gconstpointer  user_data)
{
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(GError) error = NULL;
  const char twelve_bytes[12] = { 5, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0 };

  write_overlay_file (fixture->overlay_path, DISK_SIZE, NULL, 0, NULL);
  g_file_set_contents (fixture->meta_path, twelve_bytes, sizeof twelve_bytes, &error);
  g_assert_no_error (error);

  overlay = hexz_overlay_open_path (fixture->overlay_path, DISK_SIZE, NULL, &error);
  g_assert_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_INVALID_META);
  g_assert_null (overlay);
  g_test_message ("Error: %s", error->message);
  g_assert_nonnull (strstr (error->message, fixture->meta_path));
  g_assert_nonnull (strstr (error->message, "12 bytes"));
}

static void
test_overlay_meta_out_of_range (Fixture       *fixture,
                                gconstpointer  user_data)
{
  /* 64 MiB is 16384 pages, numbered 0 to 16383. */
  static const guint64 meta[] = { 5, 16383, 16384 };
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(GError) error = NULL;

  write_overlay_file (fixture->overlay_path, DISK_SIZE, NULL, 0, NULL);
  write_meta_file (fixture->meta_path, meta, G_N_ELEMENTS (meta));

  overlay = hexz_overlay_open_path (fixture->overlay_path, DISK_SIZE, NULL, &error);
  g_assert_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_OUT_OF_RANGE);
  g_assert_null (overlay);
  g_test_message ("Error: %s", error->message);
  g_assert_nonnull (strstr (error->message, fixture->meta_path));
  g_assert_nonnull (strstr (error->message, "entry 2"));
  g_assert_nonnull (strstr (error->message, "page 16384"));
}

static void
test_overlay_meta_past_file_end (Fixture       *fixture,
                                 gconstpointer  user_data)
{
  static const guint64 meta[] = { 1, 10 };
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(GError) error = NULL;

  /* The disk is 64 MiB but the overlay file stops after page 7. */
  write_overlay_file (fixture->overlay_path, 8 * PAGE, NULL, 0, NULL);
  write_meta_file (fixture->meta_path, meta, G_N_ELEMENTS (meta));

  overlay = hexz_overlay_open_path (fixture->overlay_path, DISK_SIZE, NULL, &error);
  g_assert_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_TRUNCATED);
  g_assert_null (overlay);
  g_test_message ("Error: %s", error->message);
  g_assert_nonnull (strstr (error->message, fixture->overlay_path));
  g_assert_nonnull (strstr (error->message, "entry 1"));
  g_assert_nonnull (strstr (error->message, "page 10"));
}

static void
test_overlay_meta_missing (Fixture       *fixture,
                           gconstpointer  user_data)
{
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(GError) error = NULL;

  write_overlay_file (fixture->overlay_path, DISK_SIZE, NULL, 0, NULL);

  overlay = hexz_overlay_open_path (fixture->overlay_path, DISK_SIZE, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_null (overlay);
  g_assert_nonnull (strstr (error->message, fixture->meta_path));
}

static void
test_overlay_open_missing (Fixture       *fixture,
                           gconstpointer  user_data)
{
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(GError) error = NULL;

  overlay = hexz_overlay_open_path (fixture->overlay_path, DISK_SIZE, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_null (overlay);
  g_assert_nonnull (strstr (error->message, fixture->overlay_path));
}

static void
test_overlay_open_file_size (Fixture       *fixture,
                             gconstpointer  user_data)
{
  static const guint64 meta[] = { 3 };
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(GError) error = NULL;
  guint8 page[PAGE];
  guint8 expected[PAGE] = { 0 };

  /* A disk of 4 pages and 100 bytes: page 4 is short. */
  write_overlay_file (fixture->overlay_path, 4 * PAGE + 100, NULL, 0, NULL);
  write_meta_file (fixture->meta_path, meta, G_N_ELEMENTS (meta));

  overlay = hexz_overlay_open_path (fixture->overlay_path, 0, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (hexz_overlay_get_disk_size (overlay), ==, 4 * PAGE + 100);

  memset (page, 0xff, sizeof page);
  g_assert_true (hexz_overlay_read_page (overlay, 4, page, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (page, PAGE, expected, PAGE);

  g_assert_false (hexz_overlay_read_page (overlay, 5, page, &error));
  g_assert_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_OUT_OF_RANGE);
}

static void
test_overlay_create (Fixture       *fixture,
                     gconstpointer  user_data)
{
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(HexzOverlay) reopened = NULL;
  g_autoptr(HexzOverlay) again = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint64 *pages = NULL;
  g_autofree guint8 *data = NULL;
  guint8 page[PAGE];
  gsize n_pages = 0;
  GStatBuf st;

  overlay = hexz_overlay_create_path (fixture->overlay_path, DISK_SIZE,
                                      HEXZ_OVERLAY_CREATE_NONE, &error);
  g_assert_no_error (error);
  g_assert_true (hexz_overlay_is_writable (overlay));
  g_assert_cmpuint (hexz_overlay_get_n_modified (overlay), ==, 0);

  g_assert_cmpint (g_stat (fixture->overlay_path, &st), ==, 0);
  g_assert_cmpuint (st.st_size, ==, DISK_SIZE);
  g_assert_cmpuint (st.st_mode & 0777, ==, 0600);
  g_assert_cmpint (g_stat (fixture->meta_path, &st), ==, 0);
  g_assert_cmpuint (st.st_size, ==, 0);
  g_assert_cmpuint (st.st_mode & 0777, ==, 0600);

  /* Bytes 100 to 8291 touch pages 0, 1 and 2; a second write into page 2
   * and a mark of pages 2 and 3 add page 3 only. */
  data = g_malloc (2 * PAGE);
  fill_pattern (data, 2 * PAGE, 0x11);
  g_assert_true (hexz_overlay_write (overlay, 100, data, 2 * PAGE, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_overlay_write (overlay, 2 * PAGE + 10, data, 10, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_overlay_mark_pages (overlay, 2, 2, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (hexz_overlay_get_n_modified (overlay), ==, 4);
  g_assert_true (hexz_overlay_sync (overlay, &error));
  g_assert_no_error (error);

  g_assert_cmpint (g_stat (fixture->meta_path, &st), ==, 0);
  g_assert_cmpuint (st.st_size, ==, 4 * sizeof (guint64));

  g_assert_false (hexz_overlay_write (overlay, DISK_SIZE - 10, data, 11, &error));
  g_assert_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_OUT_OF_RANGE);
  g_clear_error (&error);

  reopened = hexz_overlay_open_path (fixture->overlay_path, DISK_SIZE, NULL, &error);
  g_assert_no_error (error);
  pages = hexz_overlay_dup_modified_pages (reopened, &n_pages);
  g_assert_cmpuint (n_pages, ==, 4);
  for (gsize i = 0; i < n_pages; i++)
    g_assert_cmpuint (pages[i], ==, i);

  g_assert_true (hexz_overlay_read_page (reopened, 1, page, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (page, PAGE, data + PAGE - 100, PAGE);

  g_assert_false (hexz_overlay_write (reopened, 0, data, 1, &error));
  g_assert_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_READ_ONLY);
  g_clear_error (&error);

  /* An existing overlay is kept unless replacing is asked for. */
  again = hexz_overlay_create_path (fixture->overlay_path, DISK_SIZE,
                                    HEXZ_OVERLAY_CREATE_NONE, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS);
  g_assert_null (again);
  g_clear_error (&error);
  g_assert_cmpint (g_stat (fixture->meta_path, &st), ==, 0);
  g_assert_cmpuint (st.st_size, ==, 4 * sizeof (guint64));

  again = hexz_overlay_create_path (fixture->overlay_path, DISK_SIZE,
                                    HEXZ_OVERLAY_CREATE_REPLACE, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (hexz_overlay_get_n_modified (again), ==, 0);
  g_assert_cmpint (g_stat (fixture->meta_path, &st), ==, 0);
  g_assert_cmpuint (st.st_size, ==, 0);
}

static void
test_overlay_meta_path (void)
{
  static const struct {
    const char *overlay;
    const char *meta;
  } cases[] = {
    { "vm.overlay", "vm.meta" },
    { "disk.img.ovl", "disk.img.meta" },
    { "overlay", "overlay.meta" },
    { ".overlay", ".overlay.meta" },
    { "/var/lib/vm.d/overlay", "/var/lib/vm.d/overlay.meta" },
    { "/var/lib/vm.d/vm.overlay", "/var/lib/vm.d/vm.meta" },
    { "dir/.hidden.ovl", "dir/.hidden.meta" },
    { "vm.", "vm.meta" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *meta = hexz_overlay_get_meta_path_for (cases[i].overlay);
      g_autoptr(GFile) overlay_file = g_file_new_for_path (cases[i].overlay);
      g_autoptr(GFile) meta_file = hexz_overlay_get_meta_file_for (overlay_file);
      g_autoptr(GFile) expected_file = g_file_new_for_path (cases[i].meta);

      g_assert_cmpstr (meta, ==, cases[i].meta);
      g_assert_true (g_file_equal (meta_file, expected_file));
    }
}

static void
test_overlay_meta_name_clash (Fixture       *fixture,
                              gconstpointer  user_data)
{
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(GError) error = NULL;

  /* "vm.meta" would be its own metadata file. */
  overlay = hexz_overlay_open_path (fixture->meta_path, DISK_SIZE, NULL, &error);
  g_assert_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_INVALID_NAME);
  g_assert_null (overlay);
}

typedef struct {
  HexzOverlay *overlay;
  guint first_page;
} WriterData;

static gpointer
writer_thread (gpointer user_data)
{
  WriterData *data = user_data;
  guint8 page[PAGE];

  for (guint i = 0; i < 64; i++)
    {
      g_autoptr(GError) error = NULL;
      guint64 number = data->first_page + i * 4;

      fill_pattern (page, sizeof page, (guint8) number);
      g_assert_true (hexz_overlay_write (data->overlay, number * PAGE, page, PAGE, &error));
      g_assert_no_error (error);
    }

  return NULL;
}

static void
test_overlay_threads_write (Fixture       *fixture,
                            gconstpointer  user_data)
{
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(HexzOverlay) reopened = NULL;
  g_autoptr(GError) error = NULL;
  WriterData data[4];
  GThread *threads[4];
  guint8 page[PAGE];
  guint8 expected[PAGE];

  overlay = hexz_overlay_create_path (fixture->overlay_path, DISK_SIZE,
                                      HEXZ_OVERLAY_CREATE_NONE, &error);
  g_assert_no_error (error);

  for (guint t = 0; t < G_N_ELEMENTS (threads); t++)
    {
      data[t].overlay = overlay;
      data[t].first_page = t;
      threads[t] = g_thread_new ("overlay-writer", writer_thread, &data[t]);
    }
  for (guint t = 0; t < G_N_ELEMENTS (threads); t++)
    g_thread_join (threads[t]);

  g_assert_cmpuint (hexz_overlay_get_n_modified (overlay), ==, 256);

  reopened = hexz_overlay_open_path (fixture->overlay_path, DISK_SIZE, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (hexz_overlay_get_n_modified (reopened), ==, 256);

  for (guint64 number = 0; number < 256; number++)
    {
      g_assert_true (hexz_overlay_read_page (reopened, number, page, &error));
      g_assert_no_error (error);
      fill_pattern (expected, sizeof expected, (guint8) number);
      g_assert_cmpmem (page, PAGE, expected, PAGE);
    }
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) \
  g_test_add (path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)

  ADD ("/overlay/read/pages", test_overlay_read_pages);
  ADD ("/overlay/read/file-size", test_overlay_open_file_size);
  ADD ("/overlay/meta/duplicates", test_overlay_meta_duplicates);
  ADD ("/overlay/meta/bad-length", test_overlay_meta_bad_length);
  ADD ("/overlay/meta/out-of-range", test_overlay_meta_out_of_range);
  ADD ("/overlay/meta/past-file-end", test_overlay_meta_past_file_end);
  ADD ("/overlay/meta/missing", test_overlay_meta_missing);
  ADD ("/overlay/meta/name-clash", test_overlay_meta_name_clash);
  ADD ("/overlay/open/missing", test_overlay_open_missing);
  ADD ("/overlay/create/write", test_overlay_create);
  ADD ("/overlay/create/threads", test_overlay_threads_write);
  g_test_add_func ("/overlay/meta-path", test_overlay_meta_path);

#undef ADD

  return g_test_run ();
}
