/* hexz-plugin-disk.c: a snapshot's disk with a copy-on-write overlay
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The nbdkit plugin serves a HexzPluginDisk. Reads come from the snapshot,
 * except for pages that the overlay's `.meta` file lists, which come from
 * the overlay file. Writes go to the overlay in whole 4 KiB pages (a
 * partial page is read, modified and written back), and each page that
 * becomes modified is appended to `.meta` once, after its data was written.
 * doc/nbd.md explains why that order is safe when the server is killed.
 *
 * Locking: one mutex guards the set of listed pages and the `.meta` append,
 * and a stripe of mutexes serializes read-modify-write on each page.
 * HexzSnapshot reads are thread-safe and cache the decoded blocks that a
 * read covers only in part, so the plugin adds no lock or cache of its own.
 * The overlay and `.meta` files are only accessed with pread and pwrite, so
 * their file offsets are never shared state.
 */

#include "config.h"

#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hexz.h"
#include "hexz-i18n-private.h"
#include "hexz-overlay-private.h"
#include "hexz-plugin-disk.h"
#include "hexz-snapshot-private.h"
#include "hexz-util-private.h"

#define PAGE_SIZE HEXZ_PLUGIN_PAGE_SIZE

/* The set of listed pages is a bitmap split into chunks of 2^18 pages
 * (1 GiB of disk, 32 KiB of bits), allocated on first use, so a large disk
 * with few modified pages costs little memory. */
#define CHUNK_SHIFT 18
#define PAGES_PER_CHUNK (G_GUINT64_CONSTANT (1) << CHUNK_SHIFT)
#define WORDS_PER_CHUNK (PAGES_PER_CHUNK / 64)

/* Number of mutexes that serialize writes to pages: page p uses lock
 * p % N_PAGE_LOCKS. It must stay 64, because a request's set of locks is a
 * guint64 mask. */
#define N_PAGE_LOCKS 64

/* Entries read from `.meta` per read call at open. */
#define META_READ_ENTRIES 8192

/* Bound on the work of one extent query: snapshot blocks examined. */
#define MAX_EXTENT_BLOCKS 4096

typedef struct {
  guint64 **chunks;
  gsize n_chunks;
  guint64 n_set;
} PageMap;

struct _HexzPluginDisk
{
  char *snapshot_path;
  char *overlay_path;
  char *meta_path;

  HexzSnapshot *snapshot;
  guint64 size;
  guint64 n_pages;
  guint64 snapshot_block_size;

  int overlay_fd;
  int meta_fd;

  /* Guards listed and meta_size. */
  GMutex meta_lock;
  PageMap listed;
  guint64 meta_size;

  GMutex page_locks[N_PAGE_LOCKS];

  /* Set when a hole was punched in the overlay since the last flush; the
   * next flush then uses fsync rather than fdatasync. Accessed atomically. */
  int holes_punched;
};

static void
page_map_init (PageMap *map,
               guint64  n_pages)
{
  map->n_chunks = (n_pages + PAGES_PER_CHUNK - 1) / PAGES_PER_CHUNK;
  map->chunks = g_new0 (guint64 *, map->n_chunks);
  map->n_set = 0;
}

static void
page_map_clear (PageMap *map)
{
  for (gsize i = 0; i < map->n_chunks; i++)
    g_free (map->chunks[i]);
  g_clear_pointer (&map->chunks, g_free);
  map->n_chunks = 0;
  map->n_set = 0;
}

static gboolean
page_map_test (const PageMap *map,
               guint64        page)
{
  const guint64 *chunk = map->chunks[page >> CHUNK_SHIFT];
  guint64 index = page & (PAGES_PER_CHUNK - 1);

  if (chunk == NULL)
    return FALSE;

  return (chunk[index / 64] >> (index % 64)) & 1;
}

static void
page_map_set (PageMap *map,
              guint64  page)
{
  guint64 **chunk = &map->chunks[page >> CHUNK_SHIFT];
  guint64 index = page & (PAGES_PER_CHUNK - 1);
  guint64 bit = G_GUINT64_CONSTANT (1) << (index % 64);

  if (*chunk == NULL)
    *chunk = g_new0 (guint64, WORDS_PER_CHUNK);

  if (((*chunk)[index / 64] & bit) == 0)
    {
      (*chunk)[index / 64] |= bit;
      map->n_set++;
    }
}

static gboolean set_io_error (GError     **error,
                              int          saved_errno,
                              const char  *format,
                              ...) G_GNUC_PRINTF (3, 4);

/* Sets a G_IO_ERROR from an errno value and a message. The errno argument
 * is read before the message's arguments, which may call gettext, are
 * evaluated. */
#define set_error_from_errno(error, errno_value, ...) \
  ({ int saved_errno_ = (errno_value); set_io_error ((error), saved_errno_, __VA_ARGS__); })

static gboolean
set_io_error (GError     **error,
              int          saved_errno,
              const char  *format,
              ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);

  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
               "%s: %s", message, g_strerror (saved_errno));
  return FALSE;
}

