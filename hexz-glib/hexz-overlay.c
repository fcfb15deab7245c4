/* hexz-overlay.c: the copy-on-write overlay of a running virtual machine
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/**
 * HexzOverlay:
 *
 * The disk changes a virtual machine made on top of a snapshot.
 *
 * An overlay is two files. The overlay file is a sparse file as large as
 * the disk that contains the bytes of every modified 4 KiB page at the page's
 * own offset. Beside it, the `.meta` file lists the numbers of the modified
 * pages as little-endian 64-bit integers, in any order, duplicates allowed.
 * The `.meta` file alone decides which pages are modified. A page it lists
 * is read from the overlay file even where that file has a hole (the guest
 * wrote zeros). Data at a page it does not list is ignored.
 *
 * The `.meta` file's name is the overlay's name with its last extension
 * replaced by `.meta`, or with `.meta` appended when the name has no
 * extension; see [func@Hexz.Overlay.get_meta_path_for].
 *
 * ```c
 * g_autoptr(HexzOverlay) overlay = NULL;
 * g_autofree guint64 *pages = NULL;
 * gsize n_pages;
 * guint8 page[HEXZ_OVERLAY_PAGE_SIZE];
 *
 * overlay = hexz_overlay_open_path ("vm.overlay", disk_size, NULL, &error);
 * if (overlay == NULL)
 *   return FALSE;
 *
 * pages = hexz_overlay_dup_modified_pages (overlay, &n_pages);
 * for (gsize i = 0; i < n_pages; i++)
 *   {
 *     if (!hexz_overlay_read_page (overlay, pages[i], page, &error))
 *       return FALSE;
 *     use_page (pages[i] * HEXZ_OVERLAY_PAGE_SIZE, page);
 *   }
 * ```
 *
 * An overlay made by [func@Hexz.Overlay.create] is writable:
 * [method@Hexz.Overlay.write] stores data and appends the pages it touches
 * to the `.meta` file. The methods of one overlay may be called from
 * several threads at once.
 *
 * Since: 1.0
 */

#include "config.h"

#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "hexz-overlay.h"
#include "hexz-enum-types.h"
#include "hexz-i18n-private.h"
#include "hexz-overlay-private.h"
#include "hexz-snapshot-private.h"

struct _HexzOverlay
{
  GObject parent_instance;

  GFile *file;
  GFile *meta_file;
  char *path;
  char *meta_path;

  int fd;
  int meta_fd;
  gboolean writable;

  guint64 disk_size;
  guint64 file_size;

  /* Modified page numbers, sorted, without duplicates. The lock guards it
   * and the appends to the .meta file. */
  GMutex lock;
  GArray *pages;
};

enum {
  PROP_0,
  PROP_FILE,
  PROP_META_FILE,
  PROP_DISK_SIZE,
  PROP_WRITABLE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (HexzOverlay, hexz_overlay, G_TYPE_OBJECT)

/**
 * hexz_overlay_error_quark:
 *
 * Gets the error domain of overlays, %HEXZ_OVERLAY_ERROR.
 *
 * Returns: the error domain
 *
 * Since: 1.0
 */
G_DEFINE_QUARK (hexz-overlay-error-quark, hexz_overlay_error)

static void
hexz_overlay_finalize (GObject *object)
{
  HexzOverlay *self = HEXZ_OVERLAY (object);

  if (self->fd >= 0)
    close (self->fd);
  if (self->meta_fd >= 0)
    close (self->meta_fd);

  g_clear_object (&self->file);
  g_clear_object (&self->meta_file);
  g_clear_pointer (&self->path, g_free);
  g_clear_pointer (&self->meta_path, g_free);
  g_clear_pointer (&self->pages, g_array_unref);
  g_mutex_clear (&self->lock);

  G_OBJECT_CLASS (hexz_overlay_parent_class)->finalize (object);
}

static void
hexz_overlay_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  HexzOverlay *self = HEXZ_OVERLAY (object);

