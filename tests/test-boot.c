/* test-boot.c: booting snapshots with HexzBoot and hexz-snap boot
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * These tests start real nbdkit and QEMU processes with the test guest,
 * under TCG unless HEXZ_TEST_ACCEL selects another accelerator. They skip when the
 * guest, QEMU, nbdkit or the plugin is missing.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>

#include <glib/gstdio.h>

#include "hexz.h"
#include "hexz-overlay-private.h"
#include "hexz-test-guest.h"
#include "hexz-test-qemu.h"

/* Generous limits for a loaded machine; a normal run takes a fraction. */
#define BOOT_TIMEOUT_MS    60000
#define GUEST_TIMEOUT_MS   60000
#define TOOL_TIMEOUT_MS    120000
#define QMP_TIMEOUT_MS     20000

/* The RAM size the guest runs with in these tests. */
#define GUEST_RAM (G_GUINT64_CONSTANT (64) << 20)

static const char *
boot_accel (void)
{
  const char *accel = g_getenv ("HEXZ_TEST_ACCEL");

  /* The guest runs about 1000 times slower under nested KVM. */
  if (accel == NULL || *accel == '\0')
    return "tcg";

  return accel;
}

/* Returns TRUE after marking the test skipped when something the boot
 * needs is missing. */
static gboolean
skip_without_children (void)
{
  g_autofree char *qemu = g_find_program_in_path ("qemu-system-x86_64");
  g_autofree char *nbdkit = g_find_program_in_path ("nbdkit");
  const char *plugin = g_getenv ("HEXZ_NBDKIT_PLUGIN");

  if (hexz_test_guest_get_path () == NULL)
    {
      g_test_skip ("HEXZ_TEST_GUEST is not set: the test guest was not built");
      return TRUE;
    }

  if (qemu == NULL || nbdkit == NULL)
    {
      g_test_skip ("qemu-system-x86_64 or nbdkit is not installed");
      return TRUE;
    }

  if (plugin == NULL || !g_file_test (plugin, G_FILE_TEST_IS_REGULAR))
    {
      g_test_skip ("hexz-plugin.so was not built");
      return TRUE;
    }

  return FALSE;
}

/* Checks whether @pid names a live process. A zombie counts as gone: an
 * orphan whose new parent does not reap it stays a zombie. */
static gboolean
pid_exists (GPid pid)
{
  g_autofree char *stat_path = NULL;
  g_autofree char *contents = NULL;
  const char *end;

  if (pid <= 0 || (kill (pid, 0) != 0 && errno == ESRCH))
    return FALSE;

  stat_path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  if (!g_file_get_contents (stat_path, &contents, NULL, NULL))
    return FALSE;

  /* The state follows the command name, which ends with the last ")". */
  end = strrchr (contents, ')');
  if (end == NULL || end[1] == '\0' || end[2] == '\0')
    return TRUE;

  return end[2] != 'Z' && end[2] != 'X';
}

static void
remove_tree (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL)
    return;

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      g_unlink (child);
    }

  g_rmdir (path);
}

/* Running hexz-snap */

static const char *
tool_path (void)
{
  const char *path = g_getenv ("HEXZ_SNAP");

  g_assert_nonnull (path);
  return path;
}

/* Runs hexz-snap with @args to its end and checks its exit status.
 * Returns its standard output. */
static char *
run_tool (int                 expected_status,
          const char * const *args)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GSubprocess) process = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *command_line = NULL;

  g_ptr_array_add (argv, (gpointer) tool_path ());
  for (gsize i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);

  command_line = g_strjoinv (" ", (char **) argv->pdata);
  g_test_message ("Running %s", command_line);

  process = g_subprocess_newv ((const char * const *) argv->pdata,
                               G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE,
                               &error);
  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (process, NULL, NULL, &out, &err, &error);
  g_assert_no_error (error);

  if (g_subprocess_get_exit_status (process) != expected_status)
    g_test_message ("stdout: %s\nstderr: %s", out, err);
  g_assert_true (g_subprocess_get_if_exited (process));
  g_assert_cmpint (g_subprocess_get_exit_status (process), ==, expected_status);

  if (expected_status != 0)
    return g_steal_pointer (&err);

  return g_steal_pointer (&out);
}

#define RUN_TOOL(status, ...) \
  run_tool ((status), (const char * const []) { __VA_ARGS__, NULL })

/* Makes the child get SIGTERM when the test dies, so that a failed test
 * leaves no machine running: hexz-snap boot shuts it down on SIGTERM. */
static void
child_setup_parent_death (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGTERM);
}

/* A "hexz-snap boot" running in the background. */
typedef struct {
  GSubprocess *process;
  GPid pid;
  char *stderr_path;
  char *qmp_socket;
  char *directory;
  GPid qemu_pid;
  GPid nbdkit_pid;
  gboolean restored_memory;
} BootRun;

static void
boot_run_free (BootRun *run)
{
  if (run->process != NULL && g_subprocess_get_identifier (run->process) != NULL)
    {
      g_subprocess_force_exit (run->process);
      g_subprocess_wait (run->process, NULL, NULL);
    }

  g_clear_object (&run->process);
  g_free (run->stderr_path);
  g_free (run->qmp_socket);
  g_free (run->directory);
  g_free (run);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BootRun, boot_run_free)

/* Starts "hexz-snap boot --json" with @args and returns once it printed
 * that the machine runs. */
static BootRun *
boot_run_start (const char         *tmpdir,
                const char         *name,
                const char * const *args)
{
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GDataInputStream) lines = NULL;
  g_autoptr(GString) json = g_string_new (NULL);
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *stderr_name = g_strconcat (name, ".stderr", NULL);
  g_autofree char *command_line = NULL;
  BootRun *run = g_new0 (BootRun, 1);
  JsonObject *object;

  g_ptr_array_add (argv, (gpointer) tool_path ());
  g_ptr_array_add (argv, (gpointer) "boot");
  g_ptr_array_add (argv, (gpointer) "--json");
  g_ptr_array_add (argv, (gpointer) "--accel");
  g_ptr_array_add (argv, (gpointer) boot_accel ());
  for (gsize i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);

  command_line = g_strjoinv (" ", (char **) argv->pdata);
  g_test_message ("Starting %s", command_line);

  run->stderr_path = g_build_filename (tmpdir, stderr_name, NULL);
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE);
  g_subprocess_launcher_set_stderr_file_path (launcher, run->stderr_path);
  g_subprocess_launcher_set_child_setup (launcher, child_setup_parent_death, NULL, NULL);
  run->process = g_subprocess_launcher_spawnv (launcher, (const char * const *) argv->pdata,
                                               &error);
  g_assert_no_error (error);
  run->pid = (GPid) g_ascii_strtoll (g_subprocess_get_identifier (run->process), NULL, 10);

  /* The JSON object ends with a line holding only "}". */
  lines = g_data_input_stream_new (g_subprocess_get_stdout_pipe (run->process));
  for (;;)
    {
      g_autofree char *line = g_data_input_stream_read_line_utf8 (lines, NULL, NULL, &error);

      g_assert_no_error (error);
      if (line == NULL)
        {
          g_autofree char *log = NULL;

          g_file_get_contents (run->stderr_path, &log, NULL, NULL);
          g_error ("hexz-snap boot ended before the machine ran: %s", log);
        }

      g_string_append (json, line);
      g_string_append_c (json, '\n');
      if (g_str_equal (line, "}"))
        break;
    }

  json_parser_load_from_data (parser, json->str, json->len, &error);
  g_assert_no_error (error);
  object = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member (object, "command"), ==, "boot");
  run->qmp_socket = g_strdup (json_object_get_string_member (object, "qmp_socket"));
  run->directory = g_strdup (json_object_get_string_member (object, "directory"));
  run->qemu_pid = json_object_get_int_member (object, "qemu_pid");
  run->nbdkit_pid = json_object_get_int_member (object, "nbdkit_pid");
  run->restored_memory = json_object_get_boolean_member (object, "restored_memory");

  g_assert_cmpint (run->qemu_pid, >, 0);
  g_assert_cmpint (run->nbdkit_pid, >, 0);
  g_assert_true (pid_exists (run->qemu_pid));
  g_assert_true (pid_exists (run->nbdkit_pid));
  g_assert_true (g_file_test (run->directory, G_FILE_TEST_IS_DIR));
  g_assert_true (g_file_test (run->qmp_socket, G_FILE_TEST_EXISTS));

  return run;
}

