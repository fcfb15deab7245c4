/* test-capture-qemu.c: live snapshots of a real QEMU running the test guest
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Each test boots the test guest (HEXZ_TEST_GUEST) with a private QMP
 * socket, under TCG unless HEXZ_TEST_ACCEL=kvm selects KVM. Its disk is
 * the overlay
 * file itself: a full copy of the base image whose .meta file lists the one
 * page the guest writes (its record sector). A snapshot is then restored
 * into a second QEMU started with "-S -incoming defer" on the disk stream
 * extracted from the snapshot, and the guest checker decides whether the
 * memory and the disk of the snapshot belong to the same instant.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "hexz.h"
#include "hexz-capture-private.h"
#include "hexz-test-guest.h"
#include "hexz-test-qemu.h"

#define DISK_SIZE (4u << 20)
#define RECORD_PAGE (HEXZ_GUEST_RECORD_OFFSET / HEXZ_OVERLAY_PAGE_SIZE)
#define MARKER_OFFSET (64u * 1024)
#define MARKER "hexz base marker"
#define BOOT_TIMEOUT_S 60
#define ORIGINAL_BANDWIDTH G_GINT64_CONSTANT (134217728)

typedef struct
{
  HexzTestQemu *qemu;
  const char *dir;
  const char *qmp_path;
  HexzQmpClient *client;
} TestVm;

typedef struct
{
  char *dir;
  char *base_path;
  char *overlay_path;
  char *output_path;
  char *guest;
  const char *ram;   /* -m of the machines started, NULL for 64 */
  TestVm *vm;
  TestVm *restored;
  GCancellable *cancellable;
  HexzCapturePhase cancel_phase;
  gboolean kill_in_memory;
  /* A second QMP socket for the machines started, NULL for none. */
  char *second_qmp_path;
  /* A device to add to the machines started, NULL for none. */
  const char *extra_device;
  /* The guest's command line, NULL for guest_append(). */
  char *append;
} Fixture;

static const char *
guest_append (void)
{
  /* Under nested KVM the first touch of each guest page is slow. */
  return g_str_equal (hexz_test_qemu_choose_accel (), "tcg") ? "fill=8M interval=50"
                                                              : "fill=1M interval=50";
}

/* Synchronous helpers over the asynchronous client. */

static void
on_async_done (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  GAsyncResult **out = user_data;

  *out = g_object_ref (result);
  g_main_context_wakeup (NULL);
}

static GAsyncResult *
wait_result (GAsyncResult **slot)
{
  while (*slot == NULL)
    g_main_context_iteration (NULL, TRUE);

  return *slot;
}

static JsonNode *
qmp_call (TestVm      *vm,
          const char  *command,
          JsonObject  *arguments,
          GError     **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  hexz_qmp_client_execute_async (vm->client, command, arguments, NULL, NULL,
                                 on_async_done, &result);
  return hexz_qmp_client_execute_finish (vm->client, wait_result (&result), error);
}

static HexzRunState
qmp_status (TestVm   *vm,
            gboolean *running)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  HexzRunState state;

  hexz_qmp_client_query_status_async (vm->client, NULL, on_async_done, &result);
  state = hexz_qmp_client_query_status_finish (vm->client, wait_result (&result), running, &error);
  g_assert_no_error (error);

  return state;
}

static void
qmp_simple (TestVm     *vm,
            const char *command)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) reply = qmp_call (vm, command, NULL, &error);

  g_assert_no_error (error);
}

static void
qmp_pmemsave (TestVm     *vm,
              guint32     address,
              gsize       size,
              const char *path)
{
  g_autoptr(JsonObject) arguments = json_object_new ();
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;

  json_object_set_int_member (arguments, "val", address);
  json_object_set_int_member (arguments, "size", (gint64) size);
  json_object_set_string_member (arguments, "filename", path);
  reply = qmp_call (vm, "pmemsave", arguments, &error);
  g_assert_no_error (error);
}

static gboolean
read_status (TestVm               *vm,
             HexzTestGuestStatus  *status,
             GError              **error)
{
  g_autofree char *path = g_build_filename (vm->dir, "status.bin", NULL);
  gboolean ok;

  qmp_pmemsave (vm, HEXZ_GUEST_STATUS_ADDR, HEXZ_GUEST_STATUS_SIZE, path);
  ok = hexz_test_guest_load_status (path, status, error);
  g_unlink (path);

  return ok;
}

/* VMs */

static TestVm *
vm_start (Fixture    *fixture,
          const char *disk_path,
          gboolean    incoming,
          gboolean    sandbox)
{
  g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func (g_free);
  TestVm *vm = g_new0 (TestVm, 1);

  g_ptr_array_add (args, g_strdup ("-nodefaults"));
  g_ptr_array_add (args, g_strdup ("-no-reboot"));
  g_ptr_array_add (args, g_strdup ("-machine"));
  g_ptr_array_add (args, g_strdup ("pc"));
  g_ptr_array_add (args, g_strdup ("-m"));
  g_ptr_array_add (args, g_strdup (fixture->ram != NULL ? fixture->ram : "64"));
  g_ptr_array_add (args, g_strdup ("-display"));
  g_ptr_array_add (args, g_strdup ("none"));
  g_ptr_array_add (args, g_strdup ("-kernel"));
  g_ptr_array_add (args, g_strdup (fixture->guest));
  g_ptr_array_add (args, g_strdup ("-append"));
  g_ptr_array_add (args, g_strdup (fixture->append != NULL ? fixture->append : guest_append ()));
  g_ptr_array_add (args, g_strdup ("-drive"));
  g_ptr_array_add (args, g_strconcat ("file=", disk_path, ",format=raw,if=ide,cache=writethrough", NULL));
  if (sandbox)
    {
      g_ptr_array_add (args, g_strdup ("-sandbox"));
      g_ptr_array_add (args, g_strdup ("on,spawn=deny"));
    }
  if (fixture->extra_device != NULL)
    {
      g_ptr_array_add (args, g_strdup ("-device"));
      g_ptr_array_add (args, g_strdup (fixture->extra_device));
    }
  if (fixture->second_qmp_path != NULL)
    {
      g_ptr_array_add (args, g_strdup ("-qmp"));
      g_ptr_array_add (args, g_strdup_printf ("unix:%s,server=on,wait=off",
                                              fixture->second_qmp_path));
    }
  if (incoming)
    {
      g_ptr_array_add (args, g_strdup ("-S"));
      g_ptr_array_add (args, g_strdup ("-incoming"));
      g_ptr_array_add (args, g_strdup ("defer"));
    }
  g_ptr_array_add (args, NULL);

  vm->qemu = hexz_test_qemu_start ((const char * const *) args->pdata);
  g_assert_nonnull (vm->qemu);
  vm->dir = hexz_test_qemu_get_dir (vm->qemu);
  vm->qmp_path = hexz_test_qemu_get_qmp_path (vm->qemu);
  vm->client = hexz_test_qemu_connect (vm->qemu);

  return vm;
}

