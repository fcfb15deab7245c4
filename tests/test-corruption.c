/* test-corruption.c: damaged snapshot files give clear errors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Each test writes a valid snapshot, damages one part of it and checks
 * that opening, reading or verifying fails with a %HEXZ_SNAPSHOT_ERROR
 * whose message names the file. Some damage is "re-sealed": the test
 * rebuilds every checksum after the change, so that only the range and
 * length checks can find it.
 */

#include "config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lz4.h>
#include <xxhash.h>
#include <zstd.h>

#include "hexz.h"
#include "hexz-format-private.h"
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
  fixture->path = g_build_filename (fixture->dir, "damaged.hxz", NULL);
}

static void
fixture_teardown (Fixture       *fixture,
                  gconstpointer  data)
{
  test_remove_tree (fixture->dir);
  g_free (fixture->dir);
  g_free (fixture->path);
}

/* File helpers */

static GByteArray *
load_file (const char *path)
{
  g_autoptr(GError) error = NULL;
  char *contents;
  gsize length;

  g_assert_true (g_file_get_contents (path, &contents, &length, &error));
  g_assert_no_error (error);

  return g_byte_array_new_take ((guint8 *) contents, length);
}

static void
save_file (const char *path,
           GByteArray *bytes)
{
  /* Written in place, then cut to length: the exhaustive tests save
   * thousands of copies, and both fsync and ext4's flush after truncating
   * a file to zero make that slow. */
  int fd = g_open (path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  gsize done = 0;

  g_assert_cmpint (fd, >=, 0);
  while (done < bytes->len)
    {
      gssize n = pwrite (fd, bytes->data + done, bytes->len - done, done);

      g_assert_cmpint (n, >, 0);
      done += n;
    }
  g_assert_cmpint (ftruncate (fd, bytes->len), ==, 0);
  g_assert_cmpint (close (fd), ==, 0);
}

static void
flip_byte (const char *path,
           guint64     offset)
{
  g_autoptr(GByteArray) bytes = load_file (path);

  g_assert_cmpuint (offset, <, bytes->len);
  bytes->data[offset] ^= 0x5a;
  save_file (path, bytes);
}

static HexzHeader
read_header (const char *path)
{
  g_autoptr(GByteArray) bytes = load_file (path);
  g_autoptr(GError) error = NULL;
  HexzHeader header;

  g_assert_true (hexz_header_decode (bytes->data, bytes->len, path, &header,
                                     &error));
  g_assert_no_error (error);

  return header;
}

static HexzPageDesc
read_page_desc (const char *path,
                HexzStream  stream,
                guint       page)
{
  g_autoptr(GByteArray) bytes = load_file (path);
  HexzHeader header = read_header (path);
  HexzPageDesc desc;
  gboolean reserved_ok;

  g_assert_cmpuint (page, <, header.streams[stream].page_count);
  hexz_page_desc_decode (bytes->data + header.streams[stream].directory.offset +
                         page * HEXZ_PAGE_DESC_SIZE, &desc, &reserved_ok);
  g_assert_true (reserved_ok);

  return desc;
}

static HexzBlockEntry
read_entry (const char *path,
            HexzStream  stream,
            guint64     index)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(HexzSnapshot) snapshot = hexz_snapshot_open_path (path, NULL, &error);
  HexzBlockEntry entry;

  g_assert_no_error (error);
  g_assert_true (hexz_snapshot_get_block_entry (snapshot, stream, index, &entry,
                                                &error));
  g_assert_no_error (error);

  return entry;
}

/* Checks that @error is a snapshot error with @code whose message names
 * the file. */
static void
assert_snapshot_error (const GError *error,
                       int           code,
                       const char   *basename)
{
  g_assert_nonnull (error);
  g_test_message ("Error: %s", error->message);
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, code);
  g_assert_nonnull (strstr (error->message, basename));
}

static void
assert_open_fails (const char *path,
                   int         code)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(HexzSnapshot) snapshot = hexz_snapshot_open_path (path, NULL, &error);
  g_autofree char *basename = g_path_get_basename (path);

  g_assert_null (snapshot);
  assert_snapshot_error (error, code, basename);
}

/* Opens @path, which must succeed, and checks that reading the whole disk
 * stream and verifying fail with @code. */
static void
assert_read_and_verify_fail (const char *path,
                             int         code,
                             const char *message_part)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(HexzSnapshot) snapshot = hexz_snapshot_open_path (path, NULL, &error);
  g_autofree char *basename = g_path_get_basename (path);
  g_autofree guint8 *buffer = NULL;
  guint64 size;

  g_assert_no_error (error);
  size = hexz_snapshot_get_disk_size (snapshot);
  buffer = g_malloc (size);

  g_assert_false (hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, 0, buffer,
                                      size, NULL, &error));
  assert_snapshot_error (error, code, basename);
  if (message_part != NULL)
    g_assert_nonnull (strstr (error->message, message_part));
  g_clear_error (&error);

  g_assert_false (hexz_snapshot_verify (snapshot, NULL, &error));
  assert_snapshot_error (error, code, basename);
}

static void
assert_verify_fails (const char *path,
                     int         code)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(HexzSnapshot) snapshot = hexz_snapshot_open_path (path, NULL, &error);
  g_autofree char *basename = g_path_get_basename (path);

  g_assert_no_error (error);
  g_assert_false (hexz_snapshot_verify (snapshot, NULL, &error));
  assert_snapshot_error (error, code, basename);
}

/* A snapshot of several kinds of blocks: text, zeros, a repeated block,
 * random bytes, and a partial last block; plus a small memory stream. */
static void
write_sample (const char *path,
              HexzCodec   codec,
              gboolean    dictionary)
{
  guint block_size = 4096;
  gsize size = 40 * block_size + 1000;
  g_autofree guint8 *disk = g_malloc0 (size);
  guint8 memory[10000];

  test_fill_text (disk, 20 * block_size, 1);
  memcpy (disk + 25 * block_size, disk + 3 * block_size, block_size);
  test_fill_random (disk + 30 * block_size, 5 * block_size, 2);
  test_fill_text (disk + 40 * block_size, 1000, 3);
  test_fill_text (memory, sizeof memory, 4);

  test_write_snapshot (path, codec, block_size, dictionary, disk, size,
                       memory, sizeof memory);
}

