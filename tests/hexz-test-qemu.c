/* hexz-test-qemu.c: start and stop a QEMU child for tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Each QEMU runs as a direct child in its own temporary folder, with its
 * QMP monitor on a unix socket in that folder and its output in
 * `qemu.log`. The test keeps the GSubprocess and stops exactly that
 * process; nothing here signals a process by name.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "hexz-test-qemu.h"

#define QEMU_PROGRAM "qemu-system-x86_64"

struct _HexzTestQemu
{
  char        *dir;
  char        *qmp_path;
  char        *log_path;
  const char  *accel;
  GSubprocess *process;
};

/* Picks the accelerator: HEXZ_TEST_ACCEL=kvm|tcg when set, otherwise KVM
 * when /dev/kvm can be opened for reading and writing, as QEMU needs. */
const char *
hexz_test_qemu_choose_accel (void)
{
  const char *forced = g_getenv ("HEXZ_TEST_ACCEL");
  int fd;

  if (forced != NULL && forced[0] != '\0')
    {
      if (g_str_equal (forced, "kvm"))
        return "kvm";
      if (g_str_equal (forced, "tcg"))
        return "tcg";
      g_error ("HEXZ_TEST_ACCEL is “%s”; set it to kvm or tcg", forced);
    }

  fd = open ("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return "tcg";

  close (fd);
  return "kvm";
}

/* Runs in the child before exec: QEMU gets SIGKILL if the test process
 * dies without stopping it, for example on a failed assertion. */
static void
set_parent_death_signal (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static gboolean
process_has_exited (GSubprocess *process)
{
  /* GSubprocess reaps its child on GLib's worker thread, so this changes
   * without iterating the test's main context. */
  return g_subprocess_get_identifier (process) == NULL;
}

static gboolean
qmp_socket_accepts (const char *path)
{
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GSocketAddress) address = NULL;

  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return FALSE;

  socket = g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM,
                         G_SOCKET_PROTOCOL_DEFAULT, NULL);
  if (socket == NULL)
    return FALSE;

  address = g_unix_socket_address_new (path);
  return g_socket_connect (socket, address, NULL, NULL);
}

/* Starts QEMU with @extra_args (such as `-machine pc -m 64`) plus the
 * accelerator and a QMP socket, and waits for the socket. Returns NULL
 * after g_test_skip() when QEMU is not installed; fails the test when QEMU
 * does not start. */