static gboolean
pread_all (int          fd,
           const char  *path,
           guint8      *buffer,
           gsize        count,
           guint64      offset,
           GError     **error)
{
  while (count > 0)
    {
      ssize_t n = pread (fd, buffer, count, offset);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return set_error_from_errno (error, errno,
                                     /* Translators: the first placeholder is a byte
                                      * count, the second an offset in bytes and the
                                      * third a file name. */
                                     _("Failed to read %zu bytes at offset %" PRIu64 " of “%s”"),
                                     count, offset, path);
      if (n == 0)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                       /* Translators: the first placeholder is a file name,
                        * the second an offset in bytes. */
                       _("File “%s” ends before offset %" PRIu64 ": it was truncated. "
                         "Its size must stay the size of the disk"),
                       path, offset + count);
          return FALSE;
        }

      buffer += n;
      count -= n;
      offset += n;
    }

  return TRUE;
}

static gboolean
pwrite_all (int            fd,
            const char    *path,
            const guint8  *buffer,
            gsize          count,
            guint64        offset,
            GError       **error)
{
  while (count > 0)
    {
      ssize_t n = pwrite (fd, buffer, count, offset);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return set_error_from_errno (error, errno,
                                     /* Translators: the first placeholder is a byte
                                      * count, the second an offset in bytes and the
                                      * third a file name. */
                                     _("Failed to write %zu bytes at offset %" PRIu64 " of “%s”"),
                                     count, offset, path);

      buffer += n;
      count -= n;
      offset += n;
    }

  return TRUE;
}

/* Checks that a request stays inside the disk. A write past the end fails
 * with G_IO_ERROR_NO_SPACE because the NBD protocol specifies ENOSPC. */
static gboolean
check_range (HexzPluginDisk  *disk,
             guint64          offset,
             guint64          count,
             GIOErrorEnum     code,
             GError         **error)
{
  if (offset <= disk->size && count <= disk->size - offset)
    return TRUE;

  g_set_error (error, G_IO_ERROR, code,
               /* Translators: the placeholders are byte counts and
                * offsets. */
               _("Request of %" PRIu64 " bytes at offset %" PRIu64
                 " goes past the end of the disk (%" PRIu64 " bytes)"),
               count, offset, disk->size);
  return FALSE;
}

static gboolean
snapshot_read (HexzPluginDisk  *disk,
               guint8          *buffer,
               gsize            count,
               guint64          offset,
               GError         **error)
{
  return hexz_snapshot_read (disk->snapshot, HEXZ_STREAM_DISK, offset, buffer, count,
                             NULL, error);
}

/* Sets *is_zero to whether the snapshot's disk bytes [offset, offset +
 * count) are all zero, as the snapshot's block index records them. */
static gboolean
snapshot_is_zero (HexzPluginDisk  *disk,
                  guint64          offset,
                  guint64          count,
                  gboolean        *is_zero,
                  GError         **error)
{
  GError *local_error = NULL;

  *is_zero = hexz_snapshot_is_zero (disk->snapshot, HEXZ_STREAM_DISK, offset, count,
                                    &local_error);
  if (local_error != NULL)
    {
      g_propagate_error (error, local_error);
      return FALSE;
    }

  return TRUE;
}

static gboolean
is_listed (HexzPluginDisk *disk,
           guint64         page)
{
  g_autoptr(GMutexLocker) locker = NULL;

  if (disk->overlay_fd < 0)
    return FALSE;

  locker = g_mutex_locker_new (&disk->meta_lock);
  return page_map_test (&disk->listed, page);
}

/* Returns the length of the run of bytes from offset, at most max_length,
 * whose pages all share one listed state, and sets *listed to it. */
static guint64
find_run (HexzPluginDisk *disk,
          guint64         offset,
          guint64         max_length,
          gboolean       *listed)
{
  g_autoptr(GMutexLocker) locker = NULL;
  guint64 end = offset + max_length;
  guint64 page = offset / PAGE_SIZE;
  guint64 run_end;

  if (disk->overlay_fd < 0)
    {
      *listed = FALSE;
      return max_length;
    }

  locker = g_mutex_locker_new (&disk->meta_lock);
  *listed = page_map_test (&disk->listed, page);

  run_end = (page + 1) * PAGE_SIZE;
  while (run_end < end && page_map_test (&disk->listed, run_end / PAGE_SIZE) == *listed)
    run_end += PAGE_SIZE;

  return MIN (run_end, end) - offset;
}

static gboolean
lock_overlay (int          fd,
              const char  *path,
              GError     **error)
{
  /* The lock conflicts with another server's lock and with QEMU's image
   * locks on the same file, and it survives nbdkit forking into the
   * background. */
  int saved_errno = hexz_lock_whole_file (fd, F_WRLCK);

  if (saved_errno == 0)
    return TRUE;

  if (saved_errno == EAGAIN || saved_errno == EACCES)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_BUSY,
                   /* Translators: the placeholder is a file name. */
                   _("Overlay “%s” is locked by another process, such as another "
                     "nbdkit serving it, QEMU or a commit. Stop that process first: "
                     "two writers would corrupt the overlay"),
                   path);
      return FALSE;
    }

  /* Translators: the placeholder is a file name. */
  return set_error_from_errno (error, saved_errno, _("Failed to lock overlay “%s”"), path);
}

