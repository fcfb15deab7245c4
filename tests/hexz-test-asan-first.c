/* hexz-test-asan-first.c: an LD_PRELOAD module that starts the
 * AddressSanitizer runtime before any other library's constructor
 *
 * In an AddressSanitizer build, the tests run programs that are not
 * instrumented (nbdkit, QEMU, /usr/bin/python3) with the instrumented
 * plugin or library inside, so the ASan runtime must be preloaded. The
 * loader runs the constructors of preloaded libraries after those of the
 * program's own libraries, and the runtime starts lazily at the first
 * malloc(). In programs linked with p11-kit (nbdkit and QEMU, through
 * GnuTLS), that first malloc() comes from newlocale() in p11-kit's
 * constructor while glibc holds its locale lock for writing. The runtime's
 * start-up calls dlerror(), whose gettext() leaves that lock with a reader
 * count of -1, so the next freelocale() waits forever: nbdkit then hangs at
 * exit, in p11-kit's destructor.
 *
 * This module is linked with -z initfirst, so the loader runs its
 * constructor before every other one, and the runtime starts there, outside
 * the lock. HEXZ_ASAN_RUNTIME (tests/meson.build) lists it after the
 * runtime.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <stdlib.h>

__attribute__((constructor)) static void
start_asan_runtime (void)
{
  /* Volatile, so that the compiler keeps the call to malloc(). */
  void * volatile block = malloc (1);

  free (block);
}