static void
on_process_exited (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  gboolean *exited = user_data;

  g_subprocess_wait_finish (G_SUBPROCESS (source), result, NULL);
  *exited = TRUE;
}

/* Sends SIGINT to hexz-snap boot, as Ctrl-C does, and checks that it exits
 * with status 0 and leaves no process, socket or private folder. */
static void
boot_run_interrupt (BootRun *run)
{
  gboolean exited = FALSE;
  g_autofree char *log = NULL;

  g_subprocess_send_signal (run->process, SIGINT);
  g_subprocess_wait_async (run->process, NULL, on_process_exited, &exited);
  HEXZ_TEST_RUN_UNTIL (exited, BOOT_TIMEOUT_MS);

  if (g_file_get_contents (run->stderr_path, &log, NULL, NULL) && *log != '\0')
    g_test_message ("hexz-snap boot printed: %s", log);

  g_assert_true (g_subprocess_get_if_exited (run->process));
  g_assert_cmpint (g_subprocess_get_exit_status (run->process), ==, 0);
  g_clear_object (&run->process);

  g_assert_false (pid_exists (run->qemu_pid));
  g_assert_false (pid_exists (run->nbdkit_pid));
  g_assert_false (g_file_test (run->directory, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (run->qmp_socket, G_FILE_TEST_EXISTS));
}

/* Talking to the guest over QMP */

typedef struct {
  gboolean done;
  JsonNode *result;
  GError *error;
} CommandResult;

static void
on_connected (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  CommandResult *command = user_data;

  hexz_qmp_client_connect_finish (HEXZ_QMP_CLIENT (source), result, &command->error);
  command->done = TRUE;
}

static void
on_executed (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  CommandResult *command = user_data;

  command->result = hexz_qmp_client_execute_finish (HEXZ_QMP_CLIENT (source), result,
                                                    &command->error);
  command->done = TRUE;
}

static HexzQmpClient *
qmp_connect (const char *socket_path)
{
  g_autoptr(HexzQmpClient) client = hexz_qmp_client_new ();
  CommandResult command = { FALSE, NULL, NULL };

  hexz_qmp_client_connect_to_path_async (client, socket_path, NULL, on_connected, &command);
  HEXZ_TEST_RUN_UNTIL (command.done, QMP_TIMEOUT_MS);
  g_assert_no_error (command.error);

  return g_steal_pointer (&client);
}

static JsonNode *
qmp_execute (HexzQmpClient *client,
             const char    *name,
             JsonObject    *arguments)
{
  CommandResult command = { FALSE, NULL, NULL };

  hexz_qmp_client_execute_async (client, name, arguments, NULL, NULL, on_executed, &command);
  HEXZ_TEST_RUN_UNTIL (command.done, QMP_TIMEOUT_MS);
  g_assert_no_error (command.error);
  g_assert_nonnull (command.result);

  return command.result;
}

/* Reads the guest's status area. Returns FALSE when the guest has not
 * set it up yet. */
static gboolean
qmp_try_read_status (HexzQmpClient       *client,
                     HexzTestGuestStatus *status)
{
  g_autofree char *command_line = hexz_test_guest_xp_command (HEXZ_GUEST_STATUS_ADDR,
                                                              HEXZ_GUEST_STATUS_SIZE);
  g_autoptr(JsonObject) arguments = json_object_new ();
  g_autoptr(JsonNode) result = NULL;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GError) error = NULL;
  gsize size;
  const guint8 *data;

  json_object_set_string_member (arguments, "command-line", command_line);
  result = qmp_execute (client, "human-monitor-command", arguments);
  bytes = hexz_test_guest_parse_xp (json_node_get_string (result), HEXZ_GUEST_STATUS_ADDR,
                                    HEXZ_GUEST_STATUS_SIZE, &error);
  g_assert_no_error (error);

  data = g_bytes_get_data (bytes, &size);
  if (!hexz_test_guest_parse_status (data, size, status, &error))
    {
      g_test_message ("No status area yet: %s", error->message);
      return FALSE;
    }

  return TRUE;
}

static void
qmp_read_status (HexzQmpClient       *client,
                 HexzTestGuestStatus *status)
{
  g_assert_true (qmp_try_read_status (client, status));
}

/* Reads the status area of the guest behind @socket_path; the connection
 * is closed again, so that other clients can use the monitor. */
static gboolean
try_read_status (const char          *socket_path,
                 HexzTestGuestStatus *status)
{
  g_autoptr(HexzQmpClient) client = qmp_connect (socket_path);
  gboolean valid = qmp_try_read_status (client, status);

  hexz_qmp_client_close (client);
  return valid;
}

static void
read_status (const char          *socket_path,
             HexzTestGuestStatus *status)
{
  g_assert_true (try_read_status (socket_path, status));
}

/* Waits until the guest runs and has written @min_sequence records. */
static void
wait_for_records (const char          *socket_path,
                  guint32              min_sequence,
                  HexzTestGuestStatus *status)
{
  gint64 deadline = g_get_monotonic_time () + GUEST_TIMEOUT_MS * 1000;

  for (;;)
    {
      gboolean valid = try_read_status (socket_path, status);

      if (valid && status->state == HEXZ_GUEST_STATE_RUNNING &&
          status->last_done_sequence >= min_sequence)
        break;

      if (g_get_monotonic_time () > deadline && !valid)
        g_error ("The guest set up no status area in %u ms", GUEST_TIMEOUT_MS);
      if (g_get_monotonic_time () > deadline)
        g_error ("The guest wrote %u records in %u ms, expected %u (state %s, flags 0x%x)",
                 status->last_done_sequence, GUEST_TIMEOUT_MS, min_sequence,
                 hexz_test_guest_state_to_string (status->state), status->flags);

      g_usleep (50000);
    }

  g_assert_cmpuint (status->flags & (HEXZ_GUEST_FLAG_NO_DISK | HEXZ_GUEST_FLAG_DISK_ERROR), ==, 0);
}

/* Pauses the guest with QMP "stop" and reads its status: the memory a
 * paused-mode snapshot then records. */