/* Makes a newly created file's directory entry durable. */
static gboolean
sync_parent_directory (const char  *path,
                       GError     **error)
{
  g_autofree char *directory = g_path_get_dirname (path);
  int fd = open (directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int saved_errno;

  if (fd < 0 || fsync (fd) < 0)
    {
      saved_errno = errno;
      if (fd >= 0)
        close (fd);
      /* Translators: the placeholder is a directory name. */
      return set_error_from_errno (error, saved_errno, _("Failed to sync directory “%s”"),
                                   directory);
    }

  close (fd);
  return TRUE;
}

static gboolean
load_meta (HexzPluginDisk  *disk,
           GError         **error)
{
  g_autofree guint64 *entries = g_new (guint64, META_READ_ENTRIES);
  struct stat st;
  guint64 offset = 0;

  if (fstat (disk->meta_fd, &st) < 0)
    /* Translators: the placeholder is a file name. */
    return set_error_from_errno (error, errno, _("Failed to query “%s”"), disk->meta_path);

  if (st.st_size % 8 != 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   /* Translators: the first placeholder is a file name, the
                    * second a size in bytes. */
                   _("Page list “%s” is %" PRIu64 " bytes long, not a multiple of 8: "
                     "it is damaged. Restore it, or discard the overlay and its page list"),
                   disk->meta_path, (guint64) st.st_size);
      return FALSE;
    }

  page_map_init (&disk->listed, disk->n_pages);

  while (offset < (guint64) st.st_size)
    {
      gsize n_entries = MIN (META_READ_ENTRIES, (st.st_size - offset) / 8);

      if (!pread_all (disk->meta_fd, disk->meta_path, (guint8 *) entries,
                      n_entries * 8, offset, error))
        return FALSE;

      for (gsize i = 0; i < n_entries; i++)
        {
          guint64 page = GUINT64_FROM_LE (entries[i]);

          if (page >= disk->n_pages)
            {
              g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           /* Translators: the first placeholder is a file
                            * name, then a page number, a byte offset and a
                            * count of pages. */
                           _("Page list “%s” names page %" PRIu64 " at offset %"
                             PRIu64 ", but the disk has %" PRIu64
                             " pages of 4096 bytes: the page list belongs to another disk "
                             "or is damaged"),
                           disk->meta_path, page, offset + i * 8, disk->n_pages);
              return FALSE;
            }

          page_map_set (&disk->listed, page);
        }

      offset += n_entries * 8;
    }

  disk->meta_size = st.st_size;
  return TRUE;
}

/* Locks the page list too, so that commands writing an output see it in
 * use (hexz_path_is_locked()). The overlay's lock alone keeps other
 * servers out, so a failure here is only logged. */
static void
lock_meta (HexzPluginDisk *disk)
{
  int saved_errno = hexz_lock_whole_file (disk->meta_fd, F_WRLCK);

  if (saved_errno != 0)
    g_debug ("Could not lock page list %s: %s", disk->meta_path, g_strerror (saved_errno));
}

static gboolean
open_meta (HexzPluginDisk  *disk,
           gboolean         overlay_created,
           gboolean         create_overlay,
           gboolean        *meta_created,
           GError         **error)
{
  struct stat st;

  disk->meta_fd = open (disk->meta_path, O_RDWR | O_CLOEXEC);
  if (disk->meta_fd >= 0)
    {
      /* A new, empty overlay with an old non-empty page list would make the
       * listed pages read as zeros. */
      if (overlay_created && fstat (disk->meta_fd, &st) == 0 && st.st_size > 0)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                       /* Translators: the placeholders are file names. */
                       _("Page list “%s” lists modified pages, but overlay “%s” did not exist. "
                         "Remove the page list or restore the overlay"),
                       disk->meta_path, disk->overlay_path);
          return FALSE;
        }

      lock_meta (disk);
      return TRUE;
    }

  if (errno != ENOENT)
    /* Translators: the placeholder is a file name. */
    return set_error_from_errno (error, errno, _("Failed to open page list “%s”"),
                                 disk->meta_path);

  if (!create_overlay)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                   /* Translators: the placeholders are file names. */
                   _("Page list “%s” of overlay “%s” does not exist. Pass create=true "
                     "to start an empty one: the overlay's content is then ignored"),
                   disk->meta_path, disk->overlay_path);
      return FALSE;
    }

  disk->meta_fd = open (disk->meta_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (disk->meta_fd < 0)
    /* Translators: the placeholder is a file name. */
    return set_error_from_errno (error, errno, _("Failed to create page list “%s”"),
                                 disk->meta_path);

  *meta_created = TRUE;
  lock_meta (disk);
  g_debug ("Created empty page list %s", disk->meta_path);
  return TRUE;
}

/* Opens, creates when asked, locks and validates the overlay and its page
 * list, and reports in *overlay_created and *meta_created which files it
 * created. */