  switch (prop_id)
    {
    case PROP_FILE:
      g_value_set_object (value, self->file);
      break;

    case PROP_META_FILE:
      g_value_set_object (value, self->meta_file);
      break;

    case PROP_DISK_SIZE:
      g_value_set_uint64 (value, self->disk_size);
      break;

    case PROP_WRITABLE:
      g_value_set_boolean (value, self->writable);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_overlay_class_init (HexzOverlayClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = hexz_overlay_finalize;
  object_class->get_property = hexz_overlay_get_property;

  /**
   * HexzOverlay:file:
   *
   * The overlay file that contains the modified pages' bytes.
   *
   * Since: 1.0
   */
  properties[PROP_FILE] =
    g_param_spec_object ("file", NULL, NULL,
                         G_TYPE_FILE,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzOverlay:meta-file:
   *
   * The `.meta` file that lists the modified pages.
   *
   * Since: 1.0
   */
  properties[PROP_META_FILE] =
    g_param_spec_object ("meta-file", NULL, NULL,
                         G_TYPE_FILE,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzOverlay:disk-size:
   *
   * The size in bytes of the disk the overlay covers.
   *
   * Since: 1.0
   */
  properties[PROP_DISK_SIZE] =
    g_param_spec_uint64 ("disk-size", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzOverlay:writable:
   *
   * Whether [method@Hexz.Overlay.write] and [method@Hexz.Overlay.mark_pages]
   * may be used: %TRUE for an overlay made by [func@Hexz.Overlay.create].
   *
   * Since: 1.0
   */
  properties[PROP_WRITABLE] =
    g_param_spec_boolean ("writable", NULL, NULL,
                          FALSE,
                          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
hexz_overlay_init (HexzOverlay *self)
{
  self->fd = -1;
  self->meta_fd = -1;
  g_mutex_init (&self->lock);
  self->pages = g_array_new (FALSE, FALSE, sizeof (guint64));
}

/**
 * hexz_overlay_get_meta_path_for:
 * @overlay_path: (type filename): the path of an overlay file
 *
 * Computes the path of the `.meta` file that belongs to an overlay: the
 * last extension of the file name is replaced by `.meta`, and a name without
 * extension gets `.meta` appended. `vm.overlay` becomes `vm.meta`,
 * `disk.img.ovl` becomes `disk.img.meta`, `overlay` and `.overlay` become
 * `overlay.meta` and `.overlay.meta`. Dots in directory names do not count.
 *
 * Every program that writes or reads overlays must use this rule.
 *
 * Returns: (transfer full) (type filename): the `.meta` file's path
 *
 * Since: 1.0
 */
char *
hexz_overlay_get_meta_path_for (const char *overlay_path)
{
  const char *base;
  const char *dot;

  g_return_val_if_fail (overlay_path != NULL, NULL);

  base = strrchr (overlay_path, G_DIR_SEPARATOR);
  base = base != NULL ? base + 1 : overlay_path;

  /* A leading dot marks a hidden file, not an extension. */
  dot = strrchr (base, '.');
  if (dot == NULL || dot == base)
    return g_strconcat (overlay_path, ".meta", NULL);

  return g_strdup_printf ("%.*s.meta", (int) (dot - overlay_path), overlay_path);
}

/**
 * hexz_overlay_get_meta_file_for:
 * @overlay_file: an overlay file
 *
 * Computes the `.meta` file that belongs to an overlay file, by the rule of
 * [func@Hexz.Overlay.get_meta_path_for].
 *
 * Returns: (transfer full): the `.meta` file
 *
 * Since: 1.0
 */
GFile *
hexz_overlay_get_meta_file_for (GFile *overlay_file)
{
  g_autoptr(GFile) parent = NULL;
  g_autofree char *basename = NULL;
  g_autofree char *meta_basename = NULL;

  g_return_val_if_fail (G_IS_FILE (overlay_file), NULL);

  parent = g_file_get_parent (overlay_file);
  basename = g_file_get_basename (overlay_file);
  meta_basename = hexz_overlay_get_meta_path_for (basename);

  if (parent == NULL)
    return g_file_get_child (overlay_file, meta_basename);

  return g_file_get_child (parent, meta_basename);
}

static HexzOverlay *
hexz_overlay_new_for_file (GFile   *file,
                           GError **error)
{
  g_autoptr(HexzOverlay) self = NULL;

  self = g_object_new (HEXZ_TYPE_OVERLAY, NULL);
  self->file = g_object_ref (file);
  self->path = g_file_get_path (file);

  if (self->path == NULL)
    {
      g_autofree char *uri = g_file_get_uri (file);

      g_set_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_INVALID_NAME,
                   /* Translators: %s is a URI. */
                   _("Overlay “%s” is not a local file: overlays are read and written with "
                     "positioned I/O, so give a path on a local file system"),
                   uri);
      return NULL;
    }

  self->meta_path = hexz_overlay_get_meta_path_for (self->path);
  self->meta_file = g_file_new_for_path (self->meta_path);

  if (g_strcmp0 (self->path, self->meta_path) == 0)
    {
      g_set_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_INVALID_NAME,
                   /* Translators: %s is a file name. */
                   _("Overlay “%s” would be its own .meta file: rename the overlay so that "
                     "its extension is not “.meta”"),
                   self->path);
      return NULL;
    }

  return g_steal_pointer (&self);
}

static void
set_error_from_errno (GError     **error,
                      int          saved_errno,
                      const char  *format,
                      const char  *path)
{
  g_autofree char *message = NULL;

  message = g_strdup_printf (format, path, g_strerror (saved_errno));
  g_set_error_literal (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), message);
}

static int
compare_pages (gconstpointer a,
               gconstpointer b)
{
  guint64 page_a = *(const guint64 *) a;
  guint64 page_b = *(const guint64 *) b;

  return page_a < page_b ? -1 : page_a > page_b;
}

static guint64
page_count_for (guint64 disk_size)
{
  return disk_size / HEXZ_OVERLAY_PAGE_SIZE + (disk_size % HEXZ_OVERLAY_PAGE_SIZE != 0);
}

/* Bytes of the page that lie inside the disk: 4096 except for a short
 * last page when the disk size is not a multiple of 4 KiB. */
static gsize
page_length (HexzOverlay *self,
             guint64      page)
{
  guint64 offset = page * HEXZ_OVERLAY_PAGE_SIZE;

  return MIN (HEXZ_OVERLAY_PAGE_SIZE, self->disk_size - offset);
}

static gboolean
load_meta (HexzOverlay   *self,
           GCancellable  *cancellable,
           GError       **error)
{
  g_autofree char *contents = NULL;
  g_autoptr(GError) local_error = NULL;
  gsize length;
  gsize n_entries;
  guint64 n_disk_pages;
  guint64 *pages;
  gsize n_unique;

  if (!g_file_load_contents (self->meta_file, cancellable, &contents, &length, NULL, &local_error))
    {
      g_set_error (error, local_error->domain, local_error->code,
                   /* Translators: the first %s is a file name, the second an error message. */
                   _("Cannot read the overlay’s list of modified pages “%s”: %s. "
                     "Every overlay needs its .meta file beside it"),
                   self->meta_path, local_error->message);
      return FALSE;
    }

  if (length % sizeof (guint64) != 0)
    {
      g_set_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_INVALID_META,
                   /* Translators: %s is a file name, the first number a length in bytes. */
                   _("Overlay metadata “%s” is %zu bytes long, not a multiple "
                     "of 8: its last entry is incomplete. The file is damaged; a crash "
                     "during a write may have cut it, so recreate the overlay from a snapshot"),
                   self->meta_path, length);
      return FALSE;
    }

  n_entries = length / sizeof (guint64);
  n_disk_pages = page_count_for (self->disk_size);
  g_array_set_size (self->pages, n_entries);
  pages = (guint64 *) (gpointer) self->pages->data;

  for (gsize i = 0; i < n_entries; i++)
    {
      guint64 page;

      memcpy (&page, contents + i * sizeof (guint64), sizeof (guint64));
      page = GUINT64_FROM_LE (page);

      if (page >= n_disk_pages)
        {
          g_set_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_OUT_OF_RANGE,
                       /* Translators: %s is a file name; the numbers are an entry index,
                        * a page number, a page count and a size in bytes. */
                       _("Overlay metadata “%s” entry %zu lists page %"
                         PRIu64 ", past the end of the disk (%" PRIu64
                         " pages of 4 KiB, %" PRIu64 " bytes). The overlay does "
                         "not belong to this disk: use it with the snapshot it was made for"),
                       self->meta_path, i, page, n_disk_pages, self->disk_size);
          return FALSE;
        }

      if (page * HEXZ_OVERLAY_PAGE_SIZE + page_length (self, page) > self->file_size)
        {
          g_set_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_TRUNCATED,
                       /* Translators: the first %s is a file name; the numbers are an entry
                        * index, a page number and a size in bytes; the last %s a file name. */
                       _("Overlay metadata “%s” entry %zu lists page %"
                         PRIu64 ", but overlay “%s” ends at byte %" PRIu64
                         ", before that page. The overlay was truncated: recreate it from a "
                         "snapshot"),
                       self->meta_path, i, page, self->path, self->file_size);
          return FALSE;
        }

      pages[i] = page;
    }

  g_array_sort (self->pages, compare_pages);

  n_unique = 0;
  for (gsize i = 0; i < n_entries; i++)
    {
      if (n_unique == 0 || pages[n_unique - 1] != pages[i])
        pages[n_unique++] = pages[i];
    }
  g_array_set_size (self->pages, n_unique);

  g_debug ("Overlay %s: %" G_GSIZE_FORMAT " .meta entries, %" G_GSIZE_FORMAT " modified pages",
           self->path, n_entries, n_unique);

  return TRUE;
}

/**
 * hexz_overlay_open:
 * @file: the overlay file
 * @disk_size: the size in bytes of the disk the overlay covers, or 0 to
 *   take the overlay file's size
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Opens an existing overlay for reading and loads its `.meta` file.
 *
 * These are errors in the %HEXZ_OVERLAY_ERROR domain: a `.meta` file whose
 * length is not a multiple of 8 bytes, a page number past the end of the
 * disk, and a page that ends past the end of the overlay file. An overlay
 * never reads as zeros where its files disagree.
 *
 * Returns: (transfer full): the overlay, or %NULL on error
 *
 * Since: 1.0
 */
HexzOverlay *
hexz_overlay_open (GFile         *file,
                   guint64        disk_size,
                   GCancellable  *cancellable,
                   GError       **error)
{
  g_autoptr(HexzOverlay) self = NULL;
  struct stat st;

  g_return_val_if_fail (G_IS_FILE (file), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  self = hexz_overlay_new_for_file (file, error);
  if (self == NULL)
    return NULL;

  self->fd = g_open (self->path, O_RDONLY | O_CLOEXEC, 0);
  if (self->fd < 0)
    {
      /* Translators: the first %s is a file name, the second an error message. */
      set_error_from_errno (error, errno, _("Cannot open overlay “%s”: %s"), self->path);
      return NULL;
    }

  if (fstat (self->fd, &st) != 0)
    {
      /* Translators: the first %s is a file name, the second an error message. */
      set_error_from_errno (error, errno, _("Cannot read the size of overlay “%s”: %s"),
                            self->path);
      return NULL;
    }

  self->file_size = st.st_size;
  self->disk_size = disk_size != 0 ? disk_size : self->file_size;

  if (!load_meta (self, cancellable, error))
    return NULL;

  return g_steal_pointer (&self);
}

/**
 * hexz_overlay_open_path:
 * @path: (type filename): the overlay file's path
 * @disk_size: the size in bytes of the disk the overlay covers, or 0 to
 *   take the overlay file's size
 * @cancellable: (nullable): a cancellable
 * @error: return location for an error
 *
 * Opens an existing overlay for reading, like [func@Hexz.Overlay.open].
 *
 * Returns: (transfer full): the overlay, or %NULL on error
 *
 * Since: 1.0
 */
HexzOverlay *
hexz_overlay_open_path (const char    *path,
                        guint64        disk_size,
                        GCancellable  *cancellable,
                        GError       **error)
{
  g_autoptr(GFile) file = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  file = g_file_new_for_path (path);

  return hexz_overlay_open (file, disk_size, cancellable, error);
}

/**
 * hexz_overlay_create:
 * @file: the overlay file to create
 * @disk_size: the size in bytes of the disk the overlay covers
 * @flags: whether existing files are replaced
 * @error: return location for an error
 *
 * Creates a new empty overlay: a sparse overlay file of @disk_size bytes
 * and an empty `.meta` file, both readable and writable by the owner only
 * (mode 0600). The overlay is open for writing.
 *
 * Without %HEXZ_OVERLAY_CREATE_REPLACE, an existing overlay or `.meta`
 * file is an error (%G_IO_ERROR_EXISTS) and is left untouched.
 *
 * Returns: (transfer full): the overlay, or %NULL on error
 *
 * Since: 1.0
 */
HexzOverlay *
hexz_overlay_create (GFile                   *file,
                     guint64                  disk_size,
                     HexzOverlayCreateFlags   flags,
                     GError                 **error)
{
  g_autoptr(HexzOverlay) self = NULL;
  int open_flags;

  g_return_val_if_fail (G_IS_FILE (file), NULL);
  g_return_val_if_fail (disk_size > 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  self = hexz_overlay_new_for_file (file, error);
  if (self == NULL)
    return NULL;

  open_flags = O_RDWR | O_CREAT | O_CLOEXEC;
  if (flags & HEXZ_OVERLAY_CREATE_REPLACE)
    open_flags |= O_TRUNC;
  else
    open_flags |= O_EXCL;

  /* The .meta file comes first: without REPLACE, an existing one means
   * another overlay lives here, and its data file must stay untouched. */
  self->meta_fd = g_open (self->meta_path, open_flags | O_APPEND, 0600);
  if (self->meta_fd < 0)
    {
      /* Translators: the first %s is a file name, the second an error message. */
      set_error_from_errno (error, errno, _("Cannot create overlay metadata “%s”: %s"),
                            self->meta_path);
      return NULL;
    }

  self->fd = g_open (self->path, open_flags, 0600);
  if (self->fd < 0)
    {
      int saved_errno = errno;

      g_unlink (self->meta_path);
      /* Translators: the first %s is a file name, the second an error message. */
      set_error_from_errno (error, saved_errno, _("Cannot create overlay “%s”: %s"),
                            self->path);
      return NULL;
    }

  /* ftruncate() on a new file leaves a hole: no disk space is used until
   * the guest writes. */
  if (ftruncate (self->fd, disk_size) != 0)
    {
      int saved_errno = errno;

      g_unlink (self->meta_path);
      g_unlink (self->path);
      /* Translators: the first %s is a file name, the second an error message. */
      set_error_from_errno (error, saved_errno, _("Cannot set the size of overlay “%s”: %s"),
                            self->path);
      return NULL;
    }

  self->disk_size = disk_size;
  self->file_size = disk_size;
  self->writable = TRUE;

  g_debug ("Created overlay %s for a disk of %" G_GUINT64_FORMAT " bytes",
           self->path, disk_size);

  return g_steal_pointer (&self);
}

/**
 * hexz_overlay_create_path:
 * @path: (type filename): the path of the overlay file to create
 * @disk_size: the size in bytes of the disk the overlay covers
 * @flags: whether existing files are replaced
 * @error: return location for an error
 *
 * Creates a new empty overlay, like [func@Hexz.Overlay.create].
 *
 * Returns: (transfer full): the overlay, or %NULL on error
 *
 * Since: 1.0
 */
HexzOverlay *
hexz_overlay_create_path (const char              *path,
                          guint64                  disk_size,
                          HexzOverlayCreateFlags   flags,
                          GError                 **error)
{
  g_autoptr(GFile) file = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  file = g_file_new_for_path (path);

  return hexz_overlay_create (file, disk_size, flags, error);
}

/**
 * hexz_overlay_get_file:
 * @self: an overlay
 *
 * Gets the overlay file that contains the modified pages' bytes.
 *
 * Returns: (transfer none): the overlay file
 *
 * Since: 1.0
 */
GFile *
hexz_overlay_get_file (HexzOverlay *self)
{
  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), NULL);

  return self->file;
}

/**
 * hexz_overlay_get_meta_file:
 * @self: an overlay
 *
 * Gets the `.meta` file that lists the modified pages.
 *
 * Returns: (transfer none): the `.meta` file
 *
 * Since: 1.0
 */
GFile *
hexz_overlay_get_meta_file (HexzOverlay *self)
{
  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), NULL);

  return self->meta_file;
}

