/* hexz-snapshot-writer.c: writing snapshot files
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/**
 * HexzSnapshotWriter:
 *
 * Writes a snapshot file: a disk stream, a memory stream, or both, each
 * cut into blocks that are compressed on worker threads, deduplicated and
 * indexed. See `doc/format.md` for the file format.
 *
 * The file is built under a temporary name (`.NAME.XXXXXX.tmp`, mode 0600)
 * in the output's folder and renamed into place by
 * [method@Hexz.SnapshotWriter.close], so that the output path contains either
 * its former content or a complete snapshot. Any error, a cancellation,
 * [method@Hexz.SnapshotWriter.abort] or dropping the last reference before
 * closing removes the temporary file, and the writer then fails every
 * further call with the first error. A writer that was killed leaves its
 * temporary file behind. The next writer into the same folder, whatever
 * its output's name, removes it once no process holds it locked and it
 * has not changed for a few seconds. That writer removes only files named
 * like its own temporary files that start with zeros or the snapshot
 * magic.
 *
 * ```c
 * g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path ("vm.hxz");
 *
 * hexz_snapshot_writer_set_codec (writer, HEXZ_CODEC_ZSTD);
 * if (!hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, size, error) ||
 *     !hexz_snapshot_writer_write (writer, data, size, NULL, error) ||
 *     !hexz_snapshot_writer_end_stream (writer, NULL, error) ||
 *     !hexz_snapshot_writer_close (writer, NULL, error))
 *   return FALSE;
 * ```
 *
 * A writer is used from one thread at a time; only its internal workers
 * run beside the caller.
 *
 * Since: 1.0
 */

#include "config.h"

#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <xxhash.h>

#include "hexz-snapshot-writer.h"
#include "hexz-enum-types.h"
#include "hexz-format-private.h"
#include "hexz-i18n-private.h"
#include "hexz-util-private.h"
#include "hexz-snapshot-private.h"

/* Blocks in flight per worker thread. The writer's memory is bounded by
 * JOBS_PER_THREAD * threads * (block_size + compress bound of a block),
 * plus two write buffers of WRITE_BUFFER_SIZE, and TRAIN_SIZE while a
 * dictionary of either codec is trained: about 9 MiB at 64 KiB blocks with 2 threads.
 * Two parts grow with the image, both bounded. The deduplication table
 * takes 32 to 64 bytes per distinct stored block, up to DEDUP_MAX_ENTRIES.
 * Finished index pages go to an unlinked temporary file, and only 24
 * bytes per page of 4096 blocks stay in memory. */
#define JOBS_PER_THREAD     4
#define WRITE_BUFFER_SIZE   (4 * 1024 * 1024)
/* Write buffers start at this alignment in memory and, when full, in the
 * file, as O_DIRECT needs; 4096 covers the usual logical block sizes. */
#define DIRECT_ALIGNMENT    4096
#define TRAIN_SIZE          (8 * 1024 * 1024)
/* Zero and parent runs that wait, while the dictionary is trained, for
 * the bytes buffered before them. Training ends when this many wait. */
#define MAX_PENDING_RUNS    1024
#define PROGRESS_BYTES      (16 * 1024 * 1024)
#define PROGRESS_INTERVAL   (100 * G_TIME_SPAN_MILLISECOND)
#define SPLICE_BUFFER_SIZE  (1024 * 1024)
/* At most 2^22 distinct blocks (256 GiB at 64 KiB blocks) are recorded
 * for deduplication, so the table stays under 256 MiB. */
#define DEDUP_MAX_ENTRIES   (1u << 22)

typedef enum {
  JOB_BLOCK,
  JOB_ZERO_RUN,
  JOB_PARENT_RUN,
} JobKind;

/* One slot of the ring of blocks in flight. Fields other than @done are
 * owned by the caller's thread until the job is queued, then by a worker
 * until @done is set under the writer's lock. */
typedef struct {
  JobKind          kind;
  guint64          count;          /* blocks in a run */
  guint32          tail_length;    /* logical length of a run's last block */
  guint32          length;         /* logical length of a block */
  guint8          *input;
  guint8          *output;
  gsize            output_length;  /* 0: store raw */
  HexzStoredCodec  stored_codec;
  gboolean         zero;
  guint64          checksum;
  XXH128_hash_t    hash;
  gboolean         done;
} Job;

typedef struct {
  guint64 hash_low;
  guint64 hash_high;
  guint64 offset;
  guint32 length;
  guint8  codec;
  guint8  used;
} DedupSlot;

/* A zero or parent run met while the dictionary is trained. It is
 * applied after the first @buffer_offset buffered bytes. */
typedef struct {
  gsize    buffer_offset;
  guint64  count;
  JobKind  kind;
} PendingRun;

/* A compressed index page, kept in the spill file until close. */
typedef struct {
  guint64 spill_offset;
  guint32 length;
  guint64 checksum;
} SpilledPage;

typedef struct {
  gboolean   present;
  gboolean   finished;
  guint64    logical_size;
  guint64    data_offset;
  guint64    data_length;
  guint64    data_checksum;
  XXH3_state_t *data_hash;  /* over the bytes this stream stores first */
  guint64    n_entries;
  GArray    *pages;         /* SpilledPage */
  guint8    *page_buffer;
  guint      page_fill;
} StreamState;

struct _HexzSnapshotWriter
{
  GObject       parent_instance;

  GFile        *file;
  HexzCodec     codec;
  int           level;
  guint         block_size;
  guint         threads;
  gboolean      train_dictionary;
  gboolean      keep_dictionary;      /* for tests: keep it even if it does not pay off */
  HexzSnapshot *parent;
  JsonObject   *metadata;
  char         *message;

  /* Output file */
  gboolean      started;
  gboolean      closed;
  gboolean      busy;
  GError       *failure;
  char         *temp_path;
  int           fd;
  int           direct_fd;            /* the same file with O_DIRECT, or -1 */
  guint8       *write_buffer;
  gsize         write_buffer_used;
  guint64       write_buffer_offset;  /* file offset of write_buffer[0] */
  GThread      *output_thread;
  GMutex        output_lock;
  GCond         output_cond;
  guint8       *output_buffer;        /* being written by output_thread */
  gsize         output_length;        /* 0 when output_thread is idle */
  guint64       output_buffer_offset;
  int           output_errno;
  gboolean      output_quit;

  /* Streams */
  StreamState   streams[HEXZ_N_STREAMS];
  gboolean      stream_open;
  HexzStream    current;
  guint64       position;             /* logical bytes in the current stream */
  guint64       expected;
  gboolean      ended_at_parent_tail;

  /* Pipeline */
  Job          *jobs;
  guint         n_jobs;
  guint64       next_seq;
  guint64       retired_seq;
  Job          *filling;              /* the block being filled, or NULL */
  guint32       filling_length;
  GMutex        lock;
  GCond         cond;
  GAsyncQueue  *queue;
  GThread     **workers;
  guint         n_workers;
  guint8       *scratch;              /* decoded bytes for dedup compares */

  /* Index pages wait in an unlinked temporary file until close. */
  int           spill_fd;
  guint64       spill_end;

  /* Dictionary */
  gboolean      training;
  guint8       *train_buffer;
  gsize         train_fill;
  GArray       *pending_runs;         /* PendingRun */
  gboolean      replaying;            /* feeding the buffered start after training */
  GBytes       *dictionary;
  HexzCompressDictionary *compress_dictionary;
  HexzDecodeDictionary   *decode_dictionary;  /* made for dedup compares */
  gboolean      dictionary_used;
  guint16       format_minor;         /* the lowest one the stored codecs need */

  /* Deduplication */
  DedupSlot    *dedup;
  gsize         dedup_capacity;
  gsize         dedup_count;
  gboolean      weak_hash;            /* tests: hash only 16 bytes */

  /* Progress */
  guint64       progress_reported;
  gint64        progress_time;
  GMainContext *progress_context;     /* set while a splice runs */
};

enum {
  PROP_0,
  PROP_FILE,
  PROP_CODEC,
  PROP_LEVEL,
  PROP_BLOCK_SIZE,
  PROP_THREADS,
  PROP_TRAIN_DICTIONARY,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum {
  PROGRESS,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

/* Marks the end of the job queue for a worker thread. */
static Job stop_job;

static void stop_output_thread (HexzSnapshotWriter *self);

G_DEFINE_FINAL_TYPE (HexzSnapshotWriter, hexz_snapshot_writer, G_TYPE_OBJECT)

static char *
writer_display_name (HexzSnapshotWriter *self)
{
  return g_file_get_parse_name (self->file);
}

/* Worker threads */

static void
job_run (HexzSnapshotWriter *self,
         Job                *job)
{
  job->zero = hexz_is_all_zero (job->input, job->length);
  if (job->zero)
    return;

  job->checksum = hexz_checksum (job->input, job->length);
  job->hash = XXH3_128bits (job->input,
                            self->weak_hash ? MIN (job->length, 16) : job->length);
  job->output_length = hexz_compress_block (self->codec, self->level,
                                            self->compress_dictionary, job->input,
                                            job->length, job->output,
                                            hexz_compress_bound (self->block_size),
                                            &job->stored_codec);
}

static gpointer
worker_main (gpointer data)
{
  HexzSnapshotWriter *self = data;

  for (;;)
    {
      Job *job = g_async_queue_pop (self->queue);

      if (job == &stop_job)
        break;

      job_run (self, job);

      g_mutex_lock (&self->lock);
      job->done = TRUE;
      g_cond_broadcast (&self->cond);
      g_mutex_unlock (&self->lock);
    }

  return NULL;
}

static void
stop_workers (HexzSnapshotWriter *self)
{
  for (guint i = 0; i < self->n_workers; i++)
    g_async_queue_push (self->queue, &stop_job);

  for (guint i = 0; i < self->n_workers; i++)
    g_thread_join (self->workers[i]);

  g_clear_pointer (&self->workers, g_free);
  self->n_workers = 0;
}

/* Failure handling */

static void
discard_output (HexzSnapshotWriter *self)
{
  stop_workers (self);
  stop_output_thread (self);

  if (self->fd >= 0)
    {
      close (self->fd);
      self->fd = -1;
    }

  if (self->direct_fd >= 0)
    {
      close (self->direct_fd);
      self->direct_fd = -1;
    }

  if (self->spill_fd >= 0)
    {
      close (self->spill_fd);
      self->spill_fd = -1;
    }

  if (self->temp_path != NULL)
    {
      if (g_unlink (self->temp_path) != 0 && errno != ENOENT)
        g_warning ("Could not remove the temporary file “%s”: %s",
                   self->temp_path, g_strerror (errno));
      g_clear_pointer (&self->temp_path, g_free);
    }
}

/* Records @error as the writer's failure, removes the temporary file and
 * passes a copy of the error on. Always returns %FALSE. */
static gboolean
writer_fail (HexzSnapshotWriter  *self,
             GError             **error,
             GError              *local_error)
{
  if (self->failure == NULL)
    self->failure = g_error_copy (local_error);

  discard_output (self);
  g_propagate_error (error, local_error);

  return FALSE;
}

/* @format is a translated message with two %s: the file name and the
 * system's reason. */
static gboolean
writer_fail_errno (HexzSnapshotWriter  *self,
                   GError             **error,
                   int                  saved_errno,
                   const char          *format)
{
  g_autofree char *name = writer_display_name (self);
  GError *local_error;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
  local_error = g_error_new (G_IO_ERROR, g_io_error_from_errno (saved_errno),
                             format, name, g_strerror (saved_errno));
#pragma GCC diagnostic pop

  return writer_fail (self, error, local_error);
}

static gboolean
check_usable (HexzSnapshotWriter  *self,
              GError             **error)
{
  if (self->failure != NULL)
    {
      g_propagate_error (error, g_error_copy (self->failure));
      return FALSE;
    }

  if (self->closed)
    {
      g_autofree char *name = writer_display_name (self);

      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: %s is a file name. */
                   _("Snapshot “%s” is already closed."), name);
      return FALSE;
    }

  return TRUE;
}

static gboolean
check_cancelled (HexzSnapshotWriter  *self,
                 GCancellable        *cancellable,
                 GError             **error)
{
  GError *local_error = NULL;

  if (g_cancellable_set_error_if_cancelled (cancellable, &local_error))
    return writer_fail (self, error, local_error);

  return TRUE;
}

/* Output file */

static gboolean
pwrite_all (int           fd,
            const guint8 *data,
            gsize         length,
            guint64       offset,
            int          *saved_errno)
{
  while (length > 0)
    {
      gssize n = pwrite (fd, data, length, offset);

      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          *saved_errno = errno;
          return FALSE;
        }

      data += n;
      length -= n;
      offset += n;
    }