/* Rebuilding files with every checksum sealed again. */

typedef struct {
  HexzHeader  header;
  GByteArray *file;
  GByteArray *data;        /* the data area */
  GArray     *entries[HEXZ_N_STREAMS];
  GBytes     *parent;      /* replaces the parent section when set */
  GBytes     *dictionary;  /* replaces the dictionary when set; empty drops it */
} Image;

static void
image_free (Image *image)
{
  g_byte_array_unref (image->file);
  g_byte_array_unref (image->data);
  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    g_array_unref (image->entries[s]);
  g_clear_pointer (&image->parent, g_bytes_unref);
  g_clear_pointer (&image->dictionary, g_bytes_unref);
  g_free (image);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Image, image_free)

static Image *
image_load (const char *path)
{
  Image *image = g_new0 (Image, 1);

  image->header = read_header (path);
  image->file = load_file (path);
  image->data = g_byte_array_new ();
  g_byte_array_append (image->data, image->file->data + image->header.header_size,
                       image->header.data_end - image->header.header_size);

  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      const HexzStreamDesc *desc = &image->header.streams[s];

      image->entries[s] = g_array_new (FALSE, FALSE, sizeof (HexzBlockEntry));

      for (guint p = 0; p < desc->page_count; p++)
        {
          HexzPageDesc page = read_page_desc (path, s, p);
          gsize length = (gsize) page.entry_count * HEXZ_ENTRY_SIZE;
          g_autofree guint8 *entries = g_malloc (length);

          g_assert_true (hexz_decompress_page (image->file->data + page.offset,
                                               page.length, entries, length));
          for (guint i = 0; i < page.entry_count; i++)
            {
              HexzBlockEntry entry;
              gboolean reserved_ok;

              hexz_block_entry_decode (entries + i * HEXZ_ENTRY_SIZE, &entry,
                                       &reserved_ok);
              g_array_append_val (image->entries[s], entry);
            }
        }
    }

  return image;
}

static void
append_section (GByteArray     *out,
                const guint8   *data,
                gsize           length,
                HexzSectionRef *section)
{
  if (length == 0)
    {
      *section = (HexzSectionRef) { 0 };
      return;
    }

  section->offset = out->len;
  section->length = length;
  section->checksum = hexz_checksum (data, length);
  g_byte_array_append (out, data, length);
}

/* Lays the image out again as doc/format.md describes and seals every
 * checksum. When the data area changed size, the one stream that stores
 * data takes the whole area. */
static void
image_save (Image      *image,
            const char *path)
{
  g_autoptr(GByteArray) out = g_byte_array_new ();
  HexzHeader header = image->header;
  const HexzHeader *old = &image->header;
  GBytes *directories[HEXZ_N_STREAMS] = { NULL, NULL };
  guint8 buffer[HEXZ_HEADER_SIZE] = { 0 };
  guint64 old_data_length = old->data_end - old->header_size;

  g_byte_array_append (out, buffer, HEXZ_HEADER_SIZE);
  g_byte_array_append (out, image->data->data, image->data->len);
  header.data_end = out->len;

  if (image->data->len != old_data_length)
    {
      guint with_data = 0;

      for (guint s = 0; s < HEXZ_N_STREAMS; s++)
        {
          if (header.streams[s].data_length > 0)
            {
              with_data++;
              header.streams[s].data_length = image->data->len;
            }
        }
      g_assert_cmpuint (with_data, ==, 1);
    }

  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      HexzStreamDesc *desc = &header.streams[s];

      if (desc->data_length > 0)
        desc->data_checksum = hexz_checksum (out->data + desc->data_offset,
                                             desc->data_length);
    }

  if (image->dictionary != NULL)
    append_section (out, g_bytes_get_data (image->dictionary, NULL),
                    g_bytes_get_size (image->dictionary), &header.dictionary);
  else
    append_section (out, image->file->data + old->dictionary.offset,
                    old->dictionary.length, &header.dictionary);
  append_section (out, image->file->data + old->metadata.offset,
                  old->metadata.length, &header.metadata);
  if (image->parent != NULL)
    append_section (out, g_bytes_get_data (image->parent, NULL),
                    g_bytes_get_size (image->parent), &header.parent);
  else
    append_section (out, image->file->data + old->parent.offset,
                    old->parent.length, &header.parent);

  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      GArray *entries = image->entries[s];
      guint epp = header.entries_per_page;
      guint n_pages = (entries->len + epp - 1) / epp;
      guint8 *directory = g_malloc0 (MAX (n_pages, 1) * HEXZ_PAGE_DESC_SIZE);

      g_assert_cmpuint (n_pages, ==, header.streams[s].page_count);

      for (guint p = 0; p < n_pages; p++)
        {
          guint count = MIN (epp, entries->len - p * epp);
          g_autofree guint8 *raw = g_malloc0 ((gsize) count * HEXZ_ENTRY_SIZE);
          g_autoptr(GBytes) page = NULL;
          HexzPageDesc desc;

          for (guint i = 0; i < count; i++)
            hexz_block_entry_encode (&g_array_index (entries, HexzBlockEntry, p * epp + i),
                                     raw + i * HEXZ_ENTRY_SIZE);
          page = hexz_compress_page (raw, (gsize) count * HEXZ_ENTRY_SIZE);

          desc.offset = out->len;
          desc.length = g_bytes_get_size (page);
          desc.entry_count = count;
          desc.checksum = hexz_checksum (g_bytes_get_data (page, NULL), desc.length);
          hexz_page_desc_encode (&desc, directory + p * HEXZ_PAGE_DESC_SIZE);
          g_byte_array_append (out, g_bytes_get_data (page, NULL), desc.length);
        }

      directories[s] = g_bytes_new_take (directory, (gsize) n_pages * HEXZ_PAGE_DESC_SIZE);
    }

  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      append_section (out, g_bytes_get_data (directories[s], NULL),
                      g_bytes_get_size (directories[s]),
                      &header.streams[s].directory);
      g_bytes_unref (directories[s]);
    }

  header.file_size = out->len;
  hexz_header_encode (&header, buffer);
  memcpy (out->data, buffer, HEXZ_HEADER_SIZE);

  save_file (path, out);
}

/* The rebuild itself must give a valid file, or the re-sealed tests would
 * prove nothing. */