static gboolean
vm_has_exited (TestVm *vm)
{
  return g_subprocess_get_identifier (hexz_test_qemu_get_process (vm->qemu)) == NULL;
}

static void
vm_kill (TestVm *vm)
{
  GSubprocess *process = hexz_test_qemu_get_process (vm->qemu);

  g_test_message ("Killing QEMU pid %s", g_subprocess_get_identifier (process));
  g_subprocess_force_exit (process);
}

static void
vm_stop (TestVm *vm)
{
  if (vm == NULL)
    return;

  hexz_qmp_client_close (vm->client);
  g_object_unref (vm->client);
  hexz_test_qemu_free (vm->qemu);
  g_free (vm);
}

/* Waits until the guest filled its pattern and wrote two records. */
static void
vm_wait_guest (TestVm *vm)
{
  gint64 deadline = g_get_monotonic_time () + BOOT_TIMEOUT_S * G_USEC_PER_SEC;

  for (;;)
    {
      HexzTestGuestStatus status;
      g_autoptr(GError) error = NULL;

      if (read_status (vm, &status, &error) &&
          status.state == HEXZ_GUEST_STATE_RUNNING && status.last_done_sequence >= 2)
        return;

      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (50 * 1000);
    }
}

/* Fixture */

static void
fixture_set_up (Fixture       *fixture,
                gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *disk = g_malloc0 (DISK_SIZE);
  g_autofree char *meta_path = NULL;
  guint64 meta_entry = GUINT64_TO_LE (RECORD_PAGE);
  const char *guest = g_getenv ("HEXZ_TEST_GUEST");

  if (guest == NULL || *guest == '\0' || !g_file_test (guest, G_FILE_TEST_IS_REGULAR))
    {
      g_test_skip ("The test guest was not built");
      return;
    }
  {
    g_autofree char *qemu = g_find_program_in_path ("qemu-system-x86_64");

    if (qemu == NULL)
      {
        g_test_skip ("qemu-system-x86_64 is not installed");
        return;
      }
  }

  fixture->guest = g_strdup (guest);
  fixture->dir = g_dir_make_tmp ("hexz-capture-qemu-XXXXXX", &error);
  g_assert_no_error (error);
  fixture->base_path = g_build_filename (fixture->dir, "base.hexz", NULL);
  fixture->overlay_path = g_build_filename (fixture->dir, "disk.overlay", NULL);
  fixture->output_path = g_build_filename (fixture->dir, "snapshot.hexz", NULL);
  fixture->cancellable = g_cancellable_new ();
  fixture->cancel_phase = HEXZ_CAPTURE_PHASE_IDLE;

  /* The base disk is zeros with a marker that a merge must keep. */
  memcpy (disk + MARKER_OFFSET, MARKER, strlen (MARKER));

  writer = hexz_snapshot_writer_new_for_path (fixture->base_path);
  hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, DISK_SIZE, &error);
  g_assert_no_error (error);
  hexz_snapshot_writer_write (writer, disk, DISK_SIZE, NULL, &error);
  g_assert_no_error (error);
  hexz_snapshot_writer_end_stream (writer, NULL, &error);
  g_assert_no_error (error);
  hexz_snapshot_writer_close (writer, NULL, &error);
  g_assert_no_error (error);

  /* QEMU writes the overlay file as its raw disk, so it starts as a full
   * copy of the base; .meta lists the record page the guest writes. */
  g_file_set_contents (fixture->overlay_path, (const char *) disk, DISK_SIZE, &error);
  g_assert_no_error (error);
  meta_path = hexz_overlay_get_meta_path_for (fixture->overlay_path);
  g_file_set_contents (meta_path, (const char *) &meta_entry, sizeof meta_entry, &error);
  g_assert_no_error (error);
}

static void
remove_tree (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      if (g_file_test (child, G_FILE_TEST_IS_DIR))
        remove_tree (child);
      else
        g_unlink (child);
    }
  g_rmdir (path);
}

static void
fixture_tear_down (Fixture       *fixture,
                   gconstpointer  data)
{
  g_clear_pointer (&fixture->vm, vm_stop);
  g_clear_pointer (&fixture->restored, vm_stop);
  if (fixture->dir != NULL)
    remove_tree (fixture->dir);
  g_clear_object (&fixture->cancellable);
  g_free (fixture->dir);
  g_free (fixture->base_path);
  g_free (fixture->overlay_path);
  g_free (fixture->output_path);
  g_free (fixture->second_qmp_path);
  g_free (fixture->guest);
  g_free (fixture->append);
}

/* Running a capture */

static void
on_progress (HexzCapture      *capture,
             HexzCapturePhase  phase,
             guint64           done,
             guint64           expected,
             gpointer          user_data)
{
  Fixture *fixture = user_data;

  if (done == 0 && expected == 0)
    g_test_message ("phase %s", hexz_capture_phase_to_string (phase));

  if (phase == fixture->cancel_phase)
    g_cancellable_cancel (fixture->cancellable);

  /* Killed once part of the memory stream has arrived. */
  if (phase == HEXZ_CAPTURE_PHASE_MEMORY && fixture->kill_in_memory && done > 0 &&
      !vm_has_exited (fixture->vm))
    vm_kill (fixture->vm);
}

static HexzCapture *
capture_new (Fixture         *fixture,
             HexzCaptureMode  mode,
             HexzCodec        codec,
             gboolean         thin)
{
  g_autoptr(GFile) output = g_file_new_for_path (fixture->output_path);
  HexzCapture *capture = hexz_capture_new ();

  hexz_capture_set_qmp_client (capture, fixture->vm->client);
  hexz_capture_set_overlay (capture, fixture->overlay_path);
  hexz_capture_set_base_path (capture, fixture->base_path);
  hexz_capture_set_output (capture, output);
  hexz_capture_set_mode (capture, mode);
  hexz_capture_set_codec (capture, codec);
  hexz_capture_set_thin (capture, thin);
  hexz_capture_set_message (capture, "test snapshot");
  hexz_capture_set_poll_interval (capture, 100);
  g_signal_connect (capture, "progress", G_CALLBACK (on_progress), fixture);

  return capture;
}

static gboolean
capture_run (Fixture      *fixture,
             HexzCapture  *capture,
             GError      **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  gint64 start = g_get_monotonic_time ();
  gboolean ok;

  hexz_capture_run_async (capture, fixture->cancellable, on_async_done, &result);
  ok = hexz_capture_run_finish (capture, wait_result (&result), error);

  g_test_message ("capture %s in %.3f s, mode %s, paused %.3f ms, QEMU downtime %" G_GINT64_FORMAT " ms",
                  ok ? "succeeded" : "failed",
                  (g_get_monotonic_time () - start) / 1e6,
                  hexz_capture_mode_to_string (hexz_capture_get_chosen_mode (capture)),
                  hexz_capture_get_pause_time (capture) / 1000.0,
                  hexz_capture_get_downtime (capture));

  return ok;
}

