/* hexz-plugin-cache.h: snapshot disk reads with a small block cache
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "hexz.h"

G_BEGIN_DECLS

typedef struct _HexzPluginCache HexzPluginCache;

HexzPluginCache *hexz_plugin_cache_new      (HexzSnapshot     *snapshot);
void             hexz_plugin_cache_free     (HexzPluginCache  *cache);

gboolean         hexz_plugin_cache_read     (HexzPluginCache  *cache,
                                             guint8           *buffer,
                                             gsize             count,
                                             guint64           offset,
                                             GError          **error);
gboolean         hexz_plugin_cache_is_zero  (HexzPluginCache  *cache,
                                             guint64           offset,
                                             guint64           count,
                                             gboolean         *is_zero,
                                             GError          **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HexzPluginCache, hexz_plugin_cache_free)

G_END_DECLS
