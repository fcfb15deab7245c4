/* hexz-util-private.h: small helpers shared inside the library
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

gboolean hexz_check_output_path (const char          *output,
                                 const char * const  *inputs,
                                 guint                n_inputs,
                                 GError             **error);

void hexz_schedule_in_context (GMainContext   *context,
                               GSourceFunc     function,
                               gpointer        data,
                               GDestroyNotify  notify);

G_END_DECLS
