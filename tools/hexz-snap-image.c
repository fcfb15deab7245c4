/* hexz-snap-image.c: the pack and extract subcommands, raw images in and out
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "hexz-snap.h"

/* Bytes read or written at a time. */
#define CHUNK_SIZE (1024 * 1024)

/* pack */

typedef struct {
  HexzTool *tool;
  char *image_path;
  char *output_path;
  char *memory_path;
  char *message;
  gboolean json;
  HexzToolWriterOptions options;
} PackJob;

static void
pack_job_free (PackJob *job)
{
  g_free (job->image_path);
  g_free (job->output_path);
  g_free (job->memory_path);
  g_free (job->message);
  g_free (job);
}

/* Writes the zero bytes [offset, end) of the disk stream. Whole blocks
 * become zero blocks. The ragged ends are written as bytes so that the
 * writer's blocks stay whole. */
static gboolean
pack_write_zero_range (HexzSnapshotWriter  *writer,
                       guint64              offset,
                       guint64              end,
                       const guint8        *zeros,
                       GCancellable        *cancellable,
                       GError             **error)
{
  guint block_size = hexz_snapshot_writer_get_block_size (writer);
  guint64 aligned_start = MIN (end, (offset + block_size - 1) / block_size * block_size);
  guint64 aligned_end = MAX (aligned_start, end / block_size * block_size);

  if (aligned_start > offset &&
      !hexz_snapshot_writer_write (writer, zeros, aligned_start - offset, cancellable, error))
    return FALSE;

  if (aligned_end > aligned_start &&
      !hexz_snapshot_writer_write_zeros (writer, aligned_end - aligned_start, cancellable, error))
    return FALSE;

  if (end > aligned_end &&
      !hexz_snapshot_writer_write (writer, zeros, end - aligned_end, cancellable, error))
    return FALSE;

  return TRUE;
}

static gboolean
pack_read_image (PackJob  *job,
                 int       fd,
                 guint64   offset,
                 guint8   *buffer,
                 gsize     count,
                 GError  **error)
{
  gsize done = 0;

  while (done < count)
    {
      gssize n_read = pread (fd, buffer + done, count - done, offset + done);

      if (n_read < 0 && errno == EINTR)
        continue;

      if (n_read <= 0)
        {
          int saved_errno = n_read < 0 ? errno : EIO;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       /* Translators: the first %s is a file name, the number an offset in
                        * bytes, the last %s an error message. */
                       _("Cannot read disk image “%s” at byte %" PRIu64 ": %s"),
                       job->image_path, offset + done,
                       n_read < 0 ? g_strerror (saved_errno) : _("the file shrank while being read"));
          return FALSE;
        }

      done += n_read;
    }

  return TRUE;
}

/* Writes the disk stream from the image, skipping the image's holes
 * (SEEK_HOLE) so that a sparse image is not read byte by byte. */
static gboolean
pack_disk (PackJob             *job,
           HexzSnapshotWriter  *writer,
           int                  fd,
           guint64              size,
           GCancellable        *cancellable,
           GError             **error)
{
  g_autofree guint8 *buffer = g_malloc (CHUNK_SIZE);
  g_autofree guint8 *zeros = g_malloc0 (HEXZ_MAX_BLOCK_SIZE);
  guint64 offset = 0;

  if (!hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, size, error))
    return FALSE;

  hexz_tool_progress_begin (job->tool, hexz_stream_to_string (HEXZ_STREAM_DISK), size);

  while (offset < size)
    {
      off_t data_start = lseek (fd, offset, SEEK_DATA);
      off_t data_end;

      if (data_start < 0 && errno == ENXIO)
        data_start = size;
      else if (data_start < 0)
        data_start = offset;

      if ((guint64) data_start > offset)
        {
          if (!pack_write_zero_range (writer, offset, data_start, zeros, cancellable, error))
            return FALSE;

          offset = data_start;
          hexz_tool_progress_update (job->tool, offset, size);
          continue;
        }

      data_end = lseek (fd, offset, SEEK_HOLE);
      if (data_end < 0 || (guint64) data_end > size)
        data_end = size;

      while (offset < (guint64) data_end)
        {
          gsize count = MIN (CHUNK_SIZE, data_end - offset);

          if (g_cancellable_set_error_if_cancelled (cancellable, error))
            return FALSE;

          if (!pack_read_image (job, fd, offset, buffer, count, error) ||
              !hexz_snapshot_writer_write (writer, buffer, count, cancellable, error))
            return FALSE;

          offset += count;
          hexz_tool_progress_update (job->tool, offset, size);
        }
    }

  return hexz_snapshot_writer_end_stream (writer, cancellable, error);
}