static void
set_original_bandwidth (TestVm *vm)
{
  g_autoptr(JsonObject) arguments = json_object_new ();
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;

  json_object_set_int_member (arguments, "max-bandwidth", ORIGINAL_BANDWIDTH);
  reply = qmp_call (vm, "migrate-set-parameters", arguments, &error);
  g_assert_no_error (error);
}

/* Checks the migration settings are as they were before the capture. */
static void
assert_settings_restored (TestVm *vm)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) parameters = qmp_call (vm, "query-migrate-parameters", NULL, &error);
  g_autoptr(JsonNode) capabilities = NULL;
  JsonArray *list;

  g_assert_no_error (error);
  g_assert_cmpint (json_object_get_int_member (json_node_get_object (parameters), "max-bandwidth"),
                   ==, ORIGINAL_BANDWIDTH);

  capabilities = qmp_call (vm, "query-migrate-capabilities", NULL, &error);
  g_assert_no_error (error);
  list = json_node_get_array (capabilities);
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      JsonObject *item = json_array_get_object_element (list, i);
      const char *name = json_object_get_string_member (item, "capability");

      if (g_str_equal (name, "events") || g_str_equal (name, "background-snapshot"))
        g_assert_false (json_object_get_boolean_member (item, "state"));
    }
}

static void
assert_no_output (Fixture *fixture)
{
  g_autoptr(GDir) dir = g_dir_open (fixture->dir, 0, NULL);
  const char *name;

  g_assert_false (g_file_test (fixture->output_path, G_FILE_TEST_EXISTS));

  /* Only the base, the overlay and its .meta file are left. */
  while ((name = g_dir_read_name (dir)) != NULL)
    g_assert_true (g_str_equal (name, "base.hexz") || g_str_equal (name, "disk.overlay") ||
                   g_str_equal (name, "disk.meta") || g_str_equal (name, "small"));
}

/* Restoring and checking */

static char *
extract_disk (Fixture      *fixture,
              HexzSnapshot *snapshot)
{
  g_autofree char *path = g_build_filename (fixture->dir, "restored.img", NULL);
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *disk = g_malloc (DISK_SIZE);

  g_assert_cmpuint (hexz_snapshot_get_disk_size (snapshot), ==, DISK_SIZE);
  hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, 0, disk, DISK_SIZE, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (disk + MARKER_OFFSET, strlen (MARKER), MARKER, strlen (MARKER));
  g_file_set_contents (path, (const char *) disk, DISK_SIZE, &error);
  g_assert_no_error (error);

  return g_steal_pointer (&path);
}

/* Restores the snapshot into a fresh QEMU and checks the guest: the record
 * on disk matches the memory, the pattern is intact, and the counter
 * continues once the machine runs. */
