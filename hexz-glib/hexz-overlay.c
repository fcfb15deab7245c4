/* hexz-overlay.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"
