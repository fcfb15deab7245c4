/* bench-pack.c: packing and extracting speed of the snapshot format
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Builds a disk-like test image (text, random bytes, zeros and repeated
 * blocks) in a temporary folder, then times, reading the image from the
 * page cache: `lz4 -1` and `zstd -1 -T0` compressing it to a file and
 * HexzSnapshotWriter packing it; then extracting the snapshot's disk to a
 * file with `hexz-snap extract` against `cat` copying the image to a file,
 * with and without an fsync. Prints the rates, the output sizes and the
 * ratios against each reference.
 *
 * The writer trains a dictionary as `hexz-snap pack` does by default;
 * --no-dictionary times it without one.
 *
 * Usage: bench-pack [--size MIB] [--threads N] [--codec lz4|zstd|raw]
 *                   [--block-size BYTES] [--rounds N] [--no-dictionary]
 */

#include "config.h"

#include <fcntl.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "hexz.h"

static int size_mib = 1024;
static int threads = 2;
static int rounds = 3;
static gboolean only_hexz = FALSE;
static int block_size = HEXZ_DEFAULT_BLOCK_SIZE;
static char *codec_name = NULL;
static gboolean no_dictionary = FALSE;

static GOptionEntry entries[] = {
  { "size", 's', 0, G_OPTION_ARG_INT, &size_mib, "Image size in MiB (default 1024)", "MIB" },
  { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "Compression threads (default 2)", "N" },
  { "block-size", 'b', 0, G_OPTION_ARG_INT, &block_size, "Block size in bytes (default 65536)", "BYTES" },
  { "rounds", 'r', 0, G_OPTION_ARG_INT, &rounds, "Runs of each program; the best counts (default 3)", "N" },
  { "only-hexz", 0, 0, G_OPTION_ARG_NONE, &only_hexz, "Time only the writer, for profiling", NULL },
  { "codec", 'c', 0, G_OPTION_ARG_STRING, &codec_name, "Codec: lz4 (default), zstd or raw", "CODEC" },
  { "no-dictionary", 0, 0, G_OPTION_ARG_NONE, &no_dictionary,
    "Compress without a dictionary (pack trains one by default)", NULL },
  { NULL }
};

/* Fills 1 MiB chunks in a repeating mix that resembles a used disk:
 * 40 % text, 25 % random (already compressed data), 25 % zeros, 10 %
 * copies of an earlier chunk. */
static void
fill_chunk (guint8 *chunk,
            gsize   size,
            guint   index,
            GRand  *rand)
{
  static const char *words[] = {
    "kernel ", "usr/lib ", "systemd ", "config ", "0x7f3a ", "return ",
    "struct ", "int ", "the ", "and ", "\n", "  ", "{", "}", "error ",
  };
  guint kind = index % 20;
  gsize i = 0;

  if (kind < 8)
    {
      while (i < size)
        {
          const char *word = words[g_rand_int_range (rand, 0, G_N_ELEMENTS (words))];
          gsize n = MIN (strlen (word), size - i);

          memcpy (chunk + i, word, n);
          i += n;
        }
    }
  else if (kind < 13)
    {
      for (i = 0; i + 4 <= size; i += 4)
        {
          guint32 v = g_rand_int (rand);

          memcpy (chunk + i, &v, 4);
        }
    }
  else if (kind < 18)
    memset (chunk, 0, size);
  /* else: keep the previous chunk's bytes, a duplicate */
}

static double
now_seconds (void)
{
  return g_get_monotonic_time () / (double) G_USEC_PER_SEC;
}

/* Times a compressor's command line with no shell; with @stdout_path
 * set, the command's standard output goes to that file, else to
 * /dev/null. */
static double
time_command (const char *const *argv,
              const char         *stdout_path)
{
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GSubprocess) process = NULL;
  g_autoptr(GError) error = NULL;
  double start = now_seconds ();

  launcher = g_subprocess_launcher_new (stdout_path != NULL ? G_SUBPROCESS_FLAGS_NONE
                                                            : G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
  if (stdout_path != NULL)
    g_subprocess_launcher_set_stdout_file_path (launcher, stdout_path);

  process = g_subprocess_launcher_spawnv (launcher, argv, &error);
  if (process == NULL || !g_subprocess_wait_check (process, NULL, &error))
    g_error ("%s failed: %s", argv[0], error->message);

  return now_seconds () - start;
}

static double
time_lz4 (const char *image,
          const char *output)
{
  const char *argv[] = { "lz4", "-1", "-f", "-q", image, output, NULL };

  if (output == NULL)
    {
      argv[4] = "-c";
      argv[5] = image;
    }

  return time_command (argv, NULL);
}

static double
time_zstd (const char *image,
           const char *output)
{
  const char *argv[] = { "zstd", "-1", "-T0", "-f", "-q", image, "-o", output, NULL };

  return time_command (argv, NULL);
}

