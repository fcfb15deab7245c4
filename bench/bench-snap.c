/* bench-snap.c: how long live snapshots pause a virtual machine
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Boots the test guest with a filled RAM region and takes one snapshot in
 * each mode and codec. For each it prints the pause time measured by the
 * capture, the downtime QEMU reports, the total time, the file size and the
 * time to load the memory back into a fresh QEMU.
 *
 *   bench-snap GUEST_ELF [RAM_MIB [FILL_MIB [ACCEL]]]
 *
 * GUEST_ELF is build/tests/guest/hexz-test-guest.elf. RAM_MIB defaults to
 * 512, FILL_MIB to 256 and ACCEL to tcg (under nested KVM the guest fills
 * its RAM very slowly).
 */

#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "hexz.h"

#define DISK_SIZE (4u << 20)
#define RECORD_PAGE 256u

typedef struct
{
  GSubprocess *process;
  char *qmp_path;
  HexzQmpClient *client;
} BenchVm;

static char *work_dir;
static const char *guest;
static guint ram_mib = 512;
static guint fill_mib = 256;
static const char *accel = "tcg";

static void
on_done (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

static GAsyncResult *
wait_for (GAsyncResult **slot)
{
  while (*slot == NULL)
    g_main_context_iteration (NULL, TRUE);

  return *slot;
}

static BenchVm *
vm_start (const char *disk_path,
          gboolean    incoming)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  g_autofree char *name = g_strdup_printf ("qmp-%d.sock", g_random_int_range (0, G_MAXINT));
  BenchVm *vm = g_new0 (BenchVm, 1);
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;

  vm->qmp_path = g_build_filename (work_dir, name, NULL);

  g_ptr_array_add (argv, g_strdup ("qemu-system-x86_64"));
  g_ptr_array_add (argv, g_strdup ("-nodefaults"));
  g_ptr_array_add (argv, g_strdup ("-machine"));
  g_ptr_array_add (argv, g_strdup ("pc"));
  g_ptr_array_add (argv, g_strdup ("-accel"));
  g_ptr_array_add (argv, g_strdup (accel));
  g_ptr_array_add (argv, g_strdup ("-m"));
  g_ptr_array_add (argv, g_strdup_printf ("%u", ram_mib));
  g_ptr_array_add (argv, g_strdup ("-display"));
  g_ptr_array_add (argv, g_strdup ("none"));
  g_ptr_array_add (argv, g_strdup ("-kernel"));
  g_ptr_array_add (argv, g_strdup (guest));
  g_ptr_array_add (argv, g_strdup ("-append"));
  g_ptr_array_add (argv, g_strdup_printf ("fill=%uM", fill_mib));
  g_ptr_array_add (argv, g_strdup ("-drive"));
  g_ptr_array_add (argv, g_strconcat ("file=", disk_path, ",format=raw,if=ide", NULL));
  g_ptr_array_add (argv, g_strdup ("-qmp"));
  g_ptr_array_add (argv, g_strconcat ("unix:", vm->qmp_path, ",server=on,wait=off", NULL));
  if (incoming)
    {
      g_ptr_array_add (argv, g_strdup ("-incoming"));
      g_ptr_array_add (argv, g_strdup ("defer"));
    }
  g_ptr_array_add (argv, NULL);

  vm->process = g_subprocess_newv ((const char * const *) argv->pdata,
                                   G_SUBPROCESS_FLAGS_STDOUT_SILENCE, &error);
  if (vm->process == NULL)
    g_error ("Cannot start QEMU: %s", error->message);

  for (;;)
    {
      g_autoptr(GAsyncResult) result = NULL;

      g_clear_error (&error);
      g_clear_object (&vm->client);
      vm->client = hexz_qmp_client_new ();
      hexz_qmp_client_connect_to_path_async (vm->client, vm->qmp_path, NULL, on_done, &result);
      if (hexz_qmp_client_connect_finish (vm->client, wait_for (&result), &error))
        break;
      if (g_get_monotonic_time () > deadline)
        g_error ("QEMU's QMP socket did not come up: %s", error->message);
      g_usleep (20 * 1000);
    }

  return vm;
}

static void
vm_stop (BenchVm *vm)
{
  hexz_qmp_client_close (vm->client);
  g_object_unref (vm->client);
  g_subprocess_force_exit (vm->process);
  g_subprocess_wait (vm->process, NULL, NULL);
  g_object_unref (vm->process);
  g_unlink (vm->qmp_path);
  g_free (vm->qmp_path);
  g_free (vm);
}

/* Waits until the guest's status area (at 2 MiB) shows the running state,
 * which the guest enters once its pattern is written. */
static void
vm_wait_filled (BenchVm *vm)
{
  g_autofree char *status_path = g_build_filename (work_dir, "status.bin", NULL);

  for (;;)
    {
      g_autoptr(JsonObject) arguments = json_object_new ();
      g_autoptr(GAsyncResult) result = NULL;
      g_autoptr(JsonNode) reply = NULL;
      g_autofree char *status = NULL;
      gsize length = 0;

      json_object_set_int_member (arguments, "val", 0x200000);
      json_object_set_int_member (arguments, "size", 16);
      json_object_set_string_member (arguments, "filename", status_path);
      hexz_qmp_client_execute_async (vm->client, "pmemsave", arguments, NULL, NULL, on_done, &result);
      reply = hexz_qmp_client_execute_finish (vm->client, wait_for (&result), NULL);

      /* Word 2 is the state, 3 means running. */
      if (g_file_get_contents (status_path, &status, &length, NULL) && length >= 12 &&
          GUINT32_FROM_LE (((guint32 *) status)[2]) == 3)
        break;
      g_usleep (100 * 1000);
    }

  g_unlink (status_path);
}

