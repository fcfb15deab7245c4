/* hexz-plugin.c: nbdkit plugin serving a snapshot's disk
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   nbdkit --unix DIR/nbd.sock --foreground hexz-plugin.so \
 *     snapshot=vm.hexz overlay=vm.overlay create=true
 *
 * serves the disk of vm.hexz, with writes going to vm.overlay and its page
 * list vm.meta. Without overlay= the disk is read-only. doc/nbd.md
 * describes the options and the guarantees after a crash.
 *
 * All connections share one HexzPluginDisk, whose locking makes parallel
 * requests safe. A flush on any connection makes the writes that completed
 * on every connection durable, so the plugin advertises multi-conn.
 */

#include "config.h"

#include <errno.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "hexz.h"
#include "hexz-i18n-private.h"
#include "hexz-plugin-disk.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static char *snapshot_path;
static char *overlay_path;
static gboolean create_overlay;

static HexzPluginDisk *disk;
static pid_t ready_pid;

/* Reports error through nbdkit, frees it and returns the errno value for
 * the NBD client. The library's messages name the file and offset. */
static int
report_error (GError *error)
{
  int errno_value = EIO;

  nbdkit_error ("%s", error->message);

  if (error->domain == G_IO_ERROR)
    {
      switch (error->code)
        {
        case G_IO_ERROR_INVALID_ARGUMENT:
          errno_value = EINVAL;
          break;
        case G_IO_ERROR_NO_SPACE:
          errno_value = ENOSPC;
          break;
        case G_IO_ERROR_READ_ONLY:
          errno_value = EROFS;
          break;
        case G_IO_ERROR_PERMISSION_DENIED:
          errno_value = EPERM;
          break;
        default:
          break;
        }
    }

  g_error_free (error);
  return errno_value;
}

/* Sends GLib's log messages to nbdkit's log: debug and info messages appear
 * with nbdkit -v, and the others as errors. GLib's default handler would
 * write debug messages to stdout, which nbdkit may have closed. */
static GLogWriterOutput
write_log (GLogLevelFlags   log_level,
           const GLogField *fields,
           gsize            n_fields,
           gpointer         user_data)
{
  const char *domain = "GLib";
  const char *message = "";

  for (gsize i = 0; i < n_fields; i++)
    {
      if (g_str_equal (fields[i].key, "GLIB_DOMAIN") && fields[i].length < 0)
        domain = fields[i].value;
      else if (g_str_equal (fields[i].key, "MESSAGE") && fields[i].length < 0)
        message = fields[i].value;
    }

  if (log_level & (G_LOG_LEVEL_DEBUG | G_LOG_LEVEL_INFO))
    nbdkit_debug ("%s: %s", domain, message);
  else
    nbdkit_error ("%s: %s", domain, message);

  return G_LOG_WRITER_HANDLED;
}

static void
hexz_plugin_load (void)
{
  g_log_set_writer_func (write_log, NULL, NULL);
}

static void
hexz_plugin_unload (void)
{
  g_clear_pointer (&snapshot_path, g_free);
  g_clear_pointer (&overlay_path, g_free);
}

static int
hexz_plugin_config (const char *key,
                    const char *value)
{
  char *path;
  int flag;

  if (g_str_equal (key, "snapshot") || g_str_equal (key, "overlay"))
    {
      /* nbdkit changes to / when it forks into the background. */
      path = nbdkit_absolute_path (value);
      if (path == NULL)
        return -1;

      if (g_str_equal (key, "snapshot"))
        {
          g_free (snapshot_path);
          snapshot_path = g_strdup (path);
        }
      else
        {
          g_free (overlay_path);
          overlay_path = g_strdup (path);
        }
      free (path);
      return 0;
    }

  if (g_str_equal (key, "create"))
    {
      flag = nbdkit_parse_bool (value);
      if (flag < 0)
        return -1;
      create_overlay = flag;
      return 0;
    }

  /* Translators: the placeholder is a parameter name given to nbdkit. */
  nbdkit_error (_("Unknown parameter “%s”; run “nbdkit hexz-plugin.so --help” for the list"),
                key);
  return -1;
}

