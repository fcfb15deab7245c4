/* hexz-overlay.h: the copy-on-write overlay of a running virtual machine
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__HEXZ_INSIDE__) && !defined(HEXZ_COMPILATION)
# error "Only <hexz-glib/hexz.h> can be included directly."
#endif

#include <gio/gio.h>

#include "hexz-types.h"

G_BEGIN_DECLS

/**
 * HEXZ_OVERLAY_PAGE_SIZE:
 *
 * The granularity at which an overlay tracks modified disk bytes: 4 KiB.
 * Page `n` covers the disk bytes `[n * 4096, (n + 1) * 4096)`.
 *
 * Since: 1.0
 */
#define HEXZ_OVERLAY_PAGE_SIZE 4096

/**
 * HEXZ_OVERLAY_ERROR:
 *
 * Error domain for overlays. Errors in this domain are from the
 * [error@Hexz.OverlayError] enumeration.
 *
 * Since: 1.0
 */
#define HEXZ_OVERLAY_ERROR (hexz_overlay_error_quark ())

/**
 * HexzOverlayError:
 * @HEXZ_OVERLAY_ERROR_FAILED: a failure with no more specific code
 * @HEXZ_OVERLAY_ERROR_INVALID_NAME: the overlay's name maps to itself as
 *   its `.meta` file, or the file is not a local file
 * @HEXZ_OVERLAY_ERROR_INVALID_META: the `.meta` file's length is not a
 *   multiple of 8 bytes
 * @HEXZ_OVERLAY_ERROR_OUT_OF_RANGE: a page number in the `.meta` file, or
 *   a write, lies past the end of the disk
 * @HEXZ_OVERLAY_ERROR_TRUNCATED: the overlay file ends before a page that
 *   the `.meta` file lists
 * @HEXZ_OVERLAY_ERROR_READ_ONLY: a write on an overlay opened for reading
 * @HEXZ_OVERLAY_ERROR_WRONG_BASE: the overlay records that it was written
 *   on top of another snapshot than the base given
 *
 * Error codes of the %HEXZ_OVERLAY_ERROR domain.
 *
 * Since: 1.0
 */
typedef enum {
  HEXZ_OVERLAY_ERROR_FAILED,
  HEXZ_OVERLAY_ERROR_INVALID_NAME,
  HEXZ_OVERLAY_ERROR_INVALID_META,
  HEXZ_OVERLAY_ERROR_OUT_OF_RANGE,
  HEXZ_OVERLAY_ERROR_TRUNCATED,
  HEXZ_OVERLAY_ERROR_READ_ONLY,
  HEXZ_OVERLAY_ERROR_WRONG_BASE,
} HexzOverlayError;

/**
 * HexzOverlayCreateFlags:
 * @HEXZ_OVERLAY_CREATE_NONE: fail if the overlay or its `.meta` file exists
 * @HEXZ_OVERLAY_CREATE_REPLACE: truncate an existing overlay and `.meta`
 *   file, dropping every recorded change
 *
 * How [func@Hexz.Overlay.create] treats existing files.
 *
 * Since: 1.0
 */
typedef enum /*< flags >*/ {
  HEXZ_OVERLAY_CREATE_NONE = 0,
  HEXZ_OVERLAY_CREATE_REPLACE = 1 << 0,
} HexzOverlayCreateFlags;

#define HEXZ_TYPE_OVERLAY (hexz_overlay_get_type ())

HEXZ_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (HexzOverlay, hexz_overlay, HEXZ, OVERLAY, GObject)

HEXZ_AVAILABLE_IN_1_0
GQuark         hexz_overlay_error_quark          (void);

HEXZ_AVAILABLE_IN_1_0
char          *hexz_overlay_get_meta_path_for    (const char              *overlay_path);
HEXZ_AVAILABLE_IN_1_0
GFile         *hexz_overlay_get_meta_file_for    (GFile                   *overlay_file);

HEXZ_AVAILABLE_IN_1_0
HexzOverlay   *hexz_overlay_open                 (GFile                   *file,
                                                  guint64                  disk_size,
                                                  GCancellable            *cancellable,
                                                  GError                 **error);
HEXZ_AVAILABLE_IN_1_0
HexzOverlay   *hexz_overlay_open_path            (const char              *path,
                                                  guint64                  disk_size,
                                                  GCancellable            *cancellable,
                                                  GError                 **error);
HEXZ_AVAILABLE_IN_1_0
HexzOverlay   *hexz_overlay_create               (GFile                   *file,
                                                  guint64                  disk_size,
                                                  HexzOverlayCreateFlags   flags,
                                                  GError                 **error);
HEXZ_AVAILABLE_IN_1_0
HexzOverlay   *hexz_overlay_create_path          (const char              *path,
                                                  guint64                  disk_size,
                                                  HexzOverlayCreateFlags   flags,
                                                  GError                 **error);

HEXZ_AVAILABLE_IN_1_0
GFile         *hexz_overlay_get_file             (HexzOverlay             *self);
HEXZ_AVAILABLE_IN_1_0
GFile         *hexz_overlay_get_meta_file        (HexzOverlay             *self);
HEXZ_AVAILABLE_IN_1_0
guint64        hexz_overlay_get_disk_size        (HexzOverlay             *self);
HEXZ_AVAILABLE_IN_1_0
guint64        hexz_overlay_get_file_size        (HexzOverlay             *self);
HEXZ_AVAILABLE_IN_1_0
gboolean       hexz_overlay_is_writable          (HexzOverlay             *self);
HEXZ_AVAILABLE_IN_1_0
guint64        hexz_overlay_get_n_modified       (HexzOverlay             *self);
HEXZ_AVAILABLE_IN_1_0
guint64        hexz_overlay_get_data_size        (HexzOverlay             *self);
HEXZ_AVAILABLE_IN_1_0
guint64       *hexz_overlay_dup_modified_pages   (HexzOverlay             *self,
                                                  gsize                   *n_pages);
HEXZ_AVAILABLE_IN_1_0
gboolean       hexz_overlay_is_modified          (HexzOverlay             *self,
                                                  guint64                  page);

HEXZ_AVAILABLE_IN_1_0
gboolean       hexz_overlay_read_page            (HexzOverlay             *self,
                                                  guint64                  page,
                                                  guint8                  *buffer,
                                                  GError                 **error);
HEXZ_AVAILABLE_IN_1_0
GBytes        *hexz_overlay_read_page_bytes      (HexzOverlay             *self,
                                                  guint64                  page,
                                                  GError                 **error);

HEXZ_AVAILABLE_IN_1_0
gboolean       hexz_overlay_write                (HexzOverlay             *self,
                                                  guint64                  offset,
                                                  const guint8            *data,
                                                  gsize                    count,
                                                  GError                 **error);
HEXZ_AVAILABLE_IN_1_0
gboolean       hexz_overlay_write_bytes          (HexzOverlay             *self,
                                                  guint64                  offset,
                                                  GBytes                  *bytes,
                                                  GError                 **error);
HEXZ_AVAILABLE_IN_1_0
gboolean       hexz_overlay_mark_pages           (HexzOverlay             *self,
                                                  guint64                  first_page,
                                                  guint64                  n_pages,
                                                  GError                 **error);
HEXZ_AVAILABLE_IN_1_0
gboolean       hexz_overlay_sync                 (HexzOverlay             *self,
                                                  GError                 **error);

G_END_DECLS