static void
run_case (HexzCaptureMode  mode,
          HexzCodec        codec,
          const char      *base_path,
          const char      *overlay_path)
{
  g_autofree char *output_path = g_build_filename (work_dir, "bench.hexz", NULL);
  g_autofree char *disk_path = g_build_filename (work_dir, "restored.img", NULL);
  g_autoptr(GFile) output = g_file_new_for_path (output_path);
  g_autoptr(HexzCapture) capture = hexz_capture_new ();
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GAsyncResult) restore_result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *disk = g_malloc (DISK_SIZE);
  BenchVm *vm;
  BenchVm *restored;
  gint64 start;
  double total_s;
  double restore_s;

  vm = vm_start (overlay_path, FALSE);
  vm_wait_filled (vm);

  hexz_capture_set_qmp_client (capture, vm->client);
  hexz_capture_set_overlay (capture, overlay_path);
  hexz_capture_set_base_path (capture, base_path);
  hexz_capture_set_output (capture, output);
  hexz_capture_set_mode (capture, mode);
  hexz_capture_set_codec (capture, codec);

  start = g_get_monotonic_time ();
  hexz_capture_run_async (capture, NULL, on_done, &result);
  if (!hexz_capture_run_finish (capture, wait_for (&result), &error))
    g_error ("Snapshot failed: %s", error->message);
  total_s = (g_get_monotonic_time () - start) / 1e6;
  vm_stop (vm);

  snapshot = hexz_snapshot_open_path (output_path, NULL, &error);
  g_assert_no_error (error);
  hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, 0, disk, DISK_SIZE, NULL, &error);
  g_assert_no_error (error);
  g_file_set_contents (disk_path, (const char *) disk, DISK_SIZE, &error);
  g_assert_no_error (error);

  restored = vm_start (disk_path, TRUE);
  start = g_get_monotonic_time ();
  hexz_restore_memory_async (restored->client, snapshot, HEXZ_RESTORE_FLAGS_NONE, NULL,
                             on_done, &restore_result);
  if (!hexz_restore_memory_finish (wait_for (&restore_result), &error))
    g_error ("Restore failed: %s", error->message);
  restore_s = (g_get_monotonic_time () - start) / 1e6;
  vm_stop (restored);

  printf ("%-10s %-5s %10.1f %10" G_GINT64_FORMAT " %8.2f %10.1f %9.2f\n",
          hexz_capture_mode_to_string (hexz_capture_get_chosen_mode (capture)),
          hexz_codec_to_string (codec),
          hexz_capture_get_pause_time (capture) / 1000.0,
          hexz_capture_get_downtime (capture),
          total_s,
          hexz_snapshot_get_file_size (snapshot) / (1024.0 * 1024.0),
          restore_s);
  fflush (stdout);

  g_unlink (output_path);
  g_unlink (disk_path);
}

int
main (int    argc,
      char **argv)
{
  static const HexzCaptureMode modes[] = {
    HEXZ_CAPTURE_MODE_PAUSED, HEXZ_CAPTURE_MODE_BACKGROUND, HEXZ_CAPTURE_MODE_LIVE,
  };
  static const HexzCodec codecs[] = { HEXZ_CODEC_LZ4, HEXZ_CODEC_ZSTD };
  g_autoptr(HexzSnapshotWriter) writer = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *disk = g_malloc0 (DISK_SIZE);
  g_autofree char *base_path = NULL;
  g_autofree char *overlay_path = NULL;
  g_autofree char *meta_path = NULL;
  guint64 meta_entry = GUINT64_TO_LE (RECORD_PAGE);

  if (argc < 2)
    {
      fprintf (stderr, "Usage: %s GUEST_ELF [RAM_MIB [FILL_MIB [ACCEL]]]\n", argv[0]);
      return 2;
    }
  guest = argv[1];
  if (argc > 2)
    ram_mib = atoi (argv[2]);
  if (argc > 3)
    fill_mib = atoi (argv[3]);
  if (argc > 4)
    accel = argv[4];

  work_dir = g_dir_make_tmp ("hexz-bench-snap-XXXXXX", &error);
  g_assert_no_error (error);
  base_path = g_build_filename (work_dir, "base.hexz", NULL);
  overlay_path = g_build_filename (work_dir, "disk.overlay", NULL);

  writer = hexz_snapshot_writer_new_for_path (base_path);
  hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, DISK_SIZE, &error);
  hexz_snapshot_writer_write (writer, disk, DISK_SIZE, NULL, &error);
  hexz_snapshot_writer_end_stream (writer, NULL, &error);
  hexz_snapshot_writer_close (writer, NULL, &error);
  g_assert_no_error (error);

  /* The guest's disk is the overlay file itself, a copy of the base; its
   * .meta file lists the one page the guest writes. */
  g_file_set_contents (overlay_path, (const char *) disk, DISK_SIZE, &error);
  meta_path = hexz_overlay_get_meta_path_for (overlay_path);
  g_file_set_contents (meta_path, (const char *) &meta_entry, sizeof meta_entry, &error);
  g_assert_no_error (error);

  printf ("QEMU %s, %u MiB RAM, %u MiB filled with an incompressible pattern\n",
          accel, ram_mib, fill_mib);
  printf ("%-10s %-5s %10s %10s %8s %10s %9s\n",
          "mode", "codec", "paused ms", "QEMU ms", "total s", "file MiB", "restore s");

  for (gsize m = 0; m < G_N_ELEMENTS (modes); m++)
    for (gsize c = 0; c < G_N_ELEMENTS (codecs); c++)
      run_case (modes[m], codecs[c], base_path, overlay_path);

  g_unlink (base_path);
  g_unlink (overlay_path);
  g_unlink (meta_path);
  g_rmdir (work_dir);

  return 0;
}
