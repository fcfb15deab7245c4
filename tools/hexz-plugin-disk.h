/* hexz-plugin-disk.h: the disk that the nbdkit plugin serves
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The overlay tracks writes in pages of this size: page n covers the disk
 * bytes [n * 4096, (n + 1) * 4096). The `.meta` file lists page numbers. */
#define HEXZ_PLUGIN_PAGE_SIZE 4096

typedef struct _HexzPluginDisk HexzPluginDisk;

typedef enum {
  HEXZ_PLUGIN_EXTENT_DATA,
  HEXZ_PLUGIN_EXTENT_ZERO,
} HexzPluginExtentType;

HexzPluginDisk *hexz_plugin_disk_open          (const char            *snapshot_path,
                                                const char            *overlay_path,
                                                gboolean               create_overlay,
                                                GError               **error);
void            hexz_plugin_disk_free          (HexzPluginDisk        *disk);
gboolean        hexz_plugin_disk_reopen_snapshot (HexzPluginDisk      *disk,
                                                GError               **error);

guint64         hexz_plugin_disk_get_size      (HexzPluginDisk        *disk);
gboolean        hexz_plugin_disk_is_writable   (HexzPluginDisk        *disk);
guint64         hexz_plugin_disk_get_n_listed  (HexzPluginDisk        *disk);

gboolean        hexz_plugin_disk_read          (HexzPluginDisk        *disk,
                                                guint8                *buffer,
                                                gsize                  count,
                                                guint64                offset,
                                                GError               **error);
gboolean        hexz_plugin_disk_write         (HexzPluginDisk        *disk,
                                                const guint8          *buffer,
                                                gsize                  count,
                                                guint64                offset,
                                                GError               **error);
gboolean        hexz_plugin_disk_zero          (HexzPluginDisk        *disk,
                                                gsize                  count,
                                                guint64                offset,
                                                GError               **error);
gboolean        hexz_plugin_disk_flush         (HexzPluginDisk        *disk,
                                                GError               **error);
gboolean        hexz_plugin_disk_get_extent    (HexzPluginDisk        *disk,
                                                guint64                offset,
                                                guint64                max_length,
                                                guint64               *length,
                                                HexzPluginExtentType  *type,
                                                GError               **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HexzPluginDisk, hexz_plugin_disk_free)

G_END_DECLS
