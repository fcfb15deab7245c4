/* hexz-test-qemu.h: start and stop a QEMU child for tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "hexz-qmp-client.h"

G_BEGIN_DECLS

/* How long hexz_test_qemu_start() waits for the QMP socket, and how long
 * hexz_test_qemu_stop() waits after SIGTERM before it sends SIGKILL. */
#define HEXZ_TEST_QEMU_START_TIMEOUT_MS 10000
#define HEXZ_TEST_QEMU_STOP_TIMEOUT_MS  5000

/* Runs the thread-default main context until @condition holds; aborts the
 * test with the condition's text when it still does not hold after
 * @timeout_ms milliseconds. */
#define HEXZ_TEST_RUN_UNTIL(condition, timeout_ms) \
  G_STMT_START { \
    gint64 hexz_deadline_ = g_get_monotonic_time () + (gint64) (timeout_ms) * 1000; \
    while (!(condition)) \
      { \
        if (!g_main_context_iteration (NULL, FALSE)) \
          g_usleep (1000); \
        if (g_get_monotonic_time () > hexz_deadline_) \
          g_error ("Timed out after %u ms waiting for: %s", (guint) (timeout_ms), #condition); \
      } \
  } G_STMT_END

typedef struct _HexzTestQemu HexzTestQemu;

const char    *hexz_test_qemu_choose_accel  (void);
HexzTestQemu  *hexz_test_qemu_start         (const char * const *extra_args);
const char    *hexz_test_qemu_get_dir       (HexzTestQemu       *qemu);
const char    *hexz_test_qemu_get_qmp_path  (HexzTestQemu       *qemu);
const char    *hexz_test_qemu_get_accel     (HexzTestQemu       *qemu);
GSubprocess   *hexz_test_qemu_get_process   (HexzTestQemu       *qemu);
char          *hexz_test_qemu_read_log      (HexzTestQemu       *qemu);
gboolean       hexz_test_qemu_wait_exit     (HexzTestQemu       *qemu,
                                             guint               timeout_ms);
gboolean       hexz_test_qemu_stop          (HexzTestQemu       *qemu);
HexzQmpClient *hexz_test_qemu_connect       (HexzTestQemu       *qemu);
void           hexz_test_qemu_free          (HexzTestQemu       *qemu);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HexzTestQemu, hexz_test_qemu_free)

G_END_DECLS