  return TRUE;
}

static gboolean
pread_all (int      fd,
           guint8  *data,
           gsize    length,
           guint64  offset,
           int     *saved_errno)
{
  while (length > 0)
    {
      gssize n = pread (fd, data, length, offset);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          *saved_errno = n < 0 ? errno : EIO;
          return FALSE;
        }

      data += n;
      length -= n;
      offset += n;
    }

  return TRUE;
}

static guint64
output_offset (HexzSnapshotWriter *self)
{
  return self->write_buffer_offset + self->write_buffer_used;
}

/* Writes the output buffer. A whole aligned buffer goes through the
 * O_DIRECT descriptor: copying the output into the page cache took a
 * large share of the writer's CPU time, and the file is flushed at close
 * anyway. Other writes, and every write once O_DIRECT failed, go through
 * the page cache. */
static gboolean
output_write (HexzSnapshotWriter *self,
              int                *saved_errno)
{
  if (self->direct_fd >= 0 &&
      self->output_buffer_offset % DIRECT_ALIGNMENT == 0 &&
      self->output_length % DIRECT_ALIGNMENT == 0)
    {
      if (pwrite_all (self->direct_fd, self->output_buffer, self->output_length,
                      self->output_buffer_offset, saved_errno))
        return TRUE;

      /* A file system may accept O_DIRECT at open and reject the
       * writes. The buffer, even when partly written, is written again
       * below. */
      g_debug ("Writing with O_DIRECT failed (%s); writing through the page cache",
               g_strerror (*saved_errno));
      close (self->direct_fd);
      self->direct_fd = -1;
    }

  return pwrite_all (self->fd, self->output_buffer, self->output_length,
                     self->output_buffer_offset, saved_errno);
}

/* Output thread: writes one full write buffer while the caller's thread
 * fills the other, so that compression goes on while the kernel copies
 * or throttles a write. */
static gpointer
output_thread_main (gpointer data)
{
  HexzSnapshotWriter *self = data;

  g_mutex_lock (&self->output_lock);
  for (;;)
    {
      int saved_errno = 0;

      while (self->output_length == 0 && !self->output_quit)
        g_cond_wait (&self->output_cond, &self->output_lock);
      if (self->output_length == 0)
        break;
      g_mutex_unlock (&self->output_lock);

      if (!output_write (self, &saved_errno))
        g_debug ("Writing %" G_GSIZE_FORMAT " bytes at offset %"
                 G_GUINT64_FORMAT " failed: %s", self->output_length,
                 self->output_buffer_offset, g_strerror (saved_errno));

      g_mutex_lock (&self->output_lock);
      if (self->output_errno == 0)
        self->output_errno = saved_errno;
      self->output_length = 0;
      g_cond_broadcast (&self->output_cond);
    }
  g_mutex_unlock (&self->output_lock);

  return NULL;
}

/* Waits until the output thread has written everything handed to it. */
static gboolean
output_wait (HexzSnapshotWriter  *self,
             GError             **error)
{
  int saved_errno;

  g_mutex_lock (&self->output_lock);
  while (self->output_length > 0)
    g_cond_wait (&self->output_cond, &self->output_lock);
  saved_errno = self->output_errno;
  g_mutex_unlock (&self->output_lock);

  if (saved_errno != 0)
    /* Translators: the first %s is a file name, the second the
     * system's reason. */
    return writer_fail_errno (self, error, saved_errno,
                              _("Writing snapshot “%s” failed: %s"));

  return TRUE;
}

static void
stop_output_thread (HexzSnapshotWriter *self)
{
  if (self->output_thread == NULL)
    return;

  g_mutex_lock (&self->output_lock);
  self->output_quit = TRUE;
  g_cond_broadcast (&self->output_cond);
  g_mutex_unlock (&self->output_lock);

  g_clear_pointer (&self->output_thread, g_thread_join);
}

/* Hands the filled write buffer to the output thread. */
static gboolean
output_flush (HexzSnapshotWriter  *self,
              GError             **error)
{
  guint8 *filled = self->write_buffer;

  if (self->write_buffer_used == 0)
    return TRUE;

  if (!output_wait (self, error))
    return FALSE;

  g_mutex_lock (&self->output_lock);
  self->write_buffer = self->output_buffer;
  self->output_buffer = filled;
  self->output_buffer_offset = self->write_buffer_offset;
  self->output_length = self->write_buffer_used;
  g_cond_broadcast (&self->output_cond);
  g_mutex_unlock (&self->output_lock);

  self->write_buffer_offset += self->write_buffer_used;
  self->write_buffer_used = 0;

  return TRUE;
}

/* Writes out everything appended so far. */
static gboolean
output_sync (HexzSnapshotWriter  *self,
             GError             **error)
{
  return output_flush (self, error) && output_wait (self, error);
}

/* Appends @length bytes at the end of the file, through the write buffer
 * so that the file receives few, large writes. */
static gboolean
output_append (HexzSnapshotWriter  *self,
               const guint8        *data,
               gsize                length,
               GError             **error)
{
  while (length > 0)
    {
      gsize n;

      /* A buffer ends where the file offset reaches a multiple of its size,
       * so that full buffers are aligned for O_DIRECT. */
      gsize capacity = WRITE_BUFFER_SIZE - self->write_buffer_offset % WRITE_BUFFER_SIZE;

      if (self->write_buffer_used == capacity && !output_flush (self, error))
        return FALSE;

      capacity = WRITE_BUFFER_SIZE - self->write_buffer_offset % WRITE_BUFFER_SIZE;
      n = MIN (length, capacity - self->write_buffer_used);
      memcpy (self->write_buffer + self->write_buffer_used, data, n);
      self->write_buffer_used += n;
      data += n;
      length -= n;
    }

  return TRUE;
}

/* Reads back @length stored bytes at @offset, from the write buffer when
 * they are still there. */
static gboolean
output_read_back (HexzSnapshotWriter  *self,
                  guint8              *data,
                  gsize                length,
                  guint64              offset,
                  GError             **error)
{
  int saved_errno;

  if (offset >= self->write_buffer_offset)
    {
      g_assert (offset + length <= output_offset (self));
      memcpy (data, self->write_buffer + (offset - self->write_buffer_offset),
              length);
      return TRUE;
    }

  if (offset + length > self->write_buffer_offset)
    {
      if (!output_sync (self, error))
        return FALSE;
    }
  else if (!output_wait (self, error))
    return FALSE;

  if (!pread_all (self->fd, data, length, offset, &saved_errno))
    /* Translators: the first %s is a file name, the second the
     * system's reason. */
    return writer_fail_errno (self, error, saved_errno, _("Reading back snapshot “%s” failed: %s"));

  return TRUE;
}

/* An entry that no process locks is removed only when it has not changed
 * for this long, so that a process between creating its entry and locking
 * it is left alone. */
#define STALE_ENTRY_AGE_SECONDS 5

/* Whether @name is @prefix, six characters and @suffix; when @any_name
 * is %TRUE, any name of at least one character and a dot may come after
 * @prefix, and the six characters must be letters or digits. */
static gboolean
stale_entry_name_matches (const char *name,
                          const char *prefix,
                          const char *suffix,
                          gboolean    any_name)
{
  gsize length = strlen (name);
  gsize fixed = strlen (prefix) + strlen ("XXXXXX") + strlen (suffix);

  if (!g_str_has_prefix (name, prefix) || !g_str_has_suffix (name, suffix))
    return FALSE;
  if (!any_name)
    return length == fixed;

  if (length < fixed + 2 ||
      name[length - strlen (suffix) - strlen ("XXXXXX") - 1] != '.')
    return FALSE;

  /* g_mkstemp() fills in letters and digits. */
  for (gsize i = length - strlen (suffix) - strlen ("XXXXXX");
       i < length - strlen (suffix); i++)
    {
      if (!g_ascii_isalnum (name[i]))
        return FALSE;
    }

  return TRUE;
}

static void
remove_stale_entries_full (const char         *folder,
                           const char         *prefix,
                           const char         *suffix,
                           gboolean            any_name,
                           gboolean            directories,
                           HexzStaleEntryFunc  remove,
                           gpointer            user_data)
{
  g_autoptr(GDir) dir = g_dir_open (folder, 0, NULL);
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  const char *name;

  if (dir == NULL)
    return;

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = NULL;
      struct stat st, current;
      int fd;

      if (!stale_entry_name_matches (name, prefix, suffix, any_name))
        continue;

      path = g_build_filename (folder, name, NULL);
      fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
                       (directories ? O_DIRECTORY : 0));
      if (fd < 0)
        continue;

      if (fstat (fd, &st) == 0 &&
          (directories ? S_ISDIR (st.st_mode) : S_ISREG (st.st_mode)) &&
          st.st_uid == geteuid () &&
          now - st.st_mtime >= STALE_ENTRY_AGE_SECONDS &&
          flock (fd, LOCK_EX | LOCK_NB) == 0 &&
          lstat (path, &current) == 0 && current.st_dev == st.st_dev &&
          current.st_ino == st.st_ino)
        remove (fd, path, user_data);

      close (fd);
    }
}

/* Finds the entries of @folder that processes killed in the middle of
 * their work left behind: named @prefix, six characters and @suffix,
 * regular files (or folders when @directories is %TRUE). A live process
 * keeps an exclusive flock() on its entry, and the kernel drops the lock
 * when the process dies. So an entry whose lock can be taken, that belongs
 * to this user and has not changed for a few seconds is stale, and
 * @remove is called for it. Errors only leave the entry where it is. */
void
hexz_remove_stale_entries (const char         *folder,
                           const char         *prefix,
                           const char         *suffix,
                           gboolean            directories,
                           HexzStaleEntryFunc  remove,
                           gpointer            user_data)
{
  remove_stale_entries_full (folder, prefix, suffix, FALSE, directories, remove,
                             user_data);
}

static void
remove_stale_temp_file (int         fd,
                        const char *path,
                        gpointer    user_data)
{
  guint8 start[HEXZ_FORMAT_MAGIC_SIZE] = { 0 };
  static const guint8 zeros[HEXZ_FORMAT_MAGIC_SIZE] = { 0 };
  gssize n = pread (fd, start, sizeof start, 0);

  /* A writer leaves the header a hole until it closes the file, then
   * writes the magic there: any other start is another program's file. */
  if (n < 0 || (memcmp (start, zeros, sizeof start) != 0 &&
                memcmp (start, HEXZ_FORMAT_MAGIC, sizeof start) != 0))
    {
      g_debug ("Leaving %s: it looks like a temporary file, but not a snapshot's", path);
      return;
    }

  if (g_unlink (path) == 0)
    g_debug ("Removed the temporary file %s that a killed writer left", path);
  else
    g_debug ("Could not remove the stale temporary file %s: %s", path, g_strerror (errno));
}

