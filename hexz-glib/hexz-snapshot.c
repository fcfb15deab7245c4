/* hexz-snapshot.c: reading and verifying snapshot files
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/**
 * HexzSnapshot:
 *
 * A snapshot file opened for reading: its disk and memory streams, its
 * metadata and, for a thin snapshot, its parent.
 *
 * Opening reads and checks the header, the index directories, the
 * metadata, the dictionary and the parent chain. Index pages and blocks
 * are read, checked and cached when first needed. No value read from the
 * file is trusted: every offset and length is checked against the file
 * before it is used, every block must decode to exactly its length and
 * match its checksum. A damaged file gives a %HEXZ_SNAPSHOT_ERROR error
 * that names the file, the stream, the block and the file offset.
 *
 * Reading is thread-safe: several threads may call
 * [method@Hexz.Snapshot.read] at once.
 *
 * ```c
 * g_autoptr(HexzSnapshot) snapshot = hexz_snapshot_open_path ("vm.hxz", NULL, error);
 * guint8 buffer[4096];
 *
 * if (snapshot == NULL ||
 *     !hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, 0, buffer,
 *                          sizeof buffer, NULL, error))
 *   return FALSE;
 * ```
 *
 * Since: 1.0
 */

#include "config.h"

#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "hexz-snapshot.h"
#include "hexz-enum-types.h"
#include "hexz-format-private.h"
#include "hexz-i18n-private.h"
#include "hexz-util-private.h"
#include "hexz-snapshot-private.h"

/* Decoded index pages kept in memory at once: 256 pages of 4096 entries
 * are 32 MiB and describe 64 GiB of stream at 64 KiB blocks. */
#define MAX_LOADED_PAGES    256
/* Decoded blocks kept for reads smaller than a block. */
#define BLOCK_CACHE_SLOTS   16
#define PROGRESS_BYTES      (64 * 1024 * 1024)
#define PROGRESS_INTERVAL   (100 * G_TIME_SPAN_MILLISECOND)

typedef struct {
  HexzStreamDesc  desc;
  guint64         n_blocks;
  HexzPageDesc   *pages;
  guint8        **loaded;   /* decoded entries per page, or NULL */
} ReaderStream;

typedef struct {
  GBytes  *data;
  guint64  index;
  guint    stream;
} CachedBlock;

typedef struct {
  guint    stream;
  guint32  page;
} LoadedPage;

struct _HexzSnapshot
{
  GObject       parent_instance;

  GFile        *file;
  char         *name;
  int           fd;
  HexzHeader    header;
  char         *id_string;
  ReaderStream  streams[HEXZ_N_STREAMS];
  HexzDecodeDictionary *dictionary;
  JsonObject   *metadata;

  HexzSnapshot *parent;
  char         *parent_path;
  char         *parent_id_string;

  /* Guards the loaded pages and the block cache. */
  GMutex        lock;
  LoadedPage    loaded_ring[MAX_LOADED_PAGES];
  guint         n_loaded;
  guint         next_eviction;
  CachedBlock   cache[BLOCK_CACHE_SLOTS];
  guint         next_cache_slot;

  /* Blocks decoded so far, for tests of the cache. Accessed atomically. */
  gint          n_blocks_decoded;
};

enum {
  PROP_0,
  PROP_FILE,
  PROP_ID,
  PROP_BLOCK_SIZE,
  PROP_DISK_SIZE,
  PROP_MEMORY_SIZE,
  PROP_PARENT_PATH,
  PROP_PARENT_ID,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum {
  PROGRESS,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (HexzSnapshot, hexz_snapshot, G_TYPE_OBJECT)

/* Errors */

static gboolean
set_corrupt (HexzSnapshot  *self,
             GError       **error,
             const char    *detail)
{
  hexz_set_corrupt_error (error, HEXZ_SNAPSHOT_ERROR_CORRUPT, self->name,
                          detail);
  return FALSE;
}

G_GNUC_PRINTF (3, 4)
static gboolean
set_corrupt_printf (HexzSnapshot  *self,
                    GError       **error,
                    const char    *format,
                    ...)
{
  g_autofree char *detail = NULL;
  va_list args;

  va_start (args, format);
  detail = g_strdup_vprintf (format, args);
  va_end (args);

  return set_corrupt (self, error, detail);
}

static gboolean
set_too_large (HexzSnapshot  *self,
               GError       **error,
               const char    *what,
               guint64        size,
               guint64        limit)
{
  g_set_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_TOO_LARGE,
               /* Translators: the first %s is a file name, the second
                * names a part of the file such as “metadata”; then come
                * two byte counts. */
               _("Snapshot “%s” cannot be read: its %s take %"
                 PRIu64 " bytes, more than the %" PRIu64
                 " bytes this program accepts."),
               self->name, what, size, limit);
  return FALSE;
}

/* File access */

static gboolean
read_exact (HexzSnapshot  *self,
            guint8        *data,
            gsize          length,
            guint64        offset,
            GError       **error)
{
  guint64 start = offset;

  while (length > 0)
    {
      gssize n = pread (self->fd, data, length, offset);

      if (n < 0 && errno == EINTR)
        continue;

      if (n < 0)
        {
          int saved_errno = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       /* Translators: the first %s is a file name, then
                        * comes a byte offset and the system's reason. */
                       _("Reading snapshot “%s” at offset %" PRIu64
                         " failed: %s"),
                       self->name, start, g_strerror (saved_errno));
          return FALSE;
        }

      if (n == 0)
        {
          g_autofree char *detail =
            /* Translators: %s is a byte offset. */
            g_strdup_printf (_("the file ends before offset %" PRIu64),
                             offset + length);

          hexz_set_corrupt_error (error, HEXZ_SNAPSHOT_ERROR_TRUNCATED,
                                  self->name, detail);
          return FALSE;
        }

      data += n;
      length -= n;
      offset += n;
    }

  return TRUE;
}

/* Reads a section whose place and size were checked against the file, and
 * checks its checksum. */
static guint8 *
read_section (HexzSnapshot          *self,
              const HexzSectionRef  *section,
              const char            *what,
              GError               **error)
{
  g_autofree guint8 *data = g_malloc (MAX (section->length, 1));

  if (!read_exact (self, data, section->length, section->offset, error))
    return NULL;

  if (hexz_checksum (data, section->length) != section->checksum)
    {
      set_corrupt_printf (self, error,
                          /* Translators: the first %s names a part of the
                           * file such as “the metadata”, then comes an
                           * offset. */
                          _("%s at offset %" PRIu64 " fail their "
                            "checksum"),
                          what, section->offset);
      return NULL;
    }

  return g_steal_pointer (&data);
}

/* Layout */

static gboolean
range_inside (guint64 offset,
              guint64 length,
              guint64 limit)
{
  return length <= limit && offset <= limit - length;
}

static gboolean
section_is_empty (const HexzSectionRef *section)
{
  return section->offset == 0 && section->length == 0 && section->checksum == 0;
}

/* Checks that an optional section is absent or lies at @cursor, and moves
 * the cursor past it. */
static gboolean
check_section (HexzSnapshot          *self,
               const HexzSectionRef  *section,
               gboolean               required,
               guint64                min_length,
               guint64                max_length,
               const char            *what,
               guint64               *cursor,
               GError               **error)
{
  if (section->length == 0)
    {
      if (!section_is_empty (section) || required)
        return set_corrupt_printf (self, error,
                                   /* Translators: %s names a part of the
                                    * file such as “the metadata”. */
                                   _("the header's reference to %s is "
                                     "invalid"), what);
      return TRUE;
    }

  if (section->length > max_length)
    return set_too_large (self, error, what, section->length, max_length);

  if (section->length < min_length || section->offset != *cursor ||
      !range_inside (section->offset, section->length, self->header.file_size))
    return set_corrupt_printf (self, error,
                               /* Translators: %s names a part of the file
                                * such as “the metadata”. */
                               _("the header's reference to %s is invalid"),
                               what);

  *cursor += section->length;

  return TRUE;
}

static gboolean
check_stream_desc (HexzSnapshot  *self,
                   guint          s,
                   GError       **error)
{
  ReaderStream *stream = &self->streams[s];
  const HexzStreamDesc *desc = &stream->desc;
  guint64 pages;

  if ((desc->flags & HEXZ_STREAM_FLAG_PRESENT) == 0)
    {
      if (desc->logical_size != 0 || desc->page_count != 0 ||
          !section_is_empty (&desc->directory) || desc->data_offset != 0 ||
          desc->data_length != 0)
        return set_corrupt_printf (self, error,
                                   /* Translators: %s is disk or memory. */
                                   _("the header describes the absent %s "
                                     "stream"),
                                   hexz_stream_to_string (s));
      return TRUE;
    }

  if (desc->logical_size > HEXZ_MAX_STREAM_SIZE)
    return set_too_large (self, error, hexz_stream_to_string (s),
                          desc->logical_size, HEXZ_MAX_STREAM_SIZE);

  stream->n_blocks = hexz_block_count (desc->logical_size,
                                       self->header.block_size);
  pages = stream->n_blocks / self->header.entries_per_page +
          (stream->n_blocks % self->header.entries_per_page != 0);

  if (desc->page_count != pages ||
      desc->directory.length != pages * HEXZ_PAGE_DESC_SIZE ||
      (desc->data_length == 0 &&
       (desc->data_offset != 0 || desc->data_checksum != 0)) ||
      (pages == 0 && !section_is_empty (&desc->directory)))
    return set_corrupt_printf (self, error,
                               /* Translators: %s is disk or memory. */
                               _("the header's description of the %s stream "
                                 "is inconsistent"),
                               hexz_stream_to_string (s));

  if (desc->directory.length > HEXZ_MAX_DIRECTORY_SIZE)
    return set_too_large (self, error, _("index directory"),
                          desc->directory.length, HEXZ_MAX_DIRECTORY_SIZE);

  return TRUE;
}

