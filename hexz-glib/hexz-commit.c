/* hexz-commit.c: merging a snapshot, an overlay and a memory image
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/**
 * HexzCommit:
 *
 * Writes a new snapshot from a base snapshot, the disk changes of an
 * overlay and a memory image.
 *
 * The new snapshot's disk is the base's disk with every page the overlay
 * lists replaced by the overlay's bytes. Its memory stream is the memory
 * image given by [property@Hexz.Commit:memory-file] or
 * [property@Hexz.Commit:memory-stream], or absent. The base's memory is
 * never carried into the new snapshot: a memory image only fits the disk
 * it was taken with.
 *
 * A thick snapshot (the default) is self-contained. A thin snapshot
 * ([property@Hexz.Commit:thin]) stores only the blocks the overlay touched
 * and refers to the base for every other block, so the base must stay at
 * its place.
 *
 * ```c
 * g_autoptr(HexzCommit) commit = hexz_commit_new (base, output);
 *
 * hexz_commit_set_overlay (commit, overlay);
 * hexz_commit_set_memory_file (commit, memory);
 * g_signal_connect (commit, "progress", G_CALLBACK (on_progress), NULL);
 * hexz_commit_run_async (commit, cancellable, on_commit_done, NULL);
 * ```
 *
 * The output file appears only when the commit succeeds: a failed or
 * cancelled commit leaves no partial file and leaves an existing file at
 * the output path as it was.
 *
 * Since: 1.0
 */

#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "hexz-commit.h"
#include "hexz-commit-private.h"
#include "hexz-snapshot-private.h"
#include "hexz-enum-types.h"
#include "hexz-i18n-private.h"
#include "hexz-util-private.h"
#include "hexz-overlay-private.h"
#include "hexz-snapshot-writer.h"

/* Progress is reported at most this often, in microseconds. */
#define PROGRESS_INTERVAL_US (100 * 1000)

/* Bytes read from a memory image at a time. */
#define MEMORY_CHUNK_SIZE (1024 * 1024)

struct _HexzCommit
{
  GObject parent_instance;

  HexzSnapshot *base;
  GFile *output;
  HexzOverlay *overlay;
  HexzPageSource *page_source;
  GFile *memory_file;
  GInputStream *memory_stream;
  guint64 memory_size;

  gboolean thin;
  gboolean allow_grow;
  gboolean train_dictionary;
  gboolean keep_dictionary;
  HexzCodec codec;
  int level;
  guint block_size;
  guint threads;
  char *message;
  JsonObject *metadata;

  gboolean running;
};