static gboolean
open_overlay_files (HexzPluginDisk  *disk,
                    const char      *overlay_path,
                    gboolean         create_overlay,
                    gboolean        *overlay_created,
                    gboolean        *meta_created,
                    GError         **error)
{
  gboolean created = FALSE;
  struct stat st;

  if (create_overlay)
    {
      disk->overlay_fd = open (overlay_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      created = *overlay_created = disk->overlay_fd >= 0;

      /* Only an existing overlay is opened next: any other failure, such as
       * a missing folder, is the reason the overlay cannot be created. */
      if (disk->overlay_fd < 0 && errno != EEXIST)
        /* Translators: the placeholder is a file name. */
        return set_error_from_errno (error, errno, _("Failed to create overlay “%s”"),
                                     overlay_path);
    }
  if (disk->overlay_fd < 0)
    disk->overlay_fd = open (overlay_path, O_RDWR | O_CLOEXEC);

  if (disk->overlay_fd < 0 && errno == ENOENT)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                   /* Translators: the placeholder is a file name. */
                   _("Overlay “%s” does not exist. Pass create=true to create an empty one"),
                   overlay_path);
      return FALSE;
    }
  if (disk->overlay_fd < 0)
    /* Translators: the placeholder is a file name. */
    return set_error_from_errno (error, errno, _("Failed to open overlay “%s”"), overlay_path);

  if (!lock_overlay (disk->overlay_fd, overlay_path, error))
    return FALSE;

  /* A new overlay records the snapshot it lies on; an existing one must
   * lie on the snapshot served. */
  if (created)
    hexz_overlay_record_base_id (disk->overlay_fd, overlay_path, disk->snapshot);
  else if (!hexz_overlay_check_base_id (disk->overlay_fd, overlay_path, disk->snapshot, error))
    return FALSE;

  if (created && ftruncate (disk->overlay_fd, disk->size) < 0)
    /* Translators: the placeholder is a file name. */
    return set_error_from_errno (error, errno, _("Failed to set the size of overlay “%s”"),
                                 overlay_path);

  if (fstat (disk->overlay_fd, &st) < 0)
    /* Translators: the placeholder is a file name. */
    return set_error_from_errno (error, errno, _("Failed to query “%s”"), overlay_path);

  if (!S_ISREG (st.st_mode) || (guint64) st.st_size != disk->size)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   /* Translators: the first placeholder is a file name, the
                    * others are sizes in bytes. */
                   _("Overlay “%s” must be a regular file of %" PRIu64
                     " bytes, the size of the snapshot's disk, but it has %" PRIu64
                     " bytes: it belongs to another disk"),
                   overlay_path, disk->size, (guint64) st.st_size);
      return FALSE;
    }

  if (!open_meta (disk, created, create_overlay, meta_created, error))
    return FALSE;

  if (!load_meta (disk, error))
    return FALSE;

  if (created && !sync_parent_directory (overlay_path, error))
    return FALSE;

  g_debug ("Overlay %s%s: %" G_GUINT64_FORMAT " modified pages listed in %s",
           overlay_path, created ? " (created)" : "", disk->listed.n_set, disk->meta_path);
  return TRUE;
}

static gboolean
open_overlay (HexzPluginDisk  *disk,
              const char      *overlay_path,
              gboolean         create_overlay,
              GError         **error)
{
  gboolean overlay_created = FALSE;
  gboolean meta_created = FALSE;

  disk->overlay_path = g_strdup (overlay_path);
  /* The rule shared with HexzOverlay and hexz-snap commit. */
  disk->meta_path = hexz_overlay_get_meta_path_for (overlay_path);

  if (strcmp (disk->meta_path, disk->overlay_path) == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_FILENAME,
                   /* Translators: the placeholder is a file name. */
                   _("Overlay “%s” ends in “.meta”, the name of its own page list. "
                     "Give the overlay another extension"),
                   overlay_path);
      return FALSE;
    }

  if (open_overlay_files (disk, overlay_path, create_overlay, &overlay_created,
                          &meta_created, error))
    return TRUE;

  /* Leave no file created by a failed start behind: a later start would
   * take an empty overlay for a valid one. The lock is still held here. */
  if (overlay_created)
    unlink (overlay_path);
  if (meta_created)
    unlink (disk->meta_path);

  return FALSE;
}

static gboolean
open_snapshot (HexzPluginDisk  *disk,
               GError         **error)
{
  g_autoptr(HexzSnapshot) snapshot = NULL;
  guint64 size;

  snapshot = hexz_snapshot_open_path (disk->snapshot_path, NULL, error);
  if (snapshot == NULL)
    return FALSE;

  /* Shared locks on the whole chain tell writers (pack, commit, snap
   * --output) that a running machine reads these files, so they refuse
   * to replace them. */
  if (!hexz_snapshot_lock_shared (snapshot, error))
    return FALSE;

  size = hexz_snapshot_get_disk_size (snapshot);
  if (size == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   /* Translators: the placeholder is a file name. */
                   _("Snapshot “%s” holds no disk, so there is nothing to serve"),
                   disk->snapshot_path);
      return FALSE;
    }

  if (disk->snapshot != NULL && size != disk->size)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   /* Translators: the placeholder is a file name. */
                   _("Snapshot “%s” was replaced while it was being served"),
                   disk->snapshot_path);
      return FALSE;
    }

  g_clear_object (&disk->snapshot);
  disk->snapshot = g_steal_pointer (&snapshot);
  disk->size = size;
  disk->n_pages = (size + PAGE_SIZE - 1) / PAGE_SIZE;
  disk->snapshot_block_size = MAX (hexz_snapshot_get_block_size (disk->snapshot), 1);
  return TRUE;
}

