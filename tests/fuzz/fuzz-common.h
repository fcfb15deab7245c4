/* fuzz-common.h: helpers shared by the libFuzzer harnesses
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Every harness defines LLVMFuzzerInitialize() and LLVMFuzzerTestOneInput().
 * The same source is linked either with libFuzzer (the `fuzzing` build
 * option) or with fuzz-replay.c, a main() that feeds it files, so that the
 * default build replays the seed corpus and the regression inputs.
 */

#pragma once

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

G_BEGIN_DECLS

int LLVMFuzzerInitialize   (int            *argc,
                            char         ***argv);
int LLVMFuzzerTestOneInput (const uint8_t  *data,
                            size_t          size);

/* Aborts on warnings and criticals, so that a g_return_if_fail() or a
 * g_warning() reached from input data counts as a crash, and drops the
 * messages and debug output the library prints for every bad input
 * unless HEXZ_FUZZ_VERBOSE is set. */
static inline GLogWriterOutput
fuzz_log_writer (GLogLevelFlags   log_level,
                 const GLogField *fields,
                 gsize            n_fields,
                 gpointer         user_data)
{
  if (log_level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING))
    {
      g_log_writer_standard_streams (log_level, fields, n_fields, user_data);
      abort ();
    }

  if (g_getenv ("HEXZ_FUZZ_VERBOSE") != NULL)
    return g_log_writer_standard_streams (log_level, fields, n_fields, user_data);

  return G_LOG_WRITER_HANDLED;
}

static inline void
fuzz_init_logging (void)
{
  g_log_set_writer_func (fuzz_log_writer, NULL, NULL);
}

/* Removes the files directly inside @dir, then @dir. */
static inline void
fuzz_remove_dir (const char *dir)
{
  g_autoptr(GDir) handle = g_dir_open (dir, 0, NULL);
  const char *name;

  if (handle != NULL)
    {
      while ((name = g_dir_read_name (handle)) != NULL)
        {
          g_autofree char *path = g_build_filename (dir, name, NULL);

          g_remove (path);
        }
    }

  g_rmdir (dir);
}

/* Writes @size bytes to @dir/@name, replacing the file; aborts on failure
 * because a harness that cannot write its input tests nothing. */
static inline void
fuzz_write_file (const char   *dir,
                 const char   *name,
                 const guint8 *data,
                 gsize         size)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  int fd = g_open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

  if (fd < 0)
    g_error ("Cannot write fuzz input %s: %s", path, g_strerror (errno));

  while (size > 0)
    {
      gssize n = write (fd, data, size);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        g_error ("Cannot write fuzz input %s: %s", path, g_strerror (errno));
      data += n;
      size -= n;
    }

  close (fd);
}

/* Little-endian reads from the front of an input, with zero past its end. */
typedef struct
{
  const guint8 *data;
  gsize         size;
} FuzzInput;

static inline guint8
fuzz_input_take_u8 (FuzzInput *input)
{
  guint8 v = 0;

  if (input->size > 0)
    {
      v = input->data[0];
      input->data++;
      input->size--;
    }

  return v;
}

static inline guint32
fuzz_input_take_u32 (FuzzInput *input)
{
  guint32 v = 0;

  for (guint i = 0; i < 4; i++)
    v |= (guint32) fuzz_input_take_u8 (input) << (8 * i);

  return v;
}

static inline guint64
fuzz_input_take_u64 (FuzzInput *input)
{
  guint64 v = 0;

  for (guint i = 0; i < 8; i++)
    v |= (guint64) fuzz_input_take_u8 (input) << (8 * i);

  return v;
}

G_END_DECLS
