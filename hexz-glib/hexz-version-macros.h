/* hexz-version-macros.h: symbol visibility and availability annotations
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

#ifndef _HEXZ_EXTERN
# define _HEXZ_EXTERN __attribute__((visibility ("default"))) extern
#endif

#define HEXZ_AVAILABLE_IN_ALL _HEXZ_EXTERN
#define HEXZ_AVAILABLE_IN_1_0 _HEXZ_EXTERN
