/* hexz-test-localedir.c: an LD_PRELOAD module that points one text domain
 * at the build tree's message catalogs
 *
 * The tool and the library bind their text domain to the installed
 * LOCALEDIR. tests/test-i18n.sh preloads this module so that the catalogs
 * compiled in the build tree are used without installing them: a call to
 * bindtextdomain() for the domain named by HEXZ_TEST_TEXTDOMAIN gets the
 * folder named by HEXZ_TEST_LOCALEDIR instead of the one it passes.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#define _GNU_SOURCE

#include <dlfcn.h>
#include <libintl.h>
#include <stdlib.h>
#include <string.h>

char *
bindtextdomain (const char *domainname,
                const char *dirname)
{
  static char *(*real_bindtextdomain) (const char *, const char *);
  const char *test_domain = getenv ("HEXZ_TEST_TEXTDOMAIN");
  const char *test_dirname = getenv ("HEXZ_TEST_LOCALEDIR");

  if (real_bindtextdomain == NULL)
    real_bindtextdomain = (char *(*) (const char *, const char *)) dlsym (RTLD_NEXT, "bindtextdomain");

  /* A NULL dirname only queries the current binding. */
  if (dirname != NULL && domainname != NULL && test_domain != NULL &&
      test_dirname != NULL && strcmp (domainname, test_domain) == 0)
    dirname = test_dirname;

  return real_bindtextdomain (domainname, dirname);
}