/* Removes the temporary files (`.NAME.XXXXXX.tmp`) that killed writers
 * left in @folder_path, whatever output NAME they were writing: a killed
 * run is often followed by one that writes under another name. */
static void
remove_stale_temp_files (const char *folder_path)
{
  remove_stale_entries_full (folder_path, ".", ".tmp", TRUE, FALSE,
                             remove_stale_temp_file, NULL);
}

static gboolean
validate_settings (HexzSnapshotWriter  *self,
                   GError             **error)
{
  if (self->block_size < HEXZ_MIN_BLOCK_SIZE ||
      self->block_size > HEXZ_MAX_BLOCK_SIZE ||
      (self->block_size & (self->block_size - 1)) != 0)
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: %u is a number of bytes. */
                   _("The block size %u is invalid: use a power of two from "
                     "4 KiB to 4 MiB."), self->block_size);
      return FALSE;
    }

  if (self->codec == HEXZ_CODEC_ZSTD &&
      (self->level < ZSTD_minCLevel () || self->level > ZSTD_maxCLevel ()))
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: %d are compression levels. */
                   _("The zstd level %d is invalid: use a level from %d "
                     "to %d, or 0 for the default."),
                   self->level, ZSTD_minCLevel (), ZSTD_maxCLevel ());
      return FALSE;
    }

  if (self->codec == HEXZ_CODEC_LZ4 && self->level > 0)
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: %d is a compression level. */
                   _("The LZ4 level %d is invalid: use 0 for the default, "
                     "or a negative level to compress faster."),
                   self->level);
      return FALSE;
    }

  return TRUE;
}

/* Creates the temporary file and starts the workers, once. */
static gboolean
writer_start (HexzSnapshotWriter  *self,
              GError             **error)
{
  g_autoptr(GFile) folder = NULL;
  g_autofree char *folder_path = NULL;
  g_autofree char *basename = NULL;
  g_autofree char *template = NULL;
  int saved_errno;

  if (self->started)
    return TRUE;

  if (!validate_settings (self, error))
    return FALSE;

  if (self->parent != NULL &&
      g_file_equal (hexz_snapshot_get_file (self->parent), self->file))
    {
      g_autofree char *name = writer_display_name (self);

      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: %s is a file name. */
                   _("Cannot write snapshot “%s” over its own parent; "
                     "choose another file name."), name);
      return FALSE;
    }

  folder = g_file_get_parent (self->file);
  folder_path = folder != NULL ? g_file_get_path (folder) : NULL;
  basename = g_file_get_basename (self->file);
  if (folder_path == NULL || basename == NULL)
    {
      g_autofree char *name = writer_display_name (self);

      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: %s is a file name or URI. */
                   _("Cannot write snapshot “%s”: it is not a local file."),
                   name);
      return FALSE;
    }

  {
    g_autofree char *output_path = g_file_get_path (self->file);

    if (!hexz_check_output_path (output_path, NULL, 0, error))
      return FALSE;
  }

  remove_stale_temp_files (folder_path);

  template = g_strdup_printf ("%s/.%s.XXXXXX.tmp", folder_path, basename);
  self->fd = g_mkstemp_full (template, O_RDWR | O_CLOEXEC, 0600);
  if (self->fd < 0)
    {
      saved_errno = errno;
      /* Translators: the first %s is a file name, the second the
     * system's reason. */
      return writer_fail_errno (self, error, saved_errno, _("Creating a temporary file for snapshot “%s” failed: %s"));
    }

  /* The lock shows remove_stale_temp_files() in other writers that this
   * file is in use. Where flock() is not supported, no writer removes it. */
  if (flock (self->fd, LOCK_EX | LOCK_NB) != 0)
    g_debug ("Could not lock the temporary file %s: %s", template, g_strerror (errno));

  self->temp_path = g_steal_pointer (&template);

  /* The spill file lives in the output's folder, which has room for the
   * index anyway, and disappears with the process. */
  self->spill_fd = open (folder_path, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (self->spill_fd < 0)
    {
      g_autofree char *spill = g_strdup_printf ("%s/.%s.XXXXXX.index", folder_path,
                                                basename);

      self->spill_fd = g_mkstemp_full (spill, O_RDWR | O_CLOEXEC, 0600);
      if (self->spill_fd >= 0)
        g_unlink (spill);
    }
  if (self->spill_fd < 0)
    {
      saved_errno = errno;
      /* Translators: the first %s is a file name, the second the
       * system's reason. */
      return writer_fail_errno (self, error, saved_errno,
                                _("Creating a temporary file for snapshot "
                                  "“%s” failed: %s"));
    }

  self->started = TRUE;
  /* Only the output thread writes through it, and only whole buffers.
   * It is opened through the descriptor, not the name, so that it is the
   * file made above even if someone renamed another file to that name
   * in between. */
  {
    g_autofree char *fd_path = g_strdup_printf ("/proc/self/fd/%d", self->fd);

    self->direct_fd = open (fd_path, O_WRONLY | O_CLOEXEC | O_DIRECT);
    if (self->direct_fd < 0)
      g_debug ("No O_DIRECT for %s: %s", self->temp_path, g_strerror (errno));
  }

  self->write_buffer = g_aligned_alloc (1, WRITE_BUFFER_SIZE, DIRECT_ALIGNMENT);
  self->output_buffer = g_aligned_alloc (1, WRITE_BUFFER_SIZE, DIRECT_ALIGNMENT);
  self->output_thread = g_thread_new ("hexz-output", output_thread_main, self);
  self->write_buffer_offset = HEXZ_HEADER_SIZE;
  self->scratch = g_malloc (self->block_size);

  self->n_jobs = JOBS_PER_THREAD * self->threads;
  self->jobs = g_new0 (Job, self->n_jobs);
  for (guint i = 0; i < self->n_jobs; i++)
    {
      self->jobs[i].input = g_malloc (self->block_size);
      self->jobs[i].output = g_malloc (hexz_compress_bound (self->block_size));
    }

  self->workers = g_new0 (GThread *, self->threads);
  for (guint i = 0; i < self->threads; i++)
    self->workers[i] = g_thread_new ("hexz-pack", worker_main, self);
  self->n_workers = self->threads;

  g_debug ("Writing snapshot %s through %s: %s, block size %u, %u threads",
           g_file_peek_path (self->file), self->temp_path,
           hexz_codec_to_string (self->codec), self->block_size,
           self->threads);

  return TRUE;
}

/* Deduplication table: open addressing over XXH3-128 hashes of the
 * logical bytes, kept at most half full. */

static DedupSlot *
dedup_find (HexzSnapshotWriter *self,
            XXH128_hash_t       hash)
{
  gsize mask = self->dedup_capacity - 1;

  for (gsize i = hash.low64 & mask;; i = (i + 1) & mask)
    {
      DedupSlot *slot = &self->dedup[i];

      if (!slot->used ||
          (slot->hash_low == hash.low64 && slot->hash_high == hash.high64))
        return slot;
    }
}

static void
dedup_grow (HexzSnapshotWriter *self)
{
  DedupSlot *old = self->dedup;
  gsize old_capacity = self->dedup_capacity;

  self->dedup_capacity = old_capacity == 0 ? 1024 : old_capacity * 2;
  self->dedup = g_new0 (DedupSlot, self->dedup_capacity);

  for (gsize i = 0; i < old_capacity; i++)
    {
      if (old[i].used)
        {
          XXH128_hash_t hash = { .low64 = old[i].hash_low,
                                 .high64 = old[i].hash_high };

          *dedup_find (self, hash) = old[i];
        }
    }

  g_free (old);
}

static void
dedup_insert (HexzSnapshotWriter *self,
              XXH128_hash_t       hash,
              guint64             offset,
              guint32             length,
              HexzStoredCodec     codec)
{
  DedupSlot *slot;

  /* Past the cap, later blocks are still matched against the blocks
   * recorded so far, but are not recorded themselves. */
  if (self->dedup_count >= DEDUP_MAX_ENTRIES)
    return;

  if ((self->dedup_count + 1) * 2 > self->dedup_capacity)
    dedup_grow (self);

  /* Two different blocks with one hash: the first one stays. */
  slot = dedup_find (self, hash);
  if (slot->used)
    return;

  slot->used = TRUE;
  slot->hash_low = hash.low64;
  slot->hash_high = hash.high64;
  slot->offset = offset;
  slot->length = length;
  slot->codec = codec;
  self->dedup_count++;
}

/* Index */

/* Compresses the filled part of the stream's page buffer and moves it to
 * the spill file. */
static gboolean
spill_page (HexzSnapshotWriter  *self,
            StreamState         *stream,
            GError             **error)
{
  g_autoptr(GBytes) page = NULL;
  SpilledPage spilled;
  const guint8 *data;
  gsize size;
  int saved_errno;

  page = hexz_compress_page (stream->page_buffer,
                             stream->page_fill * HEXZ_ENTRY_SIZE);
  data = g_bytes_get_data (page, &size);

  if (!pwrite_all (self->spill_fd, data, size, self->spill_end, &saved_errno))
    return writer_fail_errno (self, error, saved_errno,
                              /* Translators: the first %s is a file name, the
                               * second the system's reason. */
                              _("Writing the index of snapshot “%s” to a "
                                "temporary file failed: %s"));

  spilled.spill_offset = self->spill_end;
  spilled.length = size;
  spilled.checksum = hexz_checksum (data, size);
  g_array_append_val (stream->pages, spilled);
  self->spill_end += size;
  stream->page_fill = 0;

  return TRUE;
}

static gboolean
stream_append_entry (HexzSnapshotWriter    *self,
                     StreamState           *stream,
                     const HexzBlockEntry  *entry,
                     GError               **error)
{
  hexz_block_entry_encode (entry,
                           stream->page_buffer + stream->page_fill * HEXZ_ENTRY_SIZE);
  stream->page_fill++;
  stream->n_entries++;

  if (stream->page_fill == HEXZ_ENTRIES_PER_PAGE)
    return spill_page (self, stream, error);

  return TRUE;
}

/* Returns %TRUE when the stored block @slot names holds the same logical
 * bytes as @job: a hash match alone never merges two blocks. */
static gboolean
dedup_matches (HexzSnapshotWriter  *self,
               const DedupSlot     *slot,
               const Job           *job,
               gboolean            *matches,
               GError             **error)
{
  g_autofree guint8 *stored = g_malloc (slot->length);
  gboolean decoded;

  *matches = FALSE;

  if (!output_read_back (self, stored, slot->length, slot->offset, error))
    return FALSE;

  /* The decoding side of the dictionary is made on the first compare
   * that needs it. */
  if ((slot->codec == HEXZ_STORED_ZSTD_DICT || slot->codec == HEXZ_STORED_LZ4_DICT) &&
      self->decode_dictionary == NULL)
    self->decode_dictionary = hexz_decode_dictionary_new (self->dictionary);

  decoded = hexz_decompress_block (slot->codec, self->decode_dictionary, stored,
                                   slot->length, self->scratch, job->length);
  *matches = decoded && memcmp (self->scratch, job->input, job->length) == 0;

  return TRUE;
}