static void
pause_and_read_status (const char          *socket_path,
                       HexzTestGuestStatus *status)
{
  g_autoptr(HexzQmpClient) client = qmp_connect (socket_path);
  g_autoptr(JsonNode) result = NULL;

  result = qmp_execute (client, "stop", NULL);
  qmp_read_status (client, status);
  hexz_qmp_client_close (client);
}

static void
resume (const char *socket_path)
{
  g_autoptr(HexzQmpClient) client = qmp_connect (socket_path);
  g_autoptr(JsonNode) result = NULL;

  result = qmp_execute (client, "cont", NULL);
  hexz_qmp_client_close (client);
}

/* Reads the record sector of a snapshot's disk stream. */
static void
read_snapshot_record (const char          *tmpdir,
                      const char          *snapshot_path,
                      HexzTestGuestRecord *record)
{
  g_autofree char *base = g_path_get_basename (snapshot_path);
  g_autofree char *name = g_strconcat (base, ".disk", NULL);
  g_autofree char *disk_path = g_build_filename (tmpdir, name, NULL);
  g_autofree char *out = NULL;
  g_autoptr(GError) error = NULL;

  out = RUN_TOOL (0, "extract", snapshot_path, "--disk", disk_path);
  g_assert_true (hexz_test_guest_read_disk_record (disk_path, record, &error));
  g_assert_no_error (error);
  g_unlink (disk_path);
}

/* Checks that a machine booted from a snapshot whose memory held
 * @saved continues from it: same pattern, a counter at least as large,
 * no record lost, and records still reaching the disk. */
static void
check_resumed (const char                *socket_path,
               const HexzTestGuestStatus *saved)
{
  HexzTestGuestStatus now;
  g_autoptr(GError) error = NULL;

  read_status (socket_path, &now);
  g_test_message ("Saved counter %" G_GUINT64_FORMAT ", record %u; after boot %" G_GUINT64_FORMAT
                  ", record %u", saved->counter, saved->last_done_sequence, now.counter,
                  now.last_done_sequence);
  g_assert_cmpuint (now.counter, >=, saved->counter);
  g_assert_true (hexz_test_guest_check_progress (saved, &now, &error));
  g_assert_no_error (error);

  /* Two more records prove that writes reach the new overlay. */
  wait_for_records (socket_path, saved->last_done_sequence + 2, &now);
  g_assert_true (hexz_test_guest_check_progress (saved, &now, &error));
  g_assert_no_error (error);
}

static char *
make_base_snapshot (const char *tmpdir)
{
  g_autofree char *disk_path = g_build_filename (tmpdir, "disk.img", NULL);
  char *base_path = g_build_filename (tmpdir, "base.hexz", NULL);
  g_autofree char *out = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_true (hexz_test_guest_create_disk (disk_path, &error));
  g_assert_no_error (error);
  out = RUN_TOOL (0, "pack", disk_path, base_path);
  g_unlink (disk_path);

  return base_path;
}

/* The whole loop: boot a disk-only snapshot, snapshot the running guest in
 * paused and live mode, boot the snapshot with its memory, snapshot that
 * machine as a thin snapshot and boot the thin one. */