enum {
  PROP_0,
  PROP_BASE,
  PROP_OUTPUT,
  PROP_OVERLAY,
  PROP_MEMORY_FILE,
  PROP_MEMORY_STREAM,
  PROP_MEMORY_SIZE,
  PROP_THIN,
  PROP_ALLOW_GROW,
  PROP_CODEC,
  PROP_LEVEL,
  PROP_BLOCK_SIZE,
  PROP_THREADS,
  PROP_TRAIN_DICTIONARY,
  PROP_MESSAGE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_PROGRESS,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (HexzCommit, hexz_commit, G_TYPE_OBJECT)

/* Page sources */

/**
 * hexz_page_source_new: (skip)
 * @pages: (array length=n_pages): sorted, unique page numbers
 * @n_pages: the number of pages
 * @disk_size: the size in bytes of the modified disk
 * @read_page: reads a page's bytes
 * @user_data: data for @read_page
 * @pages_destroy: (nullable): frees @pages
 * @user_data_destroy: (nullable): frees @user_data
 *
 * Creates a page source. It takes ownership of @pages and @user_data when
 * their destroy functions are given.
 *
 * Returns: (transfer full): the page source
 */
HexzPageSource *
hexz_page_source_new (const guint64    *pages,
                      gsize             n_pages,
                      guint64           disk_size,
                      HexzPageReadFunc  read_page,
                      gpointer          user_data,
                      GDestroyNotify    pages_destroy,
                      GDestroyNotify    user_data_destroy)
{
  HexzPageSource *source;

  g_return_val_if_fail (pages != NULL || n_pages == 0, NULL);
  g_return_val_if_fail (read_page != NULL, NULL);

  source = g_new0 (HexzPageSource, 1);
  source->pages = pages;
  source->n_pages = n_pages;
  source->disk_size = disk_size;
  source->read_page = read_page;
  source->user_data = user_data;
  source->pages_destroy = pages_destroy;
  source->user_data_destroy = user_data_destroy;

  return source;
}

static gboolean
read_overlay_page (gpointer   user_data,
                   guint64    page,
                   guint8    *buffer,
                   GError   **error)
{
  return hexz_overlay_read_page (HEXZ_OVERLAY (user_data), page, buffer, error);
}

/**
 * hexz_page_source_new_for_overlay: (skip)
 * @overlay: an overlay
 *
 * Creates a page source for the pages an overlay lists at this moment.
 *
 * Returns: (transfer full): the page source
 */
HexzPageSource *
hexz_page_source_new_for_overlay (HexzOverlay *overlay)
{
  guint64 *pages;
  gsize n_pages;

  g_return_val_if_fail (HEXZ_IS_OVERLAY (overlay), NULL);

  pages = hexz_overlay_dup_modified_pages (overlay, &n_pages);

  return hexz_page_source_new (pages, n_pages,
                               hexz_overlay_get_disk_size (overlay),
                               read_overlay_page,
                               g_object_ref (overlay),
                               g_free,
                               g_object_unref);
}

/**
 * hexz_page_source_free: (skip)
 * @source: (nullable): a page source
 *
 * Frees a page source and what it owns.
 */
void
hexz_page_source_free (HexzPageSource *source)
{
  if (source == NULL)
    return;

  if (source->pages_destroy != NULL)
    source->pages_destroy ((gpointer) source->pages);
  if (source->user_data_destroy != NULL)
    source->user_data_destroy (source->user_data);

  g_free (source);
}

/* The disk merge */

typedef enum {
  RUN_NONE,
  RUN_ZERO,
  RUN_PARENT,
} RunKind;

typedef struct {
  HexzSnapshotWriter *writer;
  HexzSnapshot *base;
  const HexzPageSource *source;
  guint64 base_size;
  guint64 disk_size;
  guint block_size;
  gboolean thin;
  GCancellable *cancellable;

  /* A run of zero or parent blocks not yet passed to the writer. */
  RunKind run_kind;
  guint64 run_length;

  /* Index in source->pages of the first page not yet merged. */
  gsize next_page;

  guint8 *block;
  guint8 *page;
} Merge;

static gboolean
merge_flush_run (Merge   *merge,
                 GError **error)
{
  gboolean ret = TRUE;

  if (merge->run_length == 0)
    return TRUE;

  if (merge->run_kind == RUN_ZERO)
    ret = hexz_snapshot_writer_write_zeros (merge->writer, merge->run_length,
                                            merge->cancellable, error);
  else if (merge->run_kind == RUN_PARENT)
    ret = hexz_snapshot_writer_write_parent (merge->writer, merge->run_length,
                                             merge->cancellable, error);

  merge->run_kind = RUN_NONE;
  merge->run_length = 0;

  return ret;
}

static gboolean
merge_add_run (Merge    *merge,
               RunKind   kind,
               guint64   length,
               GError  **error)
{
  if (merge->run_kind != kind && !merge_flush_run (merge, error))
    return FALSE;

  merge->run_kind = kind;
  merge->run_length += length;

  return TRUE;
}

/* Fills merge->block with the base's bytes of [offset, offset + length);
 * bytes past the base's disk read as zeros. */
static gboolean
merge_read_base (Merge    *merge,
                 guint64   offset,
                 gsize     length,
                 GError  **error)
{
  gsize from_base = 0;

  if (offset < merge->base_size)
    from_base = MIN (length, merge->base_size - offset);

  if (from_base > 0 &&
      !hexz_snapshot_read (merge->base, HEXZ_STREAM_DISK, offset, merge->block, from_base,
                           merge->cancellable, error))
    return FALSE;

  memset (merge->block + from_base, 0, length - from_base);

  return TRUE;
}

/* Writes one block that at least one modified page touches: the base's
 * bytes with every modified page copied over them. A page may stick out of
 * either end of the block when blocks are not aligned to pages, as the
 * last block of a disk whose size is not a multiple of 4 KiB. */
static gboolean
merge_touched_block (Merge    *merge,
                     guint64   offset,
                     gsize     length,
                     GError  **error)
{
  const HexzPageSource *source = merge->source;
  guint64 end = offset + length;
  guint64 first_page = offset / HEXZ_OVERLAY_PAGE_SIZE;
  guint64 last_page = (end - 1) / HEXZ_OVERLAY_PAGE_SIZE;
  gsize first_index = merge->next_page;
  gsize end_index = first_index;

  while (end_index < source->n_pages && source->pages[end_index] <= last_page)
    end_index++;

  /* A block whose every page is modified needs nothing from the base. */
  if (end_index - first_index != last_page - first_page + 1)
    {
      if (!merge_read_base (merge, offset, length, error))
        return FALSE;
    }

  for (gsize i = first_index; i < end_index; i++)
    {
      guint64 page = source->pages[i];
      guint64 page_start = page * HEXZ_OVERLAY_PAGE_SIZE;
      guint64 copy_start = MAX (page_start, offset);
      guint64 copy_end = MIN (page_start + HEXZ_OVERLAY_PAGE_SIZE, end);

      if (!source->read_page (source->user_data, page, merge->page, error))
        return FALSE;

      memcpy (merge->block + (copy_start - offset),
              merge->page + (copy_start - page_start),
              copy_end - copy_start);
    }

  /* The last page may also reach into the next block. */
  merge->next_page = end_index;
  if (end_index > first_index &&
      (source->pages[end_index - 1] + 1) * HEXZ_OVERLAY_PAGE_SIZE > end)
    merge->next_page = end_index - 1;

  if (!merge_flush_run (merge, error))
    return FALSE;

  return hexz_snapshot_writer_write (merge->writer, merge->block, length,
                                     merge->cancellable, error);
}

/* Writes one block that no modified page touches. */
static gboolean
merge_untouched_block (Merge    *merge,
                       guint64   offset,
                       gsize     length,
                       GError  **error)
{
  guint64 end = offset + length;

  /* A parent reference must lie inside the parent's stream. */
  if (merge->thin && end <= merge->base_size)
    return merge_add_run (merge, RUN_PARENT, length, error);

  if (offset >= merge->base_size)
    return merge_add_run (merge, RUN_ZERO, length, error);

  if (end <= merge->base_size)
    {
      GError *local_error = NULL;
      gboolean is_zero;

      is_zero = hexz_snapshot_is_zero (merge->base, HEXZ_STREAM_DISK, offset, length,
                                       &local_error);
      if (local_error != NULL)
        {
          g_propagate_error (error, local_error);
          return FALSE;
        }

      if (is_zero)
        return merge_add_run (merge, RUN_ZERO, length, error);
    }

  if (!merge_read_base (merge, offset, length, error) ||
      !merge_flush_run (merge, error))
    return FALSE;

  return hexz_snapshot_writer_write (merge->writer, merge->block, length,
                                     merge->cancellable, error);
}

/*
 * hexz_commit_merge_disk:
 * @writer: a writer with no stream open
 * @base: the base snapshot
 * @source: (nullable): the modified pages, or %NULL for none
 * @disk_size: the size of the disk stream to write, at least the base's
 *   disk size and the source's disk size
 * @thin: whether untouched blocks refer to @base, which must be the
 *   writer's parent
 * @progress: (nullable): called with the bytes written so far
 * @progress_data: data for @progress
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Writes the whole disk stream: the base's disk with the source's pages
 * over it, merged at page granularity whatever the writer's block size.
 * Bytes past the base's disk read as zeros.
 *
 * Returns: %TRUE on success
 */
gboolean
hexz_commit_merge_disk (HexzSnapshotWriter     *writer,
                        HexzSnapshot           *base,
                        const HexzPageSource   *source,
                        guint64                 disk_size,
                        gboolean                thin,
                        HexzMergeProgressFunc   progress,
                        gpointer                progress_data,
                        GCancellable           *cancellable,
                        GError                **error)
{
  static const HexzPageSource no_pages = { 0 };
  g_autofree guint8 *block = NULL;
  g_autofree guint8 *page = NULL;
  Merge merge = { 0 };
  guint64 offset = 0;

  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (writer), FALSE);
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (base), FALSE);
  g_return_val_if_fail (disk_size >= hexz_snapshot_get_disk_size (base), FALSE);
  g_return_val_if_fail (source == NULL || source->disk_size <= disk_size, FALSE);

  merge.writer = writer;
  merge.base = base;
  merge.source = source != NULL ? source : &no_pages;
  merge.base_size = hexz_snapshot_get_disk_size (base);
  merge.disk_size = disk_size;
  merge.block_size = hexz_snapshot_writer_get_block_size (writer);
  merge.thin = thin;
  merge.cancellable = cancellable;
  merge.block = block = g_malloc (merge.block_size);
  merge.page = page = g_malloc (HEXZ_OVERLAY_PAGE_SIZE);

  g_debug ("Merging %" G_GSIZE_FORMAT " modified pages into a %" G_GUINT64_FORMAT
           "-byte disk, %s, blocks of %u bytes",
           merge.source->n_pages, disk_size, thin ? "thin" : "thick", merge.block_size);

  if (!hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, disk_size, error))
    return FALSE;

  if (progress != NULL)
    progress (0, disk_size, progress_data);

  while (offset < disk_size)
    {
      gsize length = MIN (merge.block_size, disk_size - offset);
      guint64 last_page = (offset + length - 1) / HEXZ_OVERLAY_PAGE_SIZE;
      gboolean touched;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return FALSE;

      touched = merge.next_page < merge.source->n_pages &&
                merge.source->pages[merge.next_page] <= last_page;

      if (touched)
        {
          if (!merge_touched_block (&merge, offset, length, error))
            return FALSE;
        }
      else
        {
          if (!merge_untouched_block (&merge, offset, length, error))
            return FALSE;
        }

      offset += length;

      if (progress != NULL)
        progress (offset, disk_size, progress_data);
    }

  if (!merge_flush_run (&merge, error))
    return FALSE;

  return hexz_snapshot_writer_end_stream (writer, cancellable, error);
}

