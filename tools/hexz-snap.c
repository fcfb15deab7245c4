/* hexz-snap.c: the command-line tool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <hexz.h>

int
main (int argc, char **argv)
{
  return 0;
}