/* Checks that the stream data ranges tile the data area. */
static gboolean
check_data_ranges (HexzSnapshot  *self,
                   GError       **error)
{
  const HexzStreamDesc *disk = &self->streams[HEXZ_STREAM_DISK].desc;
  const HexzStreamDesc *memory = &self->streams[HEXZ_STREAM_MEMORY].desc;
  const HexzStreamDesc *first = disk;
  const HexzStreamDesc *second = memory;
  guint64 cursor = self->header.header_size;

  if (self->header.data_end < self->header.header_size ||
      self->header.data_end > self->header.file_size)
    return set_corrupt (self, error, _("the end of the data area is invalid"));

  if (memory->data_length > 0 &&
      (disk->data_length == 0 || memory->data_offset < disk->data_offset))
    {
      first = memory;
      second = disk;
    }

  for (const HexzStreamDesc *d = first; d != NULL; d = d == first ? second : NULL)
    {
      if (d->data_length == 0)
        continue;

      if (d->data_offset != cursor ||
          !range_inside (d->data_offset, d->data_length, self->header.data_end))
        return set_corrupt (self, error,
                            _("the streams' data ranges do not fill the data "
                              "area"));
      cursor += d->data_length;
    }

  if (cursor != self->header.data_end)
    return set_corrupt (self, error,
                        _("the streams' data ranges do not fill the data area"));

  return TRUE;
}

static gboolean
load_directory (HexzSnapshot  *self,
                guint          s,
                guint64       *page_cursor,
                GError       **error)
{
  ReaderStream *stream = &self->streams[s];
  g_autofree guint8 *directory = NULL;
  const char *stream_name = hexz_stream_to_string (s);

  if (stream->desc.page_count == 0)
    return TRUE;

  directory = read_section (self, &stream->desc.directory,
                            /* Translators: this completes “%s at offset %s
                             * fail their checksum”. */
                            s == HEXZ_STREAM_DISK
                            ? _("the index directory entries of the disk stream")
                            : _("the index directory entries of the memory stream"),
                            error);
  if (directory == NULL)
    return FALSE;

  stream->pages = g_new0 (HexzPageDesc, stream->desc.page_count);
  stream->loaded = g_new0 (guint8 *, stream->desc.page_count);

  for (guint32 i = 0; i < stream->desc.page_count; i++)
    {
      HexzPageDesc *page = &stream->pages[i];
      gboolean reserved_ok;
      guint64 expected_entries;

      hexz_page_desc_decode (directory + (gsize) i * HEXZ_PAGE_DESC_SIZE, page,
                             &reserved_ok);

      expected_entries = MIN (self->header.entries_per_page,
                              stream->n_blocks -
                              (guint64) i * self->header.entries_per_page);

      if (!reserved_ok || page->entry_count != expected_entries ||
          page->length == 0 || page->length > HEXZ_MAX_PAGE_SIZE ||
          page->offset != *page_cursor)
        return set_corrupt_printf (self, error,
                                   /* Translators: %s is disk or memory, %u a
                                    * page number. */
                                   _("the index directory of the %s stream "
                                     "describes page %u wrongly"),
                                   stream_name, i);

      *page_cursor += page->length;
    }

  return TRUE;
}

static gboolean
load_dictionary (HexzSnapshot  *self,
                 GError       **error)
{
  g_autoptr(GBytes) bytes = NULL;
  guint8 *data;

  if (self->header.dictionary.length == 0)
    return TRUE;

  data = read_section (self, &self->header.dictionary,
                       /* Translators: this completes “%s at offset %s fail
                        * their checksum”. */
                       _("the bytes of the compression dictionary"), error);
  if (data == NULL)
    return FALSE;

  bytes = g_bytes_new_take (data, self->header.dictionary.length);
  self->dictionary = hexz_decode_dictionary_new (bytes);
  if (self->dictionary == NULL)
    return set_corrupt (self, error, _("the compression dictionary is invalid"));

  return TRUE;
}

static gboolean
load_metadata (HexzSnapshot  *self,
               GError       **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autofree guint8 *data = NULL;
  g_autoptr(GError) local_error = NULL;
  JsonNode *root;

  data = read_section (self, &self->header.metadata,
                       /* Translators: this completes “%s at offset %s fail
                        * their checksum”. */
                       _("the metadata"), error);
  if (data == NULL)
    return FALSE;

  if (!g_utf8_validate ((const char *) data, self->header.metadata.length, NULL) ||
      !json_parser_load_from_data (parser, (const char *) data,
                                   self->header.metadata.length, &local_error) ||
      (root = json_parser_get_root (parser)) == NULL ||
      !JSON_NODE_HOLDS_OBJECT (root))
    return set_corrupt (self, error,
                        _("the metadata is not a valid JSON object"));

  self->metadata = json_object_ref (json_node_get_object (root));

  return TRUE;
}

static HexzSnapshot *open_snapshot (GFile         *file,
                                    guint          depth,
                                    GPtrArray     *chain_ids,
                                    gboolean       open_parents,
                                    GCancellable  *cancellable,
                                    GError       **error);

static gboolean
load_parent (HexzSnapshot  *self,
             guint          depth,
             GPtrArray     *chain_ids,
             gboolean       open_parents,
             GCancellable  *cancellable,
             GError       **error)
{
  g_autofree guint8 *section = NULL;
  g_autoptr(GFile) folder = NULL;
  g_autoptr(GFile) parent_file = NULL;
  g_autoptr(GError) local_error = NULL;
  g_autofree char *parent_name = NULL;
  guint8 parent_id[16];
  guint64 parent_seal;
  guint32 path_length;

  if (self->header.parent.length == 0)
    return TRUE;

  section = read_section (self, &self->header.parent,
                          /* Translators: this completes “%s at offset %s
                           * fail their checksum”. */
                          _("the parent reference"), error);
  if (section == NULL)
    return FALSE;

  memcpy (parent_id, section, 16);
  parent_seal = hexz_get_u64 (section + 16);
  path_length = hexz_get_u32 (section + 24);

  if (hexz_get_u32 (section + 28) != 0 ||
      HEXZ_PARENT_FIXED_SIZE + (guint64) path_length != self->header.parent.length ||
      memchr (section + HEXZ_PARENT_FIXED_SIZE, '\0', path_length) != NULL)
    return set_corrupt (self, error, _("the parent reference is invalid"));

  self->parent_path = g_strndup ((const char *) section + HEXZ_PARENT_FIXED_SIZE,
                                 path_length);
  self->parent_id_string = hexz_id_to_string (parent_id);
  if (!open_parents)
    return TRUE;

  for (guint i = 0; i < chain_ids->len; i++)
    {
      if (memcmp (g_ptr_array_index (chain_ids, i), parent_id, 16) == 0)
        return set_corrupt (self, error,
                            _("its chain of parents loops back to itself"));
    }

  if (depth + 1 >= HEXZ_MAX_CHAIN_DEPTH)
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_TOO_LARGE,
                   /* Translators: %s is a file name, %u a count. */
                   _("Snapshot “%s” cannot be read: its chain of parents "
                     "is longer than %u snapshots. Commit the chain into "
                     "fewer snapshots."),
                   self->name, HEXZ_MAX_CHAIN_DEPTH);
      return FALSE;
    }

  folder = g_file_get_parent (self->file);
  parent_file = g_file_resolve_relative_path (folder, self->parent_path);
  parent_name = g_file_get_parse_name (parent_file);

  self->parent = open_snapshot (parent_file, depth + 1, chain_ids, TRUE, cancellable,
                                &local_error);
  if (self->parent == NULL)
    {
      if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
        {
          g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                       HEXZ_SNAPSHOT_ERROR_PARENT_MISSING,
                       /* Translators: the first %s is a file name, the
                        * second the file name of its parent. */
                       _("The parent of snapshot “%s” is missing: no file "
                         "at “%s”. Put the parent snapshot back at that "
                         "path."),
                       self->name, parent_name);
          return FALSE;
        }

      if (g_error_matches (local_error, HEXZ_SNAPSHOT_ERROR,
                           HEXZ_SNAPSHOT_ERROR_NOT_A_SNAPSHOT))
        {
          g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                       HEXZ_SNAPSHOT_ERROR_PARENT_MISMATCH,
                       /* Translators: the first %s is a file name, the
                        * second the file name of its parent. */
                       _("The parent of snapshot “%s” was replaced: “%s” "
                         "is not a snapshot file. Put the original parent "
                         "back at that path."),
                       self->name, parent_name);
          return FALSE;
        }

      /* The error names the parent that failed; name the snapshot the
       * caller opened too, once, at the top of the chain. */
      if (depth == 0)
        g_prefix_error (&local_error,
                        /* Translators: %s is a file name. */
                        _("Cannot open the parents of snapshot “%s”: "),
                        self->name);
      g_propagate_error (error, g_steal_pointer (&local_error));
      return FALSE;
    }

  if (memcmp (hexz_snapshot_get_id_bytes (self->parent), parent_id, 16) != 0)
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_PARENT_MISMATCH,
                   /* Translators: the first %s is a file name, the second
                    * the file name of its parent, then come two ids. */
                   _("The parent of snapshot “%s” was replaced: “%s” is "
                     "snapshot %s, not %s. Put the original parent back at "
                     "that path."),
                   self->name, parent_name, self->parent->id_string,
                   self->parent_id_string);
      return FALSE;
    }

  if (hexz_snapshot_get_seal (self->parent) != parent_seal)
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_PARENT_MISMATCH,
                   /* Translators: the first %s is a file name, the second
                    * the file name of its parent. */
                   _("The parent of snapshot “%s” was modified: “%s” has "
                     "the right id but not the content it had when the "
                     "snapshot was written. Put the original parent back."),
                   self->name, parent_name);
      return FALSE;
    }

  return TRUE;
}