/* Running a commit */

/* Everything one run needs, copied from the commit when it starts so that
 * the worker thread never reads the object's fields. */
typedef struct {
  HexzCommit *self;
  GMainContext *context;
  HexzSnapshot *base;
  GFile *output;
  HexzPageSource *page_source;
  char *overlay_path;   /* the overlay and its .meta, NULL without one */
  char *meta_path;
  GFile *memory_file;
  GInputStream *memory_stream;
  guint64 memory_size;
  gboolean thin;
  gboolean allow_grow;
  gboolean train_dictionary;
  gboolean keep_dictionary;
  HexzCodec codec;
  int level;
  guint block_size;
  guint threads;
  char *message;
  JsonObject *metadata;

  gint64 last_progress_time;
  gboolean emit_in_context;
} CommitRun;

static void
commit_run_free (CommitRun *run)
{
  g_clear_object (&run->self);
  g_clear_pointer (&run->context, g_main_context_unref);
  g_clear_object (&run->base);
  g_clear_object (&run->output);
  g_clear_pointer (&run->page_source, hexz_page_source_free);
  g_clear_object (&run->memory_file);
  g_clear_pointer (&run->overlay_path, g_free);
  g_clear_pointer (&run->meta_path, g_free);
  g_clear_object (&run->memory_stream);
  g_clear_pointer (&run->message, g_free);
  g_clear_pointer (&run->metadata, json_object_unref);
  g_free (run);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CommitRun, commit_run_free)

static CommitRun *
commit_run_new (HexzCommit *self)
{
  CommitRun *run = g_new0 (CommitRun, 1);

  run->self = g_object_ref (self);
  run->context = g_main_context_ref_thread_default ();
  run->base = g_object_ref (self->base);
  run->output = g_object_ref (self->output);
  if (self->overlay != NULL)
    {
      run->overlay_path = g_file_get_path (hexz_overlay_get_file (self->overlay));
      run->meta_path = g_file_get_path (hexz_overlay_get_meta_file (self->overlay));
    }

  if (self->page_source != NULL)
    run->page_source = g_steal_pointer (&self->page_source);
  else if (self->overlay != NULL)
    run->page_source = hexz_page_source_new_for_overlay (self->overlay);

  g_set_object (&run->memory_file, self->memory_file);
  g_set_object (&run->memory_stream, self->memory_stream);
  run->memory_size = self->memory_size;
  run->thin = self->thin;
  run->allow_grow = self->allow_grow;
  run->train_dictionary = self->train_dictionary;
  run->keep_dictionary = self->keep_dictionary;
  run->codec = self->codec;
  run->level = self->level;
  run->block_size = self->block_size;
  run->threads = self->threads;
  run->message = g_strdup (self->message);
  run->metadata = json_object_ref (self->metadata);

  return run;
}

typedef struct {
  HexzCommit *self;
  HexzStream stream;
  guint64 done;
  guint64 total;
} ProgressEvent;

static void
progress_event_free (gpointer data)
{
  ProgressEvent *event = data;

  g_object_unref (event->self);
  g_free (event);
}

static gboolean
emit_progress_in_context (gpointer data)
{
  ProgressEvent *event = data;

  g_signal_emit (event->self, signals[SIGNAL_PROGRESS], 0,
                 event->stream, event->done, event->total);

  return G_SOURCE_REMOVE;
}

/* Emits ::progress at most every PROGRESS_INTERVAL_US, and always for the
 * first and the last byte of a stream. A run on a worker thread emits in
 * the main context that started it. */
static void
commit_run_report (CommitRun  *run,
                   HexzStream  stream,
                   guint64     done,
                   guint64     total)
{
  gint64 now = g_get_monotonic_time ();
  gboolean boundary = done == 0 || done == total;

  if (!boundary && now - run->last_progress_time < PROGRESS_INTERVAL_US)
    return;

  run->last_progress_time = now;

  if (run->emit_in_context)
    {
      ProgressEvent *event = g_new0 (ProgressEvent, 1);

      event->self = g_object_ref (run->self);
      event->stream = stream;
      event->done = done;
      event->total = total;
      hexz_schedule_in_context (run->context, emit_progress_in_context, event,
                                progress_event_free);
    }
  else
    {
      g_signal_emit (run->self, signals[SIGNAL_PROGRESS], 0, stream, done, total);
    }
}

static void
report_disk_progress (guint64   done,
                      guint64   total,
                      gpointer  user_data)
{
  commit_run_report (user_data, HEXZ_STREAM_DISK, done, total);
}

/* Compares the files' device and inode numbers, so that two paths of
 * one file, through links, count as the same. */
static gboolean
files_are_same (GFile *a,
                GFile *b)
{
  g_autoptr(GFileInfo) info_a = NULL;
  g_autoptr(GFileInfo) info_b = NULL;
  const char *id_a;
  const char *id_b;

  if (g_file_equal (a, b))
    return TRUE;

  info_a = g_file_query_info (a, G_FILE_ATTRIBUTE_ID_FILE, G_FILE_QUERY_INFO_NONE, NULL, NULL);
  info_b = g_file_query_info (b, G_FILE_ATTRIBUTE_ID_FILE, G_FILE_QUERY_INFO_NONE, NULL, NULL);
  if (info_a == NULL || info_b == NULL)
    return FALSE;

  id_a = g_file_info_get_attribute_string (info_a, G_FILE_ATTRIBUTE_ID_FILE);
  id_b = g_file_info_get_attribute_string (info_b, G_FILE_ATTRIBUTE_ID_FILE);

  return id_a != NULL && g_strcmp0 (id_a, id_b) == 0;
}

/* The output must not replace a snapshot of the base's chain: a thin
 * output would refer to itself, and a thick one would break every thin
 * snapshot and overlay made on the file it replaced. The overlay, its
 * `.meta` and the memory image must stay too, and a path that is not a
 * regular file is never replaced. */