static double
time_cat (const char *image,
          const char *output)
{
  const char *argv[] = { "cat", image, NULL };

  return time_command (argv, output);
}

static guint64
file_size (const char *path)
{
  GStatBuf st;

  if (g_stat (path, &st) != 0)
    g_error ("Cannot stat %s", path);
  return st.st_size;
}

static double
time_hexz (const char *image,
           const char *output,
           HexzCodec   codec,
           guint64     size,
           double     *close_seconds)
{
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (output);
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *buffer = g_malloc (1024 * 1024);
  int fd = open (image, O_RDONLY);
  double start = now_seconds ();
  gssize n;

  g_assert (fd >= 0);
  hexz_snapshot_writer_set_codec (writer, codec);
  hexz_snapshot_writer_set_threads (writer, threads);
  hexz_snapshot_writer_set_block_size (writer, block_size);
  /* What hexz-snap pack does for an image of at least 4 MiB. */
  hexz_snapshot_writer_set_train_dictionary (writer, !no_dictionary && codec != HEXZ_CODEC_RAW);

  if (!hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, size, &error))
    g_error ("%s", error->message);

  while ((n = read (fd, buffer, 1024 * 1024)) > 0)
    {
      if (!hexz_snapshot_writer_write (writer, buffer, n, NULL, &error))
        g_error ("%s", error->message);
    }
  close (fd);

  if (!hexz_snapshot_writer_end_stream (writer, NULL, &error))
    g_error ("%s", error->message);
  *close_seconds = now_seconds ();

  if (!hexz_snapshot_writer_close (writer, NULL, &error))
    g_error ("%s", error->message);

  *close_seconds = now_seconds () - *close_seconds;

  return now_seconds () - start;
}

/* Reads the disk stream back in 1 MiB reads, compares it with the image
 * and returns the seconds spent reading the snapshot. */
static double
time_read (const char *image,
           const char *output)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(HexzSnapshot) snapshot = hexz_snapshot_open_path (output, NULL, &error);
  g_autofree guint8 *buffer = g_malloc (1024 * 1024);
  g_autofree guint8 *expected = g_malloc (1024 * 1024);
  guint64 size, offset = 0;
  double seconds = 0;
  int fd = open (image, O_RDONLY);

  if (snapshot == NULL)
    g_error ("%s", error->message);
  size = hexz_snapshot_get_disk_size (snapshot);

  while (offset < size)
    {
      gsize n = MIN (size - offset, 1024 * 1024);
      double start = now_seconds ();

      if (!hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, offset, buffer, n,
                               NULL, &error))
        g_error ("%s", error->message);
      seconds += now_seconds () - start;

      if (pread (fd, expected, n, offset) != (gssize) n ||
          memcmp (buffer, expected, n) != 0)
        g_error ("The snapshot differs from the image near offset %" G_GUINT64_FORMAT,
                 offset);
      offset += n;
    }
  close (fd);

  return seconds;
}

/* Runs `hexz-snap extract --disk OUTPUT` from this build, which decodes
 * with one thread per processor and fsyncs the file, and returns the
 * seconds it took. */
static double
time_extract (const char *snapshot_path,
              const char *output)
{
  const char *argv[] = { HEXZ_SNAP_PATH, "extract", "--disk", output, snapshot_path, NULL };

  return time_command (argv, NULL);
}

/* Makes @path durable and returns the seconds it took, so that cat can be
 * compared with extract, which ends with an fsync. */