static void
test_reseal_unchanged (Fixture       *fixture,
                       gconstpointer  data)
{
  g_autoptr(Image) image = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GByteArray) before = NULL;
  g_autoptr(GByteArray) after = NULL;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  before = load_file (fixture->path);
  image = image_load (fixture->path);
  image_save (image, fixture->path);
  after = load_file (fixture->path);

  g_assert_cmpmem (before->data, before->len, after->data, after->len);

  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);
}

/* One flipped byte per part of the file */

static void
test_flip_header (Fixture       *fixture,
                  gconstpointer  data)
{
  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);

  /* The disk stream's logical size. */
  flip_byte (fixture->path, 64 + 2);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT);
}

static void
test_flip_header_reserved (Fixture       *fixture,
                           gconstpointer  data)
{
  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  flip_byte (fixture->path, 300);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT);
}

static void
test_flip_magic (Fixture       *fixture,
                 gconstpointer  data)
{
  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  flip_byte (fixture->path, 3);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_NOT_A_SNAPSHOT);
}

static void
test_future_version (Fixture       *fixture,
                     gconstpointer  data)
{
  g_autoptr(GByteArray) bytes = NULL;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  bytes = load_file (fixture->path);
  hexz_put_u16 (bytes->data + 8, 2);
  /* Sealed again, as a newer writer would. */
  hexz_put_u64 (bytes->data + HEXZ_HEADER_SIZE - 8,
                hexz_checksum (bytes->data, HEXZ_HEADER_SIZE - 8));
  save_file (fixture->path, bytes);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_UNSUPPORTED_VERSION);
}

/* A damaged byte of the major version fails the header checksum: it is
 * corruption, not a newer format. */
static void
test_flip_version (Fixture       *fixture,
                   gconstpointer  data)
{
  guint offset = GPOINTER_TO_UINT (data);
  g_autoptr(GError) error = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  flip_byte (fixture->path, offset);
  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  g_assert_null (snapshot);
  assert_snapshot_error (error, HEXZ_SNAPSHOT_ERROR_CORRUPT, "damaged.hxz");
  g_assert_nonnull (strstr (error->message, "fails its checksum"));
  g_assert_null (strstr (error->message, "Use a newer version"));
}

static void
test_flip_index_page (Fixture       *fixture,
                      gconstpointer  data)
{
  HexzPageDesc page;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  page = read_page_desc (fixture->path, HEXZ_STREAM_DISK, 0);
  flip_byte (fixture->path, page.offset + page.length / 2);
  assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT,
                               "index page 0");
}

static void
test_flip_directory (Fixture       *fixture,
                     gconstpointer  data)
{
  HexzHeader header;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  header = read_header (fixture->path);
  flip_byte (fixture->path, header.streams[HEXZ_STREAM_MEMORY].directory.offset + 9);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT);
}

static void
test_flip_block (Fixture       *fixture,
                 gconstpointer  data)
{
  HexzCodec codec = GPOINTER_TO_INT (data);
  HexzBlockEntry entry;
  g_autofree char *where = NULL;

  write_sample (fixture->path, codec, FALSE);

  /* Block 30 is random and so always stored raw; block 2 is text and
   * compressed unless the codec is raw. */
  entry = read_entry (fixture->path, HEXZ_STREAM_DISK, 2);
  g_assert_cmpuint (entry.codec, ==, codec == HEXZ_CODEC_RAW ? HEXZ_STORED_RAW
                                     : codec == HEXZ_CODEC_LZ4 ? HEXZ_STORED_LZ4
                                     : HEXZ_STORED_ZSTD);
  flip_byte (fixture->path, entry.stored_offset + entry.stored_length / 2);

  where = g_strdup_printf ("disk block 2 at offset %" G_GUINT64_FORMAT,
                           entry.stored_offset);
  assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT, where);
}

/* A damaged block shared by deduplication fails in both streams. */
static void
test_flip_shared_block (Fixture       *fixture,
                        gconstpointer  data)
{
  HexzBlockEntry first, second;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  first = read_entry (fixture->path, HEXZ_STREAM_DISK, 3);
  second = read_entry (fixture->path, HEXZ_STREAM_DISK, 25);
  g_assert_cmpuint (first.stored_offset, ==, second.stored_offset);

  flip_byte (fixture->path, first.stored_offset);
  assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT,
                               "disk block 3");
}

static void
test_flip_dictionary (Fixture       *fixture,
                      gconstpointer  data)
{
  HexzHeader header;

  write_sample (fixture->path, HEXZ_CODEC_ZSTD, TEST_KEEP_DICTIONARY);
  header = read_header (fixture->path);
  g_assert_cmpuint (header.dictionary.length, >, 0);
  flip_byte (fixture->path, header.dictionary.offset + header.dictionary.length / 3);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT);
}

static void
test_flip_metadata (Fixture       *fixture,
                    gconstpointer  data)
{
  HexzHeader header;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  header = read_header (fixture->path);
  flip_byte (fixture->path, header.metadata.offset + 1);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT);
}

static void
write_thin_pair (const char *parent_path,
                 const char *child_path)
{
  guint8 disk[3 * 4096];
  g_autoptr(HexzSnapshot) parent = NULL;
  g_autoptr(HexzSnapshotWriter) writer = NULL;
  g_autoptr(GError) error = NULL;

  test_fill_text (disk, sizeof disk, 5);
  test_write_snapshot (parent_path, HEXZ_CODEC_LZ4, 4096, FALSE, disk,
                       sizeof disk, NULL, 0);
  parent = hexz_snapshot_open_path (parent_path, NULL, &error);
  g_assert_no_error (error);

  /* Child: a changed block, a parent block, a zero block, a repeated
   * block, and a memory stream. */
  writer = hexz_snapshot_writer_new_for_path (child_path);
  hexz_snapshot_writer_set_parent (writer, parent);
  hexz_snapshot_writer_set_block_size (writer, 4096);
  test_fill_text (disk, 4096, 6);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, disk, 4096, NULL, &error));
  g_assert_true (hexz_snapshot_writer_write_parent (writer, 4096, NULL, &error));
  g_assert_true (hexz_snapshot_writer_write_zeros (writer, 4096, NULL, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, disk, 1000, NULL, &error));
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_MEMORY, 0, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, disk + 1000, 2000, NULL, &error));
  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);
}