static gboolean
commit_run_check_output (CommitRun  *run,
                         GError    **error)
{
  g_autofree char *output_path = g_file_get_path (run->output);
  g_autofree char *memory_path = run->memory_file ? g_file_get_path (run->memory_file) : NULL;
  const char *inputs[] = { run->overlay_path, run->meta_path, memory_path };

  /* The nbdkit plugin holds a write lock on the overlay it serves. Pages
   * that the machine writes while the merge reads would tear the disk. */
  if (run->overlay_path != NULL && hexz_path_is_locked (run->overlay_path))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_BUSY,
                   /* Translators: %s is a file name. “hexz-snap snap” is a
                    * command line and is not translated. */
                   _("Overlay “%s” is in use by a running machine: shut it down (or take a "
                     "live snapshot with hexz-snap snap) before committing it"),
                   run->overlay_path);
      return FALSE;
    }

  if (output_path != NULL &&
      !hexz_check_output_path (output_path, inputs, G_N_ELEMENTS (inputs), error))
    return FALSE;

  if (run->overlay_path != NULL &&
      !hexz_overlay_check_base_id (-1, run->overlay_path, run->base, error))
    return FALSE;

  for (HexzSnapshot *snapshot = run->base;
       snapshot != NULL;
       snapshot = hexz_snapshot_get_parent (snapshot))
    {
      GFile *file = hexz_snapshot_get_file (snapshot);
      g_autofree char *name = NULL;

      if (!files_are_same (file, run->output))
        continue;

      name = g_file_get_parse_name (file);
      g_set_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: %s is a file name. */
                   _("Cannot write the new snapshot over “%s”: the commit reads it as its "
                     "base or a parent of the base. Write it to another file."),
                   name);
      return FALSE;
    }

  return TRUE;
}

static gboolean
commit_run_check_sizes (CommitRun  *run,
                        guint64    *disk_size,
                        GError    **error)
{
  guint64 base_size = hexz_snapshot_get_disk_size (run->base);
  guint64 overlay_size;

  *disk_size = base_size;

  if (run->page_source == NULL)
    return TRUE;

  overlay_size = run->page_source->disk_size;
  if (overlay_size <= base_size)
    return TRUE;

  if (!run->allow_grow)
    {
      g_autofree char *base_name = g_file_get_parse_name (hexz_snapshot_get_file (run->base));

      g_set_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: the numbers are sizes in bytes, %s is a file name. */
                   _("The overlay covers a disk of %" PRIu64 " bytes, larger than "
                     "the %" PRIu64 "-byte disk of base snapshot “%s”. Check that "
                     "the overlay belongs to this snapshot; if the disk was grown on "
                     "purpose, allow the larger disk (--allow-grow)"),
                   overlay_size, base_size, base_name);
      return FALSE;
    }

  *disk_size = overlay_size;

  return TRUE;
}

static HexzSnapshotWriter *
commit_run_create_writer (CommitRun *run)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new (run->output);
  JsonObjectIter iter;
  const char *key;
  JsonNode *value;

  hexz_snapshot_writer_set_codec (writer, run->codec);
  hexz_snapshot_writer_set_level (writer, run->level);
  hexz_snapshot_writer_set_block_size (writer, run->block_size);
  if (run->threads > 0)
    hexz_snapshot_writer_set_threads (writer, run->threads);
  hexz_snapshot_writer_set_train_dictionary (writer, run->train_dictionary);
  hexz_snapshot_writer_set_keep_dictionary_for_testing (writer, run->keep_dictionary);

  if (run->thin)
    hexz_snapshot_writer_set_parent (writer, run->base);
  if (run->message != NULL)
    hexz_snapshot_writer_set_message (writer, run->message);

  json_object_iter_init (&iter, run->metadata);
  while (json_object_iter_next (&iter, &key, &value))
    hexz_snapshot_writer_set_metadata (writer, key, value);

  return g_steal_pointer (&writer);
}

/* Opens the memory image, if any; sets *size to its size or 0 when the
 * size is not known. */
static gboolean
commit_run_open_memory (CommitRun     *run,
                        GCancellable  *cancellable,
                        GInputStream **stream,
                        guint64       *size,
                        GError       **error)
{
  g_autoptr(GFileInputStream) file_stream = NULL;
  g_autoptr(GFileInfo) info = NULL;
  g_autoptr(GError) local_error = NULL;

  *stream = NULL;
  *size = 0;

  if (run->memory_stream != NULL)
    {
      *stream = g_object_ref (run->memory_stream);
      *size = run->memory_size;
      return TRUE;
    }

  if (run->memory_file == NULL)
    return TRUE;

  file_stream = g_file_read (run->memory_file, cancellable, &local_error);
  if (file_stream != NULL)
    info = g_file_input_stream_query_info (file_stream, G_FILE_ATTRIBUTE_STANDARD_SIZE,
                                           cancellable, &local_error);

  if (info == NULL)
    {
      g_autofree char *name = g_file_get_parse_name (run->memory_file);

      g_set_error (error, local_error->domain, local_error->code,
                   /* Translators: the first %s is a file name, the second an error message. */
                   _("Cannot read memory image “%s”: %s"), name, local_error->message);
      return FALSE;
    }

  *stream = G_INPUT_STREAM (g_steal_pointer (&file_stream));
  *size = g_file_info_get_size (info);

  return TRUE;
}

static gboolean
commit_run_copy_memory (CommitRun           *run,
                        HexzSnapshotWriter  *writer,
                        GInputStream        *stream,
                        guint64              size,
                        GCancellable        *cancellable,
                        GError             **error)
{
  g_autofree guint8 *buffer = g_malloc (MEMORY_CHUNK_SIZE);
  guint64 done = 0;

  if (!hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_MEMORY, size, error))
    return FALSE;

  commit_run_report (run, HEXZ_STREAM_MEMORY, 0, size);

  for (;;)
    {
      gsize n_read = 0;

      if (!g_input_stream_read_all (stream, buffer, MEMORY_CHUNK_SIZE, &n_read,
                                    cancellable, error))
        {
          g_prefix_error (error,
                          /* Translators: the number is an offset in bytes. */
                          _("Cannot read the memory image at byte %" PRIu64 ": "),
                          done);
          return FALSE;
        }

      if (n_read == 0)
        break;

      if (!hexz_snapshot_writer_write (writer, buffer, n_read, cancellable, error))
        return FALSE;

      done += n_read;
      commit_run_report (run, HEXZ_STREAM_MEMORY, done, size != 0 ? MAX (size, done) : 0);
    }

  if (size != 0 && done != size)
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: the numbers are sizes in bytes. */
                   _("The memory image ended after %" PRIu64 " bytes, but %"
                     PRIu64 " bytes were expected: it changed or was cut while "
                     "being read"),
                   done, size);
      return FALSE;
    }

  commit_run_report (run, HEXZ_STREAM_MEMORY, done, done);

  return hexz_snapshot_writer_end_stream (writer, cancellable, error);
}