static void
test_boot_full_loop (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = NULL;
  g_autofree char *base = NULL;
  g_autofree char *o1 = NULL, *o2 = NULL, *o3 = NULL;
  g_autofree char *s1 = NULL, *s2 = NULL;
  g_autofree char *c1 = NULL, *c2 = NULL, *c3 = NULL;
  g_autofree char *out = NULL;
  g_autoptr(BootRun) run = NULL;
  HexzTestGuestStatus status;
  HexzTestGuestStatus saved;
  HexzTestGuestStatus thin_saved;
  HexzTestGuestRecord record;
  const char *guest = hexz_test_guest_get_path ();

  if (skip_without_children ())
    return;

  tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_assert_no_error (error);
  base = make_base_snapshot (tmpdir);
  o1 = g_build_filename (tmpdir, "o1.overlay", NULL);
  o2 = g_build_filename (tmpdir, "o2.overlay", NULL);
  o3 = g_build_filename (tmpdir, "o3.overlay", NULL);
  s1 = g_build_filename (tmpdir, "s1.sock", NULL);
  s2 = g_build_filename (tmpdir, "s2.sock", NULL);
  c1 = g_build_filename (tmpdir, "c1.hexz", NULL);
  c2 = g_build_filename (tmpdir, "c2.hexz", NULL);
  c3 = g_build_filename (tmpdir, "c3.hexz", NULL);

  /* Boot the packed disk; the guest writes records through NBD into O1. */
  run = boot_run_start (tmpdir, "boot1", (const char * const []) {
                          base, "--kernel", guest, "--append", "fill=8M",
                          "--ram", "64", "--overlay", o1, "--qmp", s1, NULL });
  g_assert_false (run->restored_memory);
  g_assert_cmpstr (run->qmp_socket, ==, s1);
  wait_for_records (s1, 2, &status);
  g_assert_true (g_file_test (o1, G_FILE_TEST_IS_REGULAR));

  /* C1: a paused-mode snapshot of the guest stopped at a known state. */
  pause_and_read_status (s1, &saved);
  out = RUN_TOOL (0, "snap", "--socket", s1, "--overlay", o1, "--base", base,
                  "--output", c1, "--mode", "paused");
  g_clear_pointer (&out, g_free);
  read_status (s1, &status);
  g_assert_cmpuint (status.counter, ==, saved.counter);
  resume (s1);

  read_snapshot_record (tmpdir, c1, &record);
  g_assert_true (hexz_test_guest_check_consistent (&saved, &record, &error));
  g_assert_no_error (error);

  /* C2: a live snapshot while the guest runs. */
  out = RUN_TOOL (0, "snap", "--socket", s1, "--overlay", o1, "--base", base,
                  "--output", c2, "--live");
  g_clear_pointer (&out, g_free);
  read_snapshot_record (tmpdir, c2, &record);
  g_assert_cmpuint (record.sequence, >=, saved.last_done_sequence);

  /* Before the interrupt the guest writes at least one more record. The
   * clean shutdown leaves O1 with it, ready to commit. */
  wait_for_records (s1, record.sequence + 1, &status);
  boot_run_interrupt (run);
  g_clear_pointer (&run, boot_run_free);
  g_assert_true (g_file_test (o1, G_FILE_TEST_IS_REGULAR));
  {
    g_autofree char *committed = g_build_filename (tmpdir, "o1.hexz", NULL);
    HexzTestGuestRecord last;

    out = RUN_TOOL (0, "commit", "--base", base, "--overlay", o1, "--output", committed);
    g_clear_pointer (&out, g_free);
    read_snapshot_record (tmpdir, committed, &last);
    g_assert_cmpuint (last.sequence, >=, status.last_done_sequence);
    g_unlink (committed);
  }

  /* Boot C1 with a fresh overlay, paused: the memory is the one C1
   * recorded. Then the guest resumes where C1 stopped it. */
  run = boot_run_start (tmpdir, "boot2", (const char * const []) {
                          c1, "--kernel", guest, "--append", "fill=8M",
                          "--overlay", o2, "--qmp", s2, "--paused", NULL });
  g_assert_true (run->restored_memory);
  read_status (s2, &status);
  g_assert_cmpuint (status.counter, ==, saved.counter);
  g_assert_cmpuint (status.last_done_sequence, ==, saved.last_done_sequence);
  resume (s2);
  check_resumed (s2, &saved);

  /* C3: a thin snapshot of the resumed machine, on top of C1. */
  pause_and_read_status (s2, &thin_saved);
  out = RUN_TOOL (0, "snap", "--socket", s2, "--overlay", o2, "--base", c1,
                  "--output", c3, "--thin", "--mode", "paused");
  g_clear_pointer (&out, g_free);
  resume (s2);

  read_snapshot_record (tmpdir, c3, &record);
  g_assert_true (hexz_test_guest_check_consistent (&thin_saved, &record, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_test_guest_check_progress (&saved, &thin_saved, &error));
  g_assert_no_error (error);

  boot_run_interrupt (run);
  g_clear_pointer (&run, boot_run_free);

  /* Boot the thin snapshot, paused: its disk reads through C1, and its
   * memory is the one read before C3 was taken. */
  run = boot_run_start (tmpdir, "boot3", (const char * const []) {
                          c3, "--kernel", guest, "--append", "fill=8M",
                          "--overlay", o3, "--paused", NULL });
  g_assert_true (run->restored_memory);
  g_assert_true (g_str_has_prefix (run->qmp_socket, run->directory));
  read_status (run->qmp_socket, &status);
  g_assert_cmpuint (status.counter, ==, thin_saved.counter);
  g_assert_cmpuint (status.last_done_sequence, ==, thin_saved.last_done_sequence);
  resume (run->qmp_socket);
  check_resumed (run->qmp_socket, &thin_saved);

  boot_run_interrupt (run);
  g_clear_pointer (&run, boot_run_free);

  /* Loaded paused, the live snapshot's memory must fit its disk: the
   * consistency check that C1 passed above. */
  run = boot_run_start (tmpdir, "boot4", (const char * const []) {
                          c2, "--kernel", guest, "--append", "fill=8M", "--paused", NULL });
  g_assert_true (run->restored_memory);
  read_status (run->qmp_socket, &status);
  read_snapshot_record (tmpdir, c2, &record);
  g_assert_true (hexz_test_guest_check_consistent (&status, &record, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_test_guest_check_progress (&saved, &status, &error));
  g_assert_no_error (error);
  resume (run->qmp_socket);
  check_resumed (run->qmp_socket, &status);
  boot_run_interrupt (run);

  remove_tree (tmpdir);
}

/* Writes a snapshot with a 4 MiB zero disk and a small memory stream
 * recorded from a machine with @ram bytes of RAM. The memory is not a
 * real migration stream: the tests that use it never load it. */
static char *
make_memory_snapshot_with (const char *tmpdir,
                           guint64     ram,
                           JsonObject *metadata)
{
  char *path = g_build_filename (tmpdir, "memory.hexz", NULL);
  g_autoptr(HexzSnapshotWriter) writer = hexz_snapshot_writer_new_for_path (path);
  g_autoptr(JsonNode) ram_node = json_node_init_int (json_node_alloc (), (gint64) ram);
  g_autoptr(GError) error = NULL;
  const guint8 memory[4096] = { 0x51, 0x45, 0x56, 0x4d };
  JsonObjectIter iter;
  const char *key;
  JsonNode *value;

  hexz_snapshot_writer_set_metadata (writer, "ram-size", ram_node);
  if (metadata != NULL)
    {
      json_object_iter_init (&iter, metadata);
      while (json_object_iter_next (&iter, &key, &value))
        hexz_snapshot_writer_set_metadata (writer, key, value);
    }
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK,
                                                    HEXZ_TEST_GUEST_DISK_SIZE, &error));
  g_assert_true (hexz_snapshot_writer_write_zeros (writer, HEXZ_TEST_GUEST_DISK_SIZE, NULL,
                                                   &error));
  g_assert_true (hexz_snapshot_writer_end_stream (writer, NULL, &error));
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_MEMORY,
                                                    sizeof memory, &error));
  g_assert_true (hexz_snapshot_writer_write (writer, memory, sizeof memory, NULL, &error));
  g_assert_true (hexz_snapshot_writer_end_stream (writer, NULL, &error));
  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);

  return path;
}

static char *
make_memory_snapshot (const char *tmpdir,
                      guint64     ram)
{
  return make_memory_snapshot_with (tmpdir, ram, NULL);
}

static void
on_start_done (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  CommandResult *command = user_data;

  hexz_boot_start_finish (HEXZ_BOOT (source), result, &command->error);
  command->done = TRUE;
}

static void
on_stop_done (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  CommandResult *command = user_data;

  hexz_boot_stop_finish (HEXZ_BOOT (source), result, &command->error);
  command->done = TRUE;
}

static void
on_wait_done (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  CommandResult *command = user_data;

  hexz_boot_wait_finish (HEXZ_BOOT (source), result, &command->error);
  command->done = TRUE;
}

static guint
count_boot_folders (void)
{
  g_autoptr(GDir) dir = g_dir_open (g_get_tmp_dir (), 0, NULL);
  const char *name;
  guint count = 0;

  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      if (g_str_has_prefix (name, "hexz-boot-"))
        count++;
    }

  return count;
}

/* A snapshot whose recorded RAM size differs from the requested one is
 * rejected before nbdkit or QEMU starts. */