/**
 * hexz_plugin_disk_open:
 * @snapshot_path: the snapshot file whose disk is served
 * @overlay_path: (nullable): the overlay file; %NULL serves the disk
 *   read-only
 * @create_overlay: whether to create a missing overlay (sparse, the disk's
 *   size, mode 0600) and a missing `.meta` file
 * @error: return location for a #GError
 *
 * Opens the snapshot, then opens, locks and validates the overlay and loads
 * its `.meta` file.
 *
 * Returns: (transfer full): the disk, or %NULL on error
 */
HexzPluginDisk *
hexz_plugin_disk_open (const char  *snapshot_path,
                       const char  *overlay_path,
                       gboolean     create_overlay,
                       GError     **error)
{
  g_autoptr(HexzPluginDisk) disk = g_new0 (HexzPluginDisk, 1);

  g_mutex_init (&disk->meta_lock);
  for (guint i = 0; i < N_PAGE_LOCKS; i++)
    g_mutex_init (&disk->page_locks[i]);
  disk->overlay_fd = -1;
  disk->meta_fd = -1;
  disk->snapshot_path = g_strdup (snapshot_path);

  if (!open_snapshot (disk, error))
    return NULL;

  if (overlay_path != NULL && !open_overlay (disk, overlay_path, create_overlay, error))
    return NULL;

  return g_steal_pointer (&disk);
}

/**
 * hexz_plugin_disk_reopen_snapshot:
 * @disk: a disk
 * @error: return location for a #GError
 *
 * Opens the snapshot again, for a process that forked after opening it:
 * the reader's state may not survive a fork. Call it before serving
 * requests: it swaps the reader without a lock.
 *
 * Returns: %TRUE on success
 */
gboolean
hexz_plugin_disk_reopen_snapshot (HexzPluginDisk  *disk,
                                  GError         **error)
{
  return open_snapshot (disk, error);
}

void
hexz_plugin_disk_free (HexzPluginDisk *disk)
{
  if (disk == NULL)
    return;

  /* Closing the last descriptor of the overlay releases its lock. */
  if (disk->overlay_fd >= 0)
    close (disk->overlay_fd);
  if (disk->meta_fd >= 0)
    close (disk->meta_fd);

  page_map_clear (&disk->listed);
  g_clear_object (&disk->snapshot);

  g_mutex_clear (&disk->meta_lock);
  for (guint i = 0; i < N_PAGE_LOCKS; i++)
    g_mutex_clear (&disk->page_locks[i]);

  g_free (disk->snapshot_path);
  g_free (disk->overlay_path);
  g_free (disk->meta_path);
  g_free (disk);
}

guint64
hexz_plugin_disk_get_size (HexzPluginDisk *disk)
{
  return disk->size;
}

gboolean
hexz_plugin_disk_is_writable (HexzPluginDisk *disk)
{
  return disk->overlay_fd >= 0;
}

guint64
hexz_plugin_disk_get_n_listed (HexzPluginDisk *disk)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&disk->meta_lock);

  return disk->listed.n_set;
}

/**
 * hexz_plugin_disk_read:
 * @disk: a disk
 * @buffer: (out caller-allocates) (array length=count): the bytes read
 * @count: number of bytes to read
 * @offset: disk offset of the first byte
 * @error: return location for a #GError
 *
 * Reads disk bytes: listed pages from the overlay, others from the
 * snapshot.
 *
 * Returns: %TRUE on success
 */
gboolean
hexz_plugin_disk_read (HexzPluginDisk  *disk,
                       guint8          *buffer,
                       gsize            count,
                       guint64          offset,
                       GError         **error)
{
  if (!check_range (disk, offset, count, G_IO_ERROR_INVALID_ARGUMENT, error))
    return FALSE;

  while (count > 0)
    {
      gboolean listed;
      gsize run = find_run (disk, offset, count, &listed);
      gboolean ok;

      if (listed)
        ok = pread_all (disk->overlay_fd, disk->overlay_path, buffer, run, offset, error);
      else
        ok = snapshot_read (disk, buffer, run, offset, error);

      if (!ok)
        return FALSE;

      buffer += run;
      offset += run;
      count -= run;
    }

  return TRUE;
}

/* Locks the page locks of pages first to last in ascending lock order, so
 * that two requests never wait on each other in a cycle. Returns the mask
 * of the locks taken, for unlock_pages. */