static gboolean
load_header (HexzSnapshot  *self,
             GError       **error)
{
  g_autofree guint8 *buffer = NULL;
  struct stat st;
  gsize length;

  if (fstat (self->fd, &st) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   /* Translators: the first %s is a file name, the second
                    * the system's reason. */
                   _("Reading snapshot “%s” failed: %s"),
                   self->name, g_strerror (saved_errno));
      return FALSE;
    }

  if (!S_ISREG (st.st_mode))
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_NOT_A_SNAPSHOT,
                   /* Translators: %s is a file name. */
                   _("“%s” is not a hexz snapshot file: it is not a regular "
                     "file."), self->name);
      return FALSE;
    }

  length = MIN ((guint64) st.st_size, HEXZ_MAX_HEADER_SIZE);
  buffer = g_malloc (MAX (length, 1));
  if (!read_exact (self, buffer, length, 0, error) ||
      !hexz_header_decode (buffer, length, self->name, &self->header, error))
    return FALSE;

  if ((guint64) st.st_size < self->header.file_size)
    {
      g_autofree char *detail =
        g_strdup_printf (/* Translators: these are byte counts. */
                         _("it has %" PRIu64 " bytes instead of %"
                           PRIu64),
                         (guint64) st.st_size, self->header.file_size);

      hexz_set_corrupt_error (error, HEXZ_SNAPSHOT_ERROR_TRUNCATED, self->name,
                              detail);
      return FALSE;
    }

  if ((guint64) st.st_size > self->header.file_size)
    return set_corrupt_printf (self, error,
                               /* Translators: this is a byte count. */
                               _("%" PRIu64 " unexpected bytes "
                                 "follow its end"),
                               (guint64) st.st_size - self->header.file_size);

  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    self->streams[s].desc = self->header.streams[s];

  self->id_string = hexz_id_to_string (self->header.id);

  return TRUE;
}

/* Checks that sections, pages and directories follow each other as
 * doc/format.md lays them out, then loads the directories. */
static gboolean
load_layout (HexzSnapshot  *self,
             GError       **error)
{
  const HexzHeader *header = &self->header;
  guint64 cursor;
  guint64 directories_start;
  guint64 page_cursor;

  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      if (!check_stream_desc (self, s, error))
        return FALSE;
    }

  if (!check_data_ranges (self, error))
    return FALSE;

  cursor = header->data_end;
  if (!check_section (self, &header->dictionary, FALSE, 1,
                      HEXZ_MAX_DICTIONARY_SIZE, _("compression dictionary"),
                      &cursor, error) ||
      !check_section (self, &header->metadata, TRUE, 1,
                      HEXZ_MAX_METADATA_SIZE, _("metadata"), &cursor, error) ||
      !check_section (self, &header->parent, FALSE,
                      HEXZ_PARENT_FIXED_SIZE + 1,
                      HEXZ_PARENT_FIXED_SIZE + HEXZ_MAX_PARENT_PATH,
                      _("parent reference"), &cursor, error))
    return FALSE;

  /* The directories end the file, disk first. */
  directories_start = header->file_size;
  for (int s = HEXZ_N_STREAMS - 1; s >= 0; s--)
    {
      const HexzSectionRef *directory = &self->streams[s].desc.directory;

      if (directory->length == 0)
        continue;

      if (directory->length > directories_start - cursor ||
          directory->offset != directories_start - directory->length)
        return set_corrupt_printf (self, error,
                                   /* Translators: %s is disk or memory. */
                                   _("the index directory of the %s stream "
                                     "is not where the layout puts it"),
                                   hexz_stream_to_string (s));
      directories_start = directory->offset;
    }

  page_cursor = cursor;
  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      if (!load_directory (self, s, &page_cursor, error))
        return FALSE;
    }

  if (page_cursor != directories_start)
    return set_corrupt (self, error,
                        _("the index pages do not fill the space before the "
                          "index directories"));

  return TRUE;
}

static HexzSnapshot *
open_snapshot (GFile         *file,
               guint          depth,
               GPtrArray     *chain_ids,
               gboolean       open_parents,
               GCancellable  *cancellable,
               GError       **error)
{
  g_autoptr(HexzSnapshot) self = NULL;
  g_autofree char *path = NULL;

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;

  self = g_object_new (HEXZ_TYPE_SNAPSHOT, "file", file, NULL);

  path = g_file_get_path (file);
  if (path == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   /* Translators: %s is a file name or URI. */
                   _("Cannot open snapshot “%s”: it is not a local file."),
                   self->name);
      return NULL;
    }

  /* O_NONBLOCK keeps open() from waiting for a writer when the path is a
   * FIFO; the check for a regular file follows. */
  self->fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (self->fd < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   /* Translators: the first %s is a file name, the second
                    * the system's reason. */
                   _("Opening snapshot “%s” failed: %s"),
                   self->name, g_strerror (saved_errno));
      return NULL;
    }

  if (!load_header (self, error) ||
      !load_layout (self, error) ||
      !load_dictionary (self, error) ||
      !load_metadata (self, error))
    return NULL;

  g_ptr_array_add (chain_ids, self->header.id);
  if (!load_parent (self, depth, chain_ids, open_parents, cancellable, error))
    return NULL;

  g_debug ("Opened snapshot %s: id %s, block size %u, disk %" G_GUINT64_FORMAT
           " bytes, memory %" G_GUINT64_FORMAT " bytes%s%s",
           self->name, self->id_string, self->header.block_size,
           self->streams[HEXZ_STREAM_DISK].desc.logical_size,
           self->streams[HEXZ_STREAM_MEMORY].desc.logical_size,
           self->parent_path != NULL ? ", parent " : "",
           self->parent_path != NULL ? self->parent_path : "");

  return g_steal_pointer (&self);
}

/* Index pages */

static gboolean
validate_entry (HexzSnapshot         *self,
                guint                 s,
                guint64               index,
                const HexzBlockEntry *entry,
                gboolean              reserved_ok)
{
  const ReaderStream *stream = &self->streams[s];
  guint32 expected_length = hexz_block_logical_length (stream->desc.logical_size,
                                                       self->header.block_size,
                                                       index);
  guint64 start = index * self->header.block_size;

  if (!reserved_ok || entry->logical_length != expected_length)
    return FALSE;

  switch (entry->kind)
    {
    case HEXZ_BLOCK_ZERO:
    case HEXZ_BLOCK_PARENT:
      if (entry->codec != 0 || entry->stored_length != 0 ||
          entry->stored_offset != 0 || entry->checksum != 0)
        return FALSE;
      if (entry->kind == HEXZ_BLOCK_PARENT &&
          (self->parent == NULL ||
           !hexz_snapshot_has_stream (self->parent, s) ||
           start + entry->logical_length >
           hexz_snapshot_get_stream_size (self->parent, s)))
        return FALSE;
      return TRUE;

    case HEXZ_BLOCK_DATA:
      if (entry->codec > HEXZ_STORED_LAST ||
          hexz_format_minor_for_codec (entry->codec) > self->header.minor ||
          ((entry->codec == HEXZ_STORED_ZSTD_DICT ||
            entry->codec == HEXZ_STORED_LZ4_DICT) && self->dictionary == NULL) ||
          entry->stored_length == 0 ||
          entry->stored_length > entry->logical_length ||
          (entry->codec == HEXZ_STORED_RAW) !=
          (entry->stored_length == entry->logical_length) ||
          entry->stored_offset < self->header.header_size ||
          !range_inside (entry->stored_offset, entry->stored_length,
                         self->header.data_end))
        return FALSE;
      return TRUE;

    default:
      return FALSE;
    }
}

/* Reads, checks and decodes one index page. */
static guint8 *
load_page (HexzSnapshot  *self,
           guint          s,
           guint32        page_index,
           GError       **error)
{
  const HexzPageDesc *page = &self->streams[s].pages[page_index];
  g_autofree guint8 *stored = g_malloc (page->length);
  g_autofree guint8 *entries = NULL;
  gsize length = (gsize) page->entry_count * HEXZ_ENTRY_SIZE;
  guint64 first = (guint64) page_index * self->header.entries_per_page;

  if (!read_exact (self, stored, page->length, page->offset, error))
    return NULL;

  if (hexz_checksum (stored, page->length) != page->checksum)
    {
      set_corrupt_printf (self, error,
                          /* Translators: %s is disk or memory, then come a
                           * page number and an offset. */
                          _("index page %u of the %s stream at offset %"
                            PRIu64 " fails its checksum"),
                          page_index, hexz_stream_to_string (s), page->offset);
      return NULL;
    }

  entries = g_malloc (length);
  if (!hexz_decompress_page (stored, page->length, entries, length))
    {
      set_corrupt_printf (self, error,
                          /* Translators: %s is disk or memory, then come a
                           * page number and an offset. */
                          _("index page %u of the %s stream at offset %"
                            PRIu64 " does not decompress"),
                          page_index, hexz_stream_to_string (s), page->offset);
      return NULL;
    }

  for (guint32 i = 0; i < page->entry_count; i++)
    {
      HexzBlockEntry entry;
      gboolean reserved_ok;

      hexz_block_entry_decode (entries + (gsize) i * HEXZ_ENTRY_SIZE, &entry,
                               &reserved_ok);
      if (entry.kind == HEXZ_BLOCK_DATA && entry.codec > HEXZ_STORED_LAST &&
          self->header.minor > HEXZ_FORMAT_MINOR)
        {
          g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                       HEXZ_SNAPSHOT_ERROR_UNSUPPORTED_VERSION,
                       /* Translators: the first %s is a file name, then
                        * come a codec number, a stream name (disk or
                        * memory), a block number and a format version
                        * such as 1.2. */
                       _("Snapshot “%s” uses codec %u, which this "
                         "program does not know (%s block %" PRIu64 ", "
                         "format version %u.%u). Use a newer version of "
                         "hexz."),
                       self->name, entry.codec, hexz_stream_to_string (s),
                       first + i, self->header.major, self->header.minor);
          return NULL;
        }

      if (!validate_entry (self, s, first + i, &entry, reserved_ok))
        {
          set_corrupt_printf (self, error,
                              /* Translators: %s is disk or memory, then come
                               * a block number and an offset. */
                              _("the index entry of %s block %" PRIu64
                                " (index page at offset %" PRIu64
                                ") is invalid"),
                              hexz_stream_to_string (s), first + i,
                              page->offset);
          return NULL;
        }
    }

  return g_steal_pointer (&entries);
}

