/* hexz-overlay-private.h: the base an overlay was written on
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "hexz-snapshot.h"

G_BEGIN_DECLS

void     hexz_overlay_record_base_id (int            fd,
                                      const char    *overlay_path,
                                      HexzSnapshot  *base);
gboolean hexz_overlay_check_base_id  (int            fd,
                                      const char    *overlay_path,
                                      HexzSnapshot  *base,
                                      GError       **error);

G_END_DECLS
