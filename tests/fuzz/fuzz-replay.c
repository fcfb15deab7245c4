/* fuzz-replay.c: run a fuzz harness over files, without libFuzzer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Usage: fuzz-replay-NAME [--tap] PATH...
 *
 * Feeds every file named, and every file inside every folder named, to the
 * harness's LLVMFuzzerTestOneInput() in name order. A crash, a sanitizer
 * report or an abort from the harness's log writer ends the run with an
 * error, after the file's name was printed. Missing paths are skipped, so
 * that an empty regression folder need not exist.
 */

#include "config.h"

#include <stdio.h>
#include <string.h>

#include "fuzz-common.h"

static int
compare_strings (gconstpointer a,
                 gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

static void
collect (const char *path,
         GPtrArray  *files)
{
  g_autoptr(GDir) dir = NULL;
  g_autoptr(GPtrArray) names = NULL;
  const char *name;

  if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
    {
      g_ptr_array_add (files, g_strdup (path));
      return;
    }

  dir = g_dir_open (path, 0, NULL);
  if (dir == NULL)
    return;

  names = g_ptr_array_new_with_free_func (g_free);
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      if (name[0] != '.')
        g_ptr_array_add (names, g_build_filename (path, name, NULL));
    }
  g_ptr_array_sort (names, compare_strings);

  for (guint i = 0; i < names->len; i++)
    collect (g_ptr_array_index (names, i), files);
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
  gboolean tap = FALSE;

  LLVMFuzzerInitialize (&argc, &argv);

  for (int i = 1; i < argc; i++)
    {
      if (strcmp (argv[i], "--tap") == 0)
        tap = TRUE;
      else
        collect (argv[i], files);
    }

  if (tap)
    printf ("1..%u\n", MAX (files->len, 1));

  if (files->len == 0)
    {
      if (tap)
        printf ("ok 1 # SKIP no input files\n");
      return 0;
    }

  for (guint i = 0; i < files->len; i++)
    {
      const char *path = g_ptr_array_index (files, i);
      g_autofree char *contents = NULL;
      g_autoptr(GError) error = NULL;
      gsize length;

      if (!g_file_get_contents (path, &contents, &length, &error))
        {
          if (tap)
            printf ("not ok %u - %s: %s\n", i + 1, path, error->message);
          else
            fprintf (stderr, "%s: %s\n", path, error->message);
          return 1;
        }

      /* Printed before the run, so that a crash names its input. */
      fprintf (stderr, "Running %s (%" G_GSIZE_FORMAT " bytes)\n", path, length);
      LLVMFuzzerTestOneInput ((const uint8_t *) contents, length);
      if (tap)
        printf ("ok %u - %s\n", i + 1, path);
      fflush (stdout);
    }

  return 0;
}