/* Runs the whole commit; blocks, so async callers run it in a thread. */
static gboolean
commit_run_execute (CommitRun     *run,
                    GCancellable  *cancellable,
                    GError       **error)
{
  g_autoptr(HexzSnapshotWriter) writer = NULL;
  g_autoptr(GInputStream) memory = NULL;
  guint64 memory_size;
  guint64 disk_size;

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return FALSE;

  if (!commit_run_check_output (run, error) ||
      !commit_run_check_sizes (run, &disk_size, error))
    return FALSE;

  if (!commit_run_open_memory (run, cancellable, &memory, &memory_size, error))
    return FALSE;

  writer = commit_run_create_writer (run);

  if (!hexz_commit_merge_disk (writer, run->base, run->page_source, disk_size, run->thin,
                               report_disk_progress, run, cancellable, error))
    goto failed;

  if (memory != NULL &&
      !commit_run_copy_memory (run, writer, memory, memory_size, cancellable, error))
    goto failed;

  if (!hexz_snapshot_writer_close (writer, cancellable, error))
    goto failed;

  return TRUE;

failed:
  hexz_snapshot_writer_abort (writer);
  return FALSE;
}

static void
commit_run_thread (GTask        *task,
                   gpointer      source_object,
                   gpointer      task_data,
                   GCancellable *cancellable)
{
  CommitRun *run = task_data;
  GError *error = NULL;

  if (commit_run_execute (run, cancellable, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

static gboolean
commit_check_ready (HexzCommit  *self,
                    GError     **error)
{
  if (self->running)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_PENDING,
                           _("This commit is already running: wait for it to finish"));
      return FALSE;
    }

  if (self->memory_file != NULL && self->memory_stream != NULL)
    {
      g_set_error_literal (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                           _("A commit takes a memory file or a memory stream, not both: "
                             "unset one of them"));
      return FALSE;
    }

  return TRUE;
}

/**
 * hexz_commit_run:
 * @self: a commit
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Writes the new snapshot, blocking until it is complete. The
 * [signal@Hexz.Commit::progress] signal is emitted in the calling thread.
 *
 * A commit can run more than once, for instance again after a failure.
 *
 * Returns: %TRUE if the output file was written
 *
 * Since: 1.0
 */
gboolean
hexz_commit_run (HexzCommit    *self,
                 GCancellable  *cancellable,
                 GError       **error)
{
  g_autoptr(CommitRun) run = NULL;
  gboolean ret;

  g_return_val_if_fail (HEXZ_IS_COMMIT (self), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!commit_check_ready (self, error))
    return FALSE;

  run = commit_run_new (self);
  run->emit_in_context = FALSE;

  self->running = TRUE;
  ret = commit_run_execute (run, cancellable, error);
  self->running = FALSE;

  return ret;
}

static void
commit_run_task_done (GObject    *source_object,
                      GParamSpec *pspec,
                      gpointer    user_data)
{
  HexzCommit *self = user_data;

  self->running = FALSE;
}

/**
 * hexz_commit_run_async:
 * @self: a commit
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the commit is done
 * @user_data: data for @callback
 *
 * Writes the new snapshot on a worker thread. The
 * [signal@Hexz.Commit::progress] signal is emitted in the thread-default
 * main context of the caller, and @callback is called there when the
 * commit is done. Call [method@Hexz.Commit.run_finish] from it.
 *
 * Since: 1.0
 */
void
hexz_commit_run_async (HexzCommit          *self,
                       GCancellable        *cancellable,
                       GAsyncReadyCallback  callback,
                       gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GError) error = NULL;
  CommitRun *run;

  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_commit_run_async);

  if (!commit_check_ready (self, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  run = commit_run_new (self);
  run->emit_in_context = TRUE;
  g_task_set_task_data (task, run, (GDestroyNotify) commit_run_free);

  self->running = TRUE;
  g_signal_connect_object (task, "notify::completed",
                           G_CALLBACK (commit_run_task_done), self, 0);

  g_task_run_in_thread (task, commit_run_thread);
}

/**
 * hexz_commit_run_finish:
 * @self: a commit
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a commit started with [method@Hexz.Commit.run_async].
 *
 * Returns: %TRUE if the output file was written
 *
 * Since: 1.0
 */
gboolean
hexz_commit_run_finish (HexzCommit    *self,
                        GAsyncResult  *result,
                        GError       **error)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == hexz_commit_run_async, FALSE);

  /* notify::completed comes after the callback, which may want to run the
   * commit again. A task without data was rejected before it started. */
  if (g_task_get_task_data (G_TASK (result)) != NULL)
    self->running = FALSE;

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* The object */

static void
hexz_commit_finalize (GObject *object)
{
  HexzCommit *self = HEXZ_COMMIT (object);

  g_clear_object (&self->base);
  g_clear_object (&self->output);
  g_clear_object (&self->overlay);
  g_clear_pointer (&self->page_source, hexz_page_source_free);
  g_clear_object (&self->memory_file);
  g_clear_object (&self->memory_stream);
  g_clear_pointer (&self->message, g_free);
  g_clear_pointer (&self->metadata, json_object_unref);

  G_OBJECT_CLASS (hexz_commit_parent_class)->finalize (object);
}