static gboolean
pack_memory (PackJob             *job,
             HexzSnapshotWriter  *writer,
             GCancellable        *cancellable,
             GError             **error)
{
  g_autoptr(GFile) file = g_file_new_for_path (job->memory_path);
  g_autoptr(GFileInputStream) input = NULL;
  g_autoptr(GFileInfo) info = NULL;
  g_autoptr(GError) local_error = NULL;

  input = g_file_read (file, cancellable, &local_error);
  if (input != NULL)
    info = g_file_input_stream_query_info (input, G_FILE_ATTRIBUTE_STANDARD_SIZE,
                                           cancellable, &local_error);
  if (info == NULL)
    {
      g_set_error (error, local_error->domain, local_error->code,
                   /* Translators: the first %s is a file name, the second an error message. */
                   _("Cannot read memory image “%s”: %s"), job->memory_path, local_error->message);
      return FALSE;
    }

  return hexz_tool_copy_stream_to_writer (job->tool, writer, HEXZ_STREAM_MEMORY,
                                          G_INPUT_STREAM (input), g_file_info_get_size (info),
                                          cancellable, error);
}

static void
pack_thread (GTask        *task,
             gpointer      source_object,
             gpointer      task_data,
             GCancellable *cancellable)
{
  PackJob *job = task_data;
  g_autoptr(HexzSnapshotWriter) writer = NULL;
  GError *error = NULL;
  struct stat st;
  off_t size;
  int fd;

  fd = g_open (job->image_path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0)
    {
      int saved_errno = errno;

      g_task_return_new_error (task, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                               /* Translators: the first %s is a file name, the second an
                                * error message. */
                               _("Cannot open disk image “%s”: %s"),
                               job->image_path, g_strerror (saved_errno));
      return;
    }

  if (fstat (fd, &st) == 0 && S_ISDIR (st.st_mode))
    {
      close (fd);
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_IS_DIRECTORY,
                               /* Translators: %s is a file name. */
                               _("Disk image “%s” is a folder: give a raw disk image file"),
                               job->image_path);
      return;
    }

  /* lseek() also gives the size of a block device, where fstat() gives 0. */
  size = lseek (fd, 0, SEEK_END);
  if (size < 0)
    {
      int saved_errno = errno;

      close (fd);
      g_task_return_new_error (task, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                               /* Translators: the first %s is a file name, the second an
                                * error message. */
                               _("Cannot find the size of disk image “%s”: %s"),
                               job->image_path, g_strerror (saved_errno));
      return;
    }

  /* Only the disk stream, written first, trains the dictionary. */
  hexz_tool_writer_options_fit_input (&job->options, size);

  writer = hexz_snapshot_writer_new_for_path (job->output_path);
  hexz_tool_writer_options_apply (&job->options, writer);
  if (job->message != NULL)
    hexz_snapshot_writer_set_message (writer, job->message);

  if (!pack_disk (job, writer, fd, size, cancellable, &error) ||
      (job->memory_path != NULL && !pack_memory (job, writer, cancellable, &error)) ||
      !hexz_snapshot_writer_close (writer, cancellable, &error))
    {
      close (fd);
      hexz_snapshot_writer_abort (writer);
      g_task_return_error (task, error);
      return;
    }

  close (fd);
  g_task_return_boolean (task, TRUE);
}

static void
pack_done (GObject      *source_object,
           GAsyncResult *result,
           gpointer      user_data)
{
  PackJob *job = g_task_get_task_data (G_TASK (result));
  g_autoptr(GError) error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      hexz_tool_finish (job->tool, error);
      return;
    }

  hexz_tool_report_written_snapshot (job->tool, "pack", job->output_path, job->json);
}