/* Copies the entry of block @index, loading its page when needed. */
static gboolean
lookup_entry (HexzSnapshot    *self,
              guint            s,
              guint64          index,
              HexzBlockEntry  *entry,
              GError         **error)
{
  ReaderStream *stream = &self->streams[s];
  guint32 page_index = index / self->header.entries_per_page;
  guint32 slot = index % self->header.entries_per_page;
  gboolean reserved_ok;
  guint8 *page;

  g_assert (index < stream->n_blocks);

  g_mutex_lock (&self->lock);

  page = stream->loaded[page_index];
  if (page == NULL)
    {
      page = load_page (self, s, page_index, error);
      if (page == NULL)
        {
          g_mutex_unlock (&self->lock);
          return FALSE;
        }

      if (self->n_loaded == MAX_LOADED_PAGES)
        {
          LoadedPage *victim = &self->loaded_ring[self->next_eviction];

          g_clear_pointer (&self->streams[victim->stream].loaded[victim->page],
                           g_free);
          victim->stream = s;
          victim->page = page_index;
          self->next_eviction = (self->next_eviction + 1) % MAX_LOADED_PAGES;
        }
      else
        {
          self->loaded_ring[self->n_loaded].stream = s;
          self->loaded_ring[self->n_loaded].page = page_index;
          self->n_loaded++;
        }

      stream->loaded[page_index] = page;
    }

  hexz_block_entry_decode (page + (gsize) slot * HEXZ_ENTRY_SIZE, entry,
                           &reserved_ok);

  g_mutex_unlock (&self->lock);

  return TRUE;
}

/* Blocks */

/* Decodes the stored bytes of a data block into @destination, which has
 * room for its logical length, and checks them. */
static gboolean
decode_stored (HexzSnapshot          *self,
               guint                  s,
               guint64                index,
               const HexzBlockEntry  *entry,
               const guint8          *stored,
               guint8                *destination,
               GError               **error)
{
  if (!hexz_decompress_block (entry->codec, self->dictionary, stored,
                              entry->stored_length, destination,
                              entry->logical_length))
    return set_corrupt_printf (self, error,
                               /* Translators: %s is disk or memory, then
                                * come a block number, an offset and a
                                * byte count. */
                               _("%s block %" PRIu64 " at offset %"
                                 PRIu64 " does not decompress to "
                                 "its %u bytes"),
                               hexz_stream_to_string (s), index,
                               entry->stored_offset, entry->logical_length);

  if (hexz_checksum (destination, entry->logical_length) != entry->checksum)
    return set_corrupt_printf (self, error,
                               /* Translators: %s is disk or memory, then come
                                * a block number and an offset. */
                               _("%s block %" PRIu64 " at offset %"
                                 PRIu64 " fails its checksum"),
                               hexz_stream_to_string (s), index,
                               entry->stored_offset);

  return TRUE;
}

/* Reads and decodes a data block into @destination, which has room for
 * its logical length. */
static gboolean
decode_block (HexzSnapshot          *self,
              guint                  s,
              guint64                index,
              const HexzBlockEntry  *entry,
              guint8                *destination,
              GError               **error)
{
  g_autofree guint8 *stored = NULL;

  g_atomic_int_inc (&self->n_blocks_decoded);

  /* A raw block is read in place and checked there. */
  if (entry->codec == HEXZ_STORED_RAW)
    {
      if (!read_exact (self, destination, entry->stored_length,
                       entry->stored_offset, error))
        return FALSE;

      return decode_stored (self, s, index, entry, destination, destination,
                            error);
    }

  stored = g_malloc (entry->stored_length);
  if (!read_exact (self, stored, entry->stored_length, entry->stored_offset,
                   error))
    return FALSE;

  return decode_stored (self, s, index, entry, stored, destination, error);
}

static GBytes *
cache_lookup (HexzSnapshot *self,
              guint         s,
              guint64       index)
{
  GBytes *data = NULL;

  g_mutex_lock (&self->lock);
  for (guint i = 0; i < BLOCK_CACHE_SLOTS; i++)
    {
      CachedBlock *cached = &self->cache[i];

      if (cached->data != NULL && cached->stream == s && cached->index == index)
        {
          data = g_bytes_ref (cached->data);
          break;
        }
    }
  g_mutex_unlock (&self->lock);

  return data;
}

static void
cache_insert (HexzSnapshot *self,
              guint         s,
              guint64       index,
              GBytes       *data)
{
  CachedBlock *cached;

  g_mutex_lock (&self->lock);
  cached = &self->cache[self->next_cache_slot];
  self->next_cache_slot = (self->next_cache_slot + 1) % BLOCK_CACHE_SLOTS;
  g_clear_pointer (&cached->data, g_bytes_unref);
  cached->data = g_bytes_ref (data);
  cached->stream = s;
  cached->index = index;
  g_mutex_unlock (&self->lock);
}

/* Returns how many blocks this snapshot has read and decoded, whether for
 * the cache or straight into a caller's buffer. */
guint
hexz_snapshot_get_n_blocks_decoded (HexzSnapshot *self)
{
  return (guint) g_atomic_int_get (&self->n_blocks_decoded);
}

/* Copies @count bytes from @within bytes into data block @index. A whole
 * block is decoded straight into @buffer; parts go through the cache. */
static gboolean
read_data_block (HexzSnapshot          *self,
                 guint                  s,
                 guint64                index,
                 const HexzBlockEntry  *entry,
                 gsize                  within,
                 guint8                *buffer,
                 gsize                  count,
                 GError               **error)
{
  g_autoptr(GBytes) data = NULL;

  if (within == 0 && count == entry->logical_length)
    return decode_block (self, s, index, entry, buffer, error);

  data = cache_lookup (self, s, index);
  if (data == NULL)
    {
      guint8 *decoded = g_malloc (entry->logical_length);

      if (!decode_block (self, s, index, entry, decoded, error))
        {
          g_free (decoded);
          return FALSE;
        }

      data = g_bytes_new_take (decoded, entry->logical_length);
      cache_insert (self, s, index, data);
    }

  memcpy (buffer, (const guint8 *) g_bytes_get_data (data, NULL) + within, count);

  return TRUE;
}

static gboolean
check_read_range (HexzSnapshot  *self,
                  HexzStream     stream,
                  guint64        offset,
                  guint64        count,
                  GError       **error)
{
  guint64 size = self->streams[stream].desc.logical_size;

  if (!hexz_snapshot_has_stream (self, stream))
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_NO_STREAM,
                   /* Translators: the first %s is a file name, the second
                    * disk or memory. */
                   _("Snapshot “%s” has no %s stream."),
                   self->name, hexz_stream_to_string (stream));
      return FALSE;
    }

  if (offset > size || count > size - offset)
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: these are byte offsets, disk or memory, a
                    * file name and a byte count. */
                   _("Cannot read bytes %" PRIu64 " to %"
                     PRIu64 " of the %s stream of snapshot “%s”: "
                     "the stream has %" PRIu64 " bytes."),
                   offset, offset + count, hexz_stream_to_string (stream),
                   self->name, size);
      return FALSE;
    }

  return TRUE;
}

/**
 * hexz_snapshot_open:
 * @file: the snapshot file
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Opens a snapshot file and checks its header, layout, index directories,
 * metadata and dictionary, and opens and checks its chain of parents.
 *
 * Returns: (transfer full): the snapshot, or %NULL with @error set
 *
 * Since: 1.0
 */
HexzSnapshot *
hexz_snapshot_open (GFile         *file,
                    GCancellable  *cancellable,
                    GError       **error)
{
  g_autoptr(GPtrArray) chain_ids = g_ptr_array_new ();

  g_return_val_if_fail (G_IS_FILE (file), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return open_snapshot (file, 0, chain_ids, TRUE, cancellable, error);
}

/* Opens and checks the file alone: its parent reference is read (see
 * hexz_snapshot_get_parent_path()), but no parent is opened, so reading a
 * block that lives in a parent fails. For showing what a file holds when
 * its chain is broken. */
HexzSnapshot *
hexz_snapshot_open_without_parents (GFile         *file,
                                    GCancellable  *cancellable,
                                    GError       **error)
{
  g_autoptr(GPtrArray) chain_ids = g_ptr_array_new ();

  g_return_val_if_fail (G_IS_FILE (file), NULL);

  return open_snapshot (file, 0, chain_ids, FALSE, cancellable, error);
}

/**
 * hexz_snapshot_open_path:
 * @path: (type filename): the path of the snapshot file
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Opens the snapshot file at @path, like [func@Hexz.Snapshot.open].
 *
 * Returns: (transfer full): the snapshot, or %NULL with @error set
 *
 * Since: 1.0
 */
HexzSnapshot *
hexz_snapshot_open_path (const char    *path,
                         GCancellable  *cancellable,
                         GError       **error)
{
  g_autoptr(GFile) file = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  file = g_file_new_for_path (path);

  return hexz_snapshot_open (file, cancellable, error);
}

static void
open_thread (GTask        *task,
             gpointer      source_object,
             gpointer      task_data,
             GCancellable *cancellable)
{
  GFile *file = task_data;
  GError *error = NULL;
  HexzSnapshot *snapshot;

  snapshot = hexz_snapshot_open (file, cancellable, &error);
  if (snapshot == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, snapshot, g_object_unref);
}

/**
 * hexz_snapshot_open_async:
 * @file: the snapshot file
 * @io_priority: the I/O priority of the request
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): the function to call when done
 * @user_data: data for @callback
 *
 * Opens a snapshot file in a worker thread, like
 * [func@Hexz.Snapshot.open].
 *
 * Since: 1.0
 */
void
hexz_snapshot_open_async (GFile               *file,
                          int                  io_priority,
                          GCancellable        *cancellable,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (G_IS_FILE (file));

  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_snapshot_open_async);
  g_task_set_priority (task, io_priority);
  g_task_set_task_data (task, g_object_ref (file), g_object_unref);
  g_task_run_in_thread (task, open_thread);
}