HexzTestQemu *
hexz_test_qemu_start (const char * const *extra_args)
{
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  g_autofree char *program = g_find_program_in_path (QEMU_PROGRAM);
  HexzTestQemu *qemu;
  gint64 deadline;
  int log_fd;

  if (program == NULL)
    {
      g_test_skip (QEMU_PROGRAM " is not installed");
      return NULL;
    }

  qemu = g_new0 (HexzTestQemu, 1);
  qemu->dir = g_dir_make_tmp ("hexz-qemu-XXXXXX", &error);
  g_assert_no_error (error);
  qemu->qmp_path = g_build_filename (qemu->dir, "qmp.sock", NULL);
  qemu->log_path = g_build_filename (qemu->dir, "qemu.log", NULL);
  qemu->accel = hexz_test_qemu_choose_accel ();

  g_ptr_array_add (argv, g_strdup (program));
  g_ptr_array_add (argv, g_strdup ("-accel"));
  g_ptr_array_add (argv, g_strdup (qemu->accel));
  g_ptr_array_add (argv, g_strdup ("-qmp"));
  g_ptr_array_add (argv, g_strdup_printf ("unix:%s,server=on,wait=off", qemu->qmp_path));
  for (guint i = 0; extra_args != NULL && extra_args[i] != NULL; i++)
    g_ptr_array_add (argv, g_strdup (extra_args[i]));
  g_ptr_array_add (argv, NULL);

  /* One descriptor in append mode for both streams, so that neither
   * overwrites the other's lines. */
  log_fd = g_open (qemu->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  g_assert_cmpint (log_fd, >=, 0);
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_subprocess_launcher_set_child_setup (launcher, set_parent_death_signal, NULL, NULL);
  g_subprocess_launcher_take_stderr_fd (launcher, dup (log_fd));
  g_subprocess_launcher_take_stdout_fd (launcher, log_fd);
  qemu->process = g_subprocess_launcher_spawnv (launcher, (const char * const *) argv->pdata, &error);
  g_assert_no_error (error);

  g_test_message ("Started QEMU (pid %s, %s) in %s",
                  g_subprocess_get_identifier (qemu->process), qemu->accel, qemu->dir);

  /* QEMU creates the socket file before it listens on it, so wait until a
   * connection succeeds. QEMU drops this probe client at once. */
  deadline = g_get_monotonic_time () + HEXZ_TEST_QEMU_START_TIMEOUT_MS * 1000;
  while (!qmp_socket_accepts (qemu->qmp_path))
    {
      if (process_has_exited (qemu->process) || g_get_monotonic_time () > deadline)
        {
          g_autofree char *log = hexz_test_qemu_read_log (qemu);

          g_test_message ("QEMU output:\n%s", log);
          g_error ("QEMU did not listen on its QMP socket %s: %s", qemu->qmp_path,
                   process_has_exited (qemu->process) ? "it exited" : "timed out");
        }
      g_usleep (5000);
    }

  return qemu;
}

const char *
hexz_test_qemu_get_dir (HexzTestQemu *qemu)
{
  return qemu->dir;
}

const char *
hexz_test_qemu_get_qmp_path (HexzTestQemu *qemu)
{
  return qemu->qmp_path;
}

const char *
hexz_test_qemu_get_accel (HexzTestQemu *qemu)
{
  return qemu->accel;
}

GSubprocess *
hexz_test_qemu_get_process (HexzTestQemu *qemu)
{
  return qemu->process;
}

/* Returns what QEMU wrote to its standard output and error so far. */
char *
hexz_test_qemu_read_log (HexzTestQemu *qemu)
{
  char *contents = NULL;

  if (!g_file_get_contents (qemu->log_path, &contents, NULL, NULL))
    return g_strdup ("");

  return contents;
}

/* Waits up to @timeout_ms for QEMU to exit by itself. */
gboolean
hexz_test_qemu_wait_exit (HexzTestQemu *qemu,
                          guint         timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  while (!process_has_exited (qemu->process))
    {
      if (g_get_monotonic_time () > deadline)
        return FALSE;
      g_usleep (5000);
    }

  return TRUE;
}

/* Stops this QEMU: SIGTERM, then SIGKILL when it is still running after
 * HEXZ_TEST_QEMU_STOP_TIMEOUT_MS. Returns TRUE when SIGTERM was enough or
 * the process had already exited. */
gboolean
hexz_test_qemu_stop (HexzTestQemu *qemu)
{
  if (process_has_exited (qemu->process))
    return TRUE;

  g_subprocess_send_signal (qemu->process, SIGTERM);
  if (hexz_test_qemu_wait_exit (qemu, HEXZ_TEST_QEMU_STOP_TIMEOUT_MS))
    return TRUE;

  g_test_message ("QEMU ignored SIGTERM for %u ms; sending SIGKILL",
                  HEXZ_TEST_QEMU_STOP_TIMEOUT_MS);
  g_subprocess_force_exit (qemu->process);
  g_subprocess_wait (qemu->process, NULL, NULL);

  return FALSE;
}

typedef struct
{
  gboolean  done;
  GError   *error;
} ConnectResult;

static void
on_connected (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  ConnectResult *connect_result = user_data;

  hexz_qmp_client_connect_finish (HEXZ_QMP_CLIENT (source), result, &connect_result->error);
  connect_result->done = TRUE;
}

/* Connects a QMP client to this QEMU and fails the test when that fails. */
HexzQmpClient *
hexz_test_qemu_connect (HexzTestQemu *qemu)
{
  g_autoptr(HexzQmpClient) client = hexz_qmp_client_new ();
  ConnectResult result = { FALSE, NULL };

  hexz_qmp_client_connect_to_path_async (client, qemu->qmp_path, NULL, on_connected, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, HEXZ_TEST_QEMU_START_TIMEOUT_MS);
  g_assert_no_error (result.error);

  return g_steal_pointer (&client);
}

static void
remove_tree (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir != NULL)
    {
      while ((name = g_dir_read_name (dir)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, name, NULL);

          if (g_file_test (child, G_FILE_TEST_IS_DIR) &&
              !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
            remove_tree (child);
          else if (g_unlink (child) != 0)
            g_test_message ("Failed to remove %s: %s", child, g_strerror (errno));
        }
    }

  if (g_rmdir (path) != 0)
    g_test_message ("Failed to remove %s: %s", path, g_strerror (errno));
}

/* Stops QEMU if it still runs and removes its folder with everything the
 * test put there. */
void
hexz_test_qemu_free (HexzTestQemu *qemu)
{
  if (qemu == NULL)
    return;

  hexz_test_qemu_stop (qemu);
  remove_tree (qemu->dir);

  g_object_unref (qemu->process);
  g_free (qemu->dir);
  g_free (qemu->qmp_path);
  g_free (qemu->log_path);
  g_free (qemu);
}