static void
hexz_commit_get_property (GObject    *object,
                          guint       prop_id,
                          GValue     *value,
                          GParamSpec *pspec)
{
  HexzCommit *self = HEXZ_COMMIT (object);

  switch (prop_id)
    {
    case PROP_BASE:
      g_value_set_object (value, self->base);
      break;

    case PROP_OUTPUT:
      g_value_set_object (value, self->output);
      break;

    case PROP_OVERLAY:
      g_value_set_object (value, self->overlay);
      break;

    case PROP_MEMORY_FILE:
      g_value_set_object (value, self->memory_file);
      break;

    case PROP_MEMORY_STREAM:
      g_value_set_object (value, self->memory_stream);
      break;

    case PROP_MEMORY_SIZE:
      g_value_set_uint64 (value, self->memory_size);
      break;

    case PROP_THIN:
      g_value_set_boolean (value, self->thin);
      break;

    case PROP_ALLOW_GROW:
      g_value_set_boolean (value, self->allow_grow);
      break;

    case PROP_CODEC:
      g_value_set_enum (value, self->codec);
      break;

    case PROP_LEVEL:
      g_value_set_int (value, self->level);
      break;

    case PROP_BLOCK_SIZE:
      g_value_set_uint (value, self->block_size);
      break;

    case PROP_THREADS:
      g_value_set_uint (value, self->threads);
      break;

    case PROP_TRAIN_DICTIONARY:
      g_value_set_boolean (value, self->train_dictionary);
      break;

    case PROP_MESSAGE:
      g_value_set_string (value, self->message);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_commit_set_property (GObject      *object,
                          guint         prop_id,
                          const GValue *value,
                          GParamSpec   *pspec)
{
  HexzCommit *self = HEXZ_COMMIT (object);

  switch (prop_id)
    {
    case PROP_BASE:
      self->base = g_value_dup_object (value);
      break;

    case PROP_OUTPUT:
      self->output = g_value_dup_object (value);
      break;

    case PROP_OVERLAY:
      hexz_commit_set_overlay (self, g_value_get_object (value));
      break;

    case PROP_MEMORY_FILE:
      hexz_commit_set_memory_file (self, g_value_get_object (value));
      break;

    case PROP_MEMORY_STREAM:
      hexz_commit_set_memory_stream (self, g_value_get_object (value));
      break;

    case PROP_MEMORY_SIZE:
      hexz_commit_set_memory_size (self, g_value_get_uint64 (value));
      break;

    case PROP_THIN:
      hexz_commit_set_thin (self, g_value_get_boolean (value));
      break;

    case PROP_ALLOW_GROW:
      hexz_commit_set_allow_grow (self, g_value_get_boolean (value));
      break;

    case PROP_CODEC:
      hexz_commit_set_codec (self, g_value_get_enum (value));
      break;

    case PROP_LEVEL:
      hexz_commit_set_level (self, g_value_get_int (value));
      break;

    case PROP_BLOCK_SIZE:
      hexz_commit_set_block_size (self, g_value_get_uint (value));
      break;

    case PROP_THREADS:
      hexz_commit_set_threads (self, g_value_get_uint (value));
      break;

    case PROP_TRAIN_DICTIONARY:
      hexz_commit_set_train_dictionary (self, g_value_get_boolean (value));
      break;

    case PROP_MESSAGE:
      hexz_commit_set_message (self, g_value_get_string (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_commit_constructed (GObject *object)
{
  HexzCommit *self = HEXZ_COMMIT (object);

  G_OBJECT_CLASS (hexz_commit_parent_class)->constructed (object);

  g_return_if_fail (HEXZ_IS_SNAPSHOT (self->base));
  g_return_if_fail (G_IS_FILE (self->output));
}

static void
hexz_commit_class_init (HexzCommitClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = hexz_commit_finalize;
  object_class->constructed = hexz_commit_constructed;
  object_class->get_property = hexz_commit_get_property;
  object_class->set_property = hexz_commit_set_property;

  /**
   * HexzCommit:base:
   *
   * The base snapshot whose disk the overlay modifies.
   *
   * Since: 1.0
   */
  properties[PROP_BASE] =
    g_param_spec_object ("base", NULL, NULL,
                         HEXZ_TYPE_SNAPSHOT,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:output:
   *
   * The snapshot file to write. An existing file is replaced when the
   * commit succeeds.
   *
   * Since: 1.0
   */
  properties[PROP_OUTPUT] =
    g_param_spec_object ("output", NULL, NULL,
                         G_TYPE_FILE,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:overlay:
   *
   * The disk changes to apply to the base's disk, or %NULL to keep the
   * base's disk as it is.
   *
   * Since: 1.0
   */
  properties[PROP_OVERLAY] =
    g_param_spec_object ("overlay", NULL, NULL,
                         HEXZ_TYPE_OVERLAY,
                         G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:memory-file:
   *
   * A file with the memory image (QEMU's migration stream) to store as the
   * new snapshot's memory stream, or %NULL.
   *
   * Since: 1.0
   */
  properties[PROP_MEMORY_FILE] =
    g_param_spec_object ("memory-file", NULL, NULL,
                         G_TYPE_FILE,
                         G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:memory-stream:
   *
   * A stream with the memory image to store as the new snapshot's memory
   * stream, read to its end on the commit's thread, or %NULL.
   *
   * Since: 1.0
   */
  properties[PROP_MEMORY_STREAM] =
    g_param_spec_object ("memory-stream", NULL, NULL,
                         G_TYPE_INPUT_STREAM,
                         G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:memory-size:
   *
   * The number of bytes [property@Hexz.Commit:memory-stream] yields, or 0
   * when unknown. When set, a stream of another length fails the commit.
   *
   * Since: 1.0
   */
  properties[PROP_MEMORY_SIZE] =
    g_param_spec_uint64 ("memory-size", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:thin:
   *
   * Whether the new snapshot refers to the base for the blocks the overlay
   * did not touch, instead of copying them.
   *
   * Since: 1.0
   */
  properties[PROP_THIN] =
    g_param_spec_boolean ("thin", NULL, NULL,
                          FALSE,
                          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:allow-grow:
   *
   * Whether an overlay that covers a larger disk than the base's is
   * accepted. The new snapshot's disk then has the overlay's size, and the
   * bytes past the base's disk that the overlay does not list are zeros.
   *
   * Since: 1.0
   */
  properties[PROP_ALLOW_GROW] =
    g_param_spec_boolean ("allow-grow", NULL, NULL,
                          FALSE,
                          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:codec:
   *
   * The compression of the new snapshot's blocks.
   *
   * Since: 1.0
   */
  properties[PROP_CODEC] =
    g_param_spec_enum ("codec", NULL, NULL,
                       HEXZ_TYPE_CODEC,
                       HEXZ_CODEC_LZ4,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:level:
   *
   * The compression level, passed to [method@Hexz.SnapshotWriter.set_level]:
   * 0 selects the codec's default, zstd takes levels up to 22, LZ4 only
   * negative levels (faster, less compression).
   *
   * Since: 1.0
   */
  properties[PROP_LEVEL] =
    g_param_spec_int ("level", NULL, NULL,
                      G_MININT, G_MAXINT, 0,
                      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:block-size:
   *
   * The block size in bytes of the new snapshot, a power of two between
   * %HEXZ_MIN_BLOCK_SIZE and %HEXZ_MAX_BLOCK_SIZE. It need not match the
   * base's block size.
   *
   * Since: 1.0
   */
  properties[PROP_BLOCK_SIZE] =
    g_param_spec_uint ("block-size", NULL, NULL,
                       HEXZ_MIN_BLOCK_SIZE, HEXZ_MAX_BLOCK_SIZE, HEXZ_DEFAULT_BLOCK_SIZE,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:threads:
   *
   * The number of compression threads, passed to
   * [method@Hexz.SnapshotWriter.set_threads]; 0 keeps the writer's default,
   * one per processor.
   *
   * Since: 1.0
   */
  properties[PROP_THREADS] =
    g_param_spec_uint ("threads", NULL, NULL,
                       0, 1024, 0,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:train-dictionary:
   *
   * Whether the writer trains a dictionary for LZ4 or zstd blocks on the
   * data; see
   * [method@Hexz.SnapshotWriter.set_train_dictionary].
   *
   * Since: 1.0
   */
  properties[PROP_TRAIN_DICTIONARY] =
    g_param_spec_boolean ("train-dictionary", NULL, NULL,
                          FALSE,
                          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzCommit:message:
   *
   * A free text stored in the new snapshot's metadata, or %NULL.
   *
   * Since: 1.0
   */
  properties[PROP_MESSAGE] =
    g_param_spec_string ("message", NULL, NULL,
                         NULL,
                         G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * HexzCommit::progress:
   * @self: the commit
   * @stream: the stream being written
   * @done: the bytes of @stream written so far
   * @total: the size of @stream in bytes, or 0 when unknown (a memory
   *   stream of unknown size)
   *
   * Emitted while a commit runs, at most ten times a second per stream,
   * and always at the start and at the end of each stream: first for the
   * disk, then for the memory image if there is one.
   *
   * Since: 1.0
   */
  signals[SIGNAL_PROGRESS] =
    g_signal_new ("progress",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0,
                  NULL, NULL,
                  NULL,
                  G_TYPE_NONE, 3,
                  HEXZ_TYPE_STREAM, G_TYPE_UINT64, G_TYPE_UINT64);
}

static void
hexz_commit_init (HexzCommit *self)
{
  self->codec = HEXZ_CODEC_LZ4;
  self->block_size = HEXZ_DEFAULT_BLOCK_SIZE;
  self->metadata = json_object_new ();
}

/**
 * hexz_commit_new:
 * @base: the base snapshot
 * @output: the snapshot file to write
 *
 * Creates a commit of @base into @output, with no overlay and no memory
 * image yet.
 *
 * Returns: (transfer full): a new commit
 *
 * Since: 1.0
 */
HexzCommit *
hexz_commit_new (HexzSnapshot *base,
                 GFile        *output)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT (base), NULL);
  g_return_val_if_fail (G_IS_FILE (output), NULL);

  return g_object_new (HEXZ_TYPE_COMMIT,
                       "base", base,
                       "output", output,
                       NULL);
}

/**
 * hexz_commit_get_base:
 * @self: a commit
 *
 * Gets the base snapshot.
 *
 * Returns: (transfer none): the base snapshot
 *
 * Since: 1.0
 */
HexzSnapshot *
hexz_commit_get_base (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), NULL);

  return self->base;
}

/**
 * hexz_commit_get_output:
 * @self: a commit
 *
 * Gets the snapshot file the commit writes.
 *
 * Returns: (transfer none): the output file
 *
 * Since: 1.0
 */
GFile *
hexz_commit_get_output (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), NULL);

  return self->output;
}

/**
 * hexz_commit_get_overlay:
 * @self: a commit
 *
 * Gets the overlay whose pages replace the base's.
 *
 * Returns: (transfer none) (nullable): the overlay
 *
 * Since: 1.0
 */
HexzOverlay *
hexz_commit_get_overlay (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), NULL);

  return self->overlay;
}

/**
 * hexz_commit_set_overlay:
 * @self: a commit
 * @overlay: (nullable): an overlay
 *
 * Sets the overlay whose pages replace the base's. The pages it lists when
 * the commit starts are merged.
 *
 * Since: 1.0
 */
void
hexz_commit_set_overlay (HexzCommit  *self,
                         HexzOverlay *overlay)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (overlay == NULL || HEXZ_IS_OVERLAY (overlay));
  g_return_if_fail (!self->running);

  if (g_set_object (&self->overlay, overlay))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_OVERLAY]);
}

/* Makes the run keep a trained dictionary even where it does not pay off,
 * so that tests can commit small files that use the dictionary codecs. */
void
hexz_commit_set_keep_dictionary_for_testing (HexzCommit *self,
                                             gboolean    keep)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));

  self->keep_dictionary = keep;
}

/*
 * hexz_commit_set_page_source:
 * @self: a commit
 * @source: (transfer full) (nullable): modified pages
 *
 * Makes the next run merge @source instead of the overlay, for pages
 * captured without a HexzOverlay. The run consumes it.
 */
void
hexz_commit_set_page_source (HexzCommit     *self,
                             HexzPageSource *source)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (!self->running);

  g_clear_pointer (&self->page_source, hexz_page_source_free);
  self->page_source = source;
}

/**
 * hexz_commit_get_memory_file:
 * @self: a commit
 *
 * Gets the file with the memory image to store.
 *
 * Returns: (transfer none) (nullable): the memory image file
 *
 * Since: 1.0
 */
GFile *
hexz_commit_get_memory_file (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), NULL);

  return self->memory_file;
}

/**
 * hexz_commit_set_memory_file:
 * @self: a commit
 * @memory_file: (nullable): a file with a memory image
 *
 * Sets the file with the memory image to store as the new snapshot's
 * memory stream. A commit takes a memory file or a memory stream, not both.
 *
 * Since: 1.0
 */
void
hexz_commit_set_memory_file (HexzCommit *self,
                             GFile      *memory_file)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (memory_file == NULL || G_IS_FILE (memory_file));
  g_return_if_fail (!self->running);

  if (g_set_object (&self->memory_file, memory_file))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MEMORY_FILE]);
}

/**
 * hexz_commit_get_memory_stream:
 * @self: a commit
 *
 * Gets the stream with the memory image to store.
 *
 * Returns: (transfer none) (nullable): the memory image stream
 *
 * Since: 1.0
 */
GInputStream *
hexz_commit_get_memory_stream (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), NULL);

  return self->memory_stream;
}