static void
restore_and_check (Fixture *fixture)
{
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *disk_path = NULL;
  g_autofree char *pattern_path = NULL;
  HexzTestGuestStatus status;
  HexzTestGuestStatus later;
  HexzTestGuestRecord record;
  guint32 bad_address = 0;
  gboolean running = TRUE;

  snapshot = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (hexz_snapshot_has_memory (snapshot));
  hexz_snapshot_verify (snapshot, NULL, &error);
  g_assert_no_error (error);

  disk_path = extract_disk (fixture, snapshot);
  fixture->restored = vm_start (fixture, disk_path, TRUE, FALSE);

  hexz_restore_memory_async (fixture->restored->client, snapshot, HEXZ_RESTORE_FLAGS_KEEP_PAUSED,
                             NULL, on_async_done, &result);
  hexz_restore_memory_finish (wait_result (&result), &error);
  g_assert_no_error (error);
  g_assert_cmpint (qmp_status (fixture->restored, &running), !=, HEXZ_RUN_STATE_INMIGRATE);
  g_assert_false (running);

  g_assert_true (read_status (fixture->restored, &status, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_test_guest_read_disk_record (disk_path, &record, &error));
  g_assert_no_error (error);
  g_test_message ("restored guest: counter %" G_GUINT64_FORMAT ", last record %u, in flight %u, "
                  "record on disk %u", status.counter, status.last_done_sequence,
                  status.in_flight_sequence, record.sequence);
  g_assert_true (hexz_test_guest_check_consistent (&status, &record, &error));
  g_assert_no_error (error);

  pattern_path = g_build_filename (fixture->dir, "pattern.bin", NULL);
  qmp_pmemsave (fixture->restored, status.fill_base, status.fill_size, pattern_path);
  g_assert_true (hexz_test_guest_verify_pattern_file (pattern_path, status.fill_base, status.seed,
                                                      &bad_address, &error));
  g_assert_no_error (error);
  g_unlink (pattern_path);

  qmp_simple (fixture->restored, "cont");
  g_usleep (300 * 1000);
  g_assert_true (read_status (fixture->restored, &later, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_test_guest_check_progress (&status, &later, &error));
  g_assert_no_error (error);
}

/* Checks that the guest's counter moves: a run state of "running" alone
 * does not show that its vCPUs execute. */
static void
assert_guest_runs (TestVm *vm)
{
  g_autoptr(GError) error = NULL;
  HexzTestGuestStatus before;
  HexzTestGuestStatus after;

  g_assert_true (read_status (vm, &before, &error));
  g_assert_no_error (error);
  g_usleep (200 * 1000);
  g_assert_true (read_status (vm, &after, &error));
  g_assert_no_error (error);
  hexz_test_guest_check_progress (&before, &after, &error);
  g_assert_no_error (error);
}

static void
start_guest (Fixture  *fixture,
             gboolean  sandbox)
{
  fixture->vm = vm_start (fixture, fixture->overlay_path, FALSE, sandbox);
  vm_wait_guest (fixture->vm);
  set_original_bandwidth (fixture->vm);
}

/* Tests */

typedef struct
{
  HexzCaptureMode mode;
  HexzCodec codec;
  gboolean thin;
  gboolean sandbox;
} SnapshotCase;

static void
test_snapshot_restore (Fixture       *fixture,
                       gconstpointer  data)
{
  const SnapshotCase *test_case = data;
  g_autoptr(HexzCapture) capture = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  gboolean running = FALSE;
  JsonObject *metadata;
  HexzCaptureMode expected_mode = test_case->mode;

  if (fixture->guest == NULL)
    return;

  start_guest (fixture, test_case->sandbox);
  capture = capture_new (fixture, test_case->mode, test_case->codec, test_case->thin);

  g_assert_true (capture_run (fixture, capture, &error));
  g_assert_no_error (error);

  if (test_case->mode == HEXZ_CAPTURE_MODE_AUTO)
    expected_mode = hexz_capture_get_fallback_reason (capture) != NULL ? HEXZ_CAPTURE_MODE_PAUSED
                                                                       : HEXZ_CAPTURE_MODE_BACKGROUND;
  g_assert_cmpint (hexz_capture_get_chosen_mode (capture), ==, expected_mode);
  g_assert_cmpint (qmp_status (fixture->vm, &running), ==, HEXZ_RUN_STATE_RUNNING);
  g_assert_true (running);
  g_assert_cmpint (hexz_capture_get_pause_time (capture), >=, 0);
  assert_settings_restored (fixture->vm);
  assert_guest_runs (fixture->vm);

  snapshot = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  metadata = hexz_snapshot_get_metadata (snapshot);
  g_assert_cmpstr (json_object_get_string_member (metadata, "capture-mode"), ==,
                   hexz_capture_mode_to_string (expected_mode));
  g_assert_cmpstr (json_object_get_string_member (metadata, "base-id"), !=, NULL);
  g_assert_cmpint (json_object_get_int_member (metadata, "ram-size"), ==, 64 * 1024 * 1024);
  g_assert_cmpint (json_object_get_int_member (metadata, "cpus"), ==, 1);
  g_assert_true (g_str_has_prefix (json_object_get_string_member (metadata, "machine-type"),
                                   "pc-i440fx-"));
  g_assert_cmpstr (json_object_get_string_member (metadata, "kernel"), ==, fixture->guest);
  g_assert_cmpstr (json_object_get_string_member (metadata, "append"), ==, guest_append ());
  g_assert_false (json_object_has_member (metadata, "initrd"));
  if (test_case->thin)
    g_assert_nonnull (hexz_snapshot_get_parent_path (snapshot));
  else
    g_assert_null (hexz_snapshot_get_parent_path (snapshot));
  g_clear_object (&snapshot);

  restore_and_check (fixture);
}

/* A live capture limited to 1 MiB/s of a guest that keeps rewriting 8 MiB
 * cannot converge: after live-timeout the capture lifts the limit, pauses
 * the guest to finish, and the snapshot is as consistent as any other. */
static void
test_live_bandwidth (Fixture       *fixture,
                     gconstpointer  data)
{
  g_autoptr(HexzCapture) capture = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  gboolean running = FALSE;

  if (fixture->guest == NULL)
    return;

  fixture->append = g_strconcat (guest_append (), " dirty=8M", NULL);
  start_guest (fixture, FALSE);
  capture = capture_new (fixture, HEXZ_CAPTURE_MODE_LIVE, HEXZ_CODEC_LZ4, FALSE);
  hexz_capture_set_live_timeout (capture, 1);
  hexz_capture_set_live_bandwidth (capture, 1024 * 1024);

  g_assert_true (capture_run (fixture, capture, &error));
  g_assert_no_error (error);
  g_assert_cmpint (hexz_capture_get_chosen_mode (capture), ==, HEXZ_CAPTURE_MODE_LIVE);
  g_assert_true (hexz_capture_get_paused_to_converge (capture));
  g_assert_cmpint (qmp_status (fixture->vm, &running), ==, HEXZ_RUN_STATE_RUNNING);
  g_assert_true (running);
  assert_settings_restored (fixture->vm);
  assert_guest_runs (fixture->vm);

  snapshot = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (json_object_get_string_member (hexz_snapshot_get_metadata (snapshot),
                                                  "capture-mode"), ==, "live");
  g_clear_object (&snapshot);

  restore_and_check (fixture);
}

static void
test_user_paused (Fixture       *fixture,
                  gconstpointer  data)
{
  g_autoptr(HexzCapture) capture = NULL;
  g_autoptr(GError) error = NULL;
  gboolean running = TRUE;

  if (fixture->guest == NULL)
    return;

  start_guest (fixture, FALSE);
  qmp_simple (fixture->vm, "stop");

  capture = capture_new (fixture, HEXZ_CAPTURE_MODE_AUTO, HEXZ_CODEC_LZ4, FALSE);
  g_assert_true (capture_run (fixture, capture, &error));
  g_assert_no_error (error);
  g_assert_cmpint (hexz_capture_get_chosen_mode (capture), ==, HEXZ_CAPTURE_MODE_PAUSED);

  qmp_status (fixture->vm, &running);
  g_assert_false (running);
  g_assert_cmpint (hexz_capture_get_pause_time (capture), ==, 0);
  assert_settings_restored (fixture->vm);

  restore_and_check (fixture);
}

static void
test_cancel (Fixture       *fixture,
             gconstpointer  data)
{
  g_autoptr(HexzCapture) capture = NULL;
  g_autoptr(GError) error = NULL;
  gboolean running = FALSE;
  HexzTestGuestStatus before;
  HexzTestGuestStatus after;

  if (fixture->guest == NULL)
    return;

  /* The low byte of @data is the phase, the next one the mode. */
  start_guest (fixture, FALSE);
  fixture->cancel_phase = GPOINTER_TO_INT (data) & 0xff;
  capture = capture_new (fixture, GPOINTER_TO_INT (data) >> 8, HEXZ_CODEC_LZ4, FALSE);

  /* Closing the file is past the point where a cancellation counts. */
  if (fixture->cancel_phase == HEXZ_CAPTURE_PHASE_FINALIZE)
    {
      g_assert_true (capture_run (fixture, capture, &error));
      g_assert_no_error (error);
      g_assert_true (g_file_test (fixture->output_path, G_FILE_TEST_IS_REGULAR));
      g_assert_cmpint (qmp_status (fixture->vm, &running), ==, HEXZ_RUN_STATE_RUNNING);
      assert_settings_restored (fixture->vm);
      return;
    }

  g_assert_false (capture_run (fixture, capture, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpstr (error->message, ==, "The snapshot was cancelled");
  g_clear_error (&error);

  g_assert_cmpint (qmp_status (fixture->vm, &running), ==, HEXZ_RUN_STATE_RUNNING);
  g_assert_true (running);
  assert_settings_restored (fixture->vm);
  assert_no_output (fixture);

  /* The guest really runs on. */
  g_assert_true (read_status (fixture->vm, &before, &error));
  g_assert_no_error (error);
  g_usleep (200 * 1000);
  g_assert_true (read_status (fixture->vm, &after, &error));
  g_assert_no_error (error);
  hexz_test_guest_check_progress (&before, &after, &error);
  g_assert_no_error (error);
}

static void
test_no_space (Fixture       *fixture,
               gconstpointer  data)
{
  g_autoptr(HexzCapture) capture = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GFile) output = NULL;
  g_autofree char *small = NULL;
  g_autofree char *output_path = NULL;
  const char *mount_argv[] = { "mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", NULL, NULL };
  const char *umount_argv[] = { "umount", NULL, NULL };
  int wait_status = 0;
  gboolean running = FALSE;

  if (fixture->guest == NULL)
    return;

  /* 512 KiB is less than the memory stream of either guest fill (8 MiB
   * under TCG, 1 MiB under KVM), so the dump runs out of space. */
  small = g_build_filename (fixture->dir, "small", NULL);
  g_assert_no_errno (g_mkdir (small, 0700));
  mount_argv[6] = small;
  if (getuid () != 0 ||
      !g_spawn_sync (NULL, (char **) mount_argv, NULL, G_SPAWN_SEARCH_PATH |
                     G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                     NULL, NULL, NULL, NULL, &wait_status, NULL) ||
      !g_spawn_check_wait_status (wait_status, NULL))
    {
      g_test_skip ("Cannot mount a small tmpfs (needs root)");
      return;
    }

  start_guest (fixture, FALSE);
  output_path = g_build_filename (small, "snapshot.hexz", NULL);
  output = g_file_new_for_path (output_path);
  capture = capture_new (fixture, HEXZ_CAPTURE_MODE_PAUSED, HEXZ_CODEC_LZ4, FALSE);
  hexz_capture_set_output (capture, output);
  hexz_capture_set_check_free_space (capture, FALSE);

  g_assert_false (capture_run (fixture, capture, &error));
  g_test_message ("error: %s", error->message);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);

  g_assert_cmpint (qmp_status (fixture->vm, &running), ==, HEXZ_RUN_STATE_RUNNING);
  g_assert_true (running);
  assert_settings_restored (fixture->vm);
  g_assert_false (g_file_test (output_path, G_FILE_TEST_EXISTS));
  {
    g_autoptr(GDir) dir = g_dir_open (small, 0, NULL);

    g_assert_null (g_dir_read_name (dir));
  }

  /* With the free-space check on, the preflight rejects the same capture. */
  hexz_capture_set_check_free_space (capture, TRUE);
  g_clear_error (&error);
  g_assert_false (capture_run (fixture, capture, &error));
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_NO_SPACE);

  umount_argv[1] = small;
  g_spawn_sync (NULL, (char **) umount_argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                NULL, NULL, NULL, NULL);
}

static void hold_migration_before_switchover (TestVm *vm);

static void
test_qemu_killed (Fixture       *fixture,
                  gconstpointer  data)
{
  g_autoptr(HexzCapture) capture = NULL;
  g_autoptr(GError) error = NULL;

  if (fixture->guest == NULL)
    return;

  /* QEMU pauses the migration before its last step, so the stream cannot
   * end before the kill. */
  start_guest (fixture, FALSE);
  hold_migration_before_switchover (fixture->vm);
  fixture->kill_in_memory = TRUE;
  capture = capture_new (fixture, HEXZ_CAPTURE_MODE_PAUSED, HEXZ_CODEC_LZ4, FALSE);

  g_assert_false (capture_run (fixture, capture, &error));
  g_assert_nonnull (error);
  g_test_message ("error: %s", error->message);
  /* The capture cannot tell a dead QEMU from a lost connection, so its
   * error explains how to resume the machine. */
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_CONNECTION_LOST);
  g_assert_nonnull (strstr (error->message, "may still be paused"));
  g_assert_nonnull (strstr (error->message, "{\"execute\":\"cont\"}"));
  assert_no_output (fixture);
}