/**
 * hexz_overlay_get_disk_size:
 * @self: an overlay
 *
 * Gets the size of the disk the overlay covers: the size given when it was
 * opened or created, or the overlay file's size.
 *
 * Returns: the disk size in bytes
 *
 * Since: 1.0
 */
guint64
hexz_overlay_get_disk_size (HexzOverlay *self)
{
  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), 0);

  return self->disk_size;
}

/**
 * hexz_overlay_get_file_size:
 * @self: an overlay
 *
 * Gets the overlay file's apparent size, holes included, as it was when
 * the overlay was opened or created.
 *
 * Returns: the size in bytes
 *
 * Since: 1.0
 */
guint64
hexz_overlay_get_file_size (HexzOverlay *self)
{
  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), 0);

  return self->file_size;
}

/**
 * hexz_overlay_is_writable:
 * @self: an overlay
 *
 * Checks whether the overlay accepts writes; see [property@Hexz.Overlay:writable].
 *
 * Returns: %TRUE for an overlay made by [func@Hexz.Overlay.create]
 *
 * Since: 1.0
 */
gboolean
hexz_overlay_is_writable (HexzOverlay *self)
{
  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), FALSE);

  return self->writable;
}

/**
 * hexz_overlay_get_n_modified:
 * @self: an overlay
 *
 * Counts the modified pages, each page once however often the `.meta` file
 * lists it.
 *
 * Returns: the number of modified 4 KiB pages
 *
 * Since: 1.0
 */