/**
 * hexz_commit_set_memory_stream:
 * @self: a commit
 * @memory_stream: (nullable): a stream with a memory image
 *
 * Sets the stream with the memory image to store as the new snapshot's
 * memory stream. The commit reads it to its end with blocking reads on its
 * worker thread. Set [property@Hexz.Commit:memory-size] too when the size
 * is known, for progress and a length check.
 *
 * Cancelling the commit interrupts a read that waits for data only if the
 * stream honours its cancellable, as a `GUnixInputStream` on a pipe does.
 * A read of a stalled FIFO opened with g_file_read() keeps waiting.
 *
 * Since: 1.0
 */
void
hexz_commit_set_memory_stream (HexzCommit   *self,
                               GInputStream *memory_stream)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (memory_stream == NULL || G_IS_INPUT_STREAM (memory_stream));
  g_return_if_fail (!self->running);

  if (g_set_object (&self->memory_stream, memory_stream))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MEMORY_STREAM]);
}

/**
 * hexz_commit_get_memory_size:
 * @self: a commit
 *
 * Gets the expected length of the memory stream.
 *
 * Returns: the size in bytes, or 0 when unknown
 *
 * Since: 1.0
 */
guint64
hexz_commit_get_memory_size (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), 0);

  return self->memory_size;
}

/**
 * hexz_commit_set_memory_size:
 * @self: a commit
 * @memory_size: the size in bytes, or 0 when unknown
 *
 * Sets the expected length of [property@Hexz.Commit:memory-stream].
 *
 * Since: 1.0
 */
void
hexz_commit_set_memory_size (HexzCommit *self,
                             guint64     memory_size)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (!self->running);

  if (self->memory_size == memory_size)
    return;

  self->memory_size = memory_size;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MEMORY_SIZE]);
}

/**
 * hexz_commit_get_thin:
 * @self: a commit
 *
 * Gets whether the new snapshot refers to the base for untouched blocks.
 *
 * Returns: %TRUE for a thin snapshot
 *
 * Since: 1.0
 */
gboolean
hexz_commit_get_thin (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), FALSE);

  return self->thin;
}

/**
 * hexz_commit_set_thin:
 * @self: a commit
 * @thin: %TRUE for a thin snapshot
 *
 * Sets whether the new snapshot refers to the base for untouched blocks.
 *
 * Since: 1.0
 */
