/* hexz-restore.h: loading a snapshot's memory into QEMU
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__HEXZ_INSIDE__) && !defined(HEXZ_COMPILATION)
# error "Only <hexz-glib/hexz.h> can be included directly."
#endif

#include <gio/gio.h>

#include "hexz-types.h"
#include "hexz-snapshot.h"
#include "hexz-qmp-client.h"

G_BEGIN_DECLS

/**
 * HexzRestoreFlags:
 * @HEXZ_RESTORE_FLAGS_NONE: resume the machine once its memory is loaded
 * @HEXZ_RESTORE_FLAGS_KEEP_PAUSED: leave the machine paused once its memory
 *   is loaded, so that it can be inspected before it runs
 *
 * Options of [func@Hexz.restore_memory_async].
 *
 * Since: 1.0
 */
typedef enum /*< flags >*/ {
  HEXZ_RESTORE_FLAGS_NONE = 0,
  HEXZ_RESTORE_FLAGS_KEEP_PAUSED = 1 << 0,
} HexzRestoreFlags;

HEXZ_AVAILABLE_IN_1_0
void     hexz_restore_memory_async  (HexzQmpClient       *client,
                                     HexzSnapshot        *snapshot,
                                     HexzRestoreFlags     flags,
                                     GCancellable        *cancellable,
                                     GAsyncReadyCallback  callback,
                                     gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
gboolean hexz_restore_memory_finish (GAsyncResult        *result,
                                     GError             **error);

G_END_DECLS