/**
 * hexz_snapshot_open_finish:
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [func@Hexz.Snapshot.open_async].
 *
 * Returns: (transfer full): the snapshot, or %NULL with @error set
 *
 * Since: 1.0
 */
HexzSnapshot *
hexz_snapshot_open_finish (GAsyncResult  *result,
                           GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
                        hexz_snapshot_open_async, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * hexz_snapshot_get_file:
 * @self: a snapshot
 *
 * Gets the snapshot's file.
 *
 * Returns: (transfer none): the file
 *
 * Since: 1.0
 */
GFile *
hexz_snapshot_get_file (HexzSnapshot *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), NULL);

  return self->file;
}

/**
 * hexz_snapshot_get_id:
 * @self: a snapshot
 *
 * Gets the snapshot's random id, as a UUID string such as
 * `0b3f6d2e-51c4-4a8e-9d3c-2f1e7a6b5c4d`.
 *
 * Returns: the id
 *
 * Since: 1.0
 */
const char *
hexz_snapshot_get_id (HexzSnapshot *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), NULL);

  return self->id_string;
}

/**
 * hexz_snapshot_get_block_size:
 * @self: a snapshot
 *
 * Gets the block size of the snapshot's streams.
 *
 * Returns: the block size in bytes
 *
 * Since: 1.0
 */
guint
hexz_snapshot_get_block_size (HexzSnapshot *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), 0);

  return self->header.block_size;
}

/**
 * hexz_snapshot_get_stream_size:
 * @self: a snapshot
 * @stream: a stream
 *
 * Gets the size of @stream.
 *
 * Returns: the size in bytes, 0 for an absent stream
 *
 * Since: 1.0
 */
guint64
hexz_snapshot_get_stream_size (HexzSnapshot *self,
                               HexzStream    stream)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), 0);
  g_return_val_if_fail (stream == HEXZ_STREAM_DISK || stream == HEXZ_STREAM_MEMORY, 0);

  return self->streams[stream].desc.logical_size;
}

/**
 * hexz_snapshot_get_disk_size:
 * @self: a snapshot
 *
 * Gets the size of the disk stream.
 *
 * Returns: the size in bytes, 0 without a disk stream
 *
 * Since: 1.0
 */
guint64
hexz_snapshot_get_disk_size (HexzSnapshot *self)
{
  return hexz_snapshot_get_stream_size (self, HEXZ_STREAM_DISK);
}

/**
 * hexz_snapshot_get_memory_size:
 * @self: a snapshot
 *
 * Gets the size of the memory stream.
 *
 * Returns: the size in bytes, 0 without a memory stream
 *
 * Since: 1.0
 */
guint64
hexz_snapshot_get_memory_size (HexzSnapshot *self)
{
  return hexz_snapshot_get_stream_size (self, HEXZ_STREAM_MEMORY);
}

/**
 * hexz_snapshot_has_memory:
 * @self: a snapshot
 *
 * Gets whether the snapshot contains a non-empty memory stream, that is,
 * whether the virtual machine can be resumed from it.
 *
 * Returns: %TRUE if there is a memory stream
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_has_memory (HexzSnapshot *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), FALSE);

  return hexz_snapshot_has_stream (self, HEXZ_STREAM_MEMORY) &&
         self->streams[HEXZ_STREAM_MEMORY].desc.logical_size > 0;
}

/**
 * hexz_snapshot_get_parent:
 * @self: a snapshot
 *
 * Gets the parent of a thin snapshot, opened along with @self.
 *
 * Returns: (transfer none) (nullable): the parent, or %NULL
 *
 * Since: 1.0
 */
HexzSnapshot *
hexz_snapshot_get_parent (HexzSnapshot *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), NULL);

  return self->parent;
}

/**
 * hexz_snapshot_get_parent_path:
 * @self: a snapshot
 *
 * Gets the parent's path as recorded in the file: relative to the folder
 * of @self, or absolute.
 *
 * Returns: (type filename) (nullable): the path, or %NULL
 *
 * Since: 1.0
 */
const char *
hexz_snapshot_get_parent_path (HexzSnapshot *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), NULL);

  return self->parent_path;
}

/**
 * hexz_snapshot_get_parent_id:
 * @self: a snapshot
 *
 * Gets the id of the parent as recorded in the file.
 *
 * Returns: (nullable): the parent's id, or %NULL
 *
 * Since: 1.0
 */
const char *
hexz_snapshot_get_parent_id (HexzSnapshot *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), NULL);

  return self->parent_id_string;
}

/**
 * hexz_snapshot_get_metadata:
 * @self: a snapshot
 *
 * Gets the snapshot's JSON metadata: `created`, `tool-version`, and
 * whatever keys the writer set.
 *
 * Returns: (transfer none): the metadata
 *
 * Since: 1.0
 */
JsonObject *
hexz_snapshot_get_metadata (HexzSnapshot *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), NULL);

  return self->metadata;
}

/**
 * hexz_snapshot_get_file_size:
 * @self: a snapshot
 *
 * Gets the size of the snapshot file.
 *
 * Returns: the size in bytes
 *
 * Since: 1.0
 */
guint64
hexz_snapshot_get_file_size (HexzSnapshot *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), 0);

  return self->header.file_size;
}

/**
 * hexz_snapshot_read:
 * @self: a snapshot
 * @stream: the stream to read
 * @offset: the offset in the stream
 * @buffer: (array length=count) (out caller-allocates): the buffer to fill
 * @count: the number of bytes to read
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Reads @count bytes of @stream at @offset, from the parent snapshots
 * where the file refers to them. Fails with
 * %HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT when the range passes the end of
 * the stream, %HEXZ_SNAPSHOT_ERROR_NO_STREAM when the stream is absent,
 * and %HEXZ_SNAPSHOT_ERROR_CORRUPT when a block is damaged. Safe to call
 * from several threads at once.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_read (HexzSnapshot  *self,
                    HexzStream     stream,
                    guint64        offset,
                    guint8        *buffer,
                    gsize          count,
                    GCancellable  *cancellable,
                    GError       **error)
{
  guint block_size;

  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), FALSE);
  g_return_val_if_fail (stream == HEXZ_STREAM_DISK || stream == HEXZ_STREAM_MEMORY, FALSE);
  g_return_val_if_fail (buffer != NULL || count == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_read_range (self, stream, offset, count, error))
    return FALSE;

  block_size = self->header.block_size;

  while (count > 0)
    {
      guint64 index = offset / block_size;
      gsize within = offset % block_size;
      HexzBlockEntry entry;
      gsize n;

      if (g_cancellable_set_error_if_cancelled (cancellable, error) ||
          !lookup_entry (self, stream, index, &entry, error))
        return FALSE;

      n = MIN (count, entry.logical_length - within);

      switch (entry.kind)
        {
        case HEXZ_BLOCK_ZERO:
          memset (buffer, 0, n);
          break;

        case HEXZ_BLOCK_PARENT:
          if (!hexz_snapshot_read (self->parent, stream, offset, buffer, n,
                                   cancellable, error))
            return FALSE;
          break;

        case HEXZ_BLOCK_DATA:
          if (!read_data_block (self, stream, index, &entry, within, buffer, n,
                                error))
            return FALSE;
          break;

        default:
          g_assert_not_reached ();
        }

      buffer += n;
      offset += n;
      count -= n;
    }

  return TRUE;
}

/**
 * hexz_snapshot_read_bytes:
 * @self: a snapshot
 * @stream: the stream to read
 * @offset: the offset in the stream
 * @count: the number of bytes to read
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Reads @count bytes of @stream at @offset into a new #GBytes, like
 * [method@Hexz.Snapshot.read].
 *
 * Returns: (transfer full): the bytes, or %NULL with @error set
 *
 * Since: 1.0
 */
GBytes *
hexz_snapshot_read_bytes (HexzSnapshot  *self,
                          HexzStream     stream,
                          guint64        offset,
                          gsize          count,
                          GCancellable  *cancellable,
                          GError       **error)
{
  g_autofree guint8 *buffer = NULL;

  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), NULL);
  g_return_val_if_fail (stream == HEXZ_STREAM_DISK || stream == HEXZ_STREAM_MEMORY, NULL);

  /* Check before allocating a buffer as large as a caller asks for. */
  if (!check_read_range (self, stream, offset, count, error))
    return NULL;

  buffer = g_malloc (MAX (count, 1));
  if (!hexz_snapshot_read (self, stream, offset, buffer, count, cancellable,
                           error))
    return NULL;

  return g_bytes_new_take (g_steal_pointer (&buffer), count);
}

/* Gets a metadata member. Metadata comes from the file, so a member of an
 * unexpected type reads as absent: 0 or %NULL. */
gint64
hexz_snapshot_get_metadata_int (HexzSnapshot *snapshot,
                                const char   *key)
{
  JsonObject *metadata = hexz_snapshot_get_metadata (snapshot);
  JsonNode *node = metadata != NULL ? json_object_get_member (metadata, key) : NULL;

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_INT64)
    return 0;

  return json_node_get_int (node);
}

const char *
hexz_snapshot_get_metadata_string (HexzSnapshot *snapshot,
                                   const char   *key)
{
  JsonObject *metadata = hexz_snapshot_get_metadata (snapshot);
  JsonNode *node = metadata != NULL ? json_object_get_member (metadata, key) : NULL;

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;

  return json_node_get_string (node);
}

/**
 * hexz_block_stats_copy:
 * @stats: block statistics
 *
 * Copies @stats.
 *
 * Returns: (transfer full): a newly allocated copy
 *
 * Since: 1.0
 */