static guint64
lock_pages (HexzPluginDisk *disk,
            guint64         first,
            guint64         last)
{
  guint64 mask = 0;

  if (last - first + 1 >= N_PAGE_LOCKS)
    mask = G_MAXUINT64;
  else
    for (guint64 page = first; page <= last; page++)
      mask |= G_GUINT64_CONSTANT (1) << (page % N_PAGE_LOCKS);

  for (guint i = 0; i < N_PAGE_LOCKS; i++)
    if (mask & (G_GUINT64_CONSTANT (1) << i))
      g_mutex_lock (&disk->page_locks[i]);

  return mask;
}

static void
unlock_pages (HexzPluginDisk *disk,
              guint64         mask)
{
  for (guint i = N_PAGE_LOCKS; i > 0; i--)
    if (mask & (G_GUINT64_CONSTANT (1) << (i - 1)))
      g_mutex_unlock (&disk->page_locks[i - 1]);
}

/* Appends the pages first to first + n_pages - 1 that are not listed yet
 * to `.meta`, in one write, then marks them listed. The caller has written
 * their data to the overlay: an entry must never name a page whose data
 * write has not returned. */
static gboolean
list_pages (HexzPluginDisk  *disk,
            guint64          first,
            guint64          n_pages,
            GError         **error)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&disk->meta_lock);
  g_autofree guint64 *entries = NULL;
  gsize n_entries = 0;

  for (guint64 page = first; page < first + n_pages; page++)
    {
      if (page_map_test (&disk->listed, page))
        continue;
      if (entries == NULL)
        entries = g_new (guint64, n_pages);
      entries[n_entries++] = GUINT64_TO_LE (page);
    }

  if (n_entries == 0)
    return TRUE;

  if (!pwrite_all (disk->meta_fd, disk->meta_path, (const guint8 *) entries,
                   n_entries * 8, disk->meta_size, error))
    {
      /* Drop a partly written append, so that the page list stays a whole
       * number of entries naming written pages. */
      if (ftruncate (disk->meta_fd, disk->meta_size) < 0)
        g_warning ("Failed to truncate page list %s back to %" G_GUINT64_FORMAT " bytes: %s",
                   disk->meta_path, disk->meta_size, g_strerror (errno));
      return FALSE;
    }

  for (gsize i = 0; i < n_entries; i++)
    page_map_set (&disk->listed, GUINT64_FROM_LE (entries[i]));
  disk->meta_size += n_entries * 8;

  return TRUE;
}

/* Makes overlay bytes [offset, offset + count) read as zeros. */
static gboolean
zero_overlay (HexzPluginDisk  *disk,
              guint64          offset,
              guint64          count,
              GError         **error)
{
  g_autofree guint8 *zeros = NULL;
  gsize zeros_size;

  if (fallocate (disk->overlay_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 offset, count) == 0)
    {
      g_atomic_int_set (&disk->holes_punched, 1);
      return TRUE;
    }

  if (errno != EOPNOTSUPP && errno != ENOSYS)
    return set_error_from_errno (error, errno,
                                 /* Translators: the first placeholders are a byte
                                  * count and an offset, the last a file name. */
                                 _("Failed to zero %" PRIu64 " bytes at offset %"
                                   PRIu64 " of “%s”"),
                                 count, offset, disk->overlay_path);

  zeros_size = MIN (count, 1024 * 1024);
  zeros = g_malloc0 (zeros_size);
  while (count > 0)
    {
      gsize n = MIN (count, zeros_size);

      if (!pwrite_all (disk->overlay_fd, disk->overlay_path, zeros, n, offset, error))
        return FALSE;
      offset += n;
      count -= n;
    }

  return TRUE;
}

/* Writes data (or zeros when data is NULL) to length bytes at in_page of
 * one page that the request covers only in part: the rest of the page keeps
 * its current content, from the overlay if the page is listed, else from
 * the snapshot. */
static gboolean
modify_partial_page (HexzPluginDisk  *disk,
                     guint64          page,
                     gsize            in_page,
                     const guint8    *data,
                     gsize            length,
                     GError         **error)
{
  guint8 content[PAGE_SIZE];
  guint64 page_offset = page * PAGE_SIZE;
  gsize page_length = MIN (PAGE_SIZE, disk->size - page_offset);
  gboolean ok;

  if (is_listed (disk, page))
    {
      ok = pread_all (disk->overlay_fd, disk->overlay_path, content, page_length,
                      page_offset, error);
    }
  else
    {
      gboolean is_zero;

      /* Zeroing part of a page that is zero in the snapshot changes
       * nothing. */
      if (data == NULL)
        {
          if (!snapshot_is_zero (disk, page_offset, page_length, &is_zero, error))
            return FALSE;
          if (is_zero)
            return TRUE;
        }

      ok = snapshot_read (disk, content, page_length, page_offset, error);
    }

  if (!ok)
    return FALSE;

  if (data != NULL)
    memcpy (content + in_page, data, length);
  else
    memset (content + in_page, 0, length);

  if (!pwrite_all (disk->overlay_fd, disk->overlay_path, content, page_length,
                   page_offset, error))
    return FALSE;

  return list_pages (disk, page, 1, error);
}