static void
test_flip_parent_section (Fixture       *fixture,
                          gconstpointer  data)
{
  g_autofree char *parent_path = g_build_filename (fixture->dir, "parent.hxz", NULL);
  HexzHeader header;

  write_thin_pair (parent_path, fixture->path);
  header = read_header (fixture->path);
  g_assert_cmpuint (header.parent.length, >, 0);
  flip_byte (fixture->path, header.parent.offset + header.parent.length - 2);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT);
}

/* A damaged parent makes opening the child fail too, naming the parent. */
static void
test_flip_in_parent (Fixture       *fixture,
                     gconstpointer  data)
{
  g_autofree char *parent_path = g_build_filename (fixture->dir, "parent.hxz", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  HexzHeader header;

  write_thin_pair (parent_path, fixture->path);
  header = read_header (parent_path);
  flip_byte (parent_path, header.metadata.offset);

  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  g_assert_null (snapshot);
  assert_snapshot_error (error, HEXZ_SNAPSHOT_ERROR_CORRUPT, "parent.hxz");
}

/* Writes a thin snapshot at @path over @parent_path that changes the
 * first of three blocks and takes the others from its parent. */
static void
write_thin_over (const char *parent_path,
                 const char *path,
                 guint       seed)
{
  guint8 disk[4096];
  g_autoptr(HexzSnapshot) parent = NULL;
  g_autoptr(HexzSnapshotWriter) writer = NULL;
  g_autoptr(GError) error = NULL;

  parent = hexz_snapshot_open_path (parent_path, NULL, &error);
  g_assert_no_error (error);

  writer = hexz_snapshot_writer_new_for_path (path);
  hexz_snapshot_writer_set_parent (writer, parent);
  hexz_snapshot_writer_set_block_size (writer, 4096);
  test_fill_text (disk, sizeof disk, seed);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, 0, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, disk, sizeof disk, NULL, &error));
  g_assert_true (hexz_snapshot_writer_write_parent (writer, 2 * 4096, NULL, &error));
  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);
}

static void
on_chain_progress (HexzSnapshot *snapshot,
                   guint64       done,
                   guint64       total,
                   gpointer      user_data)
{
  guint64 *last = user_data;

  g_assert_cmpuint (done, <=, total);
  last[0] = done;
  last[1] = total;
}

/* A chain of @data files whose base has a damaged stored block: opening
 * and reading the child's own blocks work, but verifying the child checks
 * the whole chain and names the base. */
static void
test_flip_in_chain (Fixture       *fixture,
                    gconstpointer  data)
{
  guint depth = GPOINTER_TO_UINT (data);
  g_autofree char *base_path = g_build_filename (fixture->dir, "base.hxz", NULL);
  g_autofree char *middle_path = g_build_filename (fixture->dir, "middle.hxz", NULL);
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  guint8 disk[3 * 4096];
  guint64 progress[2] = { 0, 0 };
  HexzBlockEntry entry;

  test_fill_text (disk, sizeof disk, 5);
  test_write_snapshot (base_path, HEXZ_CODEC_LZ4, 4096, FALSE, disk,
                       sizeof disk, NULL, 0);
  if (depth == 3)
    {
      write_thin_over (base_path, middle_path, 6);
      write_thin_over (middle_path, fixture->path, 7);
    }
  else
    write_thin_over (base_path, fixture->path, 7);

  /* The intact chain verifies, and the progress covers every file. */
  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  g_assert_no_error (error);
  g_signal_connect (snapshot, "progress", G_CALLBACK (on_chain_progress), progress);
  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (progress[1], ==, depth * sizeof disk);
  g_assert_cmpuint (progress[0], ==, progress[1]);
  g_clear_object (&snapshot);

  /* Block 2 of the base is the one the chain reads through. */
  entry = read_entry (base_path, HEXZ_STREAM_DISK, 2);
  g_assert_cmpuint (entry.kind, ==, HEXZ_BLOCK_DATA);
  flip_byte (base_path, entry.stored_offset + entry.stored_length / 2);

  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  g_assert_no_error (error);
  g_assert_false (hexz_snapshot_verify (snapshot, NULL, &error));
  assert_snapshot_error (error, HEXZ_SNAPSHOT_ERROR_CORRUPT, "base.hxz");
  g_assert_nonnull (strstr (error->message, "disk block 2"));
  g_assert_null (strstr (error->message, "damaged.hxz"));
}

/* A parent path naming a FIFO fails at once instead of waiting for a
 * writer; the alarm ends the test if open() blocks. */
static void
test_parent_is_fifo (Fixture       *fixture,
                     gconstpointer  data)
{
  g_autofree char *parent_path = g_build_filename (fixture->dir, "parent.hxz", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;

  write_thin_pair (parent_path, fixture->path);
  g_assert_cmpint (g_remove (parent_path), ==, 0);
  g_assert_cmpint (mkfifo (parent_path, 0600), ==, 0);

  alarm (20);
  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  alarm (0);
  g_assert_null (snapshot);
  assert_snapshot_error (error, HEXZ_SNAPSHOT_ERROR_PARENT_MISMATCH, "parent.hxz");
}

/* Truncation and appended bytes */

static void
truncate_file (const char *path,
               guint64     length)
{
  g_autoptr(GByteArray) bytes = load_file (path);

  g_assert_cmpuint (length, <, bytes->len);
  g_byte_array_set_size (bytes, length);
  save_file (path, bytes);
}

static void
test_truncate_one (Fixture       *fixture,
                   gconstpointer  data)
{
  write_sample (fixture->path, HEXZ_CODEC_ZSTD, FALSE);
  truncate_file (fixture->path, test_file_size (fixture->path) - 1);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_TRUNCATED);
}

static void
test_truncate_hundred (Fixture       *fixture,
                       gconstpointer  data)
{
  write_sample (fixture->path, HEXZ_CODEC_ZSTD, FALSE);
  truncate_file (fixture->path, test_file_size (fixture->path) - 100);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_TRUNCATED);
}

static void
test_truncate_block_boundary (Fixture       *fixture,
                              gconstpointer  data)
{
  HexzBlockEntry entry;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  entry = read_entry (fixture->path, HEXZ_STREAM_DISK, 5);
  truncate_file (fixture->path, entry.stored_offset + entry.stored_length);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_TRUNCATED);
}