static double
time_fsync (const char *path)
{
  double start = now_seconds ();
  int fd = open (path, O_WRONLY | O_CLOEXEC);

  g_assert (fd >= 0);
  if (fsync (fd) != 0)
    g_error ("Cannot fsync %s", path);
  close (fd);

  return now_seconds () - start;
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GOptionContext) context = g_option_context_new ("- time packing");
  g_autoptr(GError) error = NULL;
  g_autoptr(GRand) rand = g_rand_new_with_seed (1);
  g_autofree char *dir = NULL;
  g_autofree char *image = NULL;
  g_autofree char *output = NULL;
  g_autofree guint8 *chunk = g_malloc (1024 * 1024);
  HexzCodec codec = HEXZ_CODEC_LZ4;
  guint64 size;
  GStatBuf st;
  g_autofree char *lz4_output = NULL;
  g_autofree char *zstd_output = NULL;
  g_autofree char *copy_output = NULL;
  double lz4_seconds, lz4_null_seconds, zstd_seconds, hexz_seconds, again;
  double close_seconds, close_again, read_seconds, cat_seconds, extract_seconds;
  double cat_fsync_seconds;
  guint64 lz4_size = 0, zstd_size = 0;
  FILE *f;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    g_error ("%s", error->message);
  if (codec_name != NULL && !hexz_codec_from_string (codec_name, &codec))
    g_error ("Unknown codec %s", codec_name);

  size = (guint64) size_mib * 1024 * 1024;
  dir = g_dir_make_tmp ("hexz-bench-XXXXXX", &error);
  g_assert_no_error (error);
  image = g_build_filename (dir, "image.raw", NULL);
  output = g_build_filename (dir, "image.hxz", NULL);
  lz4_output = g_build_filename (dir, "image.lz4", NULL);
  zstd_output = g_build_filename (dir, "image.zst", NULL);
  copy_output = g_build_filename (dir, "copy.raw", NULL);

  f = g_fopen (image, "wb");
  for (int i = 0; i < size_mib; i++)
    {
      fill_chunk (chunk, 1024 * 1024, i, rand);
      fwrite (chunk, 1, 1024 * 1024, f);
    }
  fclose (f);

  /* Warm the page cache, then alternate the runs and keep the best of
   * each: other load on the machine slows single runs a lot. */
  time_lz4 (image, NULL);
  lz4_seconds = lz4_null_seconds = zstd_seconds = hexz_seconds = G_MAXDOUBLE;
  cat_seconds = cat_fsync_seconds = extract_seconds = G_MAXDOUBLE;
  close_seconds = 0;
  for (int round = 0; round < rounds; round++)
    {
      if (!only_hexz)
        {
          /* MIN() evaluates its arguments twice, so time each run once
           * into a variable first. */
          double seconds = time_lz4 (image, NULL);

          lz4_null_seconds = MIN (lz4_null_seconds, seconds);
          seconds = time_lz4 (image, lz4_output);
          lz4_seconds = MIN (lz4_seconds, seconds);
          lz4_size = file_size (lz4_output);
          g_unlink (lz4_output);
          seconds = time_zstd (image, zstd_output);
          zstd_seconds = MIN (zstd_seconds, seconds);
          zstd_size = file_size (zstd_output);
          g_unlink (zstd_output);
        }
      again = time_hexz (image, output, codec, size, &close_again);
      if (again < hexz_seconds)
        {
          hexz_seconds = again;
          close_seconds = close_again;
        }
    }
  g_stat (output, &st);
  read_seconds = time_read (image, output);

  for (int round = 0; round < rounds && !only_hexz; round++)
    {
      double seconds = time_cat (image, copy_output);
      double cat_fsync_once = seconds + time_fsync (copy_output);

      cat_seconds = MIN (cat_seconds, seconds);
      cat_fsync_seconds = MIN (cat_fsync_seconds, cat_fsync_once);
      g_unlink (copy_output);
      seconds = time_extract (output, copy_output);
      extract_seconds = MIN (extract_seconds, seconds);
      g_unlink (copy_output);
    }

  g_print ("image:            %d MiB, %d processors\n", size_mib, g_get_num_processors ());
  g_print ("lz4 -1 to a file: %.0f MiB/s\n", size_mib / lz4_seconds);
  g_print ("lz4 -1 -c:        %.0f MiB/s (output to /dev/null)\n", size_mib / lz4_null_seconds);
  g_print ("hexz:             %.0f MiB/s (%s, %s, %d threads, %d-byte blocks), "
           "file %.1f %% of the image, close and fsync %.2f s\n",
           size_mib / hexz_seconds, hexz_codec_to_string (codec),
           no_dictionary ? "no dictionary" : "dictionary", threads,
           block_size, 100.0 * st.st_size / size, close_seconds);
  g_print ("hexz read:        %.0f MiB/s (1 MiB reads, one thread, content checked)\n",
           size_mib / read_seconds);
  g_print ("ratio:            %.2fx lz4 -1 to a file, %.2fx lz4 -1 -c\n",
           lz4_seconds / hexz_seconds, lz4_null_seconds / hexz_seconds);
  if (!only_hexz)
    {
      g_print ("zstd -1 -T0:      %.0f MiB/s, file %.1f %% of the image (hexz speed %.2fx)\n",
               size_mib / zstd_seconds, 100.0 * zstd_size / size, zstd_seconds / hexz_seconds);
      g_print ("lz4 -1 file:      %.1f %% of the image\n", 100.0 * lz4_size / size);
      g_print ("extract to file:  %.0f MiB/s (hexz-snap extract, fsync included)\n",
               size_mib / extract_seconds);
      g_print ("cat to a file:    %.0f MiB/s, %.0f MiB/s with an fsync "
               "(extract speed %.2fx cat, %.2fx cat with fsync)\n",
               size_mib / cat_seconds, size_mib / cat_fsync_seconds,
               cat_seconds / extract_seconds, cat_fsync_seconds / extract_seconds);
    }

  g_unlink (image);
  g_unlink (output);
  g_rmdir (dir);

  return 0;
}