guint64
hexz_overlay_get_n_modified (HexzOverlay *self)
{
  guint64 n_pages;

  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), 0);

  g_mutex_lock (&self->lock);
  n_pages = self->pages->len;
  g_mutex_unlock (&self->lock);

  return n_pages;
}

/**
 * hexz_overlay_get_data_size:
 * @self: an overlay
 *
 * Computes how many bytes of disk data the overlay holds: the number of
 * modified pages times 4 KiB. A commit reads this much from the overlay
 * file, and a copy of the overlay needs this much space.
 *
 * Returns: the size in bytes
 *
 * Since: 1.0
 */
guint64
hexz_overlay_get_data_size (HexzOverlay *self)
{
  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), 0);

  return hexz_overlay_get_n_modified (self) * HEXZ_OVERLAY_PAGE_SIZE;
}

/**
 * hexz_overlay_dup_modified_pages:
 * @self: an overlay
 * @n_pages: (out): return location for the number of pages
 *
 * Copies the numbers of the modified pages, sorted in increasing order and
 * without duplicates.
 *
 * Returns: (transfer full) (array length=n_pages): the page numbers; free
 *   them with g_free()
 *
 * Since: 1.0
 */
guint64 *
hexz_overlay_dup_modified_pages (HexzOverlay *self,
                                 gsize       *n_pages)
{
  guint64 *pages;

  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), NULL);
  g_return_val_if_fail (n_pages != NULL, NULL);

  g_mutex_lock (&self->lock);
  *n_pages = self->pages->len;
  pages = g_memdup2 (self->pages->data, self->pages->len * sizeof (guint64));
  g_mutex_unlock (&self->lock);

  return pages;
}