void
hexz_commit_set_thin (HexzCommit *self,
                      gboolean    thin)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (!self->running);

  thin = !!thin;
  if (self->thin == thin)
    return;

  self->thin = thin;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_THIN]);
}

/**
 * hexz_commit_get_allow_grow:
 * @self: a commit
 *
 * Gets whether an overlay larger than the base's disk is accepted.
 *
 * Returns: %TRUE if a larger overlay is accepted
 *
 * Since: 1.0
 */
gboolean
hexz_commit_get_allow_grow (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), FALSE);

  return self->allow_grow;
}

/**
 * hexz_commit_set_allow_grow:
 * @self: a commit
 * @allow_grow: whether a larger overlay is accepted
 *
 * Sets whether an overlay larger than the base's disk is accepted; see
 * [property@Hexz.Commit:allow-grow].
 *
 * Since: 1.0
 */
void
hexz_commit_set_allow_grow (HexzCommit *self,
                            gboolean    allow_grow)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (!self->running);

  allow_grow = !!allow_grow;
  if (self->allow_grow == allow_grow)
    return;

  self->allow_grow = allow_grow;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ALLOW_GROW]);
}

/**
 * hexz_commit_get_codec:
 * @self: a commit
 *
 * Gets the compression of the new snapshot's blocks.
 *
 * Returns: the codec
 *
 * Since: 1.0
 */
HexzCodec
hexz_commit_get_codec (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), HEXZ_CODEC_LZ4);

  return self->codec;
}

/**
 * hexz_commit_set_codec:
 * @self: a commit
 * @codec: a codec
 *
 * Sets the compression of the new snapshot's blocks.
 *
 * Since: 1.0
 */
void
hexz_commit_set_codec (HexzCommit *self,
                       HexzCodec   codec)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (!self->running);

  if (self->codec == codec)
    return;

  self->codec = codec;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CODEC]);
}

/**
 * hexz_commit_get_level:
 * @self: a commit
 *
 * Gets the compression level.
 *
 * Returns: the level, 0 for the codec's default
 *
 * Since: 1.0
 */
int
hexz_commit_get_level (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), 0);

  return self->level;
}

/**
 * hexz_commit_set_level:
 * @self: a commit
 * @level: the level, 0 for the codec's default
 *
 * Sets the compression level.
 *
 * Since: 1.0
 */
void
hexz_commit_set_level (HexzCommit *self,
                       int         level)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (!self->running);

  if (self->level == level)
    return;

  self->level = level;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LEVEL]);
}

/**
 * hexz_commit_get_block_size:
 * @self: a commit
 *
 * Gets the block size of the new snapshot.
 *
 * Returns: the block size in bytes
 *
 * Since: 1.0
 */
guint
hexz_commit_get_block_size (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), 0);

  return self->block_size;
}

/**
 * hexz_commit_set_block_size:
 * @self: a commit
 * @block_size: a power of two between %HEXZ_MIN_BLOCK_SIZE and
 *   %HEXZ_MAX_BLOCK_SIZE
 *
 * Sets the block size of the new snapshot.
 *
 * Since: 1.0
 */
void
hexz_commit_set_block_size (HexzCommit *self,
                            guint       block_size)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (block_size >= HEXZ_MIN_BLOCK_SIZE && block_size <= HEXZ_MAX_BLOCK_SIZE);
  g_return_if_fail ((block_size & (block_size - 1)) == 0);
  g_return_if_fail (!self->running);

  if (self->block_size == block_size)
    return;

  self->block_size = block_size;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_BLOCK_SIZE]);
}

/**
 * hexz_commit_get_threads:
 * @self: a commit
 *
 * Gets the number of compression threads.
 *
 * Returns: the number of threads, 0 for one per processor
 *
 * Since: 1.0
 */
guint
hexz_commit_get_threads (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), 0);

  return self->threads;
}

/**
 * hexz_commit_set_threads:
 * @self: a commit
 * @threads: the number of threads up to 1024, 0 for one per processor
 *
 * Sets the number of compression threads.
 *
 * Since: 1.0
 */
void
hexz_commit_set_threads (HexzCommit *self,
                         guint       threads)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (threads <= 1024);
  g_return_if_fail (!self->running);

  if (self->threads == threads)
    return;

  self->threads = threads;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_THREADS]);
}

/**
 * hexz_commit_get_train_dictionary:
 * @self: a commit
 *
 * Gets whether the writer trains a dictionary for LZ4 or zstd blocks.
 *
 * Returns: %TRUE if a dictionary is trained
 *
 * Since: 1.0
 */
gboolean
hexz_commit_get_train_dictionary (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), FALSE);

  return self->train_dictionary;
}

/**
 * hexz_commit_set_train_dictionary:
 * @self: a commit
 * @train_dictionary: whether to train a dictionary
 *
 * Sets whether the writer trains a dictionary for LZ4 or zstd blocks on
 * the first 8 MiB of data it stores; see
 * [method@Hexz.SnapshotWriter.set_train_dictionary]. Off by default.
 *
 * Since: 1.0
 */
void
hexz_commit_set_train_dictionary (HexzCommit *self,
                                  gboolean    train_dictionary)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (!self->running);

  train_dictionary = !!train_dictionary;
  if (self->train_dictionary == train_dictionary)
    return;

  self->train_dictionary = train_dictionary;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TRAIN_DICTIONARY]);
}

/**
 * hexz_commit_get_message:
 * @self: a commit
 *
 * Gets the free text stored in the new snapshot's metadata.
 *
 * Returns: (nullable): the message
 *
 * Since: 1.0
 */
const char *
hexz_commit_get_message (HexzCommit *self)
{
  g_return_val_if_fail (HEXZ_IS_COMMIT (self), NULL);

  return self->message;
}

/**
 * hexz_commit_set_message:
 * @self: a commit
 * @message: (nullable): a free text
 *
 * Sets the free text stored in the new snapshot's metadata.
 *
 * Since: 1.0
 */
void
hexz_commit_set_message (HexzCommit *self,
                         const char *message)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (!self->running);

  if (g_strcmp0 (self->message, message) == 0)
    return;

  g_free (self->message);
  self->message = g_strdup (message);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MESSAGE]);
}

/**
 * hexz_commit_set_metadata:
 * @self: a commit
 * @key: a metadata key
 * @value: (nullable): the value, or %NULL to remove @key
 *
 * Sets an application metadata entry of the new snapshot, passed to
 * [method@Hexz.SnapshotWriter.set_metadata] (the QEMU version, the RAM
 * size, how the snapshot was taken).
 *
 * Since: 1.0
 */
void
hexz_commit_set_metadata (HexzCommit *self,
                          const char *key,
                          JsonNode   *value)
{
  g_return_if_fail (HEXZ_IS_COMMIT (self));
  g_return_if_fail (key != NULL);
  g_return_if_fail (!self->running);

  if (value == NULL)
    json_object_remove_member (self->metadata, key);
  else
    json_object_set_member (self->metadata, key, json_node_copy (value));
}
