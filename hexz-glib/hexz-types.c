/* hexz-types.c: shared enumerations, error domains and gettext setup
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "hexz-types.h"
#include "hexz-i18n-private.h"
#include "hexz-util-private.h"

/* The library's messages live in their own text domain, bound once when the
 * shared object is loaded, so that callers need not know about it. */
__attribute__((constructor)) static void
hexz_i18n_init (void)
{
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
}

/**
 * hexz_snapshot_error_quark:
 *
 * Gets the error domain of snapshot files, %HEXZ_SNAPSHOT_ERROR.
 *
 * Returns: the error domain
 *
 * Since: 1.0
 */
G_DEFINE_QUARK (hexz-snapshot-error-quark, hexz_snapshot_error)

/**
 * hexz_stream_to_string:
 * @stream: a stream
 *
 * Gets the stream's name as used in file metadata and on the command line:
 * `disk` or `memory`.
 *
 * Returns: the name, or `unknown` for a value outside the enumeration
 *
 * Since: 1.0
 */
const char *
hexz_stream_to_string (HexzStream stream)
{
  switch (stream)
    {
    case HEXZ_STREAM_DISK:
      return "disk";
    case HEXZ_STREAM_MEMORY:
      return "memory";
    default:
      return "unknown";
    }
}

/**
 * hexz_codec_to_string:
 * @codec: a codec
 *
 * Gets the codec's name as used on the command line: `raw`, `lz4` or
 * `zstd`.
 *
 * Returns: the name, or `unknown` for a value outside the enumeration
 *
 * Since: 1.0
 */
const char *
hexz_codec_to_string (HexzCodec codec)
{
  switch (codec)
    {
    case HEXZ_CODEC_RAW:
      return "raw";
    case HEXZ_CODEC_LZ4:
      return "lz4";
    case HEXZ_CODEC_ZSTD:
      return "zstd";
    default:
      return "unknown";
    }
}

/**
 * hexz_codec_from_string:
 * @name: a codec name: `raw`, `lz4` or `zstd`
 * @codec: (out): the codec
 *
 * Parses a codec name, ignoring case.
 *
 * Returns: %TRUE if @name names a codec
 *
 * Since: 1.0
 */
gboolean
hexz_codec_from_string (const char *name,
                        HexzCodec  *codec)
{
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (codec != NULL, FALSE);

  if (g_ascii_strcasecmp (name, "raw") == 0)
    *codec = HEXZ_CODEC_RAW;
  else if (g_ascii_strcasecmp (name, "lz4") == 0)
    *codec = HEXZ_CODEC_LZ4;
  else if (g_ascii_strcasecmp (name, "zstd") == 0)
    *codec = HEXZ_CODEC_ZSTD;
  else
    return FALSE;

  return TRUE;
}

/* Takes an open file description lock of @type (F_RDLCK or F_WRLCK) on
 * the whole file open on @fd without waiting. Such a lock lasts until the
 * last descriptor sharing the description closes, so it survives a fork.
 * Returns 0, or the errno value: EAGAIN or EACCES when a conflicting lock
 * is held. */
int
hexz_lock_whole_file (int   fd,
                      short type)
{
  struct flock lock = {
    .l_type = type,
    .l_whence = SEEK_SET,
    .l_start = 0,
    .l_len = 0,
  };

  return fcntl (fd, F_OFD_SETLK, &lock) == 0 ? 0 : errno;
}

/* Returns whether another open file description holds a lock on any part
 * of the file at @path. The nbdkit plugin holds a read lock on every
 * snapshot it serves and write locks on its overlay and page list, and
 * QEMU locks the image files it opens. F_OFD_GETLK also
 * reports classic POSIX locks of other programs. A file that cannot be
 * opened or tested counts as not locked. */
gboolean
hexz_path_is_locked (const char *path)
{
  struct flock lock = {
    .l_type = F_WRLCK,
    .l_whence = SEEK_SET,
    .l_start = 0,
    .l_len = 0,
  };
  gboolean locked;
  int fd;

  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0)
    return FALSE;

  if (fcntl (fd, F_OFD_GETLK, &lock) == 0)
    locked = lock.l_type != F_UNLCK;
  else
    {
      g_debug ("Could not test the locks on %s: %s", path, g_strerror (errno));
      locked = FALSE;
    }

  close (fd);
  return locked;
}

/* Checks that a snapshot may be written to @output. Renaming a temporary
 * file over the path replaces whatever it names. So the path must not be
 * an existing device, folder, link or other non-regular file. Nor may it
 * be one of the @n_inputs files in @inputs, which the operation reads.
 * Entries that are %NULL are skipped. Nor may a server hold a lock on it,
 * because the overlay and thin children of a running machine depend on
 * that very file. Writers call this again right before the rename, since
 * a machine may have started in between. */
gboolean
hexz_check_output_path (const char          *output,
                        const char * const  *inputs,
                        guint                n_inputs,
                        GError             **error)
{
  GStatBuf output_stat;

  if (g_lstat (output, &output_stat) != 0)
    return TRUE;

  if (!S_ISREG (output_stat.st_mode))
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                   /* Translators: %s is a file name. */
                   _("Cannot write snapshot “%s”: the path exists and is not a regular file, "
                     "so writing would replace it; choose another file name"),
                   output);
      return FALSE;
    }

  if (hexz_path_is_locked (output))
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_BUSY,
                   /* Translators: %s is a file name. An NBD server is the
                    * program (nbdkit) that serves a disk to a virtual
                    * machine. */
                   _("“%s” is in use by a running machine (an NBD server or QEMU holds a "
                     "lock on it): stop the machine or write to another file"),
                   output);
      return FALSE;
    }

  for (guint i = 0; i < n_inputs; i++)
    {
      GStatBuf input_stat;

      if (inputs[i] != NULL && g_stat (inputs[i], &input_stat) == 0 &&
          input_stat.st_dev == output_stat.st_dev && input_stat.st_ino == output_stat.st_ino)
        {
          g_set_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
                       /* Translators: both %s are file names. */
                       _("Cannot write snapshot “%s”: it is the input file “%s”, which "
                         "writing would replace; choose another file name"),
                       output, inputs[i]);
          return FALSE;
        }
    }

  return TRUE;
}

/* Runs @function once from @context's main loop, never on the calling
 * thread. g_main_context_invoke() is not used because it runs the function
 * at once when the calling thread can acquire the context, which a worker
 * thread can while the context's owner has not entered its main loop yet.
 * Signals would then be emitted on the worker thread. */
void
hexz_schedule_in_context (GMainContext   *context,
                          GSourceFunc     function,
                          gpointer        data,
                          GDestroyNotify  notify)
{
  g_autoptr(GSource) source = g_idle_source_new ();

  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, function, data, notify);
  g_source_set_static_name (source, "[hexz] emit in context");
  g_source_attach (source, context);
}