/* Finds @page in the sorted page array; sets *position to where it is or
 * would be inserted. Called with the lock held. */
static gboolean
find_page (HexzOverlay *self,
           guint64      page,
           guint       *position)
{
  const guint64 *pages = (const guint64 *) (gconstpointer) self->pages->data;
  guint low = 0;
  guint high = self->pages->len;

  while (low < high)
    {
      guint middle = low + (high - low) / 2;

      if (pages[middle] < page)
        low = middle + 1;
      else
        high = middle;
    }

  *position = low;

  return low < self->pages->len && pages[low] == page;
}

/**
 * hexz_overlay_is_modified:
 * @self: an overlay
 * @page: a page number
 *
 * Checks whether the `.meta` file lists a page.
 *
 * Returns: %TRUE if @page is modified
 *
 * Since: 1.0
 */
gboolean
hexz_overlay_is_modified (HexzOverlay *self,
                          guint64      page)
{
  gboolean found;
  guint position;

  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), FALSE);

  g_mutex_lock (&self->lock);
  found = find_page (self, page, &position);
  g_mutex_unlock (&self->lock);

  return found;
}

/**
 * hexz_overlay_read_page: (skip)
 * @self: an overlay
 * @page: a page number inside the disk
 * @buffer: (array fixed-size=4096): a buffer of %HEXZ_OVERLAY_PAGE_SIZE
 *   bytes to fill
 * @error: return location for an error
 *
 * Reads one page's bytes from the overlay file, whether or not the page is
 * modified. The part of a short last page past the disk's end is filled
 * with zeros. Use [method@Hexz.Overlay.is_modified] to know whether the
 * bytes mean anything. Bindings use [method@Hexz.Overlay.read_page_bytes].
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_overlay_read_page (HexzOverlay  *self,
                        guint64       page,
                        guint8       *buffer,
                        GError      **error)
{
  guint64 offset;
  gsize length;
  gsize done = 0;

  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), FALSE);
  g_return_val_if_fail (buffer != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (page >= page_count_for (self->disk_size))
    {
      g_set_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_OUT_OF_RANGE,
                   /* Translators: the numbers are a page number and a size in bytes,
                    * %s is a file name. */
                   _("Page %" PRIu64 " is past the end of the %" PRIu64
                     "-byte disk of overlay “%s”"),
                   page, self->disk_size, self->path);
      return FALSE;
    }

  offset = page * HEXZ_OVERLAY_PAGE_SIZE;
  length = page_length (self, page);

  while (done < length)
    {
      gssize n_read = pread (self->fd, buffer + done, length - done, offset + done);

      if (n_read < 0 && errno == EINTR)
        continue;

      if (n_read < 0)
        {
          int saved_errno = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       /* Translators: the first %s is a file name, the number an offset in
                        * bytes, the last %s an error message. */
                       _("Cannot read overlay “%s” at byte %" PRIu64 ": %s"),
                       self->path, offset + done, g_strerror (saved_errno));
          return FALSE;
        }

      if (n_read == 0)
        {
          g_set_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_TRUNCATED,
                       /* Translators: %s is a file name, the numbers are a page number and
                        * an offset in bytes. */
                       _("Overlay “%s” ends inside page %" PRIu64 ", at byte %"
                         PRIu64 ": the file was truncated while in use; recreate "
                         "it from a snapshot"),
                       self->path, page, offset + done);
          return FALSE;
        }

      done += n_read;
    }

  memset (buffer + length, 0, HEXZ_OVERLAY_PAGE_SIZE - length);

  return TRUE;
}