gboolean
hexz_tool_command_pack (HexzTool  *tool,
                        int        argc,
                        char     **argv)
{
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GTask) task = NULL;
  GOptionGroup *group;
  PackJob *job = g_new0 (PackJob, 1);
  const GOptionEntry entries[] = {
    { "memory", 'm', 0, G_OPTION_ARG_FILENAME, &job->memory_path,
      N_("Store the memory image FILE as the memory stream"), N_("FILE") },
    { "message", 0, 0, G_OPTION_ARG_STRING, &job->message,
      N_("Store TEXT as the snapshot’s message"), N_("TEXT") },
    { "json", 0, 0, G_OPTION_ARG_NONE, &job->json,
      N_("Print a JSON summary on success"), NULL },
    { NULL }
  };

  job->tool = tool;
  hexz_tool_writer_options_init (&job->options, TRUE);

  context = hexz_tool_option_context_new (tool);
  group = hexz_tool_writer_option_group (&job->options, entries);
  g_option_context_set_main_group (context, group);

  if (!hexz_tool_parse_options (tool, context, &argc, &argv, 2, 2))
    {
      pack_job_free (job);
      return FALSE;
    }

  job->image_path = g_strdup (argv[1]);
  job->output_path = g_strdup (argv[2]);

  if (!hexz_tool_check_output (tool, job->image_path, job->output_path, TRUE,
                               job->options.force))
    {
      pack_job_free (job);
      return TRUE;
    }

  task = g_task_new (NULL, tool->cancellable, pack_done, NULL);
  g_task_set_source_tag (task, hexz_tool_command_pack);
  g_task_set_task_data (task, job, (GDestroyNotify) pack_job_free);
  g_task_run_in_thread (task, pack_thread);

  return TRUE;
}

/* extract */

typedef struct {
  HexzTool *tool;
  char *snapshot_path;
  char *disk_path;
  char *memory_path;
  guint threads;
  gboolean force;
  gboolean json;
} ExtractJob;

static void
extract_job_free (ExtractJob *job)
{
  g_free (job->snapshot_path);
  g_free (job->disk_path);
  g_free (job->memory_path);
  g_free (job);
}

static gboolean
write_all_at (int            fd,
              const guint8  *data,
              gsize          count,
              guint64        offset,
              const char    *path,
              GError       **error)
{
  gsize done = 0;

  while (done < count)
    {
      gssize n_written = pwrite (fd, data + done, count - done, offset + done);

      if (n_written < 0 && errno == EINTR)
        continue;

      if (n_written < 0)
        {
          int saved_errno = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       /* Translators: the first %s is a file name, the second an error
                        * message. */
                       _("Cannot write “%s”: %s"), path, g_strerror (saved_errno));
          return FALSE;
        }

      done += n_written;
    }

  return TRUE;
}

static gboolean
page_is_zero (const guint8 *data,
              gsize         count)
{
  return data[0] == 0 && memcmp (data, data + 1, count - 1) == 0;
}

/* Writes the 4 KiB pages of @data that hold a nonzero byte. The file is
 * new, so the pages left out stay holes, which read as zeros and take no
 * space. */
static gboolean
write_nonzero_at (int            fd,
                  const guint8  *data,
                  gsize          count,
                  guint64        offset,
                  const char    *path,
                  GError       **error)
{
  const gsize page = 4096;
  gsize start = 0;

  while (start < count)
    {
      gsize end;

      while (start < count && page_is_zero (data + start, MIN (page, count - start)))
        start += MIN (page, count - start);

      end = start;
      while (end < count && !page_is_zero (data + end, MIN (page, count - end)))
        end += MIN (page, count - end);

      if (end > start && !write_all_at (fd, data + start, end - start, offset + start, path, error))
        return FALSE;

      start = end;
    }

  return TRUE;
}

/* One stream being extracted: the threads take the next chunk under the
 * lock, read it, and write it at its offset. */
typedef struct {
  ExtractJob *job;
  HexzSnapshot *snapshot;
  HexzStream stream;
  const char *path;
  int fd;
  guint64 size;
  gsize chunk_size;
  GCancellable *cancellable;

  GMutex lock;
  guint64 next_offset;
  guint64 done;
  GError *error;   /* the first failure; the others stop when it is set */
} ExtractRun;

/* Takes the next chunk: returns FALSE when none is left or a thread
 * failed. */
static gboolean
extract_run_next (ExtractRun *run,
                  guint64    *offset,
                  gsize      *count)
{
  gboolean found = FALSE;

  g_mutex_lock (&run->lock);
  if (run->error == NULL && run->next_offset < run->size)
    {
      *offset = run->next_offset;
      *count = MIN (run->chunk_size, run->size - run->next_offset);
      run->next_offset += *count;
      found = TRUE;
    }
  g_mutex_unlock (&run->lock);

  return found;
}

static void
extract_run_done (ExtractRun *run,
                  gsize       count,
                  GError     *error)
{
  g_mutex_lock (&run->lock);
  if (error != NULL && run->error == NULL)
    run->error = error;
  else if (error != NULL)
    g_error_free (error);
  else
    {
      run->done += count;
      hexz_tool_progress_update (run->job->tool, run->done, run->size);
    }
  g_mutex_unlock (&run->lock);
}