static void
test_restore_rejected (Fixture       *fixture,
                       gconstpointer  data)
{
  g_autoptr(HexzSnapshot) base = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(HexzCapture) capture = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  gboolean running = FALSE;

  if (fixture->guest == NULL)
    return;

  start_guest (fixture, FALSE);

  /* A snapshot without memory. */
  base = hexz_snapshot_open_path (fixture->base_path, NULL, &error);
  g_assert_no_error (error);
  hexz_restore_memory_async (fixture->vm->client, base, HEXZ_RESTORE_FLAGS_NONE, NULL,
                             on_async_done, &result);
  g_assert_false (hexz_restore_memory_finish (wait_result (&result), &error));
  g_assert_error (error, HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_NO_STREAM);
  g_clear_error (&error);
  g_clear_object (&result);

  /* A QEMU that is not waiting for an incoming migration. */
  capture = capture_new (fixture, HEXZ_CAPTURE_MODE_PAUSED, HEXZ_CODEC_LZ4, FALSE);
  g_assert_true (capture_run (fixture, capture, &error));
  g_assert_no_error (error);
  snapshot = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  hexz_restore_memory_async (fixture->vm->client, snapshot, HEXZ_RESTORE_FLAGS_NONE, NULL,
                             on_async_done, &result);
  g_assert_false (hexz_restore_memory_finish (wait_result (&result), &error));
  g_test_message ("error: %s", error->message);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "-incoming defer"));

  g_clear_error (&error);
  g_clear_object (&result);

  /* A QEMU waiting with another RAM size: refused before any byte is sent,
   * so it keeps waiting instead of exiting on a rejected stream. */
  fixture->ram = "128";
  fixture->restored = vm_start (fixture, fixture->overlay_path, TRUE, FALSE);
  hexz_restore_memory_async (fixture->restored->client, snapshot, HEXZ_RESTORE_FLAGS_NONE, NULL,
                             on_async_done, &result);
  g_assert_false (hexz_restore_memory_finish (wait_result (&result), &error));
  g_test_message ("error: %s", error->message);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "-m 64M"));
  g_assert_cmpint (qmp_status (fixture->restored, &running), ==, HEXZ_RUN_STATE_INMIGRATE);

  /* The running machine was not touched. */
  g_assert_cmpint (qmp_status (fixture->vm, &running), ==, HEXZ_RUN_STATE_RUNNING);
}

/* A QEMU that lacks a device of the saved machine rejects the stream: the
 * error names the snapshot and tells the user to start QEMU like the saved
 * machine. */
static void
test_restore_other_devices (Fixture       *fixture,
                            gconstpointer  data)
{
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(HexzCapture) capture = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  if (fixture->guest == NULL)
    return;

  fixture->extra_device = "VGA";
  start_guest (fixture, FALSE);
  capture = capture_new (fixture, HEXZ_CAPTURE_MODE_PAUSED, HEXZ_CODEC_LZ4, FALSE);
  g_assert_true (capture_run (fixture, capture, &error));
  g_assert_no_error (error);
  snapshot = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);

  fixture->extra_device = NULL;
  fixture->restored = vm_start (fixture, fixture->overlay_path, TRUE, FALSE);
  hexz_restore_memory_async (fixture->restored->client, snapshot, HEXZ_RESTORE_FLAGS_NONE, NULL,
                             on_async_done, &result);
  g_assert_false (hexz_restore_memory_finish (wait_result (&result), &error));
  g_test_message ("error: %s", error->message);
  g_assert_nonnull (strstr (error->message, fixture->output_path));
  g_assert_nonnull (strstr (error->message, "its log"));
  g_assert_nonnull (strstr (error->message, "devices and options"));
}

/* The command-line tool. A QMP socket serves one client at a time, so the
 * test's own connection is closed while the tool runs. */

static void
vm_disconnect (TestVm *vm)
{
  hexz_qmp_client_close (vm->client);
}

