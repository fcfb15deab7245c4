/* hexz.h: the umbrella header of hexz-glib
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#define __HEXZ_INSIDE__

#include "hexz-version-macros.h"
#include "hexz-types.h"
#include "hexz-enum-types.h"
#include "hexz-snapshot.h"
#include "hexz-snapshot-writer.h"
#include "hexz-overlay.h"
#include "hexz-commit.h"
#include "hexz-qmp-client.h"
#include "hexz-capture.h"
#include "hexz-restore.h"
#include "hexz-boot.h"

#undef __HEXZ_INSIDE__