static void
test_truncate_header (Fixture       *fixture,
                      gconstpointer  data)
{
  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  truncate_file (fixture->path, 200);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_TRUNCATED);

  truncate_file (fixture->path, 0);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_NOT_A_SNAPSHOT);
}

static void
test_trailing_garbage (Fixture       *fixture,
                       gconstpointer  data)
{
  g_autoptr(GByteArray) bytes = NULL;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  bytes = load_file (fixture->path);
  g_byte_array_append (bytes, (const guint8 *) "x", 1);
  save_file (fixture->path, bytes);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT);
}

/* Re-sealed damage: only range and length checks can find it */

static void
test_entry_past_end (Fixture       *fixture,
                     gconstpointer  data)
{
  g_autoptr(Image) image = NULL;
  HexzBlockEntry *entry;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  image = image_load (fixture->path);
  entry = &g_array_index (image->entries[HEXZ_STREAM_DISK], HexzBlockEntry, 7);
  g_assert_cmpuint (entry->kind, ==, HEXZ_BLOCK_DATA);
  entry->stored_offset = image->file->len + 4096;
  image_save (image, fixture->path);

  assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT,
                               "disk block 7");
}

static void
test_entry_into_sections (Fixture       *fixture,
                          gconstpointer  data)
{
  g_autoptr(Image) image = NULL;
  HexzBlockEntry *entry;

  /* Points at the metadata: inside the file, but past the data area. */
  write_sample (fixture->path, HEXZ_CODEC_RAW, FALSE);
  image = image_load (fixture->path);
  entry = &g_array_index (image->entries[HEXZ_STREAM_DISK], HexzBlockEntry, 30);
  g_assert_cmpuint (entry->codec, ==, HEXZ_STORED_RAW);
  entry->stored_offset = image->header.data_end - 10;
  image_save (image, fixture->path);

  assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT,
                               "disk block 30");
}

/* A raw block moved by one byte, with a checksum matching its new bytes:
 * reads return those bytes, but verify finds the overlap. */
static void
test_entry_overlap (Fixture       *fixture,
                    gconstpointer  data)
{
  g_autoptr(Image) image = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  HexzBlockEntry *entry;
  const HexzBlockEntry *previous;
  guint64 offset;

  write_sample (fixture->path, HEXZ_CODEC_RAW, FALSE);
  image = image_load (fixture->path);
  previous = &g_array_index (image->entries[HEXZ_STREAM_DISK], HexzBlockEntry, 30);
  entry = &g_array_index (image->entries[HEXZ_STREAM_DISK], HexzBlockEntry, 31);
  g_assert_cmpuint (previous->codec, ==, HEXZ_STORED_RAW);
  g_assert_cmpuint (entry->codec, ==, HEXZ_STORED_RAW);
  entry->stored_offset = previous->stored_offset + 1;
  offset = entry->stored_offset - image->header.header_size;
  entry->checksum = hexz_checksum (image->data->data + offset, entry->stored_length);
  image_save (image, fixture->path);

  assert_verify_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT);

  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  g_assert_no_error (error);
  g_assert_false (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_nonnull (strstr (error->message, "disk block 31"));
}

static void
test_entry_wrong_length (Fixture       *fixture,
                         gconstpointer  data)
{
  g_autoptr(Image) image = NULL;
  HexzBlockEntry *entry;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  image = image_load (fixture->path);
  entry = &g_array_index (image->entries[HEXZ_STREAM_DISK], HexzBlockEntry, 4);
  entry->logical_length -= 1;
  image_save (image, fixture->path);

  assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT,
                               "disk block 4");
}

static void
test_entry_parent_without_parent (Fixture       *fixture,
                                  gconstpointer  data)
{
  g_autoptr(Image) image = NULL;
  HexzBlockEntry *entry;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  image = image_load (fixture->path);
  entry = &g_array_index (image->entries[HEXZ_STREAM_DISK], HexzBlockEntry, 22);
  g_assert_cmpuint (entry->kind, ==, HEXZ_BLOCK_ZERO);
  entry->kind = HEXZ_BLOCK_PARENT;
  image_save (image, fixture->path);

  assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT,
                               "disk block 22");
}

static GBytes *
make_parent_section (const guint8 id[16],
                     const char  *path)
{
  gsize length = strlen (path);
  guint8 *section = g_malloc0 (HEXZ_PARENT_FIXED_SIZE + length);

  memcpy (section, id, 16);
  hexz_put_u32 (section + 24, length);
  memcpy (section + HEXZ_PARENT_FIXED_SIZE, path, length);

  return g_bytes_new_take (section, HEXZ_PARENT_FIXED_SIZE + length);
}

/* Two snapshots that name each other as parent. */
static void
test_parent_cycle (Fixture       *fixture,
                   gconstpointer  data)
{
  g_autofree char *other = g_build_filename (fixture->dir, "other.hxz", NULL);
  guint8 disk[4096] = { 1 };
  HexzHeader header, other_header;

  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, 4096, FALSE, disk,
                       sizeof disk, NULL, 0);
  test_write_snapshot (other, HEXZ_CODEC_LZ4, 4096, FALSE, disk, sizeof disk,
                       NULL, 0);
  header = read_header (fixture->path);
  other_header = read_header (other);

  {
    g_autoptr(Image) image = image_load (fixture->path);

    image->parent = make_parent_section (other_header.id, "other.hxz");
    image_save (image, fixture->path);
  }

  {
    g_autoptr(Image) image = image_load (other);

    image->parent = make_parent_section (header.id, "damaged.hxz");
    image_save (image, other);
  }

  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT);
}

static void
test_flip_dictionary_lz4 (Fixture       *fixture,
                          gconstpointer  data)
{
  HexzHeader header;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, TEST_KEEP_DICTIONARY);
  header = read_header (fixture->path);
  g_assert_cmpuint (header.minor, ==, 1);
  g_assert_cmpuint (header.dictionary.length, >, 0);

  /* In the last 64 KiB, the part that LZ4 uses. */
  flip_byte (fixture->path, header.dictionary.offset + header.dictionary.length - 100);
  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT);
}