HexzBlockStats *
hexz_block_stats_copy (const HexzBlockStats *stats)
{
  g_return_val_if_fail (stats != NULL, NULL);

  return g_memdup2 (stats, sizeof *stats);
}

/**
 * hexz_block_stats_free:
 * @stats: block statistics from [method@Hexz.BlockStats.copy]
 *
 * Frees @stats.
 *
 * Since: 1.0
 */
void
hexz_block_stats_free (HexzBlockStats *stats)
{
  g_free (stats);
}

G_DEFINE_BOXED_TYPE (HexzBlockStats, hexz_block_stats, hexz_block_stats_copy,
                     hexz_block_stats_free)

/**
 * hexz_snapshot_get_block_stats:
 * @self: a snapshot
 * @stream: the stream
 * @stats: (out caller-allocates): return location for the counts
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Counts how the blocks of @stream are stored: zero, from the parent,
 * per codec, or shared with an earlier block. It reads every index page
 * of the stream but no block data, so it takes time in proportion to the
 * number of blocks. A stream that is absent has no blocks.
 *
 * A stream's distinct stored blocks follow each other in the file, so a
 * data block that does not start where the previous one ended names
 * bytes stored before. The counts of a damaged file may therefore be
 * wrong; [method@Hexz.Snapshot.verify] checks that layout.
 *
 * Returns: (skip): %TRUE on success; %FALSE with @error set if an index
 *   page cannot be read or the operation was cancelled
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_get_block_stats (HexzSnapshot    *self,
                               HexzStream       stream,
                               HexzBlockStats  *stats,
                               GCancellable    *cancellable,
                               GError         **error)
{
  ReaderStream *reader;
  guint64 cursor;

  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), FALSE);
  g_return_val_if_fail (stream < HEXZ_N_STREAMS, FALSE);
  g_return_val_if_fail (stats != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  memset (stats, 0, sizeof *stats);
  reader = &self->streams[stream];
  cursor = reader->desc.data_offset;

  for (guint64 index = 0; index < reader->n_blocks; index++)
    {
      HexzBlockEntry entry;

      /* Checking once per index page is enough to stop promptly. */
      if (index % self->header.entries_per_page == 0 &&
          g_cancellable_set_error_if_cancelled (cancellable, error))
        return FALSE;

      if (!lookup_entry (self, stream, index, &entry, error))
        return FALSE;

      stats->blocks++;
      if (entry.kind == HEXZ_BLOCK_ZERO)
        stats->zero_blocks++;
      else if (entry.kind == HEXZ_BLOCK_PARENT)
        stats->parent_blocks++;
      else if (entry.stored_offset != cursor)
        stats->shared_blocks++;
      else
        {
          cursor += entry.stored_length;
          stats->stored_bytes += entry.stored_length;
          if (entry.codec == HEXZ_STORED_RAW)
            stats->raw_blocks++;
          else if (entry.codec == HEXZ_STORED_LZ4 ||
                   entry.codec == HEXZ_STORED_LZ4_DICT)
            stats->lz4_blocks++;
          else
            stats->zstd_blocks++;

          if (entry.codec == HEXZ_STORED_ZSTD_DICT ||
              entry.codec == HEXZ_STORED_LZ4_DICT)
            stats->dictionary_blocks++;
        }
    }

  return TRUE;
}

/**
 * hexz_snapshot_is_zero:
 * @self: a snapshot
 * @stream: the stream
 * @offset: the offset in the stream
 * @count: the number of bytes
 * @error: return location for a #GError
 *
 * Gets whether every block touching the range is stored as a zero block,
 * in @self or, through parent references, in its parents. A data block
 * that happens to hold zeros does not count; the writer stores all-zero
 * blocks as zero blocks.
 *
 * Returns: %TRUE if the range reads as zeros without touching stored data;
 *   %FALSE otherwise or on error, with @error set
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_is_zero (HexzSnapshot  *self,
                       HexzStream     stream,
                       guint64        offset,
                       guint64        count,
                       GError       **error)
{
  guint block_size;

  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), FALSE);
  g_return_val_if_fail (stream == HEXZ_STREAM_DISK || stream == HEXZ_STREAM_MEMORY, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_read_range (self, stream, offset, count, error))
    return FALSE;

  block_size = self->header.block_size;

  while (count > 0)
    {
      guint64 index = offset / block_size;
      gsize within = offset % block_size;
      HexzBlockEntry entry;
      guint64 n;

      if (!lookup_entry (self, stream, index, &entry, error))
        return FALSE;

      n = MIN (count, entry.logical_length - within);

      if (entry.kind == HEXZ_BLOCK_DATA)
        return FALSE;

      if (entry.kind == HEXZ_BLOCK_PARENT &&
          !hexz_snapshot_is_zero (self->parent, stream, offset, n, error))
        return FALSE;

      offset += n;
      count -= n;
    }

  return TRUE;
}

/* Input stream */

#define HEXZ_TYPE_SNAPSHOT_INPUT_STREAM (hexz_snapshot_input_stream_get_type ())
G_DECLARE_FINAL_TYPE (HexzSnapshotInputStream, hexz_snapshot_input_stream,
                      HEXZ, SNAPSHOT_INPUT_STREAM, GInputStream)

struct _HexzSnapshotInputStream
{
  GInputStream  parent_instance;

  HexzSnapshot *snapshot;
  HexzStream    stream;
  guint64       position;
};

static void hexz_snapshot_input_stream_seekable_init (GSeekableIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (HexzSnapshotInputStream, hexz_snapshot_input_stream,
                               G_TYPE_INPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_SEEKABLE,
                                                      hexz_snapshot_input_stream_seekable_init))

static gssize
hexz_snapshot_input_stream_read_fn (GInputStream  *input,
                                    void          *buffer,
                                    gsize          count,
                                    GCancellable  *cancellable,
                                    GError       **error)
{
  HexzSnapshotInputStream *self = HEXZ_SNAPSHOT_INPUT_STREAM (input);
  guint64 size = hexz_snapshot_get_stream_size (self->snapshot, self->stream);
  gsize n;

  if (!hexz_snapshot_has_stream (self->snapshot, self->stream))
    {
      /* Reading an absent stream reports NO_STREAM. */
      return hexz_snapshot_read (self->snapshot, self->stream, 0, buffer, 0,
                                 cancellable, error) ? 0 : -1;
    }

  if (self->position >= size)
    return 0;

  n = MIN (count, MIN (size - self->position, G_MAXSSIZE));
  if (!hexz_snapshot_read (self->snapshot, self->stream, self->position,
                           buffer, n, cancellable, error))
    return -1;

  self->position += n;

  return n;
}

static gssize
hexz_snapshot_input_stream_skip (GInputStream  *input,
                                 gsize          count,
                                 GCancellable  *cancellable,
                                 GError       **error)
{
  HexzSnapshotInputStream *self = HEXZ_SNAPSHOT_INPUT_STREAM (input);
  guint64 size = hexz_snapshot_get_stream_size (self->snapshot, self->stream);
  gsize n;

  if (self->position >= size)
    return 0;

  n = MIN (count, MIN (size - self->position, G_MAXSSIZE));
  self->position += n;

  return n;
}

static gboolean
hexz_snapshot_input_stream_close_fn (GInputStream  *input,
                                     GCancellable  *cancellable,
                                     GError       **error)
{
  return TRUE;
}

static goffset
hexz_snapshot_input_stream_tell (GSeekable *seekable)
{
  return HEXZ_SNAPSHOT_INPUT_STREAM (seekable)->position;
}

static gboolean
hexz_snapshot_input_stream_can_seek (GSeekable *seekable)
{
  return TRUE;
}

static gboolean
hexz_snapshot_input_stream_seek (GSeekable     *seekable,
                                 goffset        offset,
                                 GSeekType      type,
                                 GCancellable  *cancellable,
                                 GError       **error)
{
  HexzSnapshotInputStream *self = HEXZ_SNAPSHOT_INPUT_STREAM (seekable);
  gint64 size = hexz_snapshot_get_stream_size (self->snapshot, self->stream);
  gint64 base;

  switch (type)
    {
    case G_SEEK_SET:
      base = 0;
      break;
    case G_SEEK_CUR:
      base = self->position;
      break;
    case G_SEEK_END:
      base = size;
      break;
    default:
      g_assert_not_reached ();
    }

  if ((offset < 0 && -offset > base) || (offset > 0 && offset > size - base))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           _("Cannot seek outside the stream."));
      return FALSE;
    }

  self->position = base + offset;

  return TRUE;
}

static gboolean
hexz_snapshot_input_stream_can_truncate (GSeekable *seekable)
{
  return FALSE;
}

static gboolean
hexz_snapshot_input_stream_truncate (GSeekable     *seekable,
                                     goffset        offset,
                                     GCancellable  *cancellable,
                                     GError       **error)
{
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                       _("Snapshot streams are read-only."));
  return FALSE;
}

static void
hexz_snapshot_input_stream_seekable_init (GSeekableIface *iface)
{
  iface->tell = hexz_snapshot_input_stream_tell;
  iface->can_seek = hexz_snapshot_input_stream_can_seek;
  iface->seek = hexz_snapshot_input_stream_seek;
  iface->can_truncate = hexz_snapshot_input_stream_can_truncate;
  iface->truncate_fn = hexz_snapshot_input_stream_truncate;
}

static void
hexz_snapshot_input_stream_finalize (GObject *object)
{
  HexzSnapshotInputStream *self = HEXZ_SNAPSHOT_INPUT_STREAM (object);

  g_clear_object (&self->snapshot);

  G_OBJECT_CLASS (hexz_snapshot_input_stream_parent_class)->finalize (object);
}

static void
hexz_snapshot_input_stream_class_init (HexzSnapshotInputStreamClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GInputStreamClass *input_class = G_INPUT_STREAM_CLASS (klass);

  object_class->finalize = hexz_snapshot_input_stream_finalize;
  input_class->read_fn = hexz_snapshot_input_stream_read_fn;
  input_class->skip = hexz_snapshot_input_stream_skip;
  input_class->close_fn = hexz_snapshot_input_stream_close_fn;
}