static gpointer
extract_run_thread (gpointer data)
{
  ExtractRun *run = data;
  g_autofree guint8 *buffer = g_malloc (run->chunk_size);
  guint64 offset;
  gsize count;

  while (extract_run_next (run, &offset, &count))
    {
      GError *error = NULL;

      if (!g_cancellable_set_error_if_cancelled (run->cancellable, &error) &&
          !hexz_snapshot_is_zero (run->snapshot, run->stream, offset, count, &error) &&
          error == NULL &&
          hexz_snapshot_read (run->snapshot, run->stream, offset, buffer, count,
                              run->cancellable, &error))
        write_nonzero_at (run->fd, buffer, count, offset, run->path, &error);

      extract_run_done (run, count, error);
    }

  return NULL;
}

/* Writes one stream of @snapshot to a new temporary file beside @path,
 * returned in @temp_path_out once complete and flushed, with one thread per
 * processor (or --threads) decoding 1 MiB chunks. Zero ranges stay
 * holes. */
static gboolean
extract_stream (ExtractJob    *job,
                HexzSnapshot  *snapshot,
                HexzStream     stream,
                const char    *path,
                char         **temp_path_out,
                GCancellable  *cancellable,
                GError       **error)
{
  g_autofree char *temp_path = NULL;
  g_autoptr(GPtrArray) threads = g_ptr_array_new ();
  ExtractRun run = { 0 };
  guint n_threads = job->threads > 0 ? job->threads : g_get_num_processors ();
  int fd;

  fd = hexz_tool_create_temp_beside (path, &temp_path, error);
  if (fd < 0)
    return FALSE;

  run.job = job;
  run.snapshot = snapshot;
  run.stream = stream;
  run.path = path;
  run.fd = fd;
  run.size = hexz_snapshot_get_stream_size (snapshot, stream);
  run.chunk_size = MAX (CHUNK_SIZE, hexz_snapshot_get_block_size (snapshot));
  run.cancellable = cancellable;
  g_mutex_init (&run.lock);

  hexz_tool_progress_begin (job->tool, hexz_stream_to_string (stream), run.size);

  /* This thread is one of the workers. */
  for (guint i = 1; i < n_threads && (guint64) i * run.chunk_size < run.size; i++)
    g_ptr_array_add (threads, g_thread_new ("hexz-extract", extract_run_thread, &run));
  extract_run_thread (&run);
  for (guint i = 0; i < threads->len; i++)
    g_thread_join (g_ptr_array_index (threads, i));
  g_mutex_clear (&run.lock);

  if (run.error != NULL)
    {
      g_propagate_error (error, run.error);
      goto failed;
    }

  if (ftruncate (fd, run.size) != 0 || fsync (fd) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   /* Translators: the first %s is a file name, the second an error message. */
                   _("Cannot write “%s”: %s"), path, g_strerror (saved_errno));
      goto failed;
    }

  close (fd);
  *temp_path_out = g_steal_pointer (&temp_path);

  return TRUE;

failed:
  close (fd);
  g_unlink (temp_path);
  return FALSE;
}