static void
vm_reconnect (TestVm *vm)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  g_clear_object (&vm->client);
  vm->client = hexz_qmp_client_new ();
  hexz_qmp_client_connect_to_path_async (vm->client, vm->qmp_path, NULL, on_async_done, &result);
  hexz_qmp_client_connect_finish (vm->client, wait_result (&result), &error);
  g_assert_no_error (error);
}

static JsonObject *
run_tool_json (const char * const *argv,
               int                 expected_status)
{
  g_autoptr(GSubprocess) process = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autoptr(JsonNode) node = NULL;

  process = g_subprocess_newv (argv, G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE,
                               &error);
  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (process, NULL, NULL, &out, &err, &error);
  g_assert_no_error (error);
  g_test_message ("%s %s: exit %d, stderr: %s", argv[0], argv[1],
                  g_subprocess_get_exit_status (process), err);
  g_assert_cmpint (g_subprocess_get_exit_status (process), ==, expected_status);

  if (expected_status != 0)
    return NULL;

  node = json_from_string (out, &error);
  g_assert_no_error (error);
  return json_object_ref (json_node_get_object (node));
}

static void
test_cli_snap_restore (Fixture       *fixture,
                       gconstpointer  data)
{
  const char *tool = g_getenv ("HEXZ_SNAP");
  g_autoptr(JsonObject) result = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *disk_path = NULL;
  HexzTestGuestStatus status;
  HexzTestGuestRecord record;
  gboolean running = FALSE;

  if (fixture->guest == NULL)
    return;
  if (tool == NULL)
    {
      g_test_skip ("HEXZ_SNAP is not set");
      return;
    }

  start_guest (fixture, FALSE);
  vm_disconnect (fixture->vm);
  {
    const char *argv[] = {
      tool, "snap", "--socket", fixture->vm->qmp_path, "--overlay", fixture->overlay_path,
      "--base", fixture->base_path, "--output", fixture->output_path, "--mode", "paused",
      "--compression", "zstd", "--message", "from the tool", "--json", NULL
    };

    result = run_tool_json (argv, 0);
  }
  g_assert_cmpstr (json_object_get_string_member (result, "mode"), ==, "paused");
  g_assert_cmpfloat (json_object_get_double_member (result, "pause_time_ms"), >, 0);
  vm_reconnect (fixture->vm);
  g_assert_cmpint (qmp_status (fixture->vm, &running), ==, HEXZ_RUN_STATE_RUNNING);
  assert_settings_restored (fixture->vm);

  /* The other options: --live with a bandwidth limit, --thin, --block-size
   * and LZ4. */
  vm_disconnect (fixture->vm);
  {
    g_autofree char *thin_path = g_build_filename (fixture->dir, "thin.hexz", NULL);
    const char *argv[] = {
      tool, "snap", "--socket", fixture->vm->qmp_path, "--overlay", fixture->overlay_path,
      "--base", fixture->base_path, "--output", thin_path, "--live", "--thin",
      "--live-bandwidth", "1", "--live-timeout", "1",
      "--block-size", "16K", "--compression", "lz4", "--json", NULL
    };
    g_autoptr(JsonObject) thin = run_tool_json (argv, 0);

    g_assert_cmpstr (json_object_get_string_member (thin, "mode"), ==, "live");
    /* Under TCG the guest fills 8 MiB, more than 1 MiB/s copies in 1 s. */
    if (g_str_equal (hexz_test_qemu_choose_accel (), "tcg"))
      g_assert_true (json_object_get_boolean_member (thin, "paused_to_converge"));
    g_assert_cmpint (json_object_get_int_member (thin, "block_size"), ==, 16 * 1024);
    g_assert_true (json_object_get_boolean_member (thin, "has_memory"));
    g_assert_true (json_object_has_member (thin, "parent"));
    /* A parent in the same folder is recorded by its name. */
    g_assert_cmpstr (json_object_get_string_member (json_object_get_object_member (thin, "parent"),
                                                    "path"), ==, "base.hexz");
    g_unlink (thin_path);
  }
  vm_reconnect (fixture->vm);
  g_assert_cmpint (qmp_status (fixture->vm, &running), ==, HEXZ_RUN_STATE_RUNNING);

  /* Restore with the tool, paused, and check the loaded guest. */
  snapshot = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  disk_path = extract_disk (fixture, snapshot);
  fixture->restored = vm_start (fixture, disk_path, TRUE, FALSE);
  vm_disconnect (fixture->restored);

  /* Nothing to resume yet: resume points to restore and sends no cont.
   * A cont would make QEMU start the machine that the paused restore
   * below loads. */
  {
    const char *argv[] = { tool, "resume", "--socket", fixture->restored->qmp_path, NULL };
    g_autoptr(GSubprocess) process = NULL;
    g_autofree char *err = NULL;

    process = g_subprocess_newv (argv, G_SUBPROCESS_FLAGS_STDOUT_SILENCE |
                                 G_SUBPROCESS_FLAGS_STDERR_PIPE, &error);
    g_assert_no_error (error);
    g_subprocess_communicate_utf8 (process, NULL, NULL, NULL, &err, &error);
    g_assert_no_error (error);
    g_test_message ("resume: %s", err);
    g_assert_cmpint (g_subprocess_get_exit_status (process), ==, 1);
    g_assert_nonnull (strstr (err, "hexz-snap restore --socket"));
  }

  {
    const char *argv[] = {
      tool, "restore", "--socket", fixture->restored->qmp_path, "--paused", "--json",
      fixture->output_path, NULL
    };
    g_autoptr(JsonObject) restored = run_tool_json (argv, 0);

    g_assert_cmpstr (json_object_get_string_member (restored, "status"), ==, "paused");
  }
  vm_reconnect (fixture->restored);
  g_assert_true (read_status (fixture->restored, &status, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_test_guest_read_disk_record (disk_path, &record, &error));
  g_assert_true (hexz_test_guest_check_consistent (&status, &record, &error));
  g_assert_no_error (error);

  /* resume runs it. */
  vm_disconnect (fixture->restored);
  {
    const char *argv[] = { tool, "resume", "--socket", fixture->restored->qmp_path, "--json", NULL };
    g_autoptr(JsonObject) resumed = run_tool_json (argv, 0);

    g_assert_cmpstr (json_object_get_string_member (resumed, "status"), ==, "running");
    /* No snap was killed here: only the pause is undone. */
    g_assert_true (json_object_get_boolean_member (resumed, "resumed"));
    g_assert_false (json_object_get_boolean_member (resumed, "killed_snapshot_found"));
    g_assert_false (json_object_get_boolean_member (resumed, "settings_restored"));
  }
  vm_reconnect (fixture->restored);

  /* Without --paused, restore resumes the machine itself. */
  g_clear_pointer (&fixture->restored, vm_stop);
  fixture->restored = vm_start (fixture, disk_path, TRUE, FALSE);
  vm_disconnect (fixture->restored);
  {
    const char *argv[] = {
      tool, "restore", "--socket", fixture->restored->qmp_path, "--json", fixture->output_path, NULL
    };
    g_autoptr(JsonObject) restored = run_tool_json (argv, 0);

    g_assert_cmpstr (json_object_get_string_member (restored, "status"), ==, "running");
  }
  vm_reconnect (fixture->restored);
  assert_guest_runs (fixture->restored);
}

/* Makes QEMU stop a migration before its last step until the
 * `migrate-continue` command, or until the migration is cancelled. */
static void
hold_migration_before_switchover (TestVm *vm)
{
  g_autoptr(JsonObject) arguments = json_object_new ();
  g_autoptr(JsonArray) capabilities = json_array_new ();
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;
  JsonObject *capability = json_object_new ();

  json_object_set_string_member (capability, "capability", "pause-before-switchover");
  json_object_set_boolean_member (capability, "state", TRUE);
  json_array_add_object_element (capabilities, capability);
  json_object_set_array_member (arguments, "capabilities", json_array_ref (capabilities));
  reply = qmp_call (vm, "migrate-set-capabilities", arguments, &error);
  g_assert_no_error (error);
}

/* Sends SIGINT or SIGTERM (@data) to the tool once its log shows the
 * memory phase. QEMU
 * pauses the migration before its last step, so the memory phase cannot
 * end before the signal arrives, however slowly this test reads the log.
 * Under valgrind this test reads the line late enough for the tool to
 * have written the whole memory of the paused guest without the pause. */
static void
test_cli_signal (Fixture       *fixture,
                 gconstpointer  data)
{
  int signal_number = GPOINTER_TO_INT (data);
  const char *tool = g_getenv ("HEXZ_SNAP");
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GSubprocess) process = NULL;
  g_autoptr(GDataInputStream) log = NULL;
  g_autoptr(GString) messages = g_string_new (NULL);
  g_autoptr(GError) error = NULL;
  gboolean interrupted = FALSE;
  gboolean running = FALSE;
  char *line;

  if (fixture->guest == NULL)
    return;
  if (tool == NULL)
    {
      g_test_skip ("HEXZ_SNAP is not set");
      return;
    }

  start_guest (fixture, FALSE);
  hold_migration_before_switchover (fixture->vm);
  vm_disconnect (fixture->vm);

  /* GLib's default log handler prints debug messages to standard output. */
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_subprocess_launcher_setenv (launcher, "G_MESSAGES_DEBUG", "Hexz", TRUE);
  process = g_subprocess_launcher_spawn (launcher, &error, tool, "snap",
                                         "--socket", fixture->vm->qmp_path,
                                         "--overlay", fixture->overlay_path,
                                         "--base", fixture->base_path,
                                         "--output", fixture->output_path,
                                         "--mode", "paused", NULL);
  g_assert_no_error (error);

  log = g_data_input_stream_new (g_subprocess_get_stdout_pipe (process));
  while ((line = g_data_input_stream_read_line (log, NULL, NULL, NULL)) != NULL)
    {
      if (!interrupted && strstr (line, "Capture: phase memory") != NULL)
        {
          g_test_message ("Sending signal %d to hexz-snap pid %s", signal_number,
                          g_subprocess_get_identifier (process));
          g_subprocess_send_signal (process, signal_number);
          interrupted = TRUE;
        }
      if (strstr (line, "DEBUG") == NULL)
        {
          g_test_message ("hexz-snap: %s", line);
          g_string_append_printf (messages, "%s\n", line);
        }
      g_free (line);
    }

  g_subprocess_wait (process, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (interrupted);
  g_assert_cmpint (g_subprocess_get_exit_status (process), ==, 1);
  /* The signal ended the capture, not the tool's stall timeout. */
  g_assert_nonnull (strstr (messages->str, "Interrupted"));

  vm_reconnect (fixture->vm);
  g_assert_cmpint (qmp_status (fixture->vm, &running), ==, HEXZ_RUN_STATE_RUNNING);
  assert_settings_restored (fixture->vm);
  assert_no_output (fixture);
}

/* Reads what the tool wrote to the terminal @master into @output, for up
 * to @timeout_ms. Returns FALSE once the terminal has no writer left. */
static gboolean
read_terminal (int      master,
               GString *output,
               int      timeout_ms)
{
  struct pollfd poll_fd = { master, POLLIN, 0 };
  char buffer[4096];
  ssize_t n;

  if (poll (&poll_fd, 1, timeout_ms) <= 0)
    return TRUE;

  n = read (master, buffer, sizeof buffer);
  if (n <= 0)
    return FALSE;

  g_string_append_len (output, buffer, n);
  return TRUE;
}

/* On a terminal, snap shows the phase, the bytes and the rate, and at the
 * end how long the machine was paused. QEMU pauses the migration before
 * its last step until the test has seen a progress line with a rate, so
 * the memory phase lasts as long as the test needs. The tool uses a
 * second QMP socket, and the test keeps its own connection. */
static void
test_cli_terminal (Fixture       *fixture,
                   gconstpointer  data)
{
  const char *tool = g_getenv ("HEXZ_SNAP");
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GSubprocess) process = NULL;
  g_autoptr(GString) terminal = g_string_new (NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) arguments = json_object_new ();
  g_autoptr(JsonNode) reply = NULL;
  g_autofree char *out = NULL;
  gint64 deadline;
  gboolean running = FALSE;
  int master;
  int slave;

  if (fixture->guest == NULL)
    return;
  if (tool == NULL)
    {
      g_test_skip ("HEXZ_SNAP is not set");
      return;
    }

  master = posix_openpt (O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt (master) != 0 || unlockpt (master) != 0)
    {
      g_test_skip ("Cannot open a pseudo-terminal");
      if (master >= 0)
        close (master);
      return;
    }
  slave = open (ptsname (master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  g_assert_cmpint (slave, >=, 0);

  fixture->second_qmp_path = g_build_filename (fixture->dir, "tool.sock", NULL);
  start_guest (fixture, FALSE);
  hold_migration_before_switchover (fixture->vm);

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE);
  g_subprocess_launcher_setenv (launcher, "TERM", "xterm", TRUE);
  g_subprocess_launcher_unsetenv (launcher, "G_MESSAGES_DEBUG");
  g_subprocess_launcher_take_stderr_fd (launcher, slave);
  process = g_subprocess_launcher_spawn (launcher, &error, tool, "snap",
                                         "--socket", fixture->second_qmp_path,
                                         "--overlay", fixture->overlay_path,
                                         "--base", fixture->base_path,
                                         "--output", fixture->output_path,
                                         "--mode", "paused", NULL);
  g_assert_no_error (error);
  /* The launcher keeps the terminal's other end open until it is freed. */
  g_clear_object (&launcher);

  /* A progress line of the memory phase with bytes and a rate. */
  deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  while (!(strstr (terminal->str, "memory") != NULL && strstr (terminal->str, "/s") != NULL))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_assert_true (read_terminal (master, terminal, 100));
    }

  json_object_set_string_member (arguments, "state", "pre-switchover");
  reply = qmp_call (fixture->vm, "migrate-continue", arguments, &error);
  g_assert_no_error (error);

  while (read_terminal (master, terminal, 1000))
    g_assert_cmpint (g_get_monotonic_time (), <, deadline);
  close (master);

  g_subprocess_communicate_utf8 (process, NULL, NULL, &out, NULL, &error);
  g_assert_no_error (error);
  {
    g_autofree char *escaped = g_strescape (terminal->str, NULL);

    g_test_message ("terminal: %s", escaped);
  }
  g_test_message ("stdout: %s", out);
  g_assert_cmpint (g_subprocess_get_exit_status (process), ==, 0);

  /* The phase, the bytes done of those expected, and the rate. */
  g_assert_nonnull (strstr (terminal->str, "memory "));
  /* The last line drawn may come early, with the bytes done and the rate
   * in KiB. */
  g_assert_nonnull (strstr (terminal->str, "iB of "));
  g_assert_nonnull (strstr (terminal->str, "iB/s"));
  /* The progress line is erased before the result is printed. */
  g_assert_true (g_str_has_suffix (terminal->str, "\r\033[K"));
  g_assert_nonnull (strstr (out, "the virtual machine was paused for"));
  g_assert_nonnull (strstr (out, " ms"));

  g_assert_cmpint (qmp_status (fixture->vm, &running), ==, HEXZ_RUN_STATE_RUNNING);
  g_assert_true (g_file_test (fixture->output_path, G_FILE_TEST_IS_REGULAR));
}