/**
 * hexz_overlay_read_page_bytes:
 * @self: an overlay
 * @page: a page number inside the disk
 * @error: return location for an error
 *
 * Reads one page's bytes from the overlay file, like
 * [method@Hexz.Overlay.read_page].
 *
 * Returns: (transfer full): %HEXZ_OVERLAY_PAGE_SIZE bytes, or %NULL on error
 *
 * Since: 1.0
 */
GBytes *
hexz_overlay_read_page_bytes (HexzOverlay  *self,
                              guint64       page,
                              GError      **error)
{
  g_autofree guint8 *buffer = NULL;

  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), NULL);

  buffer = g_malloc (HEXZ_OVERLAY_PAGE_SIZE);
  if (!hexz_overlay_read_page (self, page, buffer, error))
    return NULL;

  return g_bytes_new_take (g_steal_pointer (&buffer), HEXZ_OVERLAY_PAGE_SIZE);
}

static gboolean
check_writable (HexzOverlay  *self,
                GError      **error)
{
  if (self->writable)
    return TRUE;

  g_set_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_READ_ONLY,
               /* Translators: %s is a file name. */
               _("Overlay “%s” was opened for reading: create it with "
                 "hexz_overlay_create() to write to it"),
               self->path);
  return FALSE;
}

static gboolean
check_range (HexzOverlay  *self,
             guint64       offset,
             guint64       count,
             GError      **error)
{
  if (offset <= self->disk_size && count <= self->disk_size - offset)
    return TRUE;

  g_set_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_OUT_OF_RANGE,
               /* Translators: the numbers are sizes and offsets in bytes, %s a file name. */
               _("Write of %" PRIu64 " bytes at byte %" PRIu64
                 " is past the end of the %" PRIu64 "-byte disk of overlay “%s”"),
               count, offset, self->disk_size, self->path);
  return FALSE;
}