/* Blocks of codec 4 in a file whose dictionary section was dropped. */
static void
test_lz4_dictionary_missing (Fixture       *fixture,
                             gconstpointer  data)
{
  g_autoptr(Image) image = NULL;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, TEST_KEEP_DICTIONARY);
  image = image_load (fixture->path);
  g_assert_cmpuint (read_entry (fixture->path, HEXZ_STREAM_DISK, 2).codec, ==,
                    HEXZ_STORED_LZ4_DICT);
  image->dictionary = g_bytes_new (NULL, 0);
  image_save (image, fixture->path);

  assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT,
                               "index entry of disk block 0");
}

/* Another valid dictionary, sealed again: the blocks decode to other
 * bytes or not at all, and their checksums catch it. */
static void
test_lz4_dictionary_replaced (Fixture       *fixture,
                              gconstpointer  data)
{
  g_autoptr(Image) image = NULL;
  guint8 other[4096];

  write_sample (fixture->path, HEXZ_CODEC_LZ4, TEST_KEEP_DICTIONARY);
  image = image_load (fixture->path);
  test_fill_text (other, sizeof other, 99);
  image->dictionary = g_bytes_new (other, sizeof other);
  image_save (image, fixture->path);

  assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT, "disk block 0");
}

/* Codec 4 needs format 1.1, so in a 1.0 file it is invalid. */
static void
test_lz4_dictionary_old_version (Fixture       *fixture,
                                 gconstpointer  data)
{
  g_autoptr(Image) image = NULL;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, TEST_KEEP_DICTIONARY);
  image = image_load (fixture->path);
  image->header.minor = 0;
  image_save (image, fixture->path);

  assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT,
                               "index entry of disk block 0");
}

/* A codec this reader does not know: a newer minor version means the file
 * needs a newer reader, a known one that the file is damaged. */
static void
test_unknown_codec (Fixture       *fixture,
                    gconstpointer  data)
{
  guint16 minor = GPOINTER_TO_UINT (data);
  g_autoptr(Image) image = NULL;
  HexzBlockEntry *entry;

  write_sample (fixture->path, HEXZ_CODEC_LZ4, FALSE);
  image = image_load (fixture->path);
  entry = &g_array_index (image->entries[HEXZ_STREAM_DISK], HexzBlockEntry, 2);
  g_assert_cmpuint (entry->codec, ==, HEXZ_STORED_LZ4);
  entry->codec = HEXZ_STORED_LAST + 1;
  image->header.minor = minor;
  image_save (image, fixture->path);

  if (minor > HEXZ_FORMAT_MINOR)
    assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_UNSUPPORTED_VERSION,
                                 "Use a newer version of hexz");
  else
    assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT,
                                 "index entry of disk block 2");
}

