/* hexz-util-private.h: small helpers shared inside the library
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

#include "hexz-version-macros.h"

G_BEGIN_DECLS

int hexz_lock_whole_file (int   fd,
                          short type);

/* Exported for hexz-snap, which checks its outputs with it. */
_HEXZ_EXTERN
gboolean hexz_path_is_locked (const char *path);

gboolean hexz_check_output_path (const char          *output,
                                 const char * const  *inputs,
                                 guint                n_inputs,
                                 GError             **error);

void hexz_schedule_in_context (GMainContext   *context,
                               GSourceFunc     function,
                               gpointer        data,
                               GDestroyNotify  notify);

/* Called by hexz_remove_stale_entries() with an open descriptor of a
 * stale entry, locked, and its path. */
typedef void (*HexzStaleEntryFunc) (int         fd,
                                    const char *path,
                                    gpointer    user_data);

void hexz_remove_stale_entries (const char         *folder,
                                const char         *prefix,
                                const char         *suffix,
                                gboolean            directories,
                                HexzStaleEntryFunc  remove,
                                gpointer            user_data);

G_END_DECLS