static void
extract_thread (GTask        *task,
                gpointer      source_object,
                gpointer      task_data,
                GCancellable *cancellable)
{
  ExtractJob *job = task_data;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  GError *error = NULL;

  const char *paths[] = { job->disk_path, job->memory_path };   /* by HexzStream */
  char *temp_paths[G_N_ELEMENTS (paths)] = { NULL, NULL };
  guint s;

  snapshot = hexz_snapshot_open_path (job->snapshot_path, cancellable, &error);
  if (snapshot == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  if (job->memory_path != NULL && !hexz_snapshot_has_memory (snapshot))
    {
      g_task_return_new_error (task, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_NO_STREAM,
                               /* Translators: %s is a file name. */
                               _("Snapshot “%s” has no memory stream: it was taken without "
                                 "the VM’s memory"),
                               job->snapshot_path);
      return;
    }

  /* Every output appears only when all of them are complete. */
  for (s = 0; s < G_N_ELEMENTS (paths) && error == NULL; s++)
    {
      if (paths[s] != NULL)
        extract_stream (job, snapshot, s, paths[s], &temp_paths[s], cancellable, &error);
    }

  for (s = 0; s < G_N_ELEMENTS (paths) && error == NULL; s++)
    {
      if (temp_paths[s] != NULL &&
          hexz_tool_replace_file_atomically (paths[s], temp_paths[s], &error))
        g_clear_pointer (&temp_paths[s], g_free);
    }

  for (s = 0; s < G_N_ELEMENTS (paths); s++)
    {
      if (temp_paths[s] != NULL)
        g_unlink (temp_paths[s]);
      g_free (temp_paths[s]);
    }

  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void
extract_done (GObject      *source_object,
              GAsyncResult *result,
              gpointer      user_data)
{
  ExtractJob *job = g_task_get_task_data (G_TASK (result));
  g_autoptr(GError) error = NULL;

  hexz_tool_progress_end (job->tool);

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      hexz_tool_finish (job->tool, error);
      return;
    }

  if (job->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      json_builder_set_member_name (builder, "command");
      json_builder_add_string_value (builder, "extract");
      json_builder_set_member_name (builder, "file");
      hexz_tool_add_path_value (builder, job->snapshot_path);
      json_builder_set_member_name (builder, "disk");
      hexz_tool_add_path_value (builder, job->disk_path);
      json_builder_set_member_name (builder, "memory");
      hexz_tool_add_path_value (builder, job->memory_path);
      json_builder_set_member_name (builder, "milliseconds");
      json_builder_add_int_value (builder, hexz_tool_elapsed_milliseconds (job->tool));
      json_builder_end_object (builder);
      hexz_tool_print_json (job->tool, builder);
    }

  hexz_tool_finish (job->tool, NULL);
}

static gboolean
parse_extract_threads (const char  *option_name,
                       const char  *value,
                       gpointer     data,
                       GError     **error)
{
  ExtractJob *job = data;

  return hexz_tool_parse_thread_count (value, &job->threads, error);
}

gboolean
hexz_tool_command_extract (HexzTool  *tool,
                           int        argc,
                           char     **argv)
{
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GTask) task = NULL;
  ExtractJob *job = g_new0 (ExtractJob, 1);
  const GOptionEntry entries[] = {
    { "disk", 0, 0, G_OPTION_ARG_FILENAME, &job->disk_path,
      N_("Write the disk stream to the new file OUT"), N_("OUT") },
    { "memory", 0, 0, G_OPTION_ARG_FILENAME, &job->memory_path,
      N_("Write the memory stream to the new file OUT"), N_("OUT") },
    { "threads", 't', 0, G_OPTION_ARG_CALLBACK, parse_extract_threads,
      N_("Decoding threads; 0 (default) uses one per processor"), N_("N") },
    { "force", 'f', 0, G_OPTION_ARG_NONE, &job->force,
      N_("Replace existing output files"), NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &job->json,
      N_("Print a JSON summary on success"), NULL },
    { NULL }
  };
  GOptionGroup *group;

  job->tool = tool;

  context = hexz_tool_option_context_new (tool);
  group = g_option_group_new (NULL, NULL, NULL, job, NULL);
  g_option_group_add_entries (group, entries);
  g_option_group_set_translation_domain (group, GETTEXT_PACKAGE);
  g_option_context_set_main_group (context, group);

  if (!hexz_tool_parse_options (tool, context, &argc, &argv, 1, 1))
    {
      extract_job_free (job);
      return FALSE;
    }

  if (job->disk_path == NULL && job->memory_path == NULL)
    {
      hexz_tool_usage_error (tool, _("Nothing to extract: give --disk OUT, --memory OUT or both"));
      extract_job_free (job);
      return FALSE;
    }

  if (g_strcmp0 (job->disk_path, job->memory_path) == 0)
    {
      hexz_tool_usage_error (tool, _("--disk and --memory name the same file: give two names"));
      extract_job_free (job);
      return FALSE;
    }

  job->snapshot_path = g_strdup (argv[1]);

  if ((job->disk_path != NULL &&
       !hexz_tool_check_output (tool, job->snapshot_path, job->disk_path, FALSE, job->force)) ||
      (job->memory_path != NULL &&
       !hexz_tool_check_output (tool, job->snapshot_path, job->memory_path, FALSE, job->force)))
    {
      extract_job_free (job);
      return TRUE;
    }

  task = g_task_new (NULL, tool->cancellable, extract_done, NULL);
  g_task_set_source_tag (task, hexz_tool_command_extract);
  g_task_set_task_data (task, job, (GDestroyNotify) extract_job_free);
  g_task_run_in_thread (task, extract_thread);

  return TRUE;
}