static const SnapshotCase paused_lz4_thick = { HEXZ_CAPTURE_MODE_PAUSED, HEXZ_CODEC_LZ4, FALSE, FALSE };
static const SnapshotCase paused_zstd_thin = { HEXZ_CAPTURE_MODE_PAUSED, HEXZ_CODEC_ZSTD, TRUE, FALSE };
static const SnapshotCase background_zstd_thick = { HEXZ_CAPTURE_MODE_BACKGROUND, HEXZ_CODEC_ZSTD, FALSE, FALSE };
static const SnapshotCase auto_lz4_thin = { HEXZ_CAPTURE_MODE_AUTO, HEXZ_CODEC_LZ4, TRUE, FALSE };
static const SnapshotCase live_lz4_thick = { HEXZ_CAPTURE_MODE_LIVE, HEXZ_CODEC_LZ4, FALSE, FALSE };
static const SnapshotCase sandbox_paused = { HEXZ_CAPTURE_MODE_PAUSED, HEXZ_CODEC_LZ4, FALSE, TRUE };

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  /* Under nested KVM the first touch of each guest page is slow, and the
   * 25 cases took about three minutes against well under one under TCG,
   * so TCG is the default here as in the guest tests. */
  g_setenv ("HEXZ_TEST_ACCEL", "tcg", FALSE);