static int
hexz_plugin_config_complete (void)
{
  if (snapshot_path == NULL)
    {
      nbdkit_error (_("Missing parameter snapshot=FILE: the snapshot whose disk to serve"));
      return -1;
    }

  if (create_overlay && overlay_path == NULL)
    {
      nbdkit_error (_("Parameter create=true needs overlay=FILE: the overlay to create"));
      return -1;
    }

  return 0;
}

static int
hexz_plugin_get_ready (void)
{
  GError *error = NULL;

  /* Opening here, before nbdkit forks, lets a failure (a missing file, an
   * overlay locked by another server) reach the user and the exit status. */
  disk = hexz_plugin_disk_open (snapshot_path, overlay_path, create_overlay, &error);
  if (disk == NULL)
    {
      report_error (error);
      return -1;
    }

  ready_pid = getpid ();
  nbdkit_debug ("serving %s (%" G_GUINT64_FORMAT " bytes), %s%s",
                snapshot_path, hexz_plugin_disk_get_size (disk),
                overlay_path != NULL ? "overlay " : "read-only",
                overlay_path != NULL ? overlay_path : "");
  return 0;
}

static int
hexz_plugin_after_fork (void)
{
  GError *error = NULL;

  /* The overlay's lock belongs to its open file description and survives
   * the fork, but the snapshot reader may hold state that does not. */
  if (getpid () == ready_pid)
    return 0;

  if (!hexz_plugin_disk_reopen_snapshot (disk, &error))
    {
      report_error (error);
      return -1;
    }

  return 0;
}

static void
hexz_plugin_cleanup (void)
{
  GError *error = NULL;

  if (disk == NULL)
    return;

  if (!hexz_plugin_disk_flush (disk, &error))
    report_error (error);

  g_clear_pointer (&disk, hexz_plugin_disk_free);
}

static void *
hexz_plugin_open (int readonly)
{
  /* Every connection uses the one shared disk. */
  return disk;
}

static int64_t
hexz_plugin_get_size (void *handle)
{
  return hexz_plugin_disk_get_size (handle);
}

static int
hexz_plugin_block_size (void     *handle,
                        uint32_t *minimum,
                        uint32_t *preferred,
                        uint32_t *maximum)
{
  /* Any request works; page-aligned ones avoid a read-modify-write. */
  *minimum = 1;
  *preferred = HEXZ_PLUGIN_PAGE_SIZE;
  *maximum = 0xffffffff;
  return 0;
}

static int
hexz_plugin_can_write (void *handle)
{
  return hexz_plugin_disk_is_writable (handle);
}

static int
hexz_plugin_can_true (void *handle)
{
  return 1;
}

static int
hexz_plugin_can_false (void *handle)
{
  return 0;
}

