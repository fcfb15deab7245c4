/* hexz-qmp-client-private.h: QMP client helpers shared with the tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "hexz-qmp-client.h"

G_BEGIN_DECLS

/* Events of one name kept for waiters that arm after the event arrived. */
#define HEXZ_QMP_EVENT_BACKLOG_PER_NAME 16

/* Events tolerated before the greeting; more is a protocol error. */
#define HEXZ_QMP_MAX_EVENTS_BEFORE_GREETING 16

HexzMigrationInfo *hexz_migration_info_new_from_json (JsonObject *object);

G_END_DECLS