static void
test_boot_ram_mismatch (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_autofree char *snapshot = NULL;
  g_autofree char *socket_path = NULL;
  g_autofree char *overlay = NULL;
  g_autofree char *err = NULL;
  g_autoptr(HexzBoot) boot = NULL;
  CommandResult command = { FALSE, NULL, NULL };
  guint folders_before;

  g_assert_no_error (error);
  snapshot = make_memory_snapshot (tmpdir, GUEST_RAM);
  socket_path = g_build_filename (tmpdir, "qmp.sock", NULL);
  overlay = g_build_filename (tmpdir, "disk.overlay", NULL);
  folders_before = count_boot_folders ();

  /* Through the library: no child and no private folder. */
  boot = hexz_boot_new (snapshot);
  hexz_boot_set_ram (boot, 2 * GUEST_RAM);
  hexz_boot_set_qmp_socket (boot, socket_path);
  hexz_boot_set_overlay (boot, overlay);
  hexz_boot_start_async (boot, NULL, on_start_done, &command);
  HEXZ_TEST_RUN_UNTIL (command.done, BOOT_TIMEOUT_MS);

  g_assert_nonnull (command.error);
  g_test_message ("HexzBoot: %s", command.error->message);
  g_assert_error (command.error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_RAM_MISMATCH);
  g_assert_nonnull (strstr (command.error->message, "64.0"));
  g_assert_nonnull (strstr (command.error->message, "128.0"));
  g_clear_error (&command.error);
  g_assert_cmpint (hexz_boot_get_qemu_pid (boot), ==, 0);
  g_assert_cmpint (hexz_boot_get_nbdkit_pid (boot), ==, 0);
  g_assert_null (hexz_boot_get_directory (boot));
  g_assert_false (hexz_boot_get_running (boot));
  g_assert_cmpuint (count_boot_folders (), ==, folders_before);

  /* Through the tool: the same refusal, and no file created. */
  err = RUN_TOOL (1, "boot", snapshot, "--ram", "128", "--qmp", socket_path,
                  "--overlay", overlay, "--accel", "tcg");
  g_test_message ("hexz-snap boot: %s", err);
  g_assert_nonnull (strstr (err, "64.0"));
  g_assert_nonnull (strstr (err, "128.0"));
  g_assert_false (g_file_test (socket_path, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (overlay, G_FILE_TEST_EXISTS));
  g_assert_cmpuint (count_boot_folders (), ==, folders_before);

  remove_tree (tmpdir);
}

/* Starts a boot of @snapshot configured by @configure and expects it to be
 * rejected as invalid input before anything starts; returns the message. */
static char *
start_expecting_invalid_input (const char *snapshot,
                               void      (*configure) (HexzBoot *boot, const char *value),
                               const char *value)
{
  g_autoptr(HexzBoot) boot = hexz_boot_new (snapshot);
  CommandResult command = { FALSE, NULL, NULL };
  char *message;

  configure (boot, value);
  hexz_boot_start_async (boot, NULL, on_start_done, &command);
  HEXZ_TEST_RUN_UNTIL (command.done, BOOT_TIMEOUT_MS);

  g_assert_nonnull (command.error);
  g_test_message ("HexzBoot: %s", command.error->message);
  g_assert_error (command.error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT);
  g_assert_cmpint (hexz_boot_get_qemu_pid (boot), ==, 0);
  g_assert_cmpint (hexz_boot_get_nbdkit_pid (boot), ==, 0);
  g_assert_null (hexz_boot_get_directory (boot));
  message = g_strdup (command.error->message);
  g_clear_error (&command.error);

  return message;
}

/* An accelerator, overlay, QMP socket path or QEMU program that QEMU or
 * nbdkit would reject is rejected before either starts, with a message
 * naming it. */
static void
test_boot_invalid_paths (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_autofree char *snapshot = NULL;
  g_autofree char *missing_folder = NULL;
  g_autofree char *in_missing_folder = NULL;
  g_autofree char *meta_name = NULL;
  g_autofree char *long_socket = NULL;
  guint folders_before = count_boot_folders ();
  const struct {
    void       (*configure) (HexzBoot *boot, const char *value);
    const char  *value;
    const char  *message_part;
  } cases[] = {
    { hexz_boot_set_accel, "foo", "Unknown accelerator “foo”" },
    { hexz_boot_set_overlay, NULL, "is a folder" },
    { hexz_boot_set_overlay, NULL, "ends in “.meta”" },
    { hexz_boot_set_overlay, NULL, "does not exist" },
    { hexz_boot_set_qmp_socket, NULL, "does not exist" },
    { hexz_boot_set_qmp_socket, NULL, "too long for a unix socket" },
    { hexz_boot_set_qemu_binary, NULL, "was not found: install QEMU" },
  };
  const char *values[G_N_ELEMENTS (cases)];

  g_assert_no_error (error);
  snapshot = make_memory_snapshot (tmpdir, GUEST_RAM);
  missing_folder = g_build_filename (tmpdir, "missing", NULL);
  in_missing_folder = g_build_filename (missing_folder, "vm.overlay", NULL);
  meta_name = g_build_filename (tmpdir, "vm.meta", NULL);
  long_socket = g_strdup_printf ("%s/%0200d.sock", tmpdir, 0);

  values[0] = cases[0].value;
  values[1] = tmpdir;
  values[2] = meta_name;
  values[3] = in_missing_folder;
  values[4] = in_missing_folder;
  values[5] = long_socket;
  values[6] = in_missing_folder;

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *message = start_expecting_invalid_input (snapshot, cases[i].configure,
                                                                values[i]);

      g_assert_nonnull (strstr (message, cases[i].message_part));
      g_assert_nonnull (strstr (message, values[i]));
    }

  g_assert_false (g_file_test (meta_name, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (missing_folder, G_FILE_TEST_EXISTS));
  g_assert_cmpuint (count_boot_folders (), ==, folders_before);

  /* The tool rejects an unknown accelerator as a usage error, and the
   * others with the library's message. */
  {
    g_autofree char *err = RUN_TOOL (2, "boot", snapshot, "--accel", "foo");

    g_assert_nonnull (strstr (err, "Unknown accelerator “foo”: use kvm or tcg"));
  }
  {
    g_autofree char *err = RUN_TOOL (1, "boot", snapshot, "--overlay", in_missing_folder,
                                     "--accel", "tcg");

    g_assert_nonnull (strstr (err, in_missing_folder));
    g_assert_nonnull (strstr (err, "does not exist: create it"));
  }
  g_assert_cmpuint (count_boot_folders (), ==, folders_before);

  remove_tree (tmpdir);
}

/* Starts a boot of @snapshot with @cpus and expects the machine check to
 * refuse it before anything starts; returns the error message. */
static char *
start_expecting_machine_mismatch (const char *snapshot,
                                  guint       cpus)
{
  g_autoptr(HexzBoot) boot = hexz_boot_new (snapshot);
  CommandResult command = { FALSE, NULL, NULL };
  char *message;

  hexz_boot_set_cpus (boot, cpus);
  hexz_boot_start_async (boot, NULL, on_start_done, &command);
  HEXZ_TEST_RUN_UNTIL (command.done, BOOT_TIMEOUT_MS);

  g_assert_nonnull (command.error);
  g_test_message ("HexzBoot: %s", command.error->message);
  g_assert_error (command.error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_MACHINE_MISMATCH);
  g_assert_cmpint (hexz_boot_get_qemu_pid (boot), ==, 0);
  g_assert_cmpint (hexz_boot_get_nbdkit_pid (boot), ==, 0);
  g_assert_null (hexz_boot_get_directory (boot));
  message = g_strdup (command.error->message);
  g_clear_error (&command.error);

  return message;
}

/* A live snapshot records the CPU count and the kernel: another CPU count
 * is refused, and so is a boot without a kernel, with an error naming the
 * recorded kernel and command line. */
static void
test_boot_machine_mismatch (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_autoptr(JsonObject) metadata = json_object_new ();
  g_autofree char *snapshot = NULL;
  g_autofree char *cpus_message = NULL;
  g_autofree char *kernel_message = NULL;
  g_autofree char *err = NULL;
  guint folders_before = count_boot_folders ();

  g_assert_no_error (error);
  json_object_set_int_member (metadata, "cpus", 2);
  json_object_set_string_member (metadata, "machine-type", "pc-i440fx-7.2");
  json_object_set_string_member (metadata, "kernel", "/recorded/vmlinuz");
  json_object_set_string_member (metadata, "append", "console=ttyS0 fill=8M");
  snapshot = make_memory_snapshot_with (tmpdir, GUEST_RAM, metadata);

  cpus_message = start_expecting_machine_mismatch (snapshot, 1);
  g_assert_nonnull (strstr (cpus_message, "is 2"));
  g_assert_nonnull (strstr (cpus_message, "is 1"));

  kernel_message = start_expecting_machine_mismatch (snapshot, 0);
  g_assert_nonnull (strstr (kernel_message, "“/recorded/vmlinuz”"));
  g_assert_nonnull (strstr (kernel_message, "“console=ttyS0 fill=8M”"));
  g_assert_cmpuint (count_boot_folders (), ==, folders_before);

  err = RUN_TOOL (1, "boot", snapshot, "--cpus", "3", "--accel", "tcg");
  g_test_message ("hexz-snap boot: %s", err);
  g_assert_nonnull (strstr (err, "is 3"));
  g_assert_cmpuint (count_boot_folders (), ==, folders_before);

  remove_tree (tmpdir);
}

/* Without --overlay, the overlay lives in the private folder and is gone
 * with it after the machine stops. */
static void
test_boot_ephemeral_overlay (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = NULL;
  g_autofree char *base = NULL;
  g_autofree char *overlay = NULL;
  g_autofree char *meta = NULL;
  g_autoptr(BootRun) run = NULL;
  HexzTestGuestStatus status;
  GStatBuf st;

  if (skip_without_children ())
    return;

  tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_assert_no_error (error);
  base = make_base_snapshot (tmpdir);

  run = boot_run_start (tmpdir, "boot", (const char * const []) {
                          base, "--kernel", hexz_test_guest_get_path (),
                          "--append", "fill=1M", NULL });
  wait_for_records (run->qmp_socket, 1, &status);

  overlay = g_build_filename (run->directory, "disk.overlay", NULL);
  meta = hexz_overlay_get_meta_path_for (overlay);
  g_assert_true (g_file_test (overlay, G_FILE_TEST_IS_REGULAR));
  g_assert_cmpint (g_stat (meta, &st), ==, 0);
  g_assert_cmpint (st.st_size, >=, 8);
  g_assert_cmpint (g_stat (run->directory, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0700);
  g_assert_cmpint (g_stat (run->qmp_socket, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  {
    g_autofree char *nbd_socket = g_build_filename (run->directory, "nbd.sock", NULL);

    g_assert_cmpint (g_stat (nbd_socket, &st), ==, 0);
    g_assert_true (S_ISSOCK (st.st_mode));
    g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  }

  boot_run_interrupt (run);
  g_assert_false (g_file_test (overlay, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (meta, G_FILE_TEST_EXISTS));

  remove_tree (tmpdir);
}

/* The library call: start, wait and stop a disk-only boot. */
static void
test_boot_library_stop (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = NULL;
  g_autofree char *base = NULL;
  g_autofree char *directory = NULL;
  g_autofree char *socket_path = NULL;
  g_autoptr(HexzBoot) boot = NULL;
  CommandResult start = { FALSE, NULL, NULL };
  CommandResult wait = { FALSE, NULL, NULL };
  CommandResult stop = { FALSE, NULL, NULL };
  HexzTestGuestStatus status;
  GPid qemu_pid;
  GPid nbdkit_pid;

  if (skip_without_children ())
    return;

  tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_assert_no_error (error);
  base = make_base_snapshot (tmpdir);

  boot = hexz_boot_new (base);
  hexz_boot_set_accel (boot, boot_accel ());
  hexz_boot_set_kernel (boot, hexz_test_guest_get_path ());
  hexz_boot_set_append (boot, "fill=1M");
  hexz_boot_set_ram (boot, GUEST_RAM);
  hexz_boot_start_async (boot, NULL, on_start_done, &start);
  HEXZ_TEST_RUN_UNTIL (start.done, BOOT_TIMEOUT_MS);
  g_assert_no_error (start.error);

  g_assert_true (hexz_boot_get_running (boot));
  g_assert_false (hexz_boot_get_restored_memory (boot));
  qemu_pid = hexz_boot_get_qemu_pid (boot);
  nbdkit_pid = hexz_boot_get_nbdkit_pid (boot);
  g_assert_true (pid_exists (qemu_pid));
  g_assert_true (pid_exists (nbdkit_pid));
  directory = g_strdup (hexz_boot_get_directory (boot));
  socket_path = g_strdup (hexz_boot_get_qmp_socket (boot));
  g_assert_true (g_str_has_prefix (socket_path, directory));

  /* The user's monitor is free while the boot keeps its own connected. */
  wait_for_records (socket_path, 1, &status);

  /* A cancelled wait returns at once and leaves the machine running. */
  {
    g_autoptr(GCancellable) cancellable = g_cancellable_new ();

    hexz_boot_wait_async (boot, cancellable, on_wait_done, &wait);
    g_cancellable_cancel (cancellable);
    HEXZ_TEST_RUN_UNTIL (wait.done, BOOT_TIMEOUT_MS);
    g_assert_error (wait.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_clear_error (&wait.error);
    wait.done = FALSE;
    g_assert_true (hexz_boot_get_running (boot));
    g_assert_true (pid_exists (qemu_pid));
  }

  hexz_boot_wait_async (boot, NULL, on_wait_done, &wait);
  hexz_boot_stop_async (boot, HEXZ_BOOT_STOP_QUIT, NULL, on_stop_done, &stop);
  HEXZ_TEST_RUN_UNTIL (stop.done && wait.done, BOOT_TIMEOUT_MS);
  g_assert_no_error (stop.error);
  g_assert_no_error (wait.error);

  g_assert_false (hexz_boot_get_running (boot));
  g_assert_false (pid_exists (qemu_pid));
  g_assert_false (pid_exists (nbdkit_pid));
  g_assert_false (g_file_test (directory, G_FILE_TEST_EXISTS));

  remove_tree (tmpdir);
}

/* The test guest has no ACPI, so it ignores the power button: the stop
 * falls back to "quit" after the stop timeout. */
static void
test_boot_library_powerdown (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = NULL;
  g_autofree char *base = NULL;
  g_autoptr(HexzBoot) boot = NULL;
  CommandResult start = { FALSE, NULL, NULL };
  CommandResult stop = { FALSE, NULL, NULL };
  gint64 stop_begin;
  gint64 stop_time;

  if (skip_without_children ())
    return;

  tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_assert_no_error (error);
  base = make_base_snapshot (tmpdir);

  boot = hexz_boot_new (base);
  hexz_boot_set_accel (boot, boot_accel ());
  hexz_boot_set_kernel (boot, hexz_test_guest_get_path ());
  hexz_boot_set_append (boot, "fill=1M");
  hexz_boot_set_stop_timeout (boot, 300);
  hexz_boot_start_async (boot, NULL, on_start_done, &start);
  HEXZ_TEST_RUN_UNTIL (start.done, BOOT_TIMEOUT_MS);
  g_assert_no_error (start.error);

  stop_begin = g_get_monotonic_time ();
  hexz_boot_stop_async (boot, HEXZ_BOOT_STOP_POWERDOWN, NULL, on_stop_done, &stop);
  HEXZ_TEST_RUN_UNTIL (stop.done, BOOT_TIMEOUT_MS);
  stop_time = g_get_monotonic_time () - stop_begin;
  g_assert_no_error (stop.error);

  g_test_message ("Powerdown fell back to quit after %" G_GINT64_FORMAT " ms", stop_time / 1000);
  g_assert_cmpint (stop_time, >=, 300 * 1000);
  g_assert_false (pid_exists (hexz_boot_get_qemu_pid (boot)));
  g_assert_false (pid_exists (hexz_boot_get_nbdkit_pid (boot)));

  remove_tree (tmpdir);
}

/* Cancelling the start stops what it started. */
static void
test_boot_library_cancel (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = NULL;
  g_autofree char *base = NULL;
  g_autoptr(HexzBoot) boot = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  CommandResult start = { FALSE, NULL, NULL };
  guint folders_before;

  if (skip_without_children ())
    return;

  tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_assert_no_error (error);
  base = make_base_snapshot (tmpdir);
  folders_before = count_boot_folders ();

  boot = hexz_boot_new (base);
  hexz_boot_set_accel (boot, boot_accel ());
  hexz_boot_set_kernel (boot, hexz_test_guest_get_path ());
  hexz_boot_set_append (boot, "fill=1M");

  /* Cancel once nbdkit runs, before QEMU replies on its monitor. */
  hexz_boot_start_async (boot, cancellable, on_start_done, &start);
  HEXZ_TEST_RUN_UNTIL (start.done || hexz_boot_get_nbdkit_pid (boot) != 0, BOOT_TIMEOUT_MS);
  g_cancellable_cancel (cancellable);
  HEXZ_TEST_RUN_UNTIL (start.done, BOOT_TIMEOUT_MS);

  g_assert_error (start.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&start.error);
  g_assert_false (hexz_boot_get_running (boot));
  g_assert_false (pid_exists (hexz_boot_get_nbdkit_pid (boot)));
  g_assert_false (pid_exists (hexz_boot_get_qemu_pid (boot)));
  g_assert_cmpuint (count_boot_folders (), ==, folders_before);

  /* Already cancelled: nothing starts. */
  g_clear_object (&boot);
  start.done = FALSE;
  boot = hexz_boot_new (base);
  hexz_boot_start_async (boot, cancellable, on_start_done, &start);
  HEXZ_TEST_RUN_UNTIL (start.done, BOOT_TIMEOUT_MS);
  g_assert_error (start.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&start.error);
  g_assert_cmpint (hexz_boot_get_nbdkit_pid (boot), ==, 0);

  remove_tree (tmpdir);
}

/* QEMU rejecting its command line ends the start with QEMU's own words,
 * and nothing stays behind. */
static void
test_boot_qemu_fails (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = NULL;
  g_autofree char *base = NULL;
  g_autofree char *err = NULL;
  guint folders_before;

  if (skip_without_children ())
    return;

  tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_assert_no_error (error);
  base = make_base_snapshot (tmpdir);
  folders_before = count_boot_folders ();

  err = RUN_TOOL (1, "boot", base, "--accel", "tcg", "--", "-no-such-option");
  g_test_message ("hexz-snap boot: %s", err);
  g_assert_nonnull (strstr (err, "QEMU exited with status 1"));
  g_assert_nonnull (strstr (err, "-no-such-option"));
  g_assert_cmpuint (count_boot_folders (), ==, folders_before);

  remove_tree (tmpdir);
}

/* An overlay that already contains changes cannot go with a snapshot's
 * memory: the disk would not match it. */
static void
test_boot_used_overlay (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_autofree char *snapshot = NULL;
  g_autofree char *overlay_path = NULL;
  g_autofree char *err = NULL;
  g_autoptr(HexzOverlay) overlay = NULL;
  const guint8 data[16] = { 1, 2, 3 };
  guint folders_before;

  g_assert_no_error (error);
  snapshot = make_memory_snapshot (tmpdir, GUEST_RAM);
  overlay_path = g_build_filename (tmpdir, "used.overlay", NULL);
  overlay = hexz_overlay_create_path (overlay_path, HEXZ_TEST_GUEST_DISK_SIZE,
                                      HEXZ_OVERLAY_CREATE_NONE, &error);
  g_assert_no_error (error);
  g_assert_true (hexz_overlay_write (overlay, 8192, data, sizeof data, &error));
  g_assert_true (hexz_overlay_sync (overlay, &error));
  g_assert_no_error (error);
  g_clear_object (&overlay);
  folders_before = count_boot_folders ();

  err = RUN_TOOL (1, "boot", snapshot, "--overlay", overlay_path, "--accel", "tcg");
  g_test_message ("hexz-snap boot: %s", err);
  g_assert_nonnull (strstr (err, "already contains 1 modified page,"));
  g_assert_cmpuint (count_boot_folders (), ==, folders_before);

  remove_tree (tmpdir);
}

/* Waits for hexz-snap boot to exit by itself and returns its status and
 * standard error; checks that nothing of the machine remains. */
static int
boot_run_wait_exit (BootRun  *run,
                    char    **err)
{
  gboolean exited = FALSE;
  int status;

  g_subprocess_wait_async (run->process, NULL, on_process_exited, &exited);
  HEXZ_TEST_RUN_UNTIL (exited, BOOT_TIMEOUT_MS);
  g_assert_true (g_subprocess_get_if_exited (run->process));
  status = g_subprocess_get_exit_status (run->process);
  g_clear_object (&run->process);

  g_assert_true (g_file_get_contents (run->stderr_path, err, NULL, NULL));
  g_test_message ("hexz-snap boot exited with status %d: %s", status, *err);
  g_assert_false (pid_exists (run->qemu_pid));
  g_assert_false (pid_exists (run->nbdkit_pid));
  g_assert_false (g_file_test (run->directory, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (run->qmp_socket, G_FILE_TEST_EXISTS));

  return status;
}

/* hexz-snap boot runs until QEMU exits: after a QMP quit it exits with
 * status 0, and when nbdkit dies under the machine it stops QEMU and
 * prints the reason on one line. */
static void
test_boot_child_exits (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = NULL;
  g_autofree char *base = NULL;
  g_autofree char *err = NULL;
  g_autoptr(BootRun) run = NULL;
  g_autoptr(HexzQmpClient) client = NULL;
  g_autoptr(JsonNode) result = NULL;
  HexzTestGuestStatus status;

  if (skip_without_children ())
    return;

  tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_assert_no_error (error);
  base = make_base_snapshot (tmpdir);

  run = boot_run_start (tmpdir, "quit", (const char * const []) {
                          base, "--kernel", hexz_test_guest_get_path (),
                          "--append", "fill=1M", NULL });
  wait_for_records (run->qmp_socket, 1, &status);
  client = qmp_connect (run->qmp_socket);
  result = qmp_execute (client, "quit", NULL);
  g_assert_cmpint (boot_run_wait_exit (run, &err), ==, 0);
  g_assert_cmpstr (err, ==, "");
  g_clear_object (&client);
  g_clear_pointer (&err, g_free);
  g_clear_pointer (&run, boot_run_free);

  run = boot_run_start (tmpdir, "nbdkit-killed", (const char * const []) {
                          base, "--kernel", hexz_test_guest_get_path (),
                          "--append", "fill=1M", NULL });
  wait_for_records (run->qmp_socket, 1, &status);
  g_assert_cmpint (kill (run->nbdkit_pid, SIGKILL), ==, 0);
  g_assert_cmpint (boot_run_wait_exit (run, &err), ==, 1);
  g_assert_cmpstr (err, ==, "hexz-snap: The machine was stopped because its disk server "
                            "stopped: nbdkit was killed by signal 9\n");

  remove_tree (tmpdir);
}

/* An overlay written on top of another snapshot is rejected before
 * anything starts, not by nbdkit after the start. */
static void
test_boot_overlay_other_base (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_autofree char *snapshot = NULL;
  g_autofree char *other_path = NULL;
  g_autofree char *overlay_path = NULL;
  g_autoptr(HexzSnapshotWriter) writer = NULL;
  g_autoptr(HexzSnapshot) other = NULL;
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(HexzBoot) boot = NULL;
  CommandResult command = { FALSE, NULL, NULL };
  guint folders_before;
  char id[64];
  int fd;

  g_assert_no_error (error);
  snapshot = make_memory_snapshot (tmpdir, GUEST_RAM);

  other_path = g_build_filename (tmpdir, "other.hexz", NULL);
  writer = hexz_snapshot_writer_new_for_path (other_path);
  g_assert_true (hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK,
                                                    HEXZ_TEST_GUEST_DISK_SIZE, &error));
  g_assert_true (hexz_snapshot_writer_write_zeros (writer, HEXZ_TEST_GUEST_DISK_SIZE, NULL,
                                                   &error));
  g_assert_true (hexz_snapshot_writer_end_stream (writer, NULL, &error));
  g_assert_true (hexz_snapshot_writer_close (writer, NULL, &error));
  g_assert_no_error (error);
  other = hexz_snapshot_open_path (other_path, NULL, &error);
  g_assert_no_error (error);

  overlay_path = g_build_filename (tmpdir, "other.overlay", NULL);
  overlay = hexz_overlay_create_path (overlay_path, HEXZ_TEST_GUEST_DISK_SIZE,
                                      HEXZ_OVERLAY_CREATE_NONE, &error);
  g_assert_no_error (error);
  g_clear_object (&overlay);
  fd = g_open (overlay_path, O_RDWR | O_CLOEXEC, 0);
  g_assert_cmpint (fd, >=, 0);
  hexz_overlay_record_base_id (fd, overlay_path, other);
  close (fd);

  if (getxattr (overlay_path, "user.hexz.base-id", id, sizeof id) < 0)
    {
      g_test_skip ("The file system keeps no user extended attributes");
      remove_tree (tmpdir);
      return;
    }

  folders_before = count_boot_folders ();
  boot = hexz_boot_new (snapshot);
  hexz_boot_set_overlay (boot, overlay_path);
  hexz_boot_start_async (boot, NULL, on_start_done, &command);
  HEXZ_TEST_RUN_UNTIL (command.done, BOOT_TIMEOUT_MS);

  g_assert_nonnull (command.error);
  g_test_message ("HexzBoot: %s", command.error->message);
  g_assert_error (command.error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_WRONG_BASE);
  g_assert_nonnull (strstr (command.error->message, hexz_snapshot_get_id (other)));
  g_clear_error (&command.error);
  g_assert_cmpint (hexz_boot_get_qemu_pid (boot), ==, 0);
  g_assert_cmpint (hexz_boot_get_nbdkit_pid (boot), ==, 0);
  g_assert_cmpuint (count_boot_folders (), ==, folders_before);

  remove_tree (tmpdir);
}

/* When hexz-snap boot dies without cleaning up, its children follow it:
 * the kernel sends them SIGTERM. */
static void
test_boot_parent_killed (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpdir = NULL;
  g_autofree char *base = NULL;
  g_autoptr(BootRun) run = NULL;
  gboolean exited = FALSE;

  if (skip_without_children ())
    return;

  tmpdir = g_dir_make_tmp ("hexz-test-boot-XXXXXX", &error);
  g_assert_no_error (error);
  base = make_base_snapshot (tmpdir);

  run = boot_run_start (tmpdir, "boot", (const char * const []) {
                          base, "--kernel", hexz_test_guest_get_path (),
                          "--append", "fill=1M", NULL });

  g_subprocess_force_exit (run->process);
  g_subprocess_wait_async (run->process, NULL, on_process_exited, &exited);
  HEXZ_TEST_RUN_UNTIL (exited, BOOT_TIMEOUT_MS);
  HEXZ_TEST_RUN_UNTIL (!pid_exists (run->qemu_pid) && !pid_exists (run->nbdkit_pid),
                       BOOT_TIMEOUT_MS);

  /* No process remained to remove the private folder. */
  remove_tree (run->directory);
  remove_tree (tmpdir);
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *tmp_root = NULL;
  int status;

  g_test_init (&argc, &argv, NULL);

  /* A temporary folder of this run's own, so that counting the private
   * folders of boots is not disturbed by other runs on the machine. The
   * boots started by hexz-snap inherit it through TMPDIR. */
  tmp_root = g_build_filename (g_getenv ("TMPDIR") != NULL ? g_getenv ("TMPDIR") : "/tmp",
                               "hexz-test-boot-run-XXXXXX", NULL);
  g_assert_nonnull (g_mkdtemp (tmp_root));
  g_setenv ("TMPDIR", tmp_root, TRUE);

  /* The build tree's plugin, unless the caller chose one. */
  if (g_getenv ("HEXZ_NBDKIT_PLUGIN") == NULL && g_getenv ("HEXZ_BUILD_ROOT") != NULL)
    {
      g_autofree char *plugin = g_build_filename (g_getenv ("HEXZ_BUILD_ROOT"), "tools",
                                                  "hexz-plugin.so", NULL);

      g_setenv ("HEXZ_NBDKIT_PLUGIN", plugin, TRUE);
    }

  /* In an AddressSanitizer build, nbdkit loads the instrumented plugin only
   * with the runtime preloaded. The children (hexz-snap, nbdkit, QEMU)
   * inherit the preload and run without leak detection: nbdkit and QEMU
   * leak at exit and are not ours, and hexz-snap passes its environment on
   * to them. This process read its options at start and keeps detecting
   * leaks. */
  if (g_getenv ("HEXZ_ASAN_RUNTIME") != NULL)
    {
      const char *options = g_getenv ("ASAN_OPTIONS");
      g_autofree char *child_options = g_strconcat (options != NULL ? options : "",
                                                    options != NULL ? ":" : "",
                                                    "detect_leaks=0", NULL);

      g_setenv ("LD_PRELOAD", g_getenv ("HEXZ_ASAN_RUNTIME"), TRUE);
      g_setenv ("ASAN_OPTIONS", child_options, TRUE);
    }

  g_test_add_func ("/boot/ram-mismatch", test_boot_ram_mismatch);
  g_test_add_func ("/boot/machine-mismatch", test_boot_machine_mismatch);
  g_test_add_func ("/boot/invalid-paths", test_boot_invalid_paths);
  g_test_add_func ("/boot/library/stop", test_boot_library_stop);
  g_test_add_func ("/boot/library/cancel", test_boot_library_cancel);
  g_test_add_func ("/boot/library/powerdown", test_boot_library_powerdown);
  g_test_add_func ("/boot/ephemeral-overlay", test_boot_ephemeral_overlay);
  g_test_add_func ("/boot/used-overlay", test_boot_used_overlay);
  g_test_add_func ("/boot/overlay-other-base", test_boot_overlay_other_base);
  g_test_add_func ("/boot/qemu-fails", test_boot_qemu_fails);
  g_test_add_func ("/boot/parent-killed", test_boot_parent_killed);
  g_test_add_func ("/boot/child-exits", test_boot_child_exits);
  g_test_add_func ("/boot/full-loop", test_boot_full_loop);

  status = g_test_run ();
  g_rmdir (tmp_root);

  return status;
}