static int
hexz_plugin_can_fua (void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
hexz_plugin_flush (void     *handle,
                   uint32_t  flags)
{
  GError *error = NULL;

  if (!hexz_plugin_disk_flush (handle, &error))
    {
      nbdkit_set_error (report_error (error));
      return -1;
    }

  return 0;
}

/* Finishes a write request: flushes when the client asked for FUA. */
static int
finish_write (void     *handle,
              gboolean  ok,
              GError   *error,
              uint32_t  flags)
{
  if (!ok)
    {
      nbdkit_set_error (report_error (error));
      return -1;
    }

  if (flags & NBDKIT_FLAG_FUA)
    return hexz_plugin_flush (handle, 0);

  return 0;
}

static int
hexz_plugin_pread (void     *handle,
                   void     *buffer,
                   uint32_t  count,
                   uint64_t  offset,
                   uint32_t  flags)
{
  GError *error = NULL;

  if (!hexz_plugin_disk_read (handle, buffer, count, offset, &error))
    {
      nbdkit_set_error (report_error (error));
      return -1;
    }

  return 0;
}

static int
hexz_plugin_pwrite (void       *handle,
                    const void *buffer,
                    uint32_t    count,
                    uint64_t    offset,
                    uint32_t    flags)
{
  GError *error = NULL;
  gboolean ok;

  ok = hexz_plugin_disk_write (handle, buffer, count, offset, &error);
  return finish_write (handle, ok, error, flags);
}

static int
hexz_plugin_zero (void     *handle,
                  uint32_t  count,
                  uint64_t  offset,
                  uint32_t  flags)
{
  GError *error = NULL;
  gboolean ok;

  ok = hexz_plugin_disk_zero (handle, count, offset, &error);
  return finish_write (handle, ok, error, flags);
}

static int
hexz_plugin_trim (void     *handle,
                  uint32_t  count,
                  uint64_t  offset,
                  uint32_t  flags)
{
  GError *error = NULL;
  gboolean ok;

  /* NBD lets trimmed bytes read back as anything; zeros keep the disk
   * deterministic and make the pages holes in the overlay. */
  ok = hexz_plugin_disk_zero (handle, count, offset, &error);
  return finish_write (handle, ok, error, flags);
}

static int
hexz_plugin_extents (void                  *handle,
                     uint32_t               count,
                     uint64_t               offset,
                     uint32_t               flags,
                     struct nbdkit_extents *extents)
{
  guint64 end = offset + count;

  while (offset < end)
    {
      HexzPluginExtentType type;
      GError *error = NULL;
      guint64 length;

      if (!hexz_plugin_disk_get_extent (handle, offset, end - offset, &length, &type, &error))
        {
          nbdkit_set_error (report_error (error));
          return -1;
        }

      if (nbdkit_add_extent (extents, offset, length,
                             type == HEXZ_PLUGIN_EXTENT_ZERO
                               ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO
                               : 0) < 0)
        return -1;

      offset += length;
      if (flags & NBDKIT_FLAG_REQ_ONE)
        break;
    }

  return 0;
}

static struct nbdkit_plugin plugin = {
  .name = "hexz",
  .longname = "hexz-glib snapshot disk with a copy-on-write overlay",
  .version = PACKAGE_VERSION,
  .description = "Serves the disk of a hexz snapshot file; writes go to an overlay file.",
  .config_help =
    "snapshot=FILE      (required) Snapshot file whose disk is served; thin\n"
    "                   snapshots read through their parents.\n"
    "overlay=FILE       Overlay that receives writes: a sparse file of the\n"
    "                   disk's size. Its page list is FILE with the extension\n"
    "                   replaced by .meta. Without it the disk is read-only.\n"
    "create=true|false  Create a missing overlay (mode 0600) and page list\n"
    "                   (default: false).",
  .magic_config_key = "snapshot",
  .load = hexz_plugin_load,
  .unload = hexz_plugin_unload,
  .config = hexz_plugin_config,
  .config_complete = hexz_plugin_config_complete,
  .get_ready = hexz_plugin_get_ready,
  .after_fork = hexz_plugin_after_fork,
  .cleanup = hexz_plugin_cleanup,
  .open = hexz_plugin_open,
  .get_size = hexz_plugin_get_size,
  .block_size = hexz_plugin_block_size,
  .can_write = hexz_plugin_can_write,
  .can_flush = hexz_plugin_can_true,
  .is_rotational = hexz_plugin_can_false,
  .can_trim = hexz_plugin_can_write,
  .can_zero = hexz_plugin_can_true,
  .can_fast_zero = hexz_plugin_can_true,
  .can_fua = hexz_plugin_can_fua,
  .can_multi_conn = hexz_plugin_can_true,
  .can_extents = hexz_plugin_can_true,
  .pread = hexz_plugin_pread,
  .pwrite = hexz_plugin_pwrite,
  .zero = hexz_plugin_zero,
  .trim = hexz_plugin_trim,
  .flush = hexz_plugin_flush,
  .extents = hexz_plugin_extents,
  .errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN (plugin)