static gboolean
retire_block (HexzSnapshotWriter  *self,
              StreamState         *stream,
              Job                 *job,
              GError             **error)
{
  HexzBlockEntry entry = { 0 };
  DedupSlot *slot;
  const guint8 *stored;
  gsize stored_length;

  entry.logical_length = job->length;

  if (job->zero)
    {
      entry.kind = HEXZ_BLOCK_ZERO;
      return stream_append_entry (self, stream, &entry, error);
    }

  entry.kind = HEXZ_BLOCK_DATA;
  entry.checksum = job->checksum;

  if (self->dedup_capacity > 0)
    {
      slot = dedup_find (self, job->hash);
      if (slot->used)
        {
          gboolean matches;

          if (!dedup_matches (self, slot, job, &matches, error))
            return FALSE;

          if (matches)
            {
              entry.codec = slot->codec;
              entry.stored_offset = slot->offset;
              entry.stored_length = slot->length;
              return stream_append_entry (self, stream, &entry, error);
            }

          g_debug ("Blocks with equal XXH3-128 hashes differ; storing both");
        }
    }

  if (job->output_length > 0)
    {
      stored = job->output;
      stored_length = job->output_length;
      entry.codec = job->stored_codec;
    }
  else
    {
      stored = job->input;
      stored_length = job->length;
      entry.codec = HEXZ_STORED_RAW;
    }

  entry.stored_offset = output_offset (self);
  entry.stored_length = stored_length;
  if (entry.codec == HEXZ_STORED_ZSTD_DICT || entry.codec == HEXZ_STORED_LZ4_DICT)
    self->dictionary_used = TRUE;
  self->format_minor = MAX (self->format_minor,
                            hexz_format_minor_for_codec (entry.codec));

  if (!output_append (self, stored, stored_length, error))
    return FALSE;

  XXH3_64bits_update (stream->data_hash, stored, stored_length);
  dedup_insert (self, job->hash, entry.stored_offset, entry.stored_length,
                entry.codec);

  return stream_append_entry (self, stream, &entry, error);
}

/* Waits for the oldest job in flight and records it in the index and the
 * file, in submission order. */
static gboolean
retire_one (HexzSnapshotWriter  *self,
            GError             **error)
{
  Job *job = &self->jobs[self->retired_seq % self->n_jobs];
  StreamState *stream = &self->streams[self->current];
  HexzBlockEntry entry = { 0 };

  g_assert (self->retired_seq < self->next_seq);

  g_mutex_lock (&self->lock);
  while (!job->done)
    {
      Job *waiting;

      /* Rather than sleep, compress a queued block here: the caller's
       * thread then adds to the workers' throughput. */
      g_mutex_unlock (&self->lock);
      waiting = g_async_queue_try_pop (self->queue);
      if (waiting != NULL)
        {
          g_assert (waiting != &stop_job);
          job_run (self, waiting);
        }
      g_mutex_lock (&self->lock);

      if (waiting != NULL)
        {
          waiting->done = TRUE;
          continue;
        }

      while (!job->done)
        g_cond_wait (&self->cond, &self->lock);
    }
  g_mutex_unlock (&self->lock);

  self->retired_seq++;

  switch (job->kind)
    {
    case JOB_BLOCK:
      return retire_block (self, stream, job, error);

    case JOB_ZERO_RUN:
    case JOB_PARENT_RUN:
      entry.kind = job->kind == JOB_ZERO_RUN ? HEXZ_BLOCK_ZERO : HEXZ_BLOCK_PARENT;
      for (guint64 i = 0; i < job->count; i++)
        {
          entry.logical_length = i + 1 == job->count ? job->tail_length
                                                     : self->block_size;
          if (!stream_append_entry (self, stream, &entry, error))
            return FALSE;
        }
      return TRUE;

    default:
      g_assert_not_reached ();
    }
}

static gboolean
retire_all (HexzSnapshotWriter  *self,
            GError             **error)
{
  while (self->retired_seq < self->next_seq)
    {
      if (!retire_one (self, error))
        return FALSE;
    }

  return TRUE;
}

/* Returns the next free slot of the ring, retiring the oldest job first
 * when all are in flight. */
static Job *
acquire_job (HexzSnapshotWriter  *self,
             GError             **error)
{
  while (self->next_seq - self->retired_seq >= self->n_jobs)
    {
      if (!retire_one (self, error))
        return NULL;
    }

  return &self->jobs[self->next_seq % self->n_jobs];
}

static void
submit_block (HexzSnapshotWriter *self,
              Job                *job,
              guint32             length)
{
  job->kind = JOB_BLOCK;
  job->length = length;
  job->output_length = 0;
  job->done = FALSE;
  self->next_seq++;
  g_async_queue_push (self->queue, job);
}

static gboolean
submit_run (HexzSnapshotWriter  *self,
            JobKind              kind,
            guint64              count,
            guint32              tail_length,
            GError             **error)
{
  Job *job = acquire_job (self, error);

  if (job == NULL)
    return FALSE;

  job->kind = kind;
  job->count = count;
  job->tail_length = tail_length;
  job->done = TRUE;
  self->next_seq++;

  return TRUE;
}

/* Progress */

typedef struct {
  HexzSnapshotWriter *writer;
  HexzStream          stream;
  guint64             done;
  guint64             expected;
} ProgressReport;

static gboolean
progress_report_emit (gpointer data)
{
  ProgressReport *report = data;

  g_signal_emit (report->writer, signals[PROGRESS], 0, report->stream,
                 report->done, report->expected);

  return G_SOURCE_REMOVE;
}

static void
progress_report_free (gpointer data)
{
  ProgressReport *report = data;

  g_object_unref (report->writer);
  g_free (report);
}

static void
maybe_emit_progress (HexzSnapshotWriter *self,
                     gboolean            force)
{
  gint64 now;

  /* The position was reported already and runs again from the start. */
  if (self->replaying || self->position == self->progress_reported)
    return;

  if (!force && self->position - self->progress_reported < PROGRESS_BYTES)
    {
      now = g_get_monotonic_time ();
      if (now - self->progress_time < PROGRESS_INTERVAL)
        return;
    }

  self->progress_reported = self->position;
  self->progress_time = g_get_monotonic_time ();

  if (self->progress_context != NULL)
    {
      ProgressReport *report = g_new (ProgressReport, 1);

      report->writer = g_object_ref (self);
      report->stream = self->current;
      report->done = self->position;
      report->expected = self->expected;

      hexz_schedule_in_context (self->progress_context, progress_report_emit, report,
                                progress_report_free);
    }
  else
    g_signal_emit (self, signals[PROGRESS], 0, self->current, self->position,
                   self->expected);
}

/* Stream data */

static gboolean
check_stream_open (HexzSnapshotWriter  *self,
                   GError             **error)
{
  if (!check_usable (self, error))
    return FALSE;

  if (!self->stream_open)
    {
      g_set_error_literal (error, HEXZ_SNAPSHOT_ERROR,
                           HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                           _("No stream is open: call "
                             "hexz_snapshot_writer_begin_stream() first."));
      return FALSE;
    }

  return TRUE;
}

static gboolean
check_room (HexzSnapshotWriter  *self,
            guint64              count,
            GError             **error)
{
  if (self->ended_at_parent_tail && count > 0)
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: %s is a stream name: disk or memory. */
                   _("Cannot append to the %s stream: it ends with a "
                     "partial block taken from the parent."),
                   hexz_stream_to_string (self->current));
      return FALSE;
    }

  if (count > HEXZ_MAX_STREAM_SIZE - self->position)
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_TOO_LARGE,
                   /* Translators: %s is a stream name: disk or memory. */
                   _("The %s stream would exceed the largest stream size "
                     "a snapshot holds (4 EiB)."),
                   hexz_stream_to_string (self->current));
      return FALSE;
    }

  return TRUE;
}

static gboolean
append_data (HexzSnapshotWriter  *self,
             const guint8        *data,
             gsize                count,
             GError             **error)
{
  while (count > 0)
    {
      gsize n;

      if (self->filling == NULL)
        {
          self->filling = acquire_job (self, error);
          if (self->filling == NULL)
            return FALSE;
          self->filling_length = 0;
        }

      n = MIN (count, self->block_size - self->filling_length);
      if (data != NULL)
        {
          memcpy (self->filling->input + self->filling_length, data, n);
          data += n;
        }
      else
        memset (self->filling->input + self->filling_length, 0, n);

      self->filling_length += n;
      self->position += n;
      count -= n;

      if (self->filling_length == self->block_size)
        {
          submit_block (self, self->filling, self->block_size);
          self->filling = NULL;
          maybe_emit_progress (self, FALSE);
        }
    }

  return TRUE;
}

/* Appends @count zero bytes: whole blocks as a zero run, the rest as
 * bytes so that blocks stay whole. */
static gboolean
apply_zeros (HexzSnapshotWriter  *self,
             guint64              count,
             GError             **error)
{
  guint64 blocks;

  /* Complete the block being filled first. */
  if (self->filling != NULL)
    {
      gsize n = MIN (count, self->block_size - self->filling_length);

      if (!append_data (self, NULL, n, error))
        return FALSE;
      count -= n;
    }

  blocks = count / self->block_size;
  if (blocks > 0)
    {
      if (!submit_run (self, JOB_ZERO_RUN, blocks, self->block_size, error))
        return FALSE;
      self->position += blocks * self->block_size;
      count -= blocks * self->block_size;
    }

  return append_data (self, NULL, count, error);
}

/* Appends a parent run of @count bytes, already checked against the
 * parent and the block boundaries. */
static gboolean
apply_parent (HexzSnapshotWriter  *self,
              guint64              count,
              GError             **error)
{
  guint64 blocks = hexz_block_count (count, self->block_size);
  guint32 tail = count % self->block_size != 0 ? count % self->block_size
                                               : self->block_size;

  if (!submit_run (self, JOB_PARENT_RUN, blocks, tail, error))
    return FALSE;

  self->position += count;

  return TRUE;
}

static gboolean finish_training (HexzSnapshotWriter  *self,
                                 GError             **error);

/* Compresses the non-zero blocks of @samples with and without the
 * dictionary and returns whether the dictionary pays off. It must save at
 * least 0.5 %, because LZ4 with a prefix uses another hash table than
 * without one. On a tar of /usr/bin in 64 KiB blocks, any 64 KiB prefix,
 * even random bytes, made the output 1.5 % larger; text came out 5 %
 * smaller. When @samples is all the data the stream had so far and no
 * more is known to follow (@more_follows), the saving must also exceed
 * the dictionary's own size in the file, so that a small or mostly empty
 * stream gets no dictionary.
 *
 * Only even-numbered blocks count, and of them only those without one of
 * the @n_pieces pieces an LZ4 dictionary was made of, which would find
 * that piece in it. hexz_sample_lz4_dictionary() takes the pieces from odd
 * blocks where it can. A zstd dictionary is trained on every block, so
 * the comparison favours it. Costs about one pass of the codec over half
 * of @samples. */
static gboolean
dictionary_pays_off (HexzSnapshotWriter *self,
                     const guint8       *samples,
                     gsize               length,
                     const gsize        *piece_offsets,
                     guint               n_pieces,
                     gboolean            more_follows)
{
  gsize capacity = hexz_compress_bound (self->block_size);
  g_autofree guint8 *output = g_malloc (capacity);
  gsize step = 2 * (gsize) self->block_size;
  gsize dictionary_size = g_bytes_get_size (self->dictionary);
  guint64 with = 0;
  guint64 without = 0;
  guint64 saved;

  for (gsize offset = 0; offset < length; offset += step)
    {
      gsize n = MIN (self->block_size, length - offset);
      gboolean has_piece = FALSE;
      HexzStoredCodec codec;
      gsize stored;

      for (guint i = 0; i < n_pieces; i++)
        has_piece = has_piece || (piece_offsets[i] >= offset && piece_offsets[i] < offset + n);

      if (has_piece || hexz_is_all_zero (samples + offset, n))
        continue;

      stored = hexz_compress_block (self->codec, self->level, NULL, samples + offset, n,
                                    output, capacity, &codec);
      without += stored > 0 ? stored : n;
      stored = hexz_compress_block (self->codec, self->level, self->compress_dictionary,
                                    samples + offset, n, output, capacity, &codec);
      with += stored > 0 ? stored : n;
    }

  /* Every second block was compared, so the whole buffer saves about
   * twice as much. */
  saved = with < without ? 2 * (without - with) : 0;

  g_debug ("Every second block of the first %" G_GSIZE_FORMAT " bytes: %"
           G_GUINT64_FORMAT " bytes compressed with the %" G_GSIZE_FORMAT
           "-byte dictionary, %" G_GUINT64_FORMAT " without%s", length, with,
           dictionary_size, without, more_follows ? ", more data follows" : "");

  if (!more_follows)
    return saved > dictionary_size;

  /* With no block left to compare, each block contains a piece of the
   * dictionary and gains from it. */
  return without == 0 || with < without - without / 200;
}