#define ADD(path, data, func) \
  g_test_add (path, Fixture, data, fixture_set_up, func, fixture_tear_down)

  ADD ("/capture-qemu/paused/lz4-thick", &paused_lz4_thick, test_snapshot_restore);
  ADD ("/capture-qemu/paused/zstd-thin", &paused_zstd_thin, test_snapshot_restore);
  ADD ("/capture-qemu/paused/sandbox", &sandbox_paused, test_snapshot_restore);
  ADD ("/capture-qemu/background/zstd-thick", &background_zstd_thick, test_snapshot_restore);
  ADD ("/capture-qemu/auto/lz4-thin", &auto_lz4_thin, test_snapshot_restore);
  ADD ("/capture-qemu/live/lz4-thick", &live_lz4_thick, test_snapshot_restore);
  ADD ("/capture-qemu/live/bandwidth-timeout", NULL, test_live_bandwidth);
  ADD ("/capture-qemu/user-paused", NULL, test_user_paused);
  ADD ("/capture-qemu/cancel/preflight", GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_PREFLIGHT | HEXZ_CAPTURE_MODE_PAUSED << 8), test_cancel);
  ADD ("/capture-qemu/cancel/prepare", GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_PREPARE | HEXZ_CAPTURE_MODE_PAUSED << 8), test_cancel);
  ADD ("/capture-qemu/cancel/pause", GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_PAUSE | HEXZ_CAPTURE_MODE_PAUSED << 8), test_cancel);
  ADD ("/capture-qemu/cancel/disk", GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_DISK | HEXZ_CAPTURE_MODE_PAUSED << 8), test_cancel);
  ADD ("/capture-qemu/cancel/memory", GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_MEMORY | HEXZ_CAPTURE_MODE_PAUSED << 8), test_cancel);
  ADD ("/capture-qemu/cancel/resume", GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_RESUME | HEXZ_CAPTURE_MODE_PAUSED << 8), test_cancel);
  ADD ("/capture-qemu/cancel/merge", GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_MERGE | HEXZ_CAPTURE_MODE_PAUSED << 8), test_cancel);
  ADD ("/capture-qemu/cancel/background/disk",
       GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_DISK | HEXZ_CAPTURE_MODE_BACKGROUND << 8), test_cancel);
  ADD ("/capture-qemu/cancel/background/memory",
       GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_MEMORY | HEXZ_CAPTURE_MODE_BACKGROUND << 8), test_cancel);
  ADD ("/capture-qemu/cancel/background/merge",
       GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_MERGE | HEXZ_CAPTURE_MODE_BACKGROUND << 8), test_cancel);
  ADD ("/capture-qemu/cancel/live/memory",
       GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_MEMORY | HEXZ_CAPTURE_MODE_LIVE << 8), test_cancel);
  ADD ("/capture-qemu/cancel/live/disk",
       GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_DISK | HEXZ_CAPTURE_MODE_LIVE << 8), test_cancel);
  ADD ("/capture-qemu/cancel/live/resume",
       GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_RESUME | HEXZ_CAPTURE_MODE_LIVE << 8), test_cancel);
  ADD ("/capture-qemu/cancel/finalize-ignored", GINT_TO_POINTER (HEXZ_CAPTURE_PHASE_FINALIZE | HEXZ_CAPTURE_MODE_PAUSED << 8), test_cancel);
  ADD ("/capture-qemu/failure/no-space", NULL, test_no_space);
  ADD ("/capture-qemu/failure/qemu-killed", NULL, test_qemu_killed);
  ADD ("/capture-qemu/restore/rejected", NULL, test_restore_rejected);
  ADD ("/capture-qemu/restore/other-devices", NULL, test_restore_other_devices);
  ADD ("/capture-qemu/cli/snap-restore", NULL, test_cli_snap_restore);
  ADD ("/capture-qemu/cli/sigint", GINT_TO_POINTER (SIGINT), test_cli_signal);
  ADD ("/capture-qemu/cli/sigterm", GINT_TO_POINTER (SIGTERM), test_cli_signal);
  ADD ("/capture-qemu/cli/terminal", NULL, test_cli_terminal);

#undef ADD

  return g_test_run ();
}
