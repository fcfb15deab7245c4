/* hexz-capture-private.h: knobs of HexzCapture for the test suite
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "hexz-capture.h"

G_BEGIN_DECLS

/* Skips the free-space check of the preflight, so that a test can run out
 * of space in the middle of the memory dump. */
void hexz_capture_set_check_free_space (HexzCapture *self,
                                        gboolean     check);

/* Sets how often the migration status is polled, in milliseconds, besides
 * the MIGRATION events. */
void hexz_capture_set_poll_interval    (HexzCapture *self,
                                        guint        interval_ms);

/* Sets how long the connection to socket-path may take to greet, in
 * milliseconds; 0 keeps the client's default. */
void hexz_capture_set_connect_timeout  (HexzCapture *self,
                                        guint        timeout_ms);

/* Sets how long each cleanup command may take, in milliseconds. */
void hexz_capture_set_cleanup_timeout  (HexzCapture *self,
                                        guint        timeout_ms);

G_END_DECLS