/* Records a zero or parent run met while the dictionary is trained, so
 * that training goes on over the data after it: a sparse image or a thin
 * snapshot would otherwise train on the few bytes before its first run. */
static gboolean
defer_run (HexzSnapshotWriter  *self,
           JobKind              kind,
           guint64              count,
           GError             **error)
{
  PendingRun run = { self->train_fill, count, kind };

  g_array_append_val (self->pending_runs, run);
  self->position += count;

  if (self->pending_runs->len == MAX_PENDING_RUNS)
    return finish_training (self, error);

  return TRUE;
}

/* Trains the dictionary on the buffered start of the first stream and
 * feeds the buffered bytes and the runs between them to the workers. */
static gboolean
finish_training (HexzSnapshotWriter  *self,
                 GError             **error)
{
  g_autofree guint8 *samples = NULL;
  g_autoptr(GArray) runs = NULL;
  gsize piece_offsets[HEXZ_LZ4_DICTIONARY_PIECES];
  guint n_pieces = 0;
  gsize length;
  gsize fed = 0;
  gint64 start;

  if (!self->training)
    return TRUE;

  self->training = FALSE;
  samples = g_steal_pointer (&self->train_buffer);
  runs = g_steal_pointer (&self->pending_runs);
  length = self->train_fill;
  self->train_fill = 0;

  start = g_get_monotonic_time ();
  if (self->codec == HEXZ_CODEC_LZ4)
    self->dictionary = hexz_sample_lz4_dictionary (samples, length, self->block_size,
                                                   piece_offsets, &n_pieces);
  else
    self->dictionary = hexz_train_dictionary (samples, length);
  g_debug ("Training on %" G_GSIZE_FORMAT " buffered bytes and %u runs took %"
           G_GINT64_FORMAT " ms", length, runs->len,
           (g_get_monotonic_time () - start) / 1000);

  if (self->dictionary != NULL)
    {
      self->compress_dictionary = hexz_compress_dictionary_new (self->dictionary,
                                                                self->codec,
                                                                self->level);
      if (self->compress_dictionary == NULL)
        g_clear_pointer (&self->dictionary, g_bytes_unref);
    }

  if (self->dictionary != NULL && !self->keep_dictionary &&
      !dictionary_pays_off (self, samples, length, piece_offsets, n_pieces,
                            length == TRAIN_SIZE))
    {
      g_clear_pointer (&self->compress_dictionary, hexz_compress_dictionary_free);
      g_clear_pointer (&self->dictionary, g_bytes_unref);
    }

  /* The buffered bytes and the runs were counted in the position
   * already. */
  self->position -= length;
  for (guint i = 0; i < runs->len; i++)
    self->position -= g_array_index (runs, PendingRun, i).count;

  self->replaying = TRUE;
  for (guint i = 0; i < runs->len; i++)
    {
      const PendingRun *run = &g_array_index (runs, PendingRun, i);

      if (!append_data (self, samples + fed, run->buffer_offset - fed, error))
        return FALSE;
      fed = run->buffer_offset;

      if (run->kind == JOB_ZERO_RUN && !apply_zeros (self, run->count, error))
        return FALSE;
      if (run->kind == JOB_PARENT_RUN && !apply_parent (self, run->count, error))
        return FALSE;
    }

  if (!append_data (self, samples + fed, length - fed, error))
    return FALSE;
  self->replaying = FALSE;

  return TRUE;
}

/**
 * hexz_snapshot_writer_new:
 * @file: the snapshot file to write
 *
 * Creates a writer for @file. Nothing is created on disk before the first
 * stream begins.
 *
 * Returns: (transfer full): a new writer
 *
 * Since: 1.0
 */
HexzSnapshotWriter *
hexz_snapshot_writer_new (GFile *file)
{
  g_return_val_if_fail (G_IS_FILE (file), NULL);

  return g_object_new (HEXZ_TYPE_SNAPSHOT_WRITER, "file", file, NULL);
}

/**
 * hexz_snapshot_writer_new_for_path:
 * @path: (type filename): the path of the snapshot file to write
 *
 * Creates a writer for the file at @path.
 *
 * Returns: (transfer full): a new writer
 *
 * Since: 1.0
 */
HexzSnapshotWriter *
hexz_snapshot_writer_new_for_path (const char *path)
{
  g_autoptr(GFile) file = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  file = g_file_new_for_path (path);

  return hexz_snapshot_writer_new (file);
}

/**
 * hexz_snapshot_writer_get_file:
 * @self: a writer
 *
 * Gets the file the writer creates.
 *
 * Returns: (transfer none): the output file
 *
 * Since: 1.0
 */
GFile *
hexz_snapshot_writer_get_file (HexzSnapshotWriter *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), NULL);

  return self->file;
}

/**
 * hexz_snapshot_writer_get_codec:
 * @self: a writer
 *
 * Gets the codec blocks are compressed with.
 *
 * Returns: the codec
 *
 * Since: 1.0
 */
HexzCodec
hexz_snapshot_writer_get_codec (HexzSnapshotWriter *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), HEXZ_CODEC_LZ4);

  return self->codec;
}

/**
 * hexz_snapshot_writer_set_codec:
 * @self: a writer
 * @codec: the codec
 *
 * Sets the codec blocks are compressed with, %HEXZ_CODEC_LZ4 by default.
 * Set it before the first stream begins.
 *
 * Since: 1.0
 */
void
hexz_snapshot_writer_set_codec (HexzSnapshotWriter *self,
                                HexzCodec           codec)
{
  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));
  g_return_if_fail (codec == HEXZ_CODEC_RAW || codec == HEXZ_CODEC_LZ4 ||
                    codec == HEXZ_CODEC_ZSTD);
  g_return_if_fail (!self->started);

  if (self->codec == codec)
    return;

  self->codec = codec;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CODEC]);
}

/**
 * hexz_snapshot_writer_get_level:
 * @self: a writer
 *
 * Gets the compression level.
 *
 * Returns: the level, 0 for the codec's default
 *
 * Since: 1.0
 */
int
hexz_snapshot_writer_get_level (HexzSnapshotWriter *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), 0);

  return self->level;
}

/**
 * hexz_snapshot_writer_set_level:
 * @self: a writer
 * @level: the level, 0 for the codec's default
 *
 * Sets the compression level. For zstd it is the zstd level (1 to 22,
 * negative levels are faster). For LZ4 only 0 and negative levels are
 * valid: -N compresses faster with acceleration N. An invalid level makes
 * [method@Hexz.SnapshotWriter.begin_stream] fail with
 * %HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT.
 *
 * Since: 1.0
 */
void
hexz_snapshot_writer_set_level (HexzSnapshotWriter *self,
                                int                 level)
{
  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));
  g_return_if_fail (!self->started);

  if (self->level == level)
    return;

  self->level = level;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LEVEL]);
}

/**
 * hexz_snapshot_writer_get_block_size:
 * @self: a writer
 *
 * Gets the block size.
 *
 * Returns: the block size in bytes
 *
 * Since: 1.0
 */
guint
hexz_snapshot_writer_get_block_size (HexzSnapshotWriter *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), 0);

  return self->block_size;
}

/**
 * hexz_snapshot_writer_set_block_size:
 * @self: a writer
 * @block_size: the block size in bytes
 *
 * Sets the block size, %HEXZ_DEFAULT_BLOCK_SIZE by default: a power of two
 * from %HEXZ_MIN_BLOCK_SIZE to %HEXZ_MAX_BLOCK_SIZE. Another value makes
 * [method@Hexz.SnapshotWriter.begin_stream] fail with
 * %HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT. Set it before the first stream
 * begins.
 *
 * Since: 1.0
 */
void
hexz_snapshot_writer_set_block_size (HexzSnapshotWriter *self,
                                     guint               block_size)
{
  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));
  g_return_if_fail (!self->started);

  if (self->block_size == block_size)
    return;

  self->block_size = block_size;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_BLOCK_SIZE]);
}

/**
 * hexz_snapshot_writer_get_threads:
 * @self: a writer
 *
 * Gets the number of compression threads.
 *
 * Returns: the number of threads
 *
 * Since: 1.0
 */
guint
hexz_snapshot_writer_get_threads (HexzSnapshotWriter *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), 0);

  return self->threads;
}

/**
 * hexz_snapshot_writer_set_threads:
 * @self: a writer
 * @threads: the number of compression threads, at least 1
 *
 * Sets how many threads compress blocks, by default the number of
 * processors. Set it before the first stream begins.
 *
 * Since: 1.0
 */
void
hexz_snapshot_writer_set_threads (HexzSnapshotWriter *self,
                                  guint               threads)
{
  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));
  g_return_if_fail (threads >= 1 && threads <= 1024);
  g_return_if_fail (!self->started);

  if (self->threads == threads)
    return;

  self->threads = threads;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_THREADS]);
}

/**
 * hexz_snapshot_writer_get_train_dictionary:
 * @self: a writer
 *
 * Gets whether the writer trains a dictionary for LZ4 or zstd blocks.
 *
 * Returns: %TRUE if a dictionary is trained
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_writer_get_train_dictionary (HexzSnapshotWriter *self)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), FALSE);

  return self->train_dictionary;
}

/**
 * hexz_snapshot_writer_set_train_dictionary:
 * @self: a writer
 * @train_dictionary: whether to train a dictionary
 *
 * Sets whether the writer trains a dictionary on the first 8 MiB of data
 * written to the first stream (zero and parent runs do not count) and
 * compresses every block with it. Blocks are compressed independently,
 * so without a dictionary each starts with no history. The dictionary
 * gives every block a shared history to refer to, which helps small
 * blocks of similar content.
 *
 * With %HEXZ_CODEC_ZSTD the writer trains a zstd dictionary on the
 * buffered 8 MiB. With %HEXZ_CODEC_LZ4 the dictionary is 64 KiB sampled
 * from them in 4 KiB pieces (zero pieces left out), which LZ4 uses as
 * history. Such a file needs format version 1.1 to read. Either way
 * the writer keeps the dictionary only if it makes the buffered start
 * compress at least 0.5 % smaller, because on some data, such as
 * executables, a dictionary makes the output larger. When the stream
 * ends within those 8 MiB, the saving must also exceed the dictionary's
 * own size, so that small files get none. With %HEXZ_CODEC_RAW the
 * setting has no effect.
 *
 * Training buffers the first 8 MiB before compression starts. It is off
 * by default. If training fails (too little or too uniform data), blocks
 * are compressed without a dictionary. Each block still reads on its own:
 * a reader needs only the dictionary and the block.
 *
 * Since: 1.0
 */
void
hexz_snapshot_writer_set_train_dictionary (HexzSnapshotWriter *self,
                                           gboolean            train_dictionary)
{
  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));
  g_return_if_fail (!self->started);

  train_dictionary = !!train_dictionary;
  if (self->train_dictionary == train_dictionary)
    return;

  self->train_dictionary = train_dictionary;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TRAIN_DICTIONARY]);
}