/* Makes whole pages read as zeros. Pages that are not listed and are zero
 * in the snapshot already read as zeros and stay unlisted, so that
 * discarding unused space does not grow `.meta`. */
static gboolean
zero_full_pages (HexzPluginDisk  *disk,
                 guint64          first,
                 guint64          n_pages,
                 GError         **error)
{
  guint64 run_first = first;
  guint64 run_length = 0;
  guint64 offset = first * PAGE_SIZE;
  guint64 length = MIN ((first + n_pages) * PAGE_SIZE, disk->size) - offset;
  gboolean listed;
  gboolean is_zero;

  /* A discard of a large unused area is mostly this case: answer it with
   * one query rather than one per page. */
  if (find_run (disk, offset, length, &listed) == length && !listed)
    {
      if (!snapshot_is_zero (disk, offset, length, &is_zero, error))
        return FALSE;
      if (is_zero)
        return TRUE;
    }

  for (guint64 page = first; page < first + n_pages; page++)
    {
      gboolean skip = FALSE;

      if (!is_listed (disk, page))
        {
          guint64 page_offset = page * PAGE_SIZE;

          if (!snapshot_is_zero (disk, page_offset, MIN (PAGE_SIZE, disk->size - page_offset),
                                 &skip, error))
            return FALSE;
        }

      if (!skip)
        {
          if (run_length == 0)
            run_first = page;
          run_length++;
          if (page + 1 < first + n_pages)
            continue;
        }

      if (run_length > 0)
        {
          guint64 run_offset = run_first * PAGE_SIZE;
          guint64 run_end = MIN ((run_first + run_length) * PAGE_SIZE, disk->size);

          if (!zero_overlay (disk, run_offset, run_end - run_offset, error) ||
              !list_pages (disk, run_first, run_length, error))
            return FALSE;
          run_length = 0;
        }
    }

  return TRUE;
}

/* Writes data, or zeros when data is NULL, with the page locks of the
 * request held. */
static gboolean
modify_locked (HexzPluginDisk  *disk,
               const guint8    *data,
               guint64          count,
               guint64          offset,
               GError         **error)
{
  guint64 end = offset + count;
  guint64 position = offset;

  while (position < end)
    {
      guint64 page = position / PAGE_SIZE;
      guint64 page_offset = page * PAGE_SIZE;
      guint64 page_end = MIN (page_offset + PAGE_SIZE, disk->size);
      const guint8 *source = data != NULL ? data + (position - offset) : NULL;

      if (position > page_offset || end < page_end)
        {
          guint64 length = MIN (end, page_end) - position;

          if (!modify_partial_page (disk, page, position - page_offset, source,
                                    length, error))
            return FALSE;
          position += length;
        }
      else
        {
          /* Whole pages up to the last whole page that the request covers;
           * the disk's last page counts as whole when the request reaches
           * the disk's end. */
          guint64 run_end = end == disk->size ? end : end - end % PAGE_SIZE;
          guint64 n_pages = (run_end - position + PAGE_SIZE - 1) / PAGE_SIZE;
          gboolean ok;

          if (source != NULL)
            ok = pwrite_all (disk->overlay_fd, disk->overlay_path, source,
                             run_end - position, position, error) &&
                 list_pages (disk, page, n_pages, error);
          else
            ok = zero_full_pages (disk, page, n_pages, error);

          if (!ok)
            return FALSE;
          position = run_end;
        }
    }

  return TRUE;
}

static gboolean
modify (HexzPluginDisk  *disk,
        const guint8    *data,
        guint64          count,
        guint64          offset,
        GError         **error)
{
  guint64 mask;
  gboolean ok;

  if (disk->overlay_fd < 0)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_READ_ONLY,
                           _("The disk is served read-only: no overlay was given"));
      return FALSE;
    }

  if (!check_range (disk, offset, count, G_IO_ERROR_NO_SPACE, error))
    return FALSE;

  if (count == 0)
    return TRUE;

  mask = lock_pages (disk, offset / PAGE_SIZE, (offset + count - 1) / PAGE_SIZE);
  ok = modify_locked (disk, data, count, offset, error);
  unlock_pages (disk, mask);

  return ok;
}

/**
 * hexz_plugin_disk_write:
 * @disk: a writable disk
 * @buffer: (array length=count): the bytes to write
 * @count: number of bytes
 * @offset: disk offset of the first byte
 * @error: return location for a #GError
 *
 * Writes bytes to the overlay and lists the pages that they modify.
 *
 * Returns: %TRUE on success
 */
gboolean
hexz_plugin_disk_write (HexzPluginDisk  *disk,
                        const guint8    *buffer,
                        gsize            count,
                        guint64          offset,
                        GError         **error)
{
  g_return_val_if_fail (buffer != NULL || count == 0, FALSE);

  return modify (disk, buffer, count, offset, error);
}

/**
 * hexz_plugin_disk_zero:
 * @disk: a writable disk
 * @count: number of bytes
 * @offset: disk offset of the first byte
 * @error: return location for a #GError
 *
 * Makes disk bytes read as zeros. Whole pages become holes in the overlay
 * where the file system supports punching holes.
 *
 * Returns: %TRUE on success
 */