/* A parent changed and sealed again keeps its id, but not its seal. */
static void
test_modified_parent (Fixture       *fixture,
                      gconstpointer  data)
{
  g_autofree char *parent_path = g_build_filename (fixture->dir, "parent.hxz", NULL);
  g_autoptr(Image) image = NULL;
  g_autoptr(HexzSnapshot) parent = NULL;
  g_autoptr(GError) error = NULL;
  HexzBlockEntry *entry;
  guint64 offset;

  write_thin_pair (parent_path, fixture->path);

  image = image_load (parent_path);
  entry = &g_array_index (image->entries[HEXZ_STREAM_DISK], HexzBlockEntry, 1);
  g_assert_cmpuint (entry->kind, ==, HEXZ_BLOCK_DATA);
  g_assert_cmpuint (entry->codec, ==, HEXZ_STORED_LZ4);

  /* Re-encode block 1 with other content of the same stored length. */
  offset = entry->stored_offset - image->header.header_size;
  {
    guint8 logical[4096];
    int n;

    g_assert_true (LZ4_decompress_safe ((const char *) image->data->data + offset,
                                        (char *) logical, entry->stored_length,
                                        sizeof logical) == sizeof logical);
    /* The last five bytes of an LZ4 block are always literals. */
    image->data->data[offset + entry->stored_length - 1] ^= 1;
    n = LZ4_decompress_safe ((const char *) image->data->data + offset,
                             (char *) logical, entry->stored_length,
                             sizeof logical);
    g_assert_cmpint (n, ==, sizeof logical);
    entry->checksum = hexz_checksum (logical, sizeof logical);
  }
  image_save (image, parent_path);

  /* The parent alone is valid. */
  parent = hexz_snapshot_open_path (parent_path, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (hexz_snapshot_verify (parent, NULL, &error));
  g_assert_no_error (error);

  assert_open_fails (fixture->path, HEXZ_SNAPSHOT_ERROR_PARENT_MISMATCH);
}

/* Replaces the single stored block of a one-block file with @stored and
 * re-seals the file. */
static void
replace_only_block (const char   *path,
                    const guint8 *stored,
                    gsize         length,
                    guint8        codec)
{
  g_autoptr(Image) image = image_load (path);
  HexzBlockEntry *entry;

  g_assert_cmpuint (image->entries[HEXZ_STREAM_DISK]->len, ==, 1);
  g_assert_cmpuint (image->entries[HEXZ_STREAM_MEMORY]->len, ==, 0);

  g_byte_array_set_size (image->data, 0);
  g_byte_array_append (image->data, stored, length);

  entry = &g_array_index (image->entries[HEXZ_STREAM_DISK], HexzBlockEntry, 0);
  entry->codec = codec;
  entry->stored_length = length;
  image_save (image, path);
}

/* Writes a one-block snapshot, then replaces the stored block with one
 * that decodes to one byte fewer or more than the entry's logical length. */
static void
test_decompress_length (Fixture       *fixture,
                        gconstpointer  data)
{
  int delta = GPOINTER_TO_INT (data) > 0 ? 1 : -1;
  gboolean zstd = ABS (GPOINTER_TO_INT (data)) == 2;
  guint8 block[4096 + 1];
  guint8 stored[8192];
  gsize length;

  test_fill_text (block, sizeof block, 7);
  test_write_snapshot (fixture->path, zstd ? HEXZ_CODEC_ZSTD : HEXZ_CODEC_LZ4,
                       4096, FALSE, block, 4096, NULL, 0);

  if (zstd)
    length = ZSTD_compress (stored, sizeof stored, block, 4096 + delta, 3);
  else
    length = LZ4_compress_default ((const char *) block, (char *) stored,
                                   4096 + delta, sizeof stored);
  g_assert_cmpuint (length, >, 0);
  g_assert_cmpuint (length, <, 4096);

  replace_only_block (fixture->path, stored, length,
                      zstd ? HEXZ_STORED_ZSTD : HEXZ_STORED_LZ4);

  assert_read_and_verify_fail (fixture->path, HEXZ_SNAPSHOT_ERROR_CORRUPT,
                               "does not decompress");
}

/* Every byte of a small file */

static void
write_small_thin_child (Fixture *fixture)
{
  g_autofree char *parent_path = g_build_filename (fixture->dir, "parent.hxz", NULL);

  write_thin_pair (parent_path, fixture->path);
  g_test_message ("Small file: %" G_GUINT64_FORMAT " bytes",
                  test_file_size (fixture->path));
}

/* A file under 8 KiB whose blocks use codec 4: a small LZ4 snapshot whose
 * data blocks are compressed again with a 1500-byte dictionary of text,
 * which zstd takes as a raw content dictionary. */
static void
write_small_lz4_dictionary_file (Fixture *fixture)
{
  guint8 disk[2 * 4096 + 1000];
  guint8 dictionary_bytes[1500];
  g_autoptr(GBytes) dictionary = NULL;
  g_autoptr(HexzCompressDictionary) compress = NULL;
  g_autoptr(Image) image = NULL;
  g_autoptr(GByteArray) data = g_byte_array_new ();
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  HexzBlockStats stats;
  guint64 offset = 0;

  test_fill_text (disk, sizeof disk, 21);
  test_fill_text (dictionary_bytes, sizeof dictionary_bytes, 22);
  test_write_snapshot (fixture->path, HEXZ_CODEC_LZ4, 4096, FALSE, disk, sizeof disk,
                       NULL, 0);

  dictionary = g_bytes_new (dictionary_bytes, sizeof dictionary_bytes);
  compress = hexz_compress_dictionary_new (dictionary, HEXZ_CODEC_LZ4, 0);
  image = image_load (fixture->path);

  /* The blocks differ, so none is shared and each is stored once, in
   * order. */
  for (guint i = 0; i < image->entries[HEXZ_STREAM_DISK]->len; i++)
    {
      HexzBlockEntry *entry = &g_array_index (image->entries[HEXZ_STREAM_DISK],
                                              HexzBlockEntry, i);
      guint8 stored[8192];
      HexzStoredCodec codec;
      gsize length;

      g_assert_cmpuint (entry->kind, ==, HEXZ_BLOCK_DATA);
      length = hexz_compress_block (HEXZ_CODEC_LZ4, 0, compress,
                                    disk + (gsize) i * 4096, entry->logical_length,
                                    stored, sizeof stored, &codec);
      g_assert_cmpuint (length, >, 0);
      g_assert_cmpuint (codec, ==, HEXZ_STORED_LZ4_DICT);

      entry->codec = codec;
      entry->stored_offset = image->header.header_size + offset;
      entry->stored_length = length;
      g_byte_array_append (data, stored, length);
      offset += length;
    }

  g_byte_array_set_size (image->data, 0);
  g_byte_array_append (image->data, data->data, data->len);
  image->dictionary = g_bytes_ref (dictionary);
  image->header.minor = 1;
  image_save (image, fixture->path);

  snapshot = hexz_snapshot_open_path (fixture->path, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (hexz_snapshot_verify (snapshot, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_snapshot_get_block_stats (snapshot, HEXZ_STREAM_DISK, &stats, NULL,
                                                &error));
  g_assert_no_error (error);
  g_assert_cmpuint (stats.dictionary_blocks, ==, 3);
  g_test_message ("Small file with codec 4: %" G_GUINT64_FORMAT " bytes",
                  test_file_size (fixture->path));
}

typedef struct {
  guint8   mask;
  gboolean lz4_dictionary;
} ExhaustiveCase;

static void
write_small_file (Fixture              *fixture,
                  const ExhaustiveCase *test_case)
{
  if (test_case->lz4_dictionary)
    write_small_lz4_dictionary_file (fixture);
  else
    write_small_thin_child (fixture);
}

/* Opens and verifies @path; returns the error, which must exist. */
static GError *
open_and_verify_error (const char *path)
{
  g_autoptr(HexzSnapshot) snapshot = NULL;
  GError *error = NULL;

  snapshot = hexz_snapshot_open_path (path, NULL, &error);
  if (snapshot != NULL)
    hexz_snapshot_verify (snapshot, NULL, &error);

  return error;
}

static void
test_exhaustive_flip (Fixture       *fixture,
                      gconstpointer  data)
{
  const ExhaustiveCase *test_case = data;
  guint8 mask = test_case->mask;
  g_autoptr(GByteArray) original = NULL;
  g_autofree char *copy = g_build_filename (fixture->dir, "copy.hxz", NULL);

  write_small_file (fixture, test_case);
  original = load_file (fixture->path);
  g_assert_cmpuint (original->len, <, 8192);

  /* The untouched file is valid. */
  {
    g_autoptr(GError) error = NULL;

    save_file (copy, original);
    error = open_and_verify_error (copy);
    g_assert_no_error (error);
  }

  for (guint i = 0; i < original->len; i++)
    {
      g_autoptr(GError) error = NULL;

      original->data[i] ^= mask;
      save_file (copy, original);
      original->data[i] ^= mask;

      error = open_and_verify_error (copy);
      if (error == NULL)
        g_error ("Changing byte %u of %u went unnoticed", i, original->len);
      g_assert_true (error->domain == HEXZ_SNAPSHOT_ERROR);
      g_assert_nonnull (strstr (error->message, "copy.hxz"));
    }
}

static void
test_exhaustive_delete (Fixture       *fixture,
                        gconstpointer  data)
{
  g_autoptr(GByteArray) original = NULL;
  g_autofree char *copy = g_build_filename (fixture->dir, "copy.hxz", NULL);

  write_small_file (fixture, data);
  original = load_file (fixture->path);

  for (guint i = 0; i < original->len; i++)
    {
      g_autoptr(GByteArray) shorter = g_byte_array_new ();
      g_autoptr(GError) error = NULL;

      g_byte_array_append (shorter, original->data, i);
      g_byte_array_append (shorter, original->data + i + 1, original->len - i - 1);
      save_file (copy, shorter);

      error = open_and_verify_error (copy);
      if (error == NULL)
        g_error ("Deleting byte %u of %u went unnoticed", i, original->len);
      g_assert_true (error->domain == HEXZ_SNAPSHOT_ERROR);
    }
}

#define ADD(path, func, data) \
  g_test_add (path, Fixture, data, fixture_setup, func, fixture_teardown)

int
main (int   argc,
      char *argv[])
{
  static const ExhaustiveCase flip_all_bits = { 0xff, FALSE };
  static const ExhaustiveCase flip_low_bit = { 0x01, FALSE };
  static const ExhaustiveCase delete_byte = { 0, FALSE };
  static const ExhaustiveCase lz4_flip_all_bits = { 0xff, TRUE };
  static const ExhaustiveCase lz4_flip_low_bit = { 0x01, TRUE };
  static const ExhaustiveCase lz4_delete_byte = { 0, TRUE };

  g_test_init (&argc, &argv, NULL);

  ADD ("/corruption/reseal-unchanged", test_reseal_unchanged, NULL);
  ADD ("/corruption/flip/header", test_flip_header, NULL);
  ADD ("/corruption/flip/header-reserved", test_flip_header_reserved, NULL);
  ADD ("/corruption/flip/magic", test_flip_magic, NULL);
  ADD ("/corruption/future-version", test_future_version, NULL);
  ADD ("/corruption/flip/version/major-low", test_flip_version, GUINT_TO_POINTER (8));
  ADD ("/corruption/flip/version/major-high", test_flip_version, GUINT_TO_POINTER (9));
  ADD ("/corruption/flip/index-page", test_flip_index_page, NULL);
  ADD ("/corruption/flip/directory", test_flip_directory, NULL);
  ADD ("/corruption/flip/block/raw", test_flip_block, GINT_TO_POINTER (HEXZ_CODEC_RAW));
  ADD ("/corruption/flip/block/lz4", test_flip_block, GINT_TO_POINTER (HEXZ_CODEC_LZ4));
  ADD ("/corruption/flip/block/zstd", test_flip_block, GINT_TO_POINTER (HEXZ_CODEC_ZSTD));
  ADD ("/corruption/flip/shared-block", test_flip_shared_block, NULL);
  ADD ("/corruption/flip/dictionary", test_flip_dictionary, NULL);
  ADD ("/corruption/flip/dictionary/lz4", test_flip_dictionary_lz4, NULL);
  ADD ("/corruption/resealed/lz4-dictionary-missing", test_lz4_dictionary_missing, NULL);
  ADD ("/corruption/resealed/lz4-dictionary-replaced", test_lz4_dictionary_replaced, NULL);
  ADD ("/corruption/resealed/lz4-dictionary-in-1.0", test_lz4_dictionary_old_version, NULL);
  ADD ("/corruption/resealed/unknown-codec/known-version", test_unknown_codec,
       GUINT_TO_POINTER (HEXZ_FORMAT_MINOR));
  ADD ("/corruption/resealed/unknown-codec/newer-version", test_unknown_codec,
       GUINT_TO_POINTER (HEXZ_FORMAT_MINOR + 1));
  ADD ("/corruption/flip/metadata", test_flip_metadata, NULL);
  ADD ("/corruption/flip/parent-section", test_flip_parent_section, NULL);
  ADD ("/corruption/flip/in-parent", test_flip_in_parent, NULL);
  ADD ("/corruption/verify-chain/depth-2", test_flip_in_chain, GUINT_TO_POINTER (2));
  ADD ("/corruption/verify-chain/depth-3", test_flip_in_chain, GUINT_TO_POINTER (3));
  ADD ("/corruption/parent-is-fifo", test_parent_is_fifo, NULL);
  ADD ("/corruption/truncate/one-byte", test_truncate_one, NULL);
  ADD ("/corruption/truncate/hundred-bytes", test_truncate_hundred, NULL);
  ADD ("/corruption/truncate/block-boundary", test_truncate_block_boundary, NULL);
  ADD ("/corruption/truncate/header", test_truncate_header, NULL);
  ADD ("/corruption/trailing-garbage", test_trailing_garbage, NULL);
  ADD ("/corruption/resealed/entry-past-end", test_entry_past_end, NULL);
  ADD ("/corruption/resealed/entry-into-sections", test_entry_into_sections, NULL);
  ADD ("/corruption/resealed/entry-overlap", test_entry_overlap, NULL);
  ADD ("/corruption/resealed/entry-wrong-length", test_entry_wrong_length, NULL);
  ADD ("/corruption/resealed/parent-without-parent", test_entry_parent_without_parent, NULL);
  ADD ("/corruption/resealed/parent-cycle", test_parent_cycle, NULL);
  ADD ("/corruption/resealed/modified-parent", test_modified_parent, NULL);
  ADD ("/corruption/resealed/lz4-one-byte-short", test_decompress_length, GINT_TO_POINTER (-1));
  ADD ("/corruption/resealed/lz4-one-byte-long", test_decompress_length, GINT_TO_POINTER (1));
  ADD ("/corruption/resealed/zstd-one-byte-short", test_decompress_length, GINT_TO_POINTER (-2));
  ADD ("/corruption/resealed/zstd-one-byte-long", test_decompress_length, GINT_TO_POINTER (2));
  ADD ("/corruption/exhaustive/flip-all-bits", test_exhaustive_flip, &flip_all_bits);
  ADD ("/corruption/exhaustive/flip-low-bit", test_exhaustive_flip, &flip_low_bit);
  ADD ("/corruption/exhaustive/delete", test_exhaustive_delete, &delete_byte);
  ADD ("/corruption/exhaustive/lz4-dictionary/flip-all-bits", test_exhaustive_flip,
       &lz4_flip_all_bits);
  ADD ("/corruption/exhaustive/lz4-dictionary/flip-low-bit", test_exhaustive_flip,
       &lz4_flip_low_bit);
  ADD ("/corruption/exhaustive/lz4-dictionary/delete", test_exhaustive_delete,
       &lz4_delete_byte);

  return g_test_run ();
}