/**
 * hexz_snapshot_writer_set_parent:
 * @self: a writer
 * @parent: (nullable): the parent snapshot, or %NULL
 *
 * Makes the output a thin snapshot of @parent: blocks appended with
 * [method@Hexz.SnapshotWriter.write_parent] are read from the parent's
 * same stream. The file records the parent's path, id and seal, so that
 * readers notice a replaced or changed parent. The block sizes of parent
 * and child may differ. Set it before the first stream begins.
 *
 * Since: 1.0
 */
void
hexz_snapshot_writer_set_parent (HexzSnapshotWriter *self,
                                 HexzSnapshot       *parent)
{
  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));
  g_return_if_fail (parent == NULL || HEXZ_IS_SNAPSHOT (parent));
  g_return_if_fail (!self->started);

  g_set_object (&self->parent, parent);
}

/**
 * hexz_snapshot_writer_set_metadata:
 * @self: a writer
 * @key: the metadata key
 * @value: (nullable): the value, or %NULL to remove @key
 *
 * Sets a key of the snapshot's JSON metadata. The writer sets `created`
 * (ISO 8601, UTC), `tool-version` and `message` itself; a key set here
 * replaces the writer's value.
 *
 * Since: 1.0
 */
void
hexz_snapshot_writer_set_metadata (HexzSnapshotWriter *self,
                                   const char         *key,
                                   JsonNode           *value)
{
  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));
  g_return_if_fail (key != NULL);

  if (value == NULL)
    json_object_remove_member (self->metadata, key);
  else
    json_object_set_member (self->metadata, key, json_node_copy (value));
}

/**
 * hexz_snapshot_writer_set_message:
 * @self: a writer
 * @message: (nullable): a free text describing the snapshot
 *
 * Sets the `message` key of the metadata.
 *
 * Since: 1.0
 */
void
hexz_snapshot_writer_set_message (HexzSnapshotWriter *self,
                                  const char         *message)
{
  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));

  g_free (self->message);
  self->message = g_strdup (message);
}

/**
 * hexz_snapshot_writer_begin_stream:
 * @self: a writer
 * @stream: the stream to write
 * @expected_size: the stream's expected size in bytes, for the
 *   [signal@Hexz.SnapshotWriter::progress] signal only, or 0 if unknown
 * @error: return location for a #GError
 *
 * Starts writing @stream; the appending functions then add to it until
 * [method@Hexz.SnapshotWriter.end_stream]. Each stream is written at most
 * once, in either order. Beginning a stream while another is open ends
 * that one first.
 *
 * The first call creates the temporary file and checks the settings.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_writer_begin_stream (HexzSnapshotWriter  *self,
                                   HexzStream           stream,
                                   guint64              expected_size,
                                   GError             **error)
{
  StreamState *state;

  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), FALSE);
  g_return_val_if_fail (stream == HEXZ_STREAM_DISK || stream == HEXZ_STREAM_MEMORY, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_usable (self, error))
    return FALSE;

  if (self->stream_open &&
      !hexz_snapshot_writer_end_stream (self, NULL, error))
    return FALSE;

  state = &self->streams[stream];
  if (state->present)
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: %s is a stream name: disk or memory. */
                   _("The %s stream was already written; a snapshot holds "
                     "each stream once."),
                   hexz_stream_to_string (stream));
      return FALSE;
    }

  if (!writer_start (self, error))
    return FALSE;

  state->present = TRUE;
  state->data_offset = output_offset (self);
  state->pages = g_array_new (FALSE, FALSE, sizeof (SpilledPage));
  state->page_buffer = g_malloc (HEXZ_ENTRIES_PER_PAGE * HEXZ_ENTRY_SIZE);
  state->data_hash = XXH3_createState ();
  XXH3_64bits_reset (state->data_hash);

  self->stream_open = TRUE;
  self->current = stream;
  self->position = 0;
  self->expected = expected_size;
  self->ended_at_parent_tail = FALSE;
  self->progress_reported = 0;
  self->progress_time = g_get_monotonic_time ();

  if (self->train_dictionary &&
      (self->codec == HEXZ_CODEC_ZSTD || self->codec == HEXZ_CODEC_LZ4) &&
      self->dictionary == NULL && !self->training &&
      self->streams[!stream].present == FALSE)
    {
      self->training = TRUE;
      self->train_buffer = g_malloc (TRAIN_SIZE);
      self->train_fill = 0;
      self->pending_runs = g_array_new (FALSE, FALSE, sizeof (PendingRun));
    }

  return TRUE;
}

/**
 * hexz_snapshot_writer_write:
 * @self: a writer
 * @data: (array length=count): bytes to append
 * @count: the number of bytes
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Appends @count bytes to the open stream. Writes of any size may follow
 * each other; the writer cuts them into blocks. The call blocks only while
 * all blocks in flight wait for the compression threads.
 *
 * On error or cancellation the writer fails for good and removes its
 * temporary file.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_writer_write (HexzSnapshotWriter  *self,
                            const guint8        *data,
                            gsize                count,
                            GCancellable        *cancellable,
                            GError             **error)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), FALSE);
  g_return_val_if_fail (data != NULL || count == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_stream_open (self, error) ||
      !check_cancelled (self, cancellable, error) ||
      !check_room (self, count, error))
    return FALSE;

  if (self->training)
    {
      gsize n = MIN (count, TRAIN_SIZE - self->train_fill);

      memcpy (self->train_buffer + self->train_fill, data, n);
      self->train_fill += n;
      self->position += n;
      data += n;
      count -= n;

      if (self->train_fill == TRAIN_SIZE && !finish_training (self, error))
        return FALSE;
    }

  if (!append_data (self, data, count, error))
    return FALSE;

  maybe_emit_progress (self, FALSE);

  return TRUE;
}

/**
 * hexz_snapshot_writer_write_bytes:
 * @self: a writer
 * @bytes: bytes to append
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Appends @bytes to the open stream, like
 * [method@Hexz.SnapshotWriter.write].
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_writer_write_bytes (HexzSnapshotWriter  *self,
                                  GBytes              *bytes,
                                  GCancellable        *cancellable,
                                  GError             **error)
{
  gsize size;
  const guint8 *data;

  g_return_val_if_fail (bytes != NULL, FALSE);

  data = g_bytes_get_data (bytes, &size);

  return hexz_snapshot_writer_write (self, data, size, cancellable, error);
}

/**
 * hexz_snapshot_writer_write_zeros:
 * @self: a writer
 * @count: the number of zero bytes
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Appends @count zero bytes to the open stream. Whole zero blocks take no
 * room in the file and no time to compress.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_writer_write_zeros (HexzSnapshotWriter  *self,
                                  guint64              count,
                                  GCancellable        *cancellable,
                                  GError             **error)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_stream_open (self, error) ||
      !check_cancelled (self, cancellable, error) ||
      !check_room (self, count, error))
    return FALSE;

  if (count == 0)
    return TRUE;

  if (self->training && !defer_run (self, JOB_ZERO_RUN, count, error))
    return FALSE;

  if (!self->training && !apply_zeros (self, count, error))
    return FALSE;

  maybe_emit_progress (self, FALSE);

  return TRUE;
}

/**
 * hexz_snapshot_writer_write_parent:
 * @self: a writer
 * @count: the number of bytes
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Appends @count bytes that are the same as the parent's bytes at the same
 * offsets of the same stream. They take no room in the file. The stream
 * position must be a multiple of the block size, and @count a multiple of
 * the block size or reach exactly the end of the parent's stream (the
 * stream cannot grow after that). Fails with
 * %HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT without a parent or when the range
 * passes the end of the parent's stream.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_writer_write_parent (HexzSnapshotWriter  *self,
                                   guint64              count,
                                   GCancellable        *cancellable,
                                   GError             **error)
{
  guint64 parent_size;

  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_stream_open (self, error) ||
      !check_cancelled (self, cancellable, error) ||
      !check_room (self, count, error))
    return FALSE;

  if (count == 0)
    return TRUE;

  if (self->parent == NULL)
    {
      g_set_error_literal (error, HEXZ_SNAPSHOT_ERROR,
                           HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                           _("Cannot refer to parent blocks: the snapshot "
                             "has no parent."));
      return FALSE;
    }

  parent_size = hexz_snapshot_get_stream_size (self->parent, self->current);
  if (self->position > parent_size || count > parent_size - self->position)
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: %s is a stream name, then come byte
                    * offsets and sizes. */
                   _("Cannot refer to parent bytes %" PRIu64
                     " to %" PRIu64 ": the parent's %s stream has "
                     "only %" PRIu64 " bytes."),
                   self->position, self->position + count,
                   hexz_stream_to_string (self->current), parent_size);
      return FALSE;
    }

  /* While the dictionary is trained nothing fills a block yet, so the
   * position shows whether a block is partly filled. */
  if (self->position % self->block_size != 0 ||
      (count % self->block_size != 0 && self->position + count != parent_size))
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: these are byte counts. */
                   _("Parent references must start and end on block "
                     "boundaries (block size %u), or end at the end of the "
                     "parent's stream; got %" PRIu64 " bytes at "
                     "offset %" PRIu64 "."),
                   self->block_size, count, self->position);
      return FALSE;
    }

  if (self->training && !defer_run (self, JOB_PARENT_RUN, count, error))
    return FALSE;

  if (!self->training && !apply_parent (self, count, error))
    return FALSE;

  self->ended_at_parent_tail = count % self->block_size != 0;

  maybe_emit_progress (self, FALSE);

  return TRUE;
}

/**
 * hexz_snapshot_writer_end_stream:
 * @self: a writer
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Ends the open stream: its last, partial block is compressed and every
 * block in flight is written.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_writer_end_stream (HexzSnapshotWriter  *self,
                                 GCancellable        *cancellable,
                                 GError             **error)
{
  StreamState *state;

  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_stream_open (self, error) ||
      !check_cancelled (self, cancellable, error) ||
      !finish_training (self, error))
    return FALSE;

  if (self->filling != NULL)
    {
      submit_block (self, self->filling, self->filling_length);
      self->filling = NULL;
    }

  if (!retire_all (self, error))
    return FALSE;

  state = &self->streams[self->current];
  if (state->page_fill > 0 && !spill_page (self, state, error))
    return FALSE;
  g_clear_pointer (&state->page_buffer, g_free);

  state->logical_size = self->position;
  state->data_length = output_offset (self) - state->data_offset;
  state->data_checksum = state->data_length > 0
    ? XXH3_64bits_digest (state->data_hash) : 0;
  if (state->data_length == 0)
    state->data_offset = 0;
  g_clear_pointer (&state->data_hash, XXH3_freeState);
  state->finished = TRUE;
  g_assert (state->n_entries == hexz_block_count (state->logical_size,
                                                  self->block_size));

  maybe_emit_progress (self, TRUE);
  self->stream_open = FALSE;

  g_debug ("Wrote the %s stream: %" G_GUINT64_FORMAT " bytes in %"
           G_GUINT64_FORMAT " blocks, %" G_GUINT64_FORMAT " bytes stored",
           hexz_stream_to_string (self->current), state->logical_size,
           state->n_entries, state->data_length);

  return TRUE;
}

/* Splicing */

typedef struct {
  GInputStream *input;
  guint64       total;
} SpliceData;

static void
splice_data_free (gpointer data)
{
  SpliceData *splice = data;

  g_clear_object (&splice->input);
  g_free (splice);
}