gboolean
hexz_plugin_disk_zero (HexzPluginDisk  *disk,
                       gsize            count,
                       guint64          offset,
                       GError         **error)
{
  return modify (disk, NULL, count, offset, error);
}

/**
 * hexz_plugin_disk_flush:
 * @disk: a disk
 * @error: return location for a #GError
 *
 * Makes every completed write durable: first the overlay's data, then the
 * `.meta` entries that name it, so that no durable entry names data that
 * is not durable.
 *
 * Returns: %TRUE on success
 */
gboolean
hexz_plugin_disk_flush (HexzPluginDisk  *disk,
                        GError         **error)
{
  gboolean punched;
  int result;

  if (disk->overlay_fd < 0)
    return TRUE;

  /* Punching a hole changes the file's extent map, which fdatasync might
   * not write on every file system. */
  punched = g_atomic_int_compare_and_exchange (&disk->holes_punched, 1, 0);
  result = punched ? fsync (disk->overlay_fd) : fdatasync (disk->overlay_fd);
  if (result < 0)
    {
      int saved_errno = errno;

      if (punched)
        g_atomic_int_set (&disk->holes_punched, 1);
      /* Translators: the placeholder is a file name. */
      return set_error_from_errno (error, saved_errno, _("Failed to flush overlay “%s”"),
                                   disk->overlay_path);
    }

  if (fdatasync (disk->meta_fd) < 0)
    /* Translators: the placeholder is a file name. */
    return set_error_from_errno (error, errno, _("Failed to flush page list “%s”"),
                                 disk->meta_path);

  return TRUE;
}

static gboolean
get_overlay_extent (HexzPluginDisk        *disk,
                    guint64                offset,
                    guint64                max_length,
                    guint64               *length,
                    HexzPluginExtentType  *type)
{
  off_t data;
  off_t hole;

  /* Listed pages are data unless the overlay has a hole there. */
  *type = HEXZ_PLUGIN_EXTENT_DATA;
  *length = max_length;

  data = lseek (disk->overlay_fd, offset, SEEK_DATA);
  if (data < 0)
    {
      if (errno == ENXIO)
        *type = HEXZ_PLUGIN_EXTENT_ZERO;
      return TRUE;
    }

  if ((guint64) data > offset)
    {
      *type = HEXZ_PLUGIN_EXTENT_ZERO;
      *length = MIN ((guint64) data - offset, max_length);
      return TRUE;
    }

  hole = lseek (disk->overlay_fd, offset, SEEK_HOLE);
  if (hole > 0 && (guint64) hole > offset)
    *length = MIN ((guint64) hole - offset, max_length);

  return TRUE;
}

static gboolean
get_snapshot_extent (HexzPluginDisk        *disk,
                     guint64                offset,
                     guint64                max_length,
                     guint64               *length,
                     HexzPluginExtentType  *type,
                     GError               **error)
{
  guint64 block = disk->snapshot_block_size;
  guint64 end = offset + max_length;
  guint64 position = offset;
  gboolean first_zero = FALSE;

  /* Walk snapshot blocks while their zero state matches the first one. */
  for (guint i = 0; i < MAX_EXTENT_BLOCKS && position < end; i++)
    {
      guint64 chunk_end = MIN ((position / block + 1) * block, end);
      gboolean is_zero;

      if (!snapshot_is_zero (disk, position, chunk_end - position, &is_zero, error))
        return FALSE;

      if (i == 0)
        first_zero = is_zero;
      else if (is_zero != first_zero)
        break;

      position = chunk_end;
    }

  *length = position - offset;
  *type = first_zero ? HEXZ_PLUGIN_EXTENT_ZERO : HEXZ_PLUGIN_EXTENT_DATA;
  return TRUE;
}

/**
 * hexz_plugin_disk_get_extent:
 * @disk: a disk
 * @offset: disk offset where the extent starts
 * @max_length: the extent's maximum length, at least 1
 * @length: (out): the extent's length, at least 1
 * @type: (out): whether the extent reads as zeros
 * @error: return location for a #GError
 *
 * Describes the extent at @offset: a run of bytes that reads as zeros or a
 * run that holds data. Zero extents are zero blocks of the snapshot in
 * pages that are not listed, and holes of the overlay in listed pages.
 *
 * Returns: %TRUE on success
 */
gboolean
hexz_plugin_disk_get_extent (HexzPluginDisk        *disk,
                             guint64                offset,
                             guint64                max_length,
                             guint64               *length,
                             HexzPluginExtentType  *type,
                             GError               **error)
{
  gboolean listed;
  guint64 run;

  g_return_val_if_fail (max_length > 0, FALSE);

  if (!check_range (disk, offset, max_length, G_IO_ERROR_INVALID_ARGUMENT, error))
    return FALSE;

  run = find_run (disk, offset, max_length, &listed);
  if (listed)
    return get_overlay_extent (disk, offset, run, length, type);

  return get_snapshot_extent (disk, offset, run, length, type, error);
}