static void
hexz_snapshot_input_stream_init (HexzSnapshotInputStream *self)
{
}

/**
 * hexz_snapshot_open_stream:
 * @self: a snapshot
 * @stream: the stream to read
 *
 * Creates an input stream that reads @stream from its start. It is also a
 * #GSeekable. Reading an absent stream fails with
 * %HEXZ_SNAPSHOT_ERROR_NO_STREAM.
 *
 * Returns: (transfer full): a new input stream
 *
 * Since: 1.0
 */
GInputStream *
hexz_snapshot_open_stream (HexzSnapshot *self,
                           HexzStream    stream)
{
  HexzSnapshotInputStream *input;

  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), NULL);
  g_return_val_if_fail (stream == HEXZ_STREAM_DISK || stream == HEXZ_STREAM_MEMORY, NULL);

  input = g_object_new (HEXZ_TYPE_SNAPSHOT_INPUT_STREAM, NULL);
  input->snapshot = g_object_ref (self);
  input->stream = stream;

  return G_INPUT_STREAM (input);
}

/* Verification */

typedef struct {
  guint64 offset;
  guint64 length;
} Extent;

typedef struct {
  HexzSnapshot *snapshot;
  GMainContext *context;   /* where to emit progress, or NULL: here */
  guint64       done;
  guint64       total;
  guint64       reported;
  gint64        reported_time;
} VerifyState;

typedef struct {
  HexzSnapshot *snapshot;
  guint64       done;
  guint64       total;
} ProgressReport;

static gboolean
progress_report_emit (gpointer data)
{
  ProgressReport *report = data;

  g_signal_emit (report->snapshot, signals[PROGRESS], 0, report->done,
                 report->total);

  return G_SOURCE_REMOVE;
}

static void
progress_report_free (gpointer data)
{
  ProgressReport *report = data;

  g_object_unref (report->snapshot);
  g_free (report);
}

static void
verify_progress (VerifyState *state,
                 gboolean     force)
{
  gint64 now = g_get_monotonic_time ();

  if (!force && state->done - state->reported < PROGRESS_BYTES &&
      now - state->reported_time < PROGRESS_INTERVAL)
    return;

  state->reported = state->done;
  state->reported_time = now;

  if (state->context != NULL)
    {
      ProgressReport *report = g_new (ProgressReport, 1);

      report->snapshot = g_object_ref (state->snapshot);
      report->done = state->done;
      report->total = state->total;

      hexz_schedule_in_context (state->context, progress_report_emit, report,
                                progress_report_free);
    }
  else
    g_signal_emit (state->snapshot, signals[PROGRESS], 0, state->done,
                   state->total);
}

/* Returns the stored block in @extents (sorted by offset) that starts at
 * @offset, or %NULL. A hand-written search rather than bsearch(): the array
 * is empty, and its data pointer %NULL, until a stream stores its first
 * block, and bsearch() must not be given a %NULL base even with no element. */
static const Extent *
find_extent (GArray  *extents,
             guint64  offset)
{
  guint low = 0;
  guint high = extents->len;

  while (low < high)
    {
      guint middle = low + (high - low) / 2;
      const Extent *extent = &g_array_index (extents, Extent, middle);

      if (extent->offset == offset)
        return extent;
      if (extent->offset < offset)
        low = middle + 1;
      else
        high = middle;
    }

  return NULL;
}

/* Walks one stream's entries: checks every page and block, and that the
 * blocks this stream stored first follow each other from its data offset
 * while every other data entry names exactly a stored block met before.
 * @extents holds the stored blocks met so far, sorted by offset. */
static gboolean
verify_stream (HexzSnapshot  *fresh,
               guint          s,
               GArray        *extents,
               VerifyState   *state,
               GCancellable  *cancellable,
               GError       **error)
{
  ReaderStream *stream = &fresh->streams[s];
  const char *stream_name = hexz_stream_to_string (s);
  guint64 cursor = stream->desc.data_offset;
  guint64 end = stream->desc.data_offset + stream->desc.data_length;
  g_autofree guint8 *stored = g_malloc (fresh->header.block_size);
  g_autofree guint8 *decoded = g_malloc (fresh->header.block_size);
  XXH3_state_t *data_hash = XXH3_createState ();
  guint64 data_checksum;

  XXH3_64bits_reset (data_hash);

  for (guint64 index = 0; index < stream->n_blocks; index++)
    {
      HexzBlockEntry entry;

      if (g_cancellable_set_error_if_cancelled (cancellable, error) ||
          !lookup_entry (fresh, s, index, &entry, error))
        goto fail;

      if (entry.kind == HEXZ_BLOCK_DATA)
        {
          if (!read_exact (fresh, stored, entry.stored_length,
                           entry.stored_offset, error))
            goto fail;

          if (stream->desc.data_length > 0 && entry.stored_offset == cursor &&
              entry.stored_length <= end - cursor)
            {
              Extent extent = { entry.stored_offset, entry.stored_length };

              g_array_append_val (extents, extent);
              cursor += entry.stored_length;
              XXH3_64bits_update (data_hash, stored, entry.stored_length);
            }
          else
            {
              const Extent *found = find_extent (extents, entry.stored_offset);

              if (found == NULL || found->length != entry.stored_length)
                {
                  set_corrupt_printf (fresh, error,
                                      /* Translators: %s is disk or memory,
                                       * then come a block number and an
                                       * offset. */
                                      _("%s block %" PRIu64
                                        " at offset %" PRIu64
                                        " overlaps other stored data"),
                                      stream_name, index,
                                      entry.stored_offset);
                  goto fail;
                }
            }

          if (!decode_stored (fresh, s, index, &entry, stored, decoded, error))
            goto fail;
        }

      state->done += entry.logical_length;
      verify_progress (state, FALSE);
    }

  data_checksum = XXH3_64bits_digest (data_hash);
  XXH3_freeState (data_hash);

  if (cursor != end)
    return set_corrupt_printf (fresh, error,
                               /* Translators: %s is disk or memory. */
                               _("the stored blocks of the %s stream do not "
                                 "fill its data range"),
                               stream_name);

  if (stream->desc.data_length > 0 && data_checksum != stream->desc.data_checksum)
    return set_corrupt_printf (fresh, error,
                               /* Translators: %s is disk or memory, then
                                * comes an offset. */
                               _("the stored bytes of the %s stream at offset %"
                                 PRIu64 " fail their checksum"),
                               stream_name, stream->desc.data_offset);

  return TRUE;

fail:
  XXH3_freeState (data_hash);
  return FALSE;
}

/* Checks every index page and stored block of one file of the chain.
 * Its errors name @fresh. */
static gboolean
verify_file (HexzSnapshot  *fresh,
             VerifyState   *state,
             GCancellable  *cancellable,
             GError       **error)
{
  g_autoptr(GArray) extents = g_array_new (FALSE, FALSE, sizeof (Extent));
  guint order[HEXZ_N_STREAMS] = { HEXZ_STREAM_DISK, HEXZ_STREAM_MEMORY };

  /* Streams in the order they stored their blocks; a stream that stored
   * none comes last, as it can only share blocks stored before. */
  {
    const HexzStreamDesc *disk = &fresh->streams[HEXZ_STREAM_DISK].desc;
    const HexzStreamDesc *memory = &fresh->streams[HEXZ_STREAM_MEMORY].desc;

    if (disk->data_length == 0 ||
        (memory->data_length > 0 && memory->data_offset < disk->data_offset))
      {
        order[0] = HEXZ_STREAM_MEMORY;
        order[1] = HEXZ_STREAM_DISK;
      }
  }

  /* FIXME: the extent list takes 16 bytes per distinct stored block, so
   * verifying a file of 2^24 distinct blocks needs 256 MiB. A bitmap of
   * extent starts over the data area would need less. */
  for (guint i = 0; i < HEXZ_N_STREAMS; i++)
    {
      if (!verify_stream (fresh, order[i], extents, state, cancellable, error))
        return FALSE;
    }

  return TRUE;
}

static gboolean
verify_snapshot (HexzSnapshot  *self,
                 VerifyState   *state,
                 GCancellable  *cancellable,
                 GError       **error)
{
  g_autoptr(HexzSnapshot) fresh = NULL;

  /* Open the file again: this rereads and rechecks the header, layout,
   * directories, dictionary, metadata and the parents' seals, and starts
   * with empty caches. The parents are opened again with it. */
  fresh = hexz_snapshot_open (self->file, cancellable, error);
  if (fresh == NULL)
    return FALSE;

  if (fresh->header.checksum != self->header.checksum)
    return set_corrupt (self, error,
                        _("the file changed since it was opened"));

  /* A thin snapshot reads through its parents, so every file of the
   * chain is checked, and the progress covers them all. */
  for (HexzSnapshot *file = fresh; file != NULL; file = file->parent)
    for (guint s = 0; s < HEXZ_N_STREAMS; s++)
      state->total += file->streams[s].desc.logical_size;
  verify_progress (state, TRUE);

  for (HexzSnapshot *file = fresh; file != NULL; file = file->parent)
    {
      g_debug ("Verifying %s", file->name);
      if (!verify_file (file, state, cancellable, error))
        return FALSE;
    }

  verify_progress (state, TRUE);

  return TRUE;
}