static void
splice_thread (GTask        *task,
               gpointer      source_object,
               gpointer      task_data,
               GCancellable *cancellable)
{
  HexzSnapshotWriter *self = source_object;
  SpliceData *splice = task_data;
  g_autofree guint8 *buffer = g_malloc (SPLICE_BUFFER_SIZE);
  GError *error = NULL;

  for (;;)
    {
      gssize n = g_input_stream_read (splice->input, buffer, SPLICE_BUFFER_SIZE,
                                      cancellable, &error);

      if (n < 0)
        {
          writer_fail (self, NULL, g_error_copy (error));
          break;
        }
      if (n == 0)
        break;

      if (!hexz_snapshot_writer_write (self, buffer, n, cancellable, &error))
        break;

      splice->total += n;
    }

  self->busy = FALSE;
  g_clear_pointer (&self->progress_context, g_main_context_unref);

  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

/**
 * hexz_snapshot_writer_splice_async:
 * @self: a writer
 * @input: the stream to read to its end
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): the function to call when done
 * @user_data: data for @callback
 *
 * Reads @input to its end in a worker thread and appends everything to
 * the open stream, for instance QEMU's migration stream from a pipe. Do
 * not call other methods of @self until @callback runs. Progress signals
 * are emitted in the thread-default main context of the caller meanwhile.
 * On error or cancellation the writer fails for good, as with
 * [method@Hexz.SnapshotWriter.write].
 *
 * Since: 1.0
 */
void
hexz_snapshot_writer_splice_async (HexzSnapshotWriter  *self,
                                   GInputStream        *input,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  SpliceData *splice;
  GError *error = NULL;

  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));
  g_return_if_fail (G_IS_INPUT_STREAM (input));
  g_return_if_fail (!self->busy);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_snapshot_writer_splice_async);

  splice = g_new0 (SpliceData, 1);
  splice->input = g_object_ref (input);
  g_task_set_task_data (task, splice, splice_data_free);

  if (!check_stream_open (self, &error) ||
      !check_cancelled (self, cancellable, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  self->busy = TRUE;
  self->progress_context = g_main_context_ref_thread_default ();
  g_task_run_in_thread (task, splice_thread);
}

/**
 * hexz_snapshot_writer_splice_finish:
 * @self: a writer
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Hexz.SnapshotWriter.splice_async].
 *
 * Returns: the number of bytes read and appended; 0 on error, with @error
 *   set
 *
 * Since: 1.0
 */
guint64
hexz_snapshot_writer_splice_finish (HexzSnapshotWriter  *self,
                                    GAsyncResult        *result,
                                    GError             **error)
{
  SpliceData *splice;

  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), 0);
  g_return_val_if_fail (g_task_is_valid (result, self), 0);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
                        hexz_snapshot_writer_splice_async, 0);

  if (!g_task_propagate_boolean (G_TASK (result), error))
    return 0;

  splice = g_task_get_task_data (G_TASK (result));

  return splice->total;
}

/* Closing */

static GBytes *
build_metadata (HexzSnapshotWriter *self)
{
  g_autoptr(JsonObject) object = json_object_new ();
  g_autoptr(JsonNode) root = json_node_new (JSON_NODE_OBJECT);
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  g_autoptr(GList) members = NULL;
  g_autofree char *created = NULL;
  char *text;

  created = g_date_time_format (now, "%Y-%m-%dT%H:%M:%SZ");
  json_object_set_string_member (object, "created", created);
  json_object_set_string_member (object, "tool-version",
                                 "hexz-glib " PACKAGE_VERSION);
  if (self->message != NULL)
    json_object_set_string_member (object, "message", self->message);

  members = json_object_get_members (self->metadata);
  for (GList *l = members; l != NULL; l = l->next)
    json_object_set_member (object, l->data,
                            json_node_copy (json_object_get_member (self->metadata,
                                                                    l->data)));

  json_node_set_object (root, object);
  text = json_to_string (root, FALSE);

  return g_bytes_new_take (text, strlen (text));
}

static GBytes *
build_parent_section (HexzSnapshotWriter *self)
{
  g_autoptr(GFile) folder = g_file_get_parent (self->file);
  GFile *parent_file = hexz_snapshot_get_file (self->parent);
  g_autofree char *path = NULL;
  guint8 *section;
  gsize path_length;

  path = g_file_get_relative_path (folder, parent_file);
  if (path == NULL)
    path = g_file_get_path (parent_file);
  g_assert (path != NULL);

  path_length = strlen (path);
  if (path_length > HEXZ_MAX_PARENT_PATH)
    return NULL;

  section = g_malloc0 (HEXZ_PARENT_FIXED_SIZE + path_length);
  memcpy (section, hexz_snapshot_get_id_bytes (self->parent), 16);
  hexz_put_u64 (section + 16, hexz_snapshot_get_seal (self->parent));
  hexz_put_u32 (section + 24, path_length);
  memcpy (section + HEXZ_PARENT_FIXED_SIZE, path, path_length);

  return g_bytes_new_take (section, HEXZ_PARENT_FIXED_SIZE + path_length);
}

static gboolean
append_section (HexzSnapshotWriter  *self,
                GBytes              *bytes,
                HexzSectionRef      *section,
                GError             **error)
{
  gsize size;
  const guint8 *data = g_bytes_get_data (bytes, &size);

  section->offset = output_offset (self);
  section->length = size;
  section->checksum = hexz_checksum (data, size);

  return output_append (self, data, size, error);
}

static gboolean
sync_folder (HexzSnapshotWriter  *self,
             GError             **error)
{
  g_autoptr(GFile) folder = g_file_get_parent (self->file);
  g_autofree char *path = g_file_get_path (folder);
  int fd;

  fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync (fd) != 0)
    {
      int saved_errno = errno;
      g_autofree char *name = writer_display_name (self);

      if (fd >= 0)
        close (fd);
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   /* Translators: the first %s is a folder, the second a
                    * snapshot file name, the third the system's reason. */
                   _("Flushing folder “%s” after writing snapshot “%s” "
                     "failed: %s"),
                   path, name, g_strerror (saved_errno));
      return FALSE;
    }

  close (fd);
  return TRUE;
}

static gboolean
write_index_and_header (HexzSnapshotWriter  *self,
                        GError             **error)
{
  HexzHeader header = { 0 };
  guint8 buffer[HEXZ_HEADER_SIZE];
  g_autoptr(GBytes) metadata = NULL;
  g_autoptr(GBytes) disk_directory = NULL;
  g_autoptr(GBytes) memory_directory = NULL;
  GBytes **directories[HEXZ_N_STREAMS] = { &disk_directory, &memory_directory };
  int saved_errno;

  header.major = HEXZ_FORMAT_MAJOR;
  header.minor = self->format_minor;
  header.block_size = self->block_size;
  header.entries_per_page = HEXZ_ENTRIES_PER_PAGE;
  hexz_random_id (header.id);
  header.data_end = output_offset (self);

  if (self->dictionary != NULL && self->dictionary_used &&
      !append_section (self, self->dictionary, &header.dictionary, error))
    return FALSE;

  metadata = build_metadata (self);
  if (g_bytes_get_size (metadata) > HEXZ_MAX_METADATA_SIZE)
    {
      g_autofree char *name = writer_display_name (self);
      GError *local_error;

      local_error = g_error_new (HEXZ_SNAPSHOT_ERROR,
                                 HEXZ_SNAPSHOT_ERROR_TOO_LARGE,
                                 /* Translators: %s is a file name. */
                                 _("The metadata of snapshot “%s” exceed "
                                   "16 MiB; store less metadata."), name);
      return writer_fail (self, error, local_error);
    }

  if (!append_section (self, metadata, &header.metadata, error))
    return FALSE;

  if (self->parent != NULL)
    {
      g_autoptr(GBytes) parent = build_parent_section (self);

      if (parent == NULL)
        {
          g_autofree char *name = writer_display_name (self);
          GError *local_error;

          local_error = g_error_new (HEXZ_SNAPSHOT_ERROR,
                                     HEXZ_SNAPSHOT_ERROR_TOO_LARGE,
                                     /* Translators: %s is a file name, %d a
                                      * byte count. */
                                     _("The path of the parent of snapshot "
                                       "“%s” is longer than %d bytes; move "
                                       "the parent to a shorter path."),
                                     name, HEXZ_MAX_PARENT_PATH);
          return writer_fail (self, error, local_error);
        }

      if (!append_section (self, parent, &header.parent, error))
        return FALSE;
    }

  /* Pages of both streams, then both directories. */
  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      StreamState *state = &self->streams[s];
      HexzStreamDesc *desc = &header.streams[s];

      if (!state->present)
        continue;

      desc->flags = HEXZ_STREAM_FLAG_PRESENT;
      desc->logical_size = state->logical_size;
      desc->page_count = state->pages->len;
      desc->data_offset = state->data_offset;
      desc->data_length = state->data_length;
      desc->data_checksum = state->data_checksum;
    }

  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      StreamState *state = &self->streams[s];
      guint8 *directory;

      if (!state->present || state->pages->len == 0)
        continue;

      directory = g_malloc0 ((gsize) state->pages->len * HEXZ_PAGE_DESC_SIZE);
      *directories[s] = g_bytes_new_take (directory,
                                         (gsize) state->pages->len *
                                         HEXZ_PAGE_DESC_SIZE);

      for (guint i = 0; i < state->pages->len; i++)
        {
          const SpilledPage *page = &g_array_index (state->pages, SpilledPage, i);
          g_autofree guint8 *data = g_malloc (page->length);
          HexzPageDesc desc;

          if (!pread_all (self->spill_fd, data, page->length,
                          page->spill_offset, &saved_errno))
            return writer_fail_errno (self, error, saved_errno,
                                      /* Translators: the first %s is a file name,
                                       * the second the system's reason. */
                                      _("Reading the index of snapshot “%s” "
                                        "from a temporary file failed: %s"));

          /* The spill file is outside the snapshot's checksums: check the
           * page before it goes into the file. */
          if (hexz_checksum (data, page->length) != page->checksum)
            return writer_fail_errno (self, error, EIO,
                                      _("Reading the index of snapshot “%s” "
                                        "from a temporary file failed: %s"));

          desc.offset = output_offset (self);
          desc.length = page->length;
          desc.entry_count = i + 1 < state->pages->len
            ? HEXZ_ENTRIES_PER_PAGE
            : state->n_entries - (guint64) i * HEXZ_ENTRIES_PER_PAGE;
          desc.checksum = page->checksum;
          hexz_page_desc_encode (&desc, directory + i * HEXZ_PAGE_DESC_SIZE);

          if (!output_append (self, data, page->length, error))
            return FALSE;
        }
    }

  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      if (*directories[s] != NULL &&
          !append_section (self, *directories[s], &header.streams[s].directory,
                           error))
        return FALSE;
    }

  if (!output_sync (self, error))
    return FALSE;
  stop_output_thread (self);
  if (self->direct_fd >= 0)
    {
      close (self->direct_fd);
      self->direct_fd = -1;
    }

  header.file_size = output_offset (self);
  hexz_header_encode (&header, buffer);

  if (!pwrite_all (self->fd, buffer, sizeof buffer, 0, &saved_errno))
    /* Translators: the first %s is a file name, the second the
     * system's reason. */
    return writer_fail_errno (self, error, saved_errno, _("Writing snapshot “%s” failed: %s"));

  return TRUE;
}