/* Appends the pages of [first_page, first_page + n_pages) that are not yet
 * listed to the .meta file and to the page array. Called with the lock
 * held, after the pages' data reached the overlay file, so that a listed
 * page never lacks its data. */
static gboolean
mark_pages_locked (HexzOverlay  *self,
                   guint64       first_page,
                   guint64       n_pages,
                   GError      **error)
{
  g_autoptr(GArray) new_pages = g_array_new (FALSE, FALSE, sizeof (guint64));
  const char *data;
  gsize length;
  gsize done = 0;

  for (guint64 page = first_page; page < first_page + n_pages; page++)
    {
      guint position;

      if (!find_page (self, page, &position))
        {
          guint64 entry = GUINT64_TO_LE (page);

          g_array_append_val (new_pages, entry);
        }
    }

  if (new_pages->len == 0)
    return TRUE;

  data = new_pages->data;
  length = new_pages->len * sizeof (guint64);

  while (done < length)
    {
      gssize n_written = write (self->meta_fd, data + done, length - done);

      if (n_written < 0 && errno == EINTR)
        continue;

      if (n_written < 0)
        {
          /* Translators: the first %s is a file name, the second an error message. */
          set_error_from_errno (error, errno, _("Cannot append to overlay metadata “%s”: %s"),
                                self->meta_path);
          return FALSE;
        }

      done += n_written;
    }

  /* NOTE: each new page is inserted into the sorted array, which costs a
   * move of the array's tail. Writes in increasing order, the usual case,
   * only append. */
  for (guint i = 0; i < new_pages->len; i++)
    {
      guint64 page = GUINT64_FROM_LE (g_array_index (new_pages, guint64, i));
      guint position;

      find_page (self, page, &position);
      g_array_insert_val (self->pages, position, page);
    }

  return TRUE;
}

/**
 * hexz_overlay_write:
 * @self: a writable overlay
 * @offset: the disk offset in bytes to write at
 * @data: (array length=count): the bytes to write
 * @count: the number of bytes
 * @error: return location for an error
 *
 * Writes disk bytes into the overlay file and appends every page they
 * touch that is not yet listed to the `.meta` file.
 *
 * A write that does not cover whole pages leaves the rest of those pages
 * as they are in the overlay file, zeros in a new overlay. A caller that
 * writes part of a page must first copy the page's unchanged bytes from
 * the base snapshot.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_overlay_write (HexzOverlay   *self,
                    guint64        offset,
                    const guint8  *data,
                    gsize          count,
                    GError       **error)
{
  gsize done = 0;
  gboolean ret;

  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), FALSE);
  g_return_val_if_fail (data != NULL || count == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_writable (self, error) || !check_range (self, offset, count, error))
    return FALSE;

  if (count == 0)
    return TRUE;

  while (done < count)
    {
      gssize n_written = pwrite (self->fd, data + done, count - done, offset + done);

      if (n_written < 0 && errno == EINTR)
        continue;

      if (n_written < 0)
        {
          int saved_errno = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       /* Translators: the first %s is a file name, the number an offset in
                        * bytes, the last %s an error message. */
                       _("Cannot write overlay “%s” at byte %" PRIu64 ": %s"),
                       self->path, offset + done, g_strerror (saved_errno));
          return FALSE;
        }

      done += n_written;
    }

  g_mutex_lock (&self->lock);
  ret = mark_pages_locked (self,
                           offset / HEXZ_OVERLAY_PAGE_SIZE,
                           (offset + count - 1) / HEXZ_OVERLAY_PAGE_SIZE
                           - offset / HEXZ_OVERLAY_PAGE_SIZE + 1,
                           error);
  g_mutex_unlock (&self->lock);

  return ret;
}