/**
 * hexz_snapshot_verify:
 * @self: a snapshot
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Checks the whole file and, for a thin snapshot, each of its parents.
 * It reopens the file and its parents, which checks their headers,
 * layouts, directories, metadata, dictionaries and seals. Then it reads
 * every index page and every stored block of each file in the chain,
 * checks the checksums of the stored bytes, and checks that the stored
 * blocks fill each data area exactly. A damaged file gives a
 * %HEXZ_SNAPSHOT_ERROR_CORRUPT error that names that file, the stream,
 * the block and the offset. Emits
 * [signal@Hexz.Snapshot::progress] on the calling thread as it goes.
 *
 * Returns: %TRUE if the file is intact
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_verify (HexzSnapshot  *self,
                      GCancellable  *cancellable,
                      GError       **error)
{
  VerifyState state = { 0 };

  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  state.snapshot = self;

  return verify_snapshot (self, &state, cancellable, error);
}

static void
verify_thread (GTask        *task,
               gpointer      source_object,
               gpointer      task_data,
               GCancellable *cancellable)
{
  HexzSnapshot *self = source_object;
  VerifyState *state = task_data;
  GError *error = NULL;

  if (verify_snapshot (self, state, cancellable, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

static void
verify_state_free (gpointer data)
{
  VerifyState *state = data;

  g_clear_pointer (&state->context, g_main_context_unref);
  g_free (state);
}

/**
 * hexz_snapshot_verify_async:
 * @self: a snapshot
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): the function to call when done
 * @user_data: data for @callback
 *
 * Checks the whole file and its parents in a worker thread, like
 * [method@Hexz.Snapshot.verify]. [signal@Hexz.Snapshot::progress] is
 * emitted in the thread-default main context of the caller.
 *
 * Since: 1.0
 */
void
hexz_snapshot_verify_async (HexzSnapshot        *self,
                            GCancellable        *cancellable,
                            GAsyncReadyCallback  callback,
                            gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  VerifyState *state;

  g_return_if_fail (HEXZ_IS_SNAPSHOT (self));

  state = g_new0 (VerifyState, 1);
  state->snapshot = self;
  state->context = g_main_context_ref_thread_default ();

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_snapshot_verify_async);
  g_task_set_task_data (task, state, verify_state_free);
  g_task_run_in_thread (task, verify_thread);
}

/**
 * hexz_snapshot_verify_finish:
 * @self: a snapshot
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Hexz.Snapshot.verify_async].
 *
 * Returns: %TRUE if the file is intact
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_verify_finish (HexzSnapshot  *self,
                             GAsyncResult  *result,
                             GError       **error)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
                        hexz_snapshot_verify_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Private API */

const guint8 *
hexz_snapshot_get_id_bytes (HexzSnapshot *self)
{
  return self->header.id;
}

/* Returns the header checksum, which changes with any change to the file's
 * header and so, through the checksums it holds, to any part of the file. */
guint64
hexz_snapshot_get_seal (HexzSnapshot *self)
{
  return self->header.checksum;
}

const char *
hexz_snapshot_get_display_name (HexzSnapshot *self)
{
  return self->name;
}

gboolean
hexz_snapshot_has_stream (HexzSnapshot *self,
                          HexzStream    stream)
{
  return (self->streams[stream].desc.flags & HEXZ_STREAM_FLAG_PRESENT) != 0;
}

/* Gets the checked index entry of block @index of @stream. */
gboolean
hexz_snapshot_get_block_entry (HexzSnapshot    *self,
                               HexzStream       stream,
                               guint64          index,
                               HexzBlockEntry  *entry,
                               GError         **error)
{
  g_return_val_if_fail (index < self->streams[stream].n_blocks, FALSE);

  return lookup_entry (self, stream, index, entry, error);
}

/* GObject */

static void
hexz_snapshot_dispose (GObject *object)
{
  HexzSnapshot *self = HEXZ_SNAPSHOT (object);

  g_clear_object (&self->parent);

  G_OBJECT_CLASS (hexz_snapshot_parent_class)->dispose (object);
}

static void
hexz_snapshot_finalize (GObject *object)
{
  HexzSnapshot *self = HEXZ_SNAPSHOT (object);

  if (self->fd >= 0)
    close (self->fd);

  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      ReaderStream *stream = &self->streams[s];

      for (guint32 i = 0; stream->loaded != NULL && i < stream->desc.page_count; i++)
        g_free (stream->loaded[i]);
      g_clear_pointer (&stream->loaded, g_free);
      g_clear_pointer (&stream->pages, g_free);
    }

  for (guint i = 0; i < BLOCK_CACHE_SLOTS; i++)
    g_clear_pointer (&self->cache[i].data, g_bytes_unref);

  g_clear_object (&self->file);
  g_clear_pointer (&self->name, g_free);
  g_clear_pointer (&self->id_string, g_free);
  g_clear_pointer (&self->dictionary, hexz_decode_dictionary_free);
  g_clear_pointer (&self->metadata, json_object_unref);
  g_clear_pointer (&self->parent_path, g_free);
  g_clear_pointer (&self->parent_id_string, g_free);
  g_mutex_clear (&self->lock);

  G_OBJECT_CLASS (hexz_snapshot_parent_class)->finalize (object);
}

static void
hexz_snapshot_get_property (GObject    *object,
                            guint       prop_id,
                            GValue     *value,
                            GParamSpec *pspec)
{
  HexzSnapshot *self = HEXZ_SNAPSHOT (object);

  switch (prop_id)
    {
    case PROP_FILE:
      g_value_set_object (value, self->file);
      break;
    case PROP_ID:
      g_value_set_string (value, self->id_string);
      break;
    case PROP_BLOCK_SIZE:
      g_value_set_uint (value, self->header.block_size);
      break;
    case PROP_DISK_SIZE:
      g_value_set_uint64 (value, hexz_snapshot_get_disk_size (self));
      break;
    case PROP_MEMORY_SIZE:
      g_value_set_uint64 (value, hexz_snapshot_get_memory_size (self));
      break;
    case PROP_PARENT_PATH:
      g_value_set_string (value, self->parent_path);
      break;
    case PROP_PARENT_ID:
      g_value_set_string (value, self->parent_id_string);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_snapshot_set_property (GObject      *object,
                            guint         prop_id,
                            const GValue *value,
                            GParamSpec   *pspec)
{
  HexzSnapshot *self = HEXZ_SNAPSHOT (object);

  switch (prop_id)
    {
    case PROP_FILE:
      self->file = g_value_dup_object (value);
      self->name = self->file != NULL ? g_file_get_parse_name (self->file) : NULL;
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_snapshot_class_init (HexzSnapshotClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = hexz_snapshot_dispose;
  object_class->finalize = hexz_snapshot_finalize;
  object_class->get_property = hexz_snapshot_get_property;
  object_class->set_property = hexz_snapshot_set_property;

  /**
   * HexzSnapshot:file:
   *
   * The snapshot file.
   *
   * Since: 1.0
   */
  properties[PROP_FILE] =
    g_param_spec_object ("file", NULL, NULL,
                         G_TYPE_FILE,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzSnapshot:id:
   *
   * The snapshot's random id, as a UUID string.
   *
   * Since: 1.0
   */
  properties[PROP_ID] =
    g_param_spec_string ("id", NULL, NULL,
                         NULL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * HexzSnapshot:block-size:
   *
   * The block size of the streams, in bytes.
   *
   * Since: 1.0
   */
  properties[PROP_BLOCK_SIZE] =
    g_param_spec_uint ("block-size", NULL, NULL,
                       0, G_MAXUINT, 0,
                       G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * HexzSnapshot:disk-size:
   *
   * The size of the disk stream in bytes.
   *
   * Since: 1.0
   */
  properties[PROP_DISK_SIZE] =
    g_param_spec_uint64 ("disk-size", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * HexzSnapshot:memory-size:
   *
   * The size of the memory stream in bytes.
   *
   * Since: 1.0
   */
  properties[PROP_MEMORY_SIZE] =
    g_param_spec_uint64 ("memory-size", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * HexzSnapshot:parent-path:
   *
   * The parent's path as recorded in a thin snapshot, or %NULL.
   *
   * Since: 1.0
   */
  properties[PROP_PARENT_PATH] =
    g_param_spec_string ("parent-path", NULL, NULL,
                         NULL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * HexzSnapshot:parent-id:
   *
   * The parent's id as recorded in a thin snapshot, or %NULL.
   *
   * Since: 1.0
   */
  properties[PROP_PARENT_ID] =
    g_param_spec_string ("parent-id", NULL, NULL,
                         NULL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * HexzSnapshot::progress:
   * @self: the snapshot
   * @done: logical bytes checked so far
   * @total: logical bytes to check: the sizes of both streams of the
   *   file and of each of its parents
   *
   * Emitted while [method@Hexz.Snapshot.verify] runs, at most every
   * 64 MiB or 100 ms, and once at the start and at the end. The
   * synchronous call emits it on the calling thread,
   * [method@Hexz.Snapshot.verify_async] in the thread-default main
   * context of its caller.
   *
   * Since: 1.0
   */
  signals[PROGRESS] =
    g_signal_new ("progress",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 2,
                  G_TYPE_UINT64, G_TYPE_UINT64);
}

static void
hexz_snapshot_init (HexzSnapshot *self)
{
  self->fd = -1;
  g_mutex_init (&self->lock);
}

/* Takes a shared lock on the files of @self and of all its parents, for a
 * server that serves them to a running machine. The locks are open file
 * description locks on the descriptors the snapshots keep open, so they
 * last as long as the snapshots and survive a fork(). A writer about to
 * replace a locked file refuses (see hexz_check_output_path()). File
 * systems without such locks are served without them. */
gboolean
hexz_snapshot_lock_shared (HexzSnapshot  *self,
                           GError       **error)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  for (HexzSnapshot *snapshot = self; snapshot != NULL; snapshot = snapshot->parent)
    {
      int saved_errno = hexz_lock_whole_file (snapshot->fd, F_RDLCK);

      if (saved_errno == 0)
        continue;

      if (saved_errno == EAGAIN || saved_errno == EACCES)
        {
          g_set_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_BUSY,
                       /* Translators: %s is a file name. */
                       _("Snapshot “%s” is locked by a process that is changing it: "
                         "wait for that process to finish, then try again"),
                       snapshot->name);
          return FALSE;
        }

      g_debug ("Could not lock snapshot %s: %s", snapshot->name, g_strerror (saved_errno));
    }

  return TRUE;
}