/**
 * hexz_snapshot_writer_close:
 * @self: a writer
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Ends the open stream, writes the index, metadata and header, flushes the
 * file to disk and renames it to the output path, replacing any file
 * there. A writer on which no stream was begun writes a snapshot with no
 * streams.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_writer_close (HexzSnapshotWriter  *self,
                            GCancellable        *cancellable,
                            GError             **error)
{
  g_autofree char *final_path = NULL;
  int saved_errno;

  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_usable (self, error) ||
      !check_cancelled (self, cancellable, error))
    return FALSE;

  if (self->stream_open &&
      !hexz_snapshot_writer_end_stream (self, cancellable, error))
    return FALSE;

  if (!writer_start (self, error))
    return FALSE;

  stop_workers (self);

  if (!write_index_and_header (self, error) ||
      !check_cancelled (self, cancellable, error))
    return FALSE;

  if (fsync (self->fd) != 0)
    /* Translators: the first %s is a file name, the second the
     * system's reason. */
    return writer_fail_errno (self, error, errno, _("Flushing snapshot “%s” to disk failed: %s"));

  if (close (self->fd) != 0)
    {
      saved_errno = errno;
      self->fd = -1;
      return writer_fail_errno (self, error, saved_errno, _("Writing snapshot “%s” failed: %s"));
    }
  self->fd = -1;

  /* Checked again: something else may have appeared at the path since. */
  final_path = g_file_get_path (self->file);
  {
    GError *local_error = NULL;

    if (!hexz_check_output_path (final_path, NULL, 0, &local_error))
      return writer_fail (self, error, local_error);
  }
  if (g_rename (self->temp_path, final_path) != 0)
    /* Translators: the first %s is a file name, the second the
     * system's reason. */
    return writer_fail_errno (self, error, errno, _("Renaming the temporary file to snapshot “%s” failed: %s"));

  g_clear_pointer (&self->temp_path, g_free);
  self->closed = TRUE;

  g_debug ("Closed snapshot %s", final_path);

  /* The snapshot is in place; a failure to flush the folder is reported,
   * but the file stays. */
  return sync_folder (self, error);
}

static void
close_thread (GTask        *task,
              gpointer      source_object,
              gpointer      task_data,
              GCancellable *cancellable)
{
  HexzSnapshotWriter *self = source_object;
  GError *error = NULL;

  gboolean closed = hexz_snapshot_writer_close (self, cancellable, &error);

  self->busy = FALSE;
  g_clear_pointer (&self->progress_context, g_main_context_unref);

  if (closed)
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

/**
 * hexz_snapshot_writer_close_async:
 * @self: a writer
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): the function to call when done
 * @user_data: data for @callback
 *
 * Closes the writer in a worker thread, like
 * [method@Hexz.SnapshotWriter.close]. Do not call other methods of @self
 * until @callback runs. The last progress signal of an open stream is
 * emitted in the thread-default main context of the caller.
 *
 * Since: 1.0
 */
void
hexz_snapshot_writer_close_async (HexzSnapshotWriter  *self,
                                  GCancellable        *cancellable,
                                  GAsyncReadyCallback  callback,
                                  gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));
  g_return_if_fail (!self->busy);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_snapshot_writer_close_async);

  self->busy = TRUE;
  self->progress_context = g_main_context_ref_thread_default ();
  g_task_run_in_thread (task, close_thread);
}

/**
 * hexz_snapshot_writer_close_finish:
 * @self: a writer
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Hexz.SnapshotWriter.close_async].
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_snapshot_writer_close_finish (HexzSnapshotWriter  *self,
                                   GAsyncResult        *result,
                                   GError             **error)
{
  g_return_val_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
                        hexz_snapshot_writer_close_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * hexz_snapshot_writer_abort:
 * @self: a writer
 *
 * Stops writing and removes the temporary file. The output path is left
 * as it was. Further calls fail with %G_IO_ERROR_CANCELLED. Aborting a
 * closed writer does nothing.
 *
 * Since: 1.0
 */
void
hexz_snapshot_writer_abort (HexzSnapshotWriter *self)
{
  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));
  g_return_if_fail (!self->busy);

  if (self->closed || self->failure != NULL)
    return;

  writer_fail (self, NULL,
               g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                    _("Writing the snapshot was aborted.")));
}

/* Makes the deduplication hash cover only the first 16 bytes of each
 * block, so that tests can make blocks collide. */
void
hexz_snapshot_writer_set_weak_hash_for_testing (HexzSnapshotWriter *self,
                                                gboolean            weak)
{
  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));
  g_return_if_fail (!self->started);

  self->weak_hash = weak;
}

/* Keeps a trained dictionary even where it does not pay off, so that tests
 * can make small files that use the dictionary codecs. */
void
hexz_snapshot_writer_set_keep_dictionary_for_testing (HexzSnapshotWriter *self,
                                                      gboolean            keep)
{
  g_return_if_fail (HEXZ_IS_SNAPSHOT_WRITER (self));
  g_return_if_fail (!self->started);

  self->keep_dictionary = keep;
}

/* GObject */

static void
hexz_snapshot_writer_dispose (GObject *object)
{
  HexzSnapshotWriter *self = HEXZ_SNAPSHOT_WRITER (object);

  if (!self->closed)
    discard_output (self);

  g_clear_object (&self->parent);

  G_OBJECT_CLASS (hexz_snapshot_writer_parent_class)->dispose (object);
}

static void
hexz_snapshot_writer_finalize (GObject *object)
{
  HexzSnapshotWriter *self = HEXZ_SNAPSHOT_WRITER (object);

  g_clear_object (&self->file);
  g_clear_pointer (&self->metadata, json_object_unref);
  g_clear_pointer (&self->message, g_free);
  g_clear_error (&self->failure);
  g_clear_pointer (&self->write_buffer, g_aligned_free);
  g_clear_pointer (&self->output_buffer, g_aligned_free);
  g_mutex_clear (&self->output_lock);
  g_cond_clear (&self->output_cond);
  g_clear_pointer (&self->scratch, g_free);

  for (guint i = 0; i < self->n_jobs; i++)
    {
      g_free (self->jobs[i].input);
      g_free (self->jobs[i].output);
    }
  g_clear_pointer (&self->jobs, g_free);

  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      g_clear_pointer (&self->streams[s].pages, g_array_unref);
      g_clear_pointer (&self->streams[s].page_buffer, g_free);
      g_clear_pointer (&self->streams[s].data_hash, XXH3_freeState);
    }

  g_clear_pointer (&self->queue, g_async_queue_unref);
  g_clear_pointer (&self->train_buffer, g_free);
  g_clear_pointer (&self->pending_runs, g_array_unref);
  g_clear_pointer (&self->dictionary, g_bytes_unref);
  g_clear_pointer (&self->compress_dictionary, hexz_compress_dictionary_free);
  g_clear_pointer (&self->decode_dictionary, hexz_decode_dictionary_free);
  g_clear_pointer (&self->dedup, g_free);
  g_clear_pointer (&self->progress_context, g_main_context_unref);
  g_mutex_clear (&self->lock);
  g_cond_clear (&self->cond);

  G_OBJECT_CLASS (hexz_snapshot_writer_parent_class)->finalize (object);
}

static void
hexz_snapshot_writer_get_property (GObject    *object,
                                   guint       prop_id,
                                   GValue     *value,
                                   GParamSpec *pspec)
{
  HexzSnapshotWriter *self = HEXZ_SNAPSHOT_WRITER (object);

  switch (prop_id)
    {
    case PROP_FILE:
      g_value_set_object (value, self->file);
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
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_snapshot_writer_set_property (GObject      *object,
                                   guint         prop_id,
                                   const GValue *value,
                                   GParamSpec   *pspec)
{
  HexzSnapshotWriter *self = HEXZ_SNAPSHOT_WRITER (object);

  switch (prop_id)
    {
    case PROP_FILE:
      self->file = g_value_dup_object (value);
      break;
    case PROP_CODEC:
      hexz_snapshot_writer_set_codec (self, g_value_get_enum (value));
      break;
    case PROP_LEVEL:
      hexz_snapshot_writer_set_level (self, g_value_get_int (value));
      break;
    case PROP_BLOCK_SIZE:
      hexz_snapshot_writer_set_block_size (self, g_value_get_uint (value));
      break;
    case PROP_THREADS:
      hexz_snapshot_writer_set_threads (self, g_value_get_uint (value));
      break;
    case PROP_TRAIN_DICTIONARY:
      hexz_snapshot_writer_set_train_dictionary (self, g_value_get_boolean (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_snapshot_writer_class_init (HexzSnapshotWriterClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = hexz_snapshot_writer_dispose;
  object_class->finalize = hexz_snapshot_writer_finalize;
  object_class->get_property = hexz_snapshot_writer_get_property;
  object_class->set_property = hexz_snapshot_writer_set_property;

  /**
   * HexzSnapshotWriter:file:
   *
   * The snapshot file to write.
   *
   * Since: 1.0
   */
  properties[PROP_FILE] =
    g_param_spec_object ("file", NULL, NULL,
                         G_TYPE_FILE,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzSnapshotWriter:codec:
   *
   * The codec blocks are compressed with.
   *
   * Since: 1.0
   */
  properties[PROP_CODEC] =
    g_param_spec_enum ("codec", NULL, NULL,
                       HEXZ_TYPE_CODEC, HEXZ_CODEC_LZ4,
                       G_PARAM_READWRITE |
                       G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzSnapshotWriter:level:
   *
   * The compression level, 0 for the codec's default. See
   * [method@Hexz.SnapshotWriter.set_level].
   *
   * Since: 1.0
   */
  properties[PROP_LEVEL] =
    g_param_spec_int ("level", NULL, NULL,
                      G_MININT, G_MAXINT, 0,
                      G_PARAM_READWRITE |
                      G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzSnapshotWriter:block-size:
   *
   * The block size in bytes: a power of two from %HEXZ_MIN_BLOCK_SIZE to
   * %HEXZ_MAX_BLOCK_SIZE.
   *
   * Since: 1.0
   */
  properties[PROP_BLOCK_SIZE] =
    g_param_spec_uint ("block-size", NULL, NULL,
                       0, G_MAXUINT, HEXZ_DEFAULT_BLOCK_SIZE,
                       G_PARAM_READWRITE |
                       G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzSnapshotWriter:threads:
   *
   * The number of compression threads; the number of processors by
   * default.
   *
   * Since: 1.0
   */
  properties[PROP_THREADS] =
    g_param_spec_uint ("threads", NULL, NULL,
                       1, 1024, 1,
                       G_PARAM_READWRITE |
                       G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzSnapshotWriter:train-dictionary:
   *
   * Whether a dictionary for LZ4 or zstd blocks is trained on the start of
   * the first stream; see [method@Hexz.SnapshotWriter.set_train_dictionary].
   *
   * Since: 1.0
   */
  properties[PROP_TRAIN_DICTIONARY] =
    g_param_spec_boolean ("train-dictionary", NULL, NULL,
                          FALSE,
                          G_PARAM_READWRITE |
                          G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * HexzSnapshotWriter::progress:
   * @self: the writer
   * @stream: the stream being written
   * @done: bytes appended to @stream so far
   * @expected: the size given to
   *   [method@Hexz.SnapshotWriter.begin_stream], or 0 if unknown
   *
   * Emitted while a stream is written, at most every 16 MiB or every
   * 100 ms, and once when it ends. It is emitted on the thread that calls
   * the appending function or [method@Hexz.SnapshotWriter.end_stream].
   * During [method@Hexz.SnapshotWriter.splice_async] and
   * [method@Hexz.SnapshotWriter.close_async] it is emitted in the
   * thread-default main context of the thread that started them.
   *
   * Since: 1.0
   */
  signals[PROGRESS] =
    g_signal_new ("progress",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 3,
                  HEXZ_TYPE_STREAM, G_TYPE_UINT64, G_TYPE_UINT64);
}

static void
hexz_snapshot_writer_init (HexzSnapshotWriter *self)
{
  self->codec = HEXZ_CODEC_LZ4;
  self->block_size = HEXZ_DEFAULT_BLOCK_SIZE;
  self->threads = CLAMP (g_get_num_processors (), 1, 1024);
  self->metadata = json_object_new ();
  self->fd = -1;
  self->direct_fd = -1;
  self->spill_fd = -1;
  self->queue = g_async_queue_new ();
  g_mutex_init (&self->lock);
  g_cond_init (&self->cond);
  g_mutex_init (&self->output_lock);
  g_cond_init (&self->output_cond);
}