/**
 * hexz_overlay_write_bytes:
 * @self: a writable overlay
 * @offset: the disk offset in bytes to write at
 * @bytes: the bytes to write
 * @error: return location for an error
 *
 * Writes disk bytes into the overlay, like [method@Hexz.Overlay.write].
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_overlay_write_bytes (HexzOverlay  *self,
                          guint64       offset,
                          GBytes       *bytes,
                          GError      **error)
{
  gconstpointer data;
  gsize count;

  g_return_val_if_fail (bytes != NULL, FALSE);

  data = g_bytes_get_data (bytes, &count);

  return hexz_overlay_write (self, offset, data, count, error);
}

/**
 * hexz_overlay_mark_pages:
 * @self: a writable overlay
 * @first_page: the first page number
 * @n_pages: the number of pages
 * @error: return location for an error
 *
 * Records pages as modified without writing data: appends the pages of
 * the range that are not yet listed to the `.meta` file. Use it after
 * writing the pages' bytes into the overlay file by other means, never
 * before, so that a listed page always has its data.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_overlay_mark_pages (HexzOverlay  *self,
                         guint64       first_page,
                         guint64       n_pages,
                         GError      **error)
{
  guint64 n_disk_pages;
  gboolean ret;

  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_writable (self, error))
    return FALSE;

  n_disk_pages = page_count_for (self->disk_size);
  if (first_page > n_disk_pages || n_pages > n_disk_pages - first_page)
    {
      g_set_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_OUT_OF_RANGE,
                   /* Translators: the numbers are page numbers and a page count,
                    * %s a file name. */
                   _("Pages %" PRIu64 " to %" PRIu64 " are past the end "
                     "of the disk (%" PRIu64 " pages) of overlay “%s”"),
                   first_page, first_page + n_pages - 1, n_disk_pages, self->path);
      return FALSE;
    }

  g_mutex_lock (&self->lock);
  ret = mark_pages_locked (self, first_page, n_pages, error);
  g_mutex_unlock (&self->lock);

  return ret;
}

/**
 * hexz_overlay_sync:
 * @self: a writable overlay
 * @error: return location for an error
 *
 * Flushes the overlay file and then the `.meta` file to stable storage,
 * in that order, so that after a crash every listed page has its data.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
hexz_overlay_sync (HexzOverlay  *self,
                   GError      **error)
{
  g_return_val_if_fail (HEXZ_IS_OVERLAY (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_writable (self, error))
    return FALSE;

  if (fdatasync (self->fd) != 0)
    {
      /* Translators: the first %s is a file name, the second an error message. */
      set_error_from_errno (error, errno, _("Cannot flush overlay “%s”: %s"), self->path);
      return FALSE;
    }

  if (fdatasync (self->meta_fd) != 0)
    {
      /* Translators: the first %s is a file name, the second an error message. */
      set_error_from_errno (error, errno, _("Cannot flush overlay metadata “%s”: %s"),
                            self->meta_path);
      return FALSE;
    }

  return TRUE;
}

/* The base an overlay was written on */

/* The id of the snapshot an overlay's pages lie on top of, kept in an
 * extended attribute of the overlay file: the .meta format has no room for
 * it, and the attribute leaves the file's contents as they were. A file
 * system without user attributes, or a copy that dropped them, only loses
 * the check. */
#define BASE_ID_XATTR "user.hexz.base-id"

/* Records @base as the snapshot the overlay at @fd (@overlay_path) lies
 * on; called when the overlay is created for it. */
void
hexz_overlay_record_base_id (int           fd,
                             const char   *overlay_path,
                             HexzSnapshot *base)
{
  const char *id = hexz_snapshot_get_id (base);

  if (fsetxattr (fd, BASE_ID_XATTR, id, strlen (id), 0) != 0)
    g_debug ("Cannot record the base of overlay %s: %s", overlay_path, g_strerror (errno));
}

/* Checks that the overlay at @overlay_path (open as @fd, or -1) lies on
 * @base, when it records its base. */
gboolean
hexz_overlay_check_base_id (int            fd,
                            const char    *overlay_path,
                            HexzSnapshot  *base,
                            GError       **error)
{
  const char *id = hexz_snapshot_get_id (base);
  char recorded[64];
  ssize_t length;

  if (fd >= 0)
    length = fgetxattr (fd, BASE_ID_XATTR, recorded, sizeof recorded - 1);
  else
    length = getxattr (overlay_path, BASE_ID_XATTR, recorded, sizeof recorded - 1);

  if (length < 0)
    {
      g_debug ("Overlay %s records no base: %s", overlay_path, g_strerror (errno));
      return TRUE;
    }

  recorded[length] = '\0';
  if (strcmp (recorded, id) == 0)
    return TRUE;

  g_set_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_WRONG_BASE,
               /* Translators: the first and third %s are file names, the
                * others snapshot ids. */
               _("The overlay “%s” was written on top of the snapshot with id %s, not on "
                 "“%s” (id %s): give the snapshot the machine booted from"),
               overlay_path, recorded, hexz_snapshot_get_display_name (base), id);
  return FALSE;
}
