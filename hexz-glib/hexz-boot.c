/* hexz-boot.c: booting a virtual machine from a snapshot
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/**
 * HexzBoot:
 *
 * Boots a QEMU virtual machine from a snapshot file.
 *
 * A boot starts two children: nbdkit with `hexz-plugin.so`, which serves
 * the snapshot's disk with a copy-on-write overlay on a unix socket, and
 * QEMU with that socket as its disk. When the snapshot contains memory, QEMU
 * starts with `-incoming defer` and the memory stream is loaded through
 * [func@Hexz.restore_memory_async] before the machine resumes. A snapshot
 * recorded from a machine with another RAM size is rejected before
 * anything starts.
 *
 * Sockets, logs and an ephemeral overlay live in a private temporary
 * folder (mode 0700) that is removed when the machine stops. Without
 * [property@Hexz.Boot:overlay] the overlay is ephemeral; with it, the
 * overlay is created when missing and kept, so that [class@Hexz.Capture]
 * can snapshot the machine and [class@Hexz.Commit] can fold it later.
 *
 * QEMU gets two QMP monitors: a private one that the boot keeps connected
 * to stop the machine, and the one at [property@Hexz.Boot:qmp-socket] that
 * is left free for other clients, because a QMP monitor serves one client
 * at a time.
 *
 * Both children run in process groups of their own, so a Ctrl-C in the
 * terminal reaches only the parent, which can then stop the machine in
 * order. They get `PR_SET_PDEATHSIG`, so they receive SIGTERM when the
 * process that started them dies, and nbdkit also runs with
 * `--exit-with-parent`. The kernel sends that signal when the thread that
 * spawned the child exits, so start the boot from a thread that lives as
 * long as the machine (usually the main thread).
 *
 * ```c
 * g_autoptr(HexzBoot) boot = hexz_boot_new ("vm.hexz");
 *
 * hexz_boot_set_overlay (boot, "vm.overlay");
 * hexz_boot_set_qmp_socket (boot, "/run/user/1000/vm.qmp");
 * hexz_boot_start_async (boot, cancellable, on_started, NULL);
 * // later: hexz_boot_wait_async() or hexz_boot_stop_async()
 * ```
 *
 * Since: 1.0
 */

#include "config.h"

#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <gio/gunixsocketaddress.h>

#include "hexz-boot.h"
#include "hexz-enum-types.h"
#include "hexz-i18n-private.h"
#include "hexz-snapshot-private.h"
#include "hexz-overlay.h"
#include "hexz-overlay-private.h"
#include "hexz-qmp-client.h"
#include "hexz-restore.h"
#include "hexz-snapshot.h"

/* How long nbdkit and QEMU may take to accept connections on their
 * sockets. TCG under load can be slow to create the QMP socket. */
#define BOOT_READY_TIMEOUT_MS 30000

/* Time between two connection attempts while waiting for a socket. */
#define BOOT_POLL_MS 20

/* Default of the stop-timeout property. */
#define BOOT_DEFAULT_STOP_TIMEOUT_MS 10000

/* The maximum length of log text quoted in an error message, in bytes. */
#define BOOT_LOG_TAIL_BYTES 2048

/* Metadata key under which a capture records the machine's RAM size. */

typedef enum {
  BOOT_PHASE_IDLE,
  BOOT_PHASE_STARTING,
  BOOT_PHASE_RUNNING,
  BOOT_PHASE_STOPPING,
  BOOT_PHASE_STOPPED,
} BootPhase;

typedef struct _StartState StartState;

struct _HexzBoot
{
  GObject parent_instance;

  /* Configuration */
  char *snapshot_path;
  char *overlay;
  char *qmp_socket;
  guint64 ram;
  guint cpus;
  char *accel;
  char *kernel;
  char *append;
  GStrv extra_args;
  char *display;
  char *disk_interface;
  char *qemu_binary;
  char *plugin_path;
  guint stop_timeout;
  gboolean start_paused;

  /* State of the machine */
  BootPhase phase;
  gboolean restored_memory;
  char *directory;
  char *nbd_socket_path;
  char *control_socket_path;
  char *qmp_socket_path;
  char *overlay_path;
  gboolean overlay_ephemeral;
  char *qemu_log_path;
  char *nbdkit_log_path;
  char *nbdkit_pid_path;

  GSubprocess *nbdkit;
  GSubprocess *qemu;
  GPid nbdkit_pid;
  GPid qemu_pid;
  gboolean nbdkit_exited;
  gboolean qemu_exited;
  gboolean nbdkit_signalled;
  gboolean qemu_signalled;
  HexzQmpClient *control;

  StartState *start;
  GList *wait_tasks;
  GList *stop_tasks;
  gboolean stop_requested;
  gboolean tearing_down;
  guint stop_timer_id;
  guint kill_timer_id;
  GError *exit_error;
};

enum {
  PROP_0,
  PROP_SNAPSHOT_PATH,
  PROP_OVERLAY,
  PROP_QMP_SOCKET,
  PROP_RAM,
  PROP_CPUS,
  PROP_ACCEL,
  PROP_KERNEL,
  PROP_APPEND,
  PROP_EXTRA_ARGS,
  PROP_DISPLAY,
  PROP_DISK_INTERFACE,
  PROP_QEMU_BINARY,
  PROP_PLUGIN_PATH,
  PROP_STOP_TIMEOUT,
  PROP_START_PAUSED,
  PROP_RUNNING,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (HexzBoot, hexz_boot, G_TYPE_OBJECT)

/**
 * hexz_boot_error_quark:
 *
 * Gets the error domain of booting from snapshots.
 *
 * Returns: the quark of %HEXZ_BOOT_ERROR
 *
 * Since: 1.0
 */
G_DEFINE_QUARK (hexz-boot-error-quark, hexz_boot_error)

/* The start of one machine: it owns the task, and every pending callback
 * holds a reference. */
struct _StartState
{
  HexzBoot *self;
  GTask *task;
  GCancellable *cancellable;
  HexzSnapshot *snapshot;
  guint64 ram;
  guint cpus;
  char *machine;
  gint64 deadline;
  guint poll_id;
  GError *error;
};

static void boot_teardown (HexzBoot *self);

static StartState *
start_state_ref (StartState *state)
{
  return g_atomic_rc_box_acquire (state);
}

static void
start_state_clear (StartState *state)
{
  g_assert (state->poll_id == 0);

  g_clear_object (&state->self);
  g_clear_object (&state->task);
  g_clear_object (&state->cancellable);
  g_clear_object (&state->snapshot);
  g_clear_pointer (&state->machine, g_free);
  g_clear_error (&state->error);
}

static void
start_state_unref (StartState *state)
{
  g_atomic_rc_box_release_full (state, (GDestroyNotify) start_state_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (StartState, start_state_unref)

/* Helpers */

static char *
boot_read_log_tail (const char *path)
{
  g_autofree char *contents = NULL;
  gsize length = 0;
  const char *tail;

  if (path == NULL || !g_file_get_contents (path, &contents, &length, NULL))
    return g_strdup ("");

  tail = contents;
  if (length > BOOT_LOG_TAIL_BYTES)
    {
      tail = contents + length - BOOT_LOG_TAIL_BYTES;
      /* Start at a line boundary. */
      while (*tail != '\0' && *tail != '\n')
        tail++;
    }

  return g_strstrip (g_utf8_make_valid (tail, -1));
}

static char *
boot_describe_exit (GSubprocess *process)
{
  if (g_subprocess_get_if_signaled (process))
    /* Translators: %d is a signal number. */
    return g_strdup_printf (_("was killed by signal %d"), g_subprocess_get_term_sig (process));

  /* Translators: %d is a process exit status. */
  return g_strdup_printf (_("exited with status %d"), g_subprocess_get_exit_status (process));
}

/* Builds the error for a child that exited when it should not have,
 * quoting the end of its log. */
static GError *
boot_child_error (const char  *name,
                  GSubprocess *process,
                  const char  *log_path)
{
  g_autofree char *how = boot_describe_exit (process);
  g_autofree char *log = boot_read_log_tail (log_path);

  if (*log == '\0')
    return g_error_new (HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_CHILD_FAILED,
                        /* Translators: the first %s is a program name (QEMU or nbdkit),
                         * the second describes how it ended, as “exited with status 1”. */
                        _("%s %s"), name, how);

  return g_error_new (HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_CHILD_FAILED,
                      /* Translators: the first %s is a program name (QEMU or nbdkit),
                       * the second describes how it ended, the third is its log output. */
                      _("%s %s: %s"), name, how, log);
}

/* Doubles every comma, as QEMU's option parser needs inside a value. */
static char *
boot_escape_qemu_value (const char *value)
{
  g_auto(GStrv) parts = g_strsplit (value, ",", -1);

  return g_strjoinv (",,", parts);
}

static const char *
boot_choose_accel (void)
{
  int fd = g_open ("/dev/kvm", O_RDWR | O_CLOEXEC, 0);

  if (fd < 0)
    return "tcg";

  close (fd);
  return "kvm";
}

static const char *
boot_default_plugin_path (void)
{
  const char *path = g_getenv ("HEXZ_NBDKIT_PLUGIN");

  if (path != NULL && *path != '\0')
    return path;

  return HEXZ_NBDKIT_PLUGIN_PATH;
}

/* Runs in the child between fork and exec, so it calls only
 * async-signal-safe functions. */
static void
boot_child_setup (gpointer user_data)
{
  pid_t parent = GPOINTER_TO_INT (user_data);

  umask (077);
  prctl (PR_SET_PDEATHSIG, SIGTERM);

  /* A process group of its own keeps a terminal's Ctrl-C away from the
   * child, so that the parent can shut the machine down in order. */
  setpgid (0, 0);

  /* The parent may have died before prctl() took effect. */
  if (getppid () != parent)
    _exit (127);
}

static GSubprocess *
boot_spawn (const char * const  *argv,
            const char          *log_path,
            GPid                *pid,
            GError             **error)
{
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GSubprocess) process = NULL;
  const char *identifier;
  int log_fd;

  log_fd = g_open (log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   /* Translators: the first %s is a file name, the second an error message. */
                   _("Cannot create the log file “%s”: %s"), log_path, g_strerror (saved_errno));
      return NULL;
    }

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_subprocess_launcher_take_stdout_fd (launcher, log_fd);
  g_subprocess_launcher_set_child_setup (launcher, boot_child_setup,
                                         GINT_TO_POINTER (getpid ()), NULL);

  process = g_subprocess_launcher_spawnv (launcher, argv, error);
  if (process == NULL)
    return NULL;

  identifier = g_subprocess_get_identifier (process);
  *pid = identifier != NULL ? (GPid) g_ascii_strtoll (identifier, NULL, 10) : 0;

  {
    g_autofree char *command_line = g_strjoinv (" ", (char **) argv);
    g_debug ("Boot: started pid %d: %s", (int) *pid, command_line);
  }

  return g_steal_pointer (&process);
}

static void
boot_set_phase (HexzBoot  *self,
                BootPhase  phase)
{
  gboolean was_running = self->phase == BOOT_PHASE_RUNNING;

  self->phase = phase;

  if (was_running != (phase == BOOT_PHASE_RUNNING))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RUNNING]);
}

/* Teardown: stop QEMU, then nbdkit, then remove the private folder. Each
 * call moves as far as it can and returns; the exit of a child calls it
 * again. */

static void
boot_remove_file (const char *path)
{
  if (path != NULL && g_unlink (path) != 0 && errno != ENOENT)
    g_warning ("Cannot remove “%s”: %s", path, g_strerror (errno));
}

static void
boot_remove_files (HexzBoot *self)
{
  if (self->directory == NULL)
    return;

  boot_remove_file (self->nbd_socket_path);
  boot_remove_file (self->control_socket_path);

  /* QEMU removes its listening sockets when it exits normally, but not
   * when it is killed. The path did not exist before the start. */
  if (self->qmp_socket_path != NULL)
    {
      GStatBuf st;

      if (g_lstat (self->qmp_socket_path, &st) == 0 && S_ISSOCK (st.st_mode))
        boot_remove_file (self->qmp_socket_path);
    }

  if (self->overlay_ephemeral && self->overlay_path != NULL)
    {
      g_autofree char *meta = hexz_overlay_get_meta_path_for (self->overlay_path);

      boot_remove_file (self->overlay_path);
      boot_remove_file (meta);
    }

  boot_remove_file (self->qemu_log_path);
  boot_remove_file (self->nbdkit_log_path);
  boot_remove_file (self->nbdkit_pid_path);

  if (self->directory != NULL && g_rmdir (self->directory) != 0)
    g_warning ("Cannot remove the folder “%s”: %s", self->directory, g_strerror (errno));

  g_debug ("Boot: removed the private folder %s", self->directory);
}

static void
boot_complete_tasks (GList        **tasks,
                     const GError  *error)
{
  GList *list = g_steal_pointer (tasks);

  for (GList *l = list; l != NULL; l = l->next)
    {
      g_autoptr(GTask) task = l->data;

      if (error != NULL)
        g_task_return_error (task, g_error_copy (error));
      else
        g_task_return_boolean (task, TRUE);
    }

  g_list_free (list);
}

static void start_complete (StartState *state);

static void
boot_finish_teardown (HexzBoot *self)
{
  g_autoptr(HexzBoot) self_ref = g_object_ref (self);

  g_clear_handle_id (&self->stop_timer_id, g_source_remove);
  g_clear_handle_id (&self->kill_timer_id, g_source_remove);

  boot_remove_files (self);
  boot_set_phase (self, BOOT_PHASE_STOPPED);

  if (self->start != NULL)
    start_complete (self->start);

  boot_complete_tasks (&self->wait_tasks, self->exit_error);
  boot_complete_tasks (&self->stop_tasks, NULL);
}

static gboolean
boot_on_kill_timeout (gpointer user_data)
{
  HexzBoot *self = user_data;

  self->kill_timer_id = 0;

  if (self->qemu != NULL && !self->qemu_exited)
    {
      g_debug ("Boot: QEMU (pid %d) ignored SIGTERM, sending SIGKILL", (int) self->qemu_pid);
      g_subprocess_force_exit (self->qemu);
    }
  else if (self->nbdkit != NULL && !self->nbdkit_exited)
    {
      g_debug ("Boot: nbdkit (pid %d) ignored SIGTERM, sending SIGKILL", (int) self->nbdkit_pid);
      g_subprocess_force_exit (self->nbdkit);
    }

  return G_SOURCE_REMOVE;
}

static gboolean
boot_terminate_child (HexzBoot    *self,
                      GSubprocess *process,
                      gboolean     exited,
                      gboolean    *signalled)
{
  if (process == NULL || exited)
    return FALSE;

  if (!*signalled)
    {
      *signalled = TRUE;
      g_subprocess_send_signal (process, SIGTERM);
      g_clear_handle_id (&self->kill_timer_id, g_source_remove);
      self->kill_timer_id = g_timeout_add (self->stop_timeout, boot_on_kill_timeout, self);
    }

  return TRUE;
}

static void
boot_teardown (HexzBoot *self)
{
  self->tearing_down = TRUE;
  g_clear_handle_id (&self->stop_timer_id, g_source_remove);

  if (self->control != NULL)
    {
      hexz_qmp_client_close (self->control);
      g_clear_object (&self->control);
    }

  if (boot_terminate_child (self, self->qemu, self->qemu_exited, &self->qemu_signalled))
    return;

  if (boot_terminate_child (self, self->nbdkit, self->nbdkit_exited, &self->nbdkit_signalled))
    return;

  boot_finish_teardown (self);
}

/* Children */

static void start_fail (StartState *state,
                        GError     *error);

static void
boot_on_qemu_exited (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  g_autoptr(HexzBoot) self = user_data;
  GSubprocess *process = G_SUBPROCESS (source);

  g_subprocess_wait_finish (process, result, NULL);
  self->qemu_exited = TRUE;
  g_clear_handle_id (&self->kill_timer_id, g_source_remove);

  g_debug ("Boot: QEMU (pid %d) exited, status %d", (int) self->qemu_pid,
           g_subprocess_get_status (process));

  if (self->start != NULL && !self->tearing_down)
    {
      start_fail (self->start, boot_child_error ("QEMU", process, self->qemu_log_path));
      return;
    }

  if (!self->stop_requested && !self->tearing_down && self->exit_error == NULL &&
      !g_subprocess_get_successful (process))
    self->exit_error = boot_child_error ("QEMU", process, self->qemu_log_path);

  boot_teardown (self);
}

static void
boot_on_nbdkit_exited (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  g_autoptr(HexzBoot) self = user_data;
  GSubprocess *process = G_SUBPROCESS (source);

  g_subprocess_wait_finish (process, result, NULL);
  self->nbdkit_exited = TRUE;
  g_clear_handle_id (&self->kill_timer_id, g_source_remove);

  g_debug ("Boot: nbdkit (pid %d) exited, status %d", (int) self->nbdkit_pid,
           g_subprocess_get_status (process));

  if (self->start != NULL && !self->tearing_down)
    {
      start_fail (self->start, boot_child_error ("nbdkit", process, self->nbdkit_log_path));
      return;
    }

  if (!self->tearing_down)
    {
      /* The machine lost its disk: every further disk request fails, so
       * stop it and report why. */
      g_autoptr(GError) error = boot_child_error ("nbdkit", process, self->nbdkit_log_path);

      g_prefix_error (&error, "%s",
                      _("The machine was stopped because its disk server stopped: "));
      g_debug ("Boot: %s", error->message);
      if (self->exit_error == NULL)
        self->exit_error = g_steal_pointer (&error);
    }

  boot_teardown (self);
}

/* Start, step by step. */

static void
start_complete (StartState *state)
{
  g_autoptr(StartState) hold = start_state_ref (state);
  HexzBoot *self = state->self;
  g_autoptr(GTask) task = g_steal_pointer (&state->task);

  if (self->start == state)
    {
      self->start = NULL;
      start_state_unref (state);
    }

  if (task == NULL)
    return;

  if (state->error != NULL)
    {
      g_task_return_error (task, g_steal_pointer (&state->error));
      return;
    }

  g_task_return_boolean (task, TRUE);
}

/* Stops whatever the start began; the task returns @error once both
 * children are gone and the private folder is removed. */
static void
start_fail (StartState *state,
            GError     *error)
{
  HexzBoot *self = state->self;

  g_clear_handle_id (&state->poll_id, g_source_remove);

  if (state->error != NULL)
    {
      g_error_free (error);
      return;
    }

  g_debug ("Boot: start failed: %s", error->message);
  state->error = error;

  /* A wait started during the start reports why the machine never ran. */
  if (self->exit_error == NULL)
    self->exit_error = g_error_copy (error);

  if (self->phase == BOOT_PHASE_IDLE)
    {
      /* Nothing was started yet. */
      boot_finish_teardown (self);
      return;
    }

  boot_teardown (self);
}

static gboolean
start_check_cancelled (StartState *state)
{
  GError *error = NULL;

  if (!g_cancellable_set_error_if_cancelled (state->cancellable, &error))
    return FALSE;

  start_fail (state, error);
  return TRUE;
}

static gboolean
start_check_timed_out (StartState *state,
                       const char *what)
{
  if (g_get_monotonic_time () < state->deadline)
    return FALSE;

  start_fail (state, g_error_new (HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_TIMED_OUT,
                                  /* Translators: %s is a program name (QEMU or nbdkit),
                                   * %u a number of seconds. */
                                  _("%s did not accept connections within %u s"),
                                  what, BOOT_READY_TIMEOUT_MS / 1000));
  return TRUE;
}

static void
start_finish_running (StartState *state)
{
  HexzBoot *self = state->self;

  g_debug ("Boot: machine running (QEMU pid %d, nbdkit pid %d, QMP %s)",
           (int) self->qemu_pid, (int) self->nbdkit_pid, self->qmp_socket_path);

  boot_set_phase (self, BOOT_PHASE_RUNNING);
  start_complete (state);
}

/* Step 5: load the memory stream and resume. */

static void
start_on_restored (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(StartState) state = user_data;
  GError *error = NULL;

  if (state->task == NULL)
    return;

  if (!hexz_restore_memory_finish (result, &error))
    {
      g_autofree char *log = boot_read_log_tail (state->self->qemu_log_path);

      /* The log is removed with the private folder, so quote it now. */
      if (*log != '\0' && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          GError *quoted = g_error_new (error->domain, error->code,
                                        /* Translators: the first %s is an error message,
                                         * the second QEMU's log output. */
                                        _("%s (QEMU printed: %s)"), error->message, log);

          g_error_free (error);
          error = quoted;
        }

      start_fail (state, error);
      return;
    }

  state->self->restored_memory = TRUE;
  start_finish_running (state);
}

static void
start_restore_memory (StartState *state)
{
  hexz_restore_memory_async (state->self->control, state->snapshot,
                             state->self->start_paused ? HEXZ_RESTORE_FLAGS_KEEP_PAUSED
                                                       : HEXZ_RESTORE_FLAGS_NONE,
                             state->cancellable,
                             start_on_restored, start_state_ref (state));
}

/* Step 4: wait until QEMU accepts QMP connections. */

static void start_connect_qmp (StartState *state);

static gboolean
start_on_qmp_poll (gpointer user_data)
{
  StartState *state = user_data;

  state->poll_id = 0;
  start_connect_qmp (state);

  return G_SOURCE_REMOVE;
}

static void
start_on_qmp_connected (GObject      *source,
                        GAsyncResult *result,
                        gpointer      user_data)
{
  g_autoptr(StartState) state = user_data;
  HexzBoot *self = state->self;
  g_autoptr(HexzQmpClient) client = HEXZ_QMP_CLIENT (g_object_ref (source));
  g_autoptr(GError) error = NULL;

  if (state->task == NULL || self->tearing_down)
    return;

  if (!hexz_qmp_client_connect_finish (client, result, &error))
    {
      g_debug ("Boot: QMP not ready yet: %s", error->message);

      if (start_check_cancelled (state) || start_check_timed_out (state, "QEMU"))
        return;

      state->poll_id = g_timeout_add_full (G_PRIORITY_DEFAULT, BOOT_POLL_MS,
                                           start_on_qmp_poll, start_state_ref (state),
                                           (GDestroyNotify) start_state_unref);
      return;
    }

  self->control = g_steal_pointer (&client);
  g_chmod (self->control_socket_path, 0600);
  g_chmod (self->qmp_socket_path, 0600);

  if (hexz_snapshot_has_memory (state->snapshot))
    start_restore_memory (state);
  else
    start_finish_running (state);
}

static void
start_connect_qmp (StartState *state)
{
  g_autoptr(HexzQmpClient) client = hexz_qmp_client_new ();

  if (start_check_cancelled (state))
    return;

  hexz_qmp_client_connect_to_path_async (client, state->self->control_socket_path,
                                         state->cancellable, start_on_qmp_connected,
                                         start_state_ref (state));
}

/* Step 3: start QEMU with its disk on nbdkit's socket. */

static GStrv
start_build_qemu_argv (StartState *state)
{
  HexzBoot *self = state->self;
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  g_autofree char *nbd_path = boot_escape_qemu_value (self->nbd_socket_path);
  g_autofree char *control_path = boot_escape_qemu_value (self->control_socket_path);
  g_autofree char *qmp_path = boot_escape_qemu_value (self->qmp_socket_path);
  g_autofree char *interface = boot_escape_qemu_value (self->disk_interface);
  g_autofree char *drive = NULL;
  g_autofree char *control_chardev = NULL;
  g_autofree char *qmp_chardev = NULL;
  g_autofree char *ram = NULL;
  g_autofree char *cpus = NULL;
  const char *accel = self->accel != NULL ? self->accel : boot_choose_accel ();

  ram = g_strdup_printf ("%" G_GUINT64_FORMAT "M", state->ram >> 20);
  cpus = g_strdup_printf ("%u", state->cpus);
  drive = g_strdup_printf ("if=%s,format=raw,file.driver=nbd,file.server.type=unix,"
                           "file.server.path=%s", interface, nbd_path);
  control_chardev = g_strdup_printf ("socket,id=hexz-control,path=%s,server=on,wait=off",
                                     control_path);
  qmp_chardev = g_strdup_printf ("socket,id=hexz-qmp,path=%s,server=on,wait=off", qmp_path);

  g_strv_builder_add_many (builder,
                           self->qemu_binary,
                           "-machine", state->machine,
                           "-accel", accel,
                           "-m", ram,
                           "-smp", cpus,
                           "-display", self->display,
                           "-drive", drive,
                           "-chardev", control_chardev,
                           "-mon", "chardev=hexz-control,mode=control",
                           "-chardev", qmp_chardev,
                           "-mon", "chardev=hexz-qmp,mode=control",
                           NULL);

  if (self->kernel != NULL)
    g_strv_builder_add_many (builder, "-kernel", self->kernel, NULL);
  if (self->append != NULL)
    g_strv_builder_add_many (builder, "-append", self->append, NULL);
  if (hexz_snapshot_has_memory (state->snapshot))
    g_strv_builder_add_many (builder, "-incoming", "defer", NULL);
  /* Without -S, QEMU resumes a machine whose stream was saved while it ran
   * as soon as the stream is loaded. */
  if (self->start_paused)
    g_strv_builder_add (builder, "-S");
  if (self->extra_args != NULL)
    g_strv_builder_addv (builder, (const char **) self->extra_args);

  return g_strv_builder_end (builder);
}

static void
start_spawn_qemu (StartState *state)
{
  HexzBoot *self = state->self;
  g_auto(GStrv) argv = start_build_qemu_argv (state);
  GError *error = NULL;

  self->qemu = boot_spawn ((const char * const *) argv, self->qemu_log_path,
                           &self->qemu_pid, &error);
  if (self->qemu == NULL)
    {
      g_prefix_error (&error, "%s", _("Cannot start QEMU: "));
      error->domain = HEXZ_BOOT_ERROR;
      error->code = HEXZ_BOOT_ERROR_CHILD_FAILED;
      start_fail (state, error);
      return;
    }

  g_subprocess_wait_async (self->qemu, NULL, boot_on_qemu_exited, g_object_ref (self));
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_QMP_SOCKET]);

  state->deadline = g_get_monotonic_time () + BOOT_READY_TIMEOUT_MS * 1000;
  start_connect_qmp (state);
}

/* Step 2: start nbdkit and wait until it accepts connections. */

static void start_probe_nbd (StartState *state);

static gboolean
start_on_nbd_poll (gpointer user_data)
{
  StartState *state = user_data;

  state->poll_id = 0;
  start_probe_nbd (state);

  return G_SOURCE_REMOVE;
}

/* nbdkit writes its pid file once it accepts connections. A test
 * connection would work too, but nbdkit logs an error for a client that
 * leaves before the handshake, and that log is quoted when nbdkit fails. */
static void
start_probe_nbd (StartState *state)
{
  GStatBuf st;

  if (state->task == NULL || state->self->tearing_down)
    return;

  if (start_check_cancelled (state))
    return;

  if (g_stat (state->self->nbdkit_pid_path, &st) != 0 || st.st_size == 0)
    {
      if (start_check_timed_out (state, "nbdkit"))
        return;

      state->poll_id = g_timeout_add_full (G_PRIORITY_DEFAULT, BOOT_POLL_MS,
                                           start_on_nbd_poll, start_state_ref (state),
                                           (GDestroyNotify) start_state_unref);
      return;
    }

  g_chmod (state->self->nbd_socket_path, 0600);
  g_debug ("Boot: nbdkit accepts connections on %s", state->self->nbd_socket_path);

  start_spawn_qemu (state);
}

static void
start_spawn_nbdkit (StartState *state)
{
  HexzBoot *self = state->self;
  g_autofree char *snapshot_arg = g_strconcat ("snapshot=", self->snapshot_path, NULL);
  g_autofree char *overlay_arg = g_strconcat ("overlay=", self->overlay_path, NULL);
  const char *argv[] = {
    "nbdkit", "--foreground", "--exit-with-parent",
    "--unix", self->nbd_socket_path, "--pidfile", self->nbdkit_pid_path,
    self->plugin_path, snapshot_arg, overlay_arg, "create=true",
    NULL
  };
  GError *error = NULL;

  self->nbdkit = boot_spawn (argv, self->nbdkit_log_path, &self->nbdkit_pid, &error);
  if (self->nbdkit == NULL)
    {
      g_prefix_error (&error, "%s", _("Cannot start nbdkit: "));
      error->domain = HEXZ_BOOT_ERROR;
      error->code = HEXZ_BOOT_ERROR_CHILD_FAILED;
      start_fail (state, error);
      return;
    }

  g_subprocess_wait_async (self->nbdkit, NULL, boot_on_nbdkit_exited, g_object_ref (self));

  state->deadline = g_get_monotonic_time () + BOOT_READY_TIMEOUT_MS * 1000;
  start_probe_nbd (state);
}

/* Step 1: check the snapshot, the RAM size and the overlay, then create
 * the private folder. Nothing is started before these checks pass. */

/* Whether @name can be given to -machine as it is: a machine type name,
 * with no comma that would add options. */
static gboolean
boot_is_machine_name (const char *name)
{
  if (name == NULL || name[0] == '\0' || strlen (name) > 64)
    return FALSE;

  for (const char *c = name; *c != '\0'; c++)
    {
      if (!g_ascii_isalnum (*c) && *c != '-' && *c != '.' && *c != '_')
        return FALSE;
    }

  return TRUE;
}

/* A memory stream loads only into the machine type and CPU count it was
 * taken on, and a -kernel boot adds an option ROM that the stream
 * contains. A live snapshot records them. The type and CPU count are used
 * unless set otherwise. The kernel is a path on the host that took the
 * snapshot, so it is only named in an error and never loaded on the
 * strength of a file's contents. Without records, the type is "pc" and
 * the CPU count 1. */
static gboolean
start_check_machine (StartState  *state,
                     GError     **error)
{
  HexzBoot *self = state->self;
  gint64 recorded_cpus = 0;
  const char *machine = NULL;
  const char *kernel = NULL;

  if (hexz_snapshot_has_memory (state->snapshot))
    {
      recorded_cpus = hexz_snapshot_get_metadata_int (state->snapshot, HEXZ_METADATA_CPUS);
      machine = hexz_snapshot_get_metadata_string (state->snapshot, HEXZ_METADATA_MACHINE_TYPE);
      kernel = hexz_snapshot_get_metadata_string (state->snapshot, HEXZ_METADATA_KERNEL);
    }

  if (recorded_cpus < 1 || recorded_cpus > 1024)
    recorded_cpus = 0;

  if (self->cpus != 0 && recorded_cpus != 0 && self->cpus != recorded_cpus)
    {
      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_MACHINE_MISMATCH,
                   /* Translators: the first %s is a file name, then two numbers of CPUs. */
                   _("The snapshot “%s” contains the memory of a machine whose CPU count is %d, "
                     "but the requested count is %u: boot it with the recorded count, or leave "
                     "it unset"),
                   self->snapshot_path, (int) recorded_cpus, self->cpus);
      return FALSE;
    }

  if (kernel != NULL && kernel[0] != '\0' && self->kernel == NULL)
    {
      const char *append = hexz_snapshot_get_metadata_string (state->snapshot, HEXZ_METADATA_APPEND);

      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_MACHINE_MISMATCH,
                   /* Translators: the first %s is a file name, the second a kernel
                    * file, the third a kernel command line. */
                   _("The snapshot “%s” contains the memory of a machine that booted the "
                     "kernel “%s” with the command line “%s”: set the same kernel and "
                     "command line (hexz-snap boot --kernel FILE --append TEXT)"),
                   self->snapshot_path, kernel, append != NULL ? append : "");
      return FALSE;
    }

  if (self->cpus != 0)
    state->cpus = self->cpus;
  else if (recorded_cpus != 0)
    state->cpus = recorded_cpus;
  else
    state->cpus = 1;

  if (boot_is_machine_name (machine))
    state->machine = g_strdup (machine);
  else
    {
      if (machine != NULL)
        g_debug ("Boot: ignoring the invalid machine type recorded in %s", self->snapshot_path);
      state->machine = g_strdup ("pc");
    }

  return TRUE;
}

static gboolean
start_check_ram (StartState  *state,
                 GError     **error)
{
  HexzBoot *self = state->self;
  gint64 recorded = hexz_snapshot_get_metadata_int (state->snapshot, HEXZ_METADATA_RAM_SIZE);

  if (!hexz_snapshot_has_memory (state->snapshot) || recorded <= 0)
    {
      /* A memory stream without a recorded size is loaded into the RAM
       * size requested; QEMU rejects the stream when they differ. */
      state->ram = self->ram != 0 ? self->ram : HEXZ_BOOT_DEFAULT_RAM;
    }
  else if (self->ram != 0 && self->ram != (guint64) recorded)
    {
      g_autofree char *requested = g_format_size_full (self->ram, G_FORMAT_SIZE_IEC_UNITS);
      g_autofree char *saved = g_format_size_full (recorded, G_FORMAT_SIZE_IEC_UNITS);

      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_RAM_MISMATCH,
                   /* Translators: the first %s is a file name, then two sizes. */
                   _("The snapshot “%s” contains the memory of a machine with %s of RAM, but %s "
                     "was requested: boot it with the recorded size, or leave the RAM size "
                     "unset"),
                   self->snapshot_path, saved, requested);
      return FALSE;
    }
  else
    {
      state->ram = recorded;
    }

  if (state->ram % (1024 * 1024) != 0)
    {
      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   /* Translators: %" G_GUINT64_FORMAT " is a size in bytes. */
                   _("The RAM size %" PRIu64 " bytes is not a whole number of MiB"),
                   state->ram);
      return FALSE;
    }

  return TRUE;
}

/* Rejects an accelerator that QEMU would reject only after nbdkit started,
 * and KVM where /dev/kvm does not open. */
static gboolean
start_check_accel (StartState  *state,
                   GError     **error)
{
  HexzBoot *self = state->self;
  int fd;

  if (self->accel == NULL || g_str_equal (self->accel, "tcg"))
    return TRUE;

  if (!g_str_equal (self->accel, "kvm"))
    {
      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   /* Translators: %s is an accelerator name given by the user. */
                   _("Unknown accelerator “%s”: use kvm or tcg"), self->accel);
      return FALSE;
    }

  fd = g_open ("/dev/kvm", O_RDWR | O_CLOEXEC, 0);
  if (fd < 0)
    {
      int saved_errno = errno;

      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   /* Translators: %s is an error message. */
                   _("KVM is not usable: opening /dev/kvm failed: %s. Use the tcg accelerator "
                     "instead"),
                   g_strerror (saved_errno));
      return FALSE;
    }

  close (fd);
  return TRUE;
}

static gboolean
boot_parent_folder_exists (const char *path)
{
  g_autofree char *folder = g_path_get_dirname (path);

  return g_file_test (folder, G_FILE_TEST_IS_DIR);
}

static gboolean
start_check_qmp_socket (StartState  *state,
                        GError     **error)
{
  HexzBoot *self = state->self;
  struct sockaddr_un address;

  if (self->qmp_socket == NULL)
    return TRUE;

  if (g_file_test (self->qmp_socket, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   /* Translators: %s is a file name. */
                   _("The QMP socket path “%s” already exists: choose another path, or remove "
                     "the file if no machine uses it"),
                   self->qmp_socket);
      return FALSE;
    }

  if (strlen (self->qmp_socket) >= sizeof address.sun_path)
    {
      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   /* Translators: %s is a file name, %zu a number of bytes. */
                   _("The QMP socket path “%s” is too long for a unix socket, which allows "
                     "%zu bytes: choose a shorter path"),
                   self->qmp_socket, sizeof address.sun_path - 1);
      return FALSE;
    }

  if (!boot_parent_folder_exists (self->qmp_socket))
    {
      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   /* Translators: %s is a file name. */
                   _("The folder of the QMP socket path “%s” does not exist: create it, or "
                     "choose another path"),
                   self->qmp_socket);
      return FALSE;
    }

  return TRUE;
}

static gboolean
start_check_overlay (StartState  *state,
                     GError     **error)
{
  HexzBoot *self = state->self;
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autofree char *meta_path = NULL;
  int fd;

  if (self->overlay == NULL)
    return TRUE;

  /* The plugin rejects these too, but only after nbdkit started. */
  meta_path = hexz_overlay_get_meta_path_for (self->overlay);
  if (g_str_equal (meta_path, self->overlay))
    {
      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   /* Translators: %s is a file name. */
                   _("The overlay “%s” ends in “.meta”, the name of its own page list: give "
                     "the overlay another extension"),
                   self->overlay);
      return FALSE;
    }

  if (g_file_test (self->overlay, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   /* Translators: %s is a folder name. */
                   _("The overlay “%s” is a folder: give the path of an overlay file, which "
                     "is created when missing"),
                   self->overlay);
      return FALSE;
    }

  if (!g_file_test (self->overlay, G_FILE_TEST_EXISTS))
    {
      if (boot_parent_folder_exists (self->overlay))
        return TRUE;

      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   /* Translators: %s is a file name. */
                   _("The folder of the overlay “%s” does not exist: create it, or choose "
                     "another path"),
                   self->overlay);
      return FALSE;
    }

  /* An existing overlay must fit the snapshot's disk and lie on this
   * snapshot; the plugin would reject it too, but only after the start. */
  overlay = hexz_overlay_open_path (self->overlay, hexz_snapshot_get_disk_size (state->snapshot),
                                    state->cancellable, error);
  if (overlay == NULL)
    return FALSE;

  fd = g_open (self->overlay, O_RDONLY | O_CLOEXEC, 0);
  if (fd >= 0)
    {
      gboolean same_base = hexz_overlay_check_base_id (fd, self->overlay, state->snapshot, error);

      close (fd);
      if (!same_base)
        return FALSE;
    }

  if (hexz_snapshot_has_memory (state->snapshot) && hexz_overlay_get_n_modified (overlay) > 0)
    {
      guint64 n_modified = hexz_overlay_get_n_modified (overlay);

      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   g_dngettext (GETTEXT_PACKAGE,
                                /* Translators: the first %s is a file name, the
                                 * number a number of pages, the second %s a
                                 * file name. */
                                "The overlay “%s” already contains %" PRIu64
                                " modified page, so the disk would not match the memory of "
                                "“%s”: give a new overlay file",
                                "The overlay “%s” already contains %" PRIu64
                                " modified pages, so the disk would not match the memory of "
                                "“%s”: give a new overlay file",
                                n_modified),
                   self->overlay, n_modified, self->snapshot_path);
      return FALSE;
    }

  return TRUE;
}

static gboolean
start_check_inputs (StartState  *state,
                    GError     **error)
{
  HexzBoot *self = state->self;
  g_autofree char *qemu_path = NULL;

  if (!start_check_ram (state, error))
    return FALSE;

  if (!start_check_machine (state, error))
    return FALSE;

  if (!start_check_accel (state, error))
    return FALSE;

  if (!start_check_overlay (state, error))
    return FALSE;

  if (!start_check_qmp_socket (state, error))
    return FALSE;

  qemu_path = g_find_program_in_path (self->qemu_binary);
  if (qemu_path == NULL)
    {
      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   /* Translators: %s is a program name or path. */
                   _("The QEMU program “%s” was not found: install QEMU (qemu-system-x86) "
                     "or give the path of its qemu-system-x86_64 program"),
                   self->qemu_binary);
      return FALSE;
    }

  if (!g_file_test (self->plugin_path, G_FILE_TEST_IS_REGULAR))
    {
      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   /* Translators: %s is a file name. */
                   _("The nbdkit plugin “%s” was not found: install hexz-plugin.so or set "
                     "HEXZ_NBDKIT_PLUGIN to its path"),
                   self->plugin_path);
      return FALSE;
    }

  if (self->kernel != NULL && !g_file_test (self->kernel, G_FILE_TEST_IS_REGULAR))
    {
      g_set_error (error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_INVALID_INPUT,
                   /* Translators: %s is a file name. */
                   _("The kernel “%s” was not found"), self->kernel);
      return FALSE;
    }

  return TRUE;
}

static gboolean
start_prepare_folder (StartState  *state,
                      GError     **error)
{
  HexzBoot *self = state->self;

  self->directory = g_dir_make_tmp ("hexz-boot-XXXXXX", error);
  if (self->directory == NULL)
    return FALSE;

  self->nbd_socket_path = g_build_filename (self->directory, "nbd.sock", NULL);
  self->control_socket_path = g_build_filename (self->directory, "control.sock", NULL);
  self->qemu_log_path = g_build_filename (self->directory, "qemu.log", NULL);
  self->nbdkit_log_path = g_build_filename (self->directory, "nbdkit.log", NULL);
  self->nbdkit_pid_path = g_build_filename (self->directory, "nbdkit.pid", NULL);

  if (self->qmp_socket != NULL)
    self->qmp_socket_path = g_strdup (self->qmp_socket);
  else
    self->qmp_socket_path = g_build_filename (self->directory, "qmp.sock", NULL);

  if (self->overlay != NULL)
    {
      self->overlay_path = g_strdup (self->overlay);
    }
  else
    {
      self->overlay_path = g_build_filename (self->directory, "disk.overlay", NULL);
      self->overlay_ephemeral = TRUE;
    }

  g_debug ("Boot: private folder %s", self->directory);
  return TRUE;
}

static void
start_on_snapshot_opened (GObject      *source,
                          GAsyncResult *result,
                          gpointer      user_data)
{
  g_autoptr(StartState) state = user_data;
  HexzBoot *self = state->self;
  GError *error = NULL;

  if (state->task == NULL)
    return;

  state->snapshot = hexz_snapshot_open_finish (result, &error);
  if (state->snapshot == NULL)
    {
      start_fail (state, error);
      return;
    }

  if (start_check_cancelled (state))
    return;

  if (!start_check_inputs (state, &error))
    {
      start_fail (state, error);
      return;
    }

  if (!start_prepare_folder (state, &error))
    {
      start_fail (state, error);
      return;
    }

  boot_set_phase (self, BOOT_PHASE_STARTING);
  start_spawn_nbdkit (state);
}

/* GObject */

static void
hexz_boot_finalize (GObject *object)
{
  HexzBoot *self = HEXZ_BOOT (object);

  /* Every child holds a reference through its exit watch, so both have
   * exited by now. */
  g_assert (self->phase != BOOT_PHASE_STARTING && self->phase != BOOT_PHASE_RUNNING &&
            self->phase != BOOT_PHASE_STOPPING);

  g_clear_handle_id (&self->stop_timer_id, g_source_remove);
  g_clear_handle_id (&self->kill_timer_id, g_source_remove);

  g_free (self->snapshot_path);
  g_free (self->overlay);
  g_free (self->qmp_socket);
  g_free (self->accel);
  g_free (self->kernel);
  g_free (self->append);
  g_strfreev (self->extra_args);
  g_free (self->display);
  g_free (self->disk_interface);
  g_free (self->qemu_binary);
  g_free (self->plugin_path);

  g_free (self->directory);
  g_free (self->nbd_socket_path);
  g_free (self->control_socket_path);
  g_free (self->qmp_socket_path);
  g_free (self->overlay_path);
  g_free (self->qemu_log_path);
  g_free (self->nbdkit_log_path);
  g_free (self->nbdkit_pid_path);
  g_clear_object (&self->nbdkit);
  g_clear_object (&self->qemu);
  g_clear_object (&self->control);
  g_clear_error (&self->exit_error);

  G_OBJECT_CLASS (hexz_boot_parent_class)->finalize (object);
}

static void
hexz_boot_get_property (GObject    *object,
                        guint       prop_id,
                        GValue     *value,
                        GParamSpec *pspec)
{
  HexzBoot *self = HEXZ_BOOT (object);

  switch (prop_id)
    {
    case PROP_SNAPSHOT_PATH:
      g_value_set_string (value, self->snapshot_path);
      break;
    case PROP_OVERLAY:
      g_value_set_string (value, self->overlay);
      break;
    case PROP_QMP_SOCKET:
      g_value_set_string (value, hexz_boot_get_qmp_socket (self));
      break;
    case PROP_RAM:
      g_value_set_uint64 (value, self->ram);
      break;
    case PROP_CPUS:
      g_value_set_uint (value, self->cpus);
      break;
    case PROP_ACCEL:
      g_value_set_string (value, self->accel);
      break;
    case PROP_KERNEL:
      g_value_set_string (value, self->kernel);
      break;
    case PROP_APPEND:
      g_value_set_string (value, self->append);
      break;
    case PROP_EXTRA_ARGS:
      g_value_set_boxed (value, self->extra_args);
      break;
    case PROP_DISPLAY:
      g_value_set_string (value, self->display);
      break;
    case PROP_DISK_INTERFACE:
      g_value_set_string (value, self->disk_interface);
      break;
    case PROP_QEMU_BINARY:
      g_value_set_string (value, self->qemu_binary);
      break;
    case PROP_PLUGIN_PATH:
      g_value_set_string (value, self->plugin_path);
      break;
    case PROP_STOP_TIMEOUT:
      g_value_set_uint (value, self->stop_timeout);
      break;
    case PROP_START_PAUSED:
      g_value_set_boolean (value, self->start_paused);
      break;
    case PROP_RUNNING:
      g_value_set_boolean (value, hexz_boot_get_running (self));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_boot_set_property (GObject      *object,
                        guint         prop_id,
                        const GValue *value,
                        GParamSpec   *pspec)
{
  HexzBoot *self = HEXZ_BOOT (object);

  switch (prop_id)
    {
    case PROP_SNAPSHOT_PATH:
      hexz_boot_set_snapshot_path (self, g_value_get_string (value));
      break;
    case PROP_OVERLAY:
      hexz_boot_set_overlay (self, g_value_get_string (value));
      break;
    case PROP_QMP_SOCKET:
      hexz_boot_set_qmp_socket (self, g_value_get_string (value));
      break;
    case PROP_RAM:
      hexz_boot_set_ram (self, g_value_get_uint64 (value));
      break;
    case PROP_CPUS:
      hexz_boot_set_cpus (self, g_value_get_uint (value));
      break;
    case PROP_ACCEL:
      hexz_boot_set_accel (self, g_value_get_string (value));
      break;
    case PROP_KERNEL:
      hexz_boot_set_kernel (self, g_value_get_string (value));
      break;
    case PROP_APPEND:
      hexz_boot_set_append (self, g_value_get_string (value));
      break;
    case PROP_EXTRA_ARGS:
      hexz_boot_set_extra_args (self, g_value_get_boxed (value));
      break;
    case PROP_DISPLAY:
      hexz_boot_set_display (self, g_value_get_string (value));
      break;
    case PROP_DISK_INTERFACE:
      hexz_boot_set_disk_interface (self, g_value_get_string (value));
      break;
    case PROP_QEMU_BINARY:
      hexz_boot_set_qemu_binary (self, g_value_get_string (value));
      break;
    case PROP_PLUGIN_PATH:
      hexz_boot_set_plugin_path (self, g_value_get_string (value));
      break;
    case PROP_STOP_TIMEOUT:
      hexz_boot_set_stop_timeout (self, g_value_get_uint (value));
      break;
    case PROP_START_PAUSED:
      hexz_boot_set_start_paused (self, g_value_get_boolean (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_boot_class_init (HexzBootClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  const GParamFlags flags = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY;

  object_class->finalize = hexz_boot_finalize;
  object_class->get_property = hexz_boot_get_property;
  object_class->set_property = hexz_boot_set_property;

  /**
   * HexzBoot:snapshot-path:
   *
   * The snapshot file to boot.
   *
   * Since: 1.0
   */
  properties[PROP_SNAPSHOT_PATH] =
    g_param_spec_string ("snapshot-path", NULL, NULL, NULL, flags);

  /**
   * HexzBoot:overlay:
   *
   * The copy-on-write overlay that receives the machine's disk writes,
   * created when missing and kept after the machine stops; %NULL for an
   * ephemeral overlay in the private folder.
   *
   * Since: 1.0
   */
  properties[PROP_OVERLAY] =
    g_param_spec_string ("overlay", NULL, NULL, NULL, flags);

  /**
   * HexzBoot:qmp-socket:
   *
   * The path of the QMP socket left free for other clients, such as
   * [class@Hexz.Capture]. When unset, a socket in the private folder is
   * used, and this property gives its path once the machine has started.
   *
   * Since: 1.0
   */
  properties[PROP_QMP_SOCKET] =
    g_param_spec_string ("qmp-socket", NULL, NULL, NULL, flags);

  /**
   * HexzBoot:ram:
   *
   * The machine's RAM size in bytes, a whole number of MiB; 0 for the size
   * recorded in the snapshot, or %HEXZ_BOOT_DEFAULT_RAM for a snapshot
   * without memory.
   *
   * Since: 1.0
   */
  properties[PROP_RAM] =
    g_param_spec_uint64 ("ram", NULL, NULL, 0, G_MAXUINT64, 0, flags);

  /**
   * HexzBoot:cpus:
   *
   * The number of virtual CPUs; 0 for the number recorded in the snapshot,
   * or 1 for a snapshot without that record.
   *
   * Since: 1.0
   */
  properties[PROP_CPUS] =
    g_param_spec_uint ("cpus", NULL, NULL, 0, 1024, 0, flags);

  /**
   * HexzBoot:accel:
   *
   * The QEMU accelerator, such as `kvm` or `tcg`; %NULL for `kvm` when
   * `/dev/kvm` can be opened for reading and writing, `tcg` otherwise.
   *
   * Since: 1.0
   */
  properties[PROP_ACCEL] =
    g_param_spec_string ("accel", NULL, NULL, NULL, flags);

  /**
   * HexzBoot:kernel:
   *
   * A kernel that QEMU loads with `-kernel`, or %NULL to boot from the
   * disk.
   *
   * Since: 1.0
   */
  properties[PROP_KERNEL] =
    g_param_spec_string ("kernel", NULL, NULL, NULL, flags);

  /**
   * HexzBoot:append:
   *
   * The kernel command line, passed with `-append`, or %NULL.
   *
   * Since: 1.0
   */
  properties[PROP_APPEND] =
    g_param_spec_string ("append", NULL, NULL, NULL, flags);

  /**
   * HexzBoot:extra-args:
   *
   * More arguments for QEMU, added after the ones the boot builds, or
   * %NULL. A snapshot with memory must be booted with the devices of the
   * machine it was taken from.
   *
   * Since: 1.0
   */
  properties[PROP_EXTRA_ARGS] =
    g_param_spec_boxed ("extra-args", NULL, NULL, G_TYPE_STRV, flags);

  /**
   * HexzBoot:display:
   *
   * The value of QEMU's `-display` option.
   *
   * Since: 1.0
   */
  properties[PROP_DISPLAY] =
    g_param_spec_string ("display", NULL, NULL, "none", flags);

  /**
   * HexzBoot:disk-interface:
   *
   * The interface of the disk, the `if=` value of QEMU's `-drive`: `ide`
   * or `virtio`.
   *
   * Since: 1.0
   */
  properties[PROP_DISK_INTERFACE] =
    g_param_spec_string ("disk-interface", NULL, NULL, "ide", flags);

  /**
   * HexzBoot:qemu-binary:
   *
   * The QEMU program, a path or a name looked up in `PATH`.
   *
   * Since: 1.0
   */
  properties[PROP_QEMU_BINARY] =
    g_param_spec_string ("qemu-binary", NULL, NULL, "qemu-system-x86_64", flags);

  /**
   * HexzBoot:plugin-path:
   *
   * The path of `hexz-plugin.so`. The default is the value of the
   * `HEXZ_NBDKIT_PLUGIN` environment variable when set, else the plugin in
   * nbdkit's plugin folder.
   *
   * Since: 1.0
   */
  properties[PROP_PLUGIN_PATH] =
    g_param_spec_string ("plugin-path", NULL, NULL, NULL, flags);

  /**
   * HexzBoot:stop-timeout:
   *
   * How long, in milliseconds, a stop waits for QEMU to exit before it
   * sends SIGTERM, and after SIGTERM before it sends SIGKILL. A powerdown
   * waits this long for the guest before it sends `quit`.
   *
   * Since: 1.0
   */
  properties[PROP_STOP_TIMEOUT] =
    g_param_spec_uint ("stop-timeout", NULL, NULL, 0, G_MAXUINT,
                       BOOT_DEFAULT_STOP_TIMEOUT_MS, flags);

  /**
   * HexzBoot:start-paused:
   *
   * Whether the machine stays paused once it is loaded, so that its
   * memory and disk can be inspected before it runs. QEMU starts with
   * `-S`, and a snapshot's memory is loaded without resuming the machine.
   * QMP `cont` on [property@Hexz.Boot:qmp-socket] starts it.
   *
   * Since: 1.0
   */
  properties[PROP_START_PAUSED] =
    g_param_spec_boolean ("start-paused", NULL, NULL, FALSE, flags);

  /**
   * HexzBoot:running:
   *
   * Whether the machine has started and has not stopped yet.
   *
   * Since: 1.0
   */
  properties[PROP_RUNNING] =
    g_param_spec_boolean ("running", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
hexz_boot_init (HexzBoot *self)
{
  self->cpus = 0;
  self->display = g_strdup ("none");
  self->disk_interface = g_strdup ("ide");
  self->qemu_binary = g_strdup ("qemu-system-x86_64");
  self->plugin_path = g_strdup (boot_default_plugin_path ());
  self->stop_timeout = BOOT_DEFAULT_STOP_TIMEOUT_MS;
}

/* Public API */

/**
 * hexz_boot_new:
 * @snapshot_path: the snapshot file to boot
 *
 * Creates a boot of @snapshot_path. Set its options, then call
 * [method@Hexz.Boot.start_async]. A boot starts one machine once.
 *
 * Returns: (transfer full): a new boot
 *
 * Since: 1.0
 */
HexzBoot *
hexz_boot_new (const char *snapshot_path)
{
  g_return_val_if_fail (snapshot_path != NULL, NULL);

  return g_object_new (HEXZ_TYPE_BOOT, "snapshot-path", snapshot_path, NULL);
}

static gboolean
boot_set_string (HexzBoot   *self,
                 char      **field,
                 const char *value,
                 guint       prop_id)
{
  g_return_val_if_fail (self->phase == BOOT_PHASE_IDLE, FALSE);

  if (g_strcmp0 (*field, value) == 0)
    return FALSE;

  g_free (*field);
  *field = g_strdup (value);

  g_object_notify_by_pspec (G_OBJECT (self), properties[prop_id]);
  return TRUE;
}

/**
 * hexz_boot_get_snapshot_path:
 * @self: a boot
 *
 * Gets the snapshot file to boot.
 *
 * Returns: (nullable) (type filename): the snapshot's path
 *
 * Since: 1.0
 */
const char *
hexz_boot_get_snapshot_path (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), NULL);

  return self->snapshot_path;
}

/**
 * hexz_boot_set_snapshot_path:
 * @self: a boot that has not started
 * @snapshot_path: (type filename): the snapshot file to boot
 *
 * Sets the snapshot file to boot.
 *
 * Since: 1.0
 */
void
hexz_boot_set_snapshot_path (HexzBoot   *self,
                             const char *snapshot_path)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));

  boot_set_string (self, &self->snapshot_path, snapshot_path, PROP_SNAPSHOT_PATH);
}

/**
 * hexz_boot_get_overlay:
 * @self: a boot
 *
 * Gets the overlay set with [method@Hexz.Boot.set_overlay].
 *
 * Returns: (nullable) (type filename): the overlay's path, or %NULL for an
 *   ephemeral overlay
 *
 * Since: 1.0
 */
const char *
hexz_boot_get_overlay (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), NULL);

  return self->overlay;
}

/**
 * hexz_boot_set_overlay:
 * @self: a boot that has not started
 * @overlay: (nullable) (type filename): the overlay file, or %NULL for an
 *   ephemeral overlay
 *
 * Sets the copy-on-write overlay that receives the disk writes. The file
 * and its `.meta` file are created when missing and kept when the machine
 * stops. An existing overlay must have the size of the snapshot's disk,
 * and must contain no modified page when the snapshot contains memory.
 *
 * Since: 1.0
 */
void
hexz_boot_set_overlay (HexzBoot   *self,
                       const char *overlay)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));

  boot_set_string (self, &self->overlay, overlay, PROP_OVERLAY);
}

/**
 * hexz_boot_get_qmp_socket:
 * @self: a boot
 *
 * Gets the path of the QMP socket left free for other clients. Once the
 * machine has started, this is the socket's path also when none was set.
 *
 * Returns: (nullable) (type filename): the socket's path
 *
 * Since: 1.0
 */
const char *
hexz_boot_get_qmp_socket (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), NULL);

  if (self->qmp_socket_path != NULL)
    return self->qmp_socket_path;

  return self->qmp_socket;
}

/**
 * hexz_boot_set_qmp_socket:
 * @self: a boot that has not started
 * @qmp_socket: (nullable) (type filename): where QEMU listens for QMP
 *   clients, a path that must not exist; %NULL for a socket in the private
 *   folder
 *
 * Sets the path of the QMP socket that other clients, such as
 * `hexz-snap snap --socket`, connect to.
 *
 * Since: 1.0
 */
void
hexz_boot_set_qmp_socket (HexzBoot   *self,
                          const char *qmp_socket)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));

  boot_set_string (self, &self->qmp_socket, qmp_socket, PROP_QMP_SOCKET);
}

/**
 * hexz_boot_get_ram:
 * @self: a boot
 *
 * Gets the requested RAM size.
 *
 * Returns: the RAM size in bytes, or 0 for the default
 *
 * Since: 1.0
 */
guint64
hexz_boot_get_ram (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), 0);

  return self->ram;
}

/**
 * hexz_boot_set_ram:
 * @self: a boot that has not started
 * @ram: the RAM size in bytes, a whole number of MiB, or 0 for the default
 *
 * Sets the machine's RAM size. With a snapshot that contains memory, the
 * default is the recorded size, and another size makes the start fail with
 * %HEXZ_BOOT_ERROR_RAM_MISMATCH before anything starts.
 *
 * Since: 1.0
 */
void
hexz_boot_set_ram (HexzBoot *self,
                   guint64   ram)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));
  g_return_if_fail (self->phase == BOOT_PHASE_IDLE);

  if (self->ram == ram)
    return;

  self->ram = ram;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RAM]);
}

/**
 * hexz_boot_get_cpus:
 * @self: a boot
 *
 * Gets the number of virtual CPUs.
 *
 * Returns: the number of CPUs
 *
 * Since: 1.0
 */
guint
hexz_boot_get_cpus (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), 0);

  return self->cpus;
}

/**
 * hexz_boot_set_cpus:
 * @self: a boot that has not started
 * @cpus: the number of virtual CPUs, or 0 for the snapshot's
 *
 * Sets the number of virtual CPUs. A snapshot with memory must be booted
 * with the number of CPUs of the machine it was taken from, which a live
 * snapshot records and 0 selects.
 *
 * Since: 1.0
 */
void
hexz_boot_set_cpus (HexzBoot *self,
                    guint     cpus)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));
  g_return_if_fail (cpus <= 1024);
  g_return_if_fail (self->phase == BOOT_PHASE_IDLE);

  if (self->cpus == cpus)
    return;

  self->cpus = cpus;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CPUS]);
}

/**
 * hexz_boot_get_accel:
 * @self: a boot
 *
 * Gets the requested QEMU accelerator.
 *
 * Returns: (nullable): the accelerator, or %NULL to choose one
 *
 * Since: 1.0
 */
const char *
hexz_boot_get_accel (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), NULL);

  return self->accel;
}

/**
 * hexz_boot_set_accel:
 * @self: a boot that has not started
 * @accel: (nullable): the accelerator, `kvm` or `tcg`, or %NULL to
 *   use `kvm` when `/dev/kvm` opens for reading and writing, else `tcg`
 *
 * Sets the QEMU accelerator. The start fails with
 * %HEXZ_BOOT_ERROR_INVALID_INPUT for another name, and for `kvm` when
 * `/dev/kvm` does not open.
 *
 * Since: 1.0
 */
void
hexz_boot_set_accel (HexzBoot   *self,
                     const char *accel)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));

  boot_set_string (self, &self->accel, accel, PROP_ACCEL);
}

/**
 * hexz_boot_get_kernel:
 * @self: a boot
 *
 * Gets the kernel that QEMU loads.
 *
 * Returns: (nullable) (type filename): the kernel's path, or %NULL
 *
 * Since: 1.0
 */
const char *
hexz_boot_get_kernel (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), NULL);

  return self->kernel;
}

/**
 * hexz_boot_set_kernel:
 * @self: a boot that has not started
 * @kernel: (nullable) (type filename): a kernel for QEMU's `-kernel`, or
 *   %NULL to boot from the disk
 *
 * Sets the kernel that QEMU loads.
 *
 * Since: 1.0
 */
void
hexz_boot_set_kernel (HexzBoot   *self,
                      const char *kernel)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));

  boot_set_string (self, &self->kernel, kernel, PROP_KERNEL);
}

/**
 * hexz_boot_get_append:
 * @self: a boot
 *
 * Gets the kernel command line.
 *
 * Returns: (nullable): the command line, or %NULL
 *
 * Since: 1.0
 */
const char *
hexz_boot_get_append (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), NULL);

  return self->append;
}

/**
 * hexz_boot_set_append:
 * @self: a boot that has not started
 * @append: (nullable): the kernel command line for QEMU's `-append`
 *
 * Sets the kernel command line.
 *
 * Since: 1.0
 */
void
hexz_boot_set_append (HexzBoot   *self,
                      const char *append)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));

  boot_set_string (self, &self->append, append, PROP_APPEND);
}

/**
 * hexz_boot_get_extra_args:
 * @self: a boot
 *
 * Gets the extra QEMU arguments.
 *
 * Returns: (nullable) (array zero-terminated=1) (transfer none): the
 *   arguments, or %NULL
 *
 * Since: 1.0
 */
const char * const *
hexz_boot_get_extra_args (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), NULL);

  return (const char * const *) self->extra_args;
}

/**
 * hexz_boot_set_extra_args:
 * @self: a boot that has not started
 * @extra_args: (nullable) (array zero-terminated=1): arguments added at the
 *   end of QEMU's command line, or %NULL
 *
 * Sets more QEMU arguments. They are passed as they are, without a shell.
 *
 * Since: 1.0
 */
void
hexz_boot_set_extra_args (HexzBoot           *self,
                          const char * const *extra_args)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));
  g_return_if_fail (self->phase == BOOT_PHASE_IDLE);

  if (self->extra_args == NULL && extra_args == NULL)
    return;

  if (self->extra_args != NULL && extra_args != NULL &&
      g_strv_equal ((const char * const *) self->extra_args, extra_args))
    return;

  g_strfreev (self->extra_args);
  self->extra_args = g_strdupv ((char **) extra_args);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_EXTRA_ARGS]);
}

/**
 * hexz_boot_get_display:
 * @self: a boot
 *
 * Gets the value of QEMU's `-display` option.
 *
 * Returns: the display, `none` by default
 *
 * Since: 1.0
 */
const char *
hexz_boot_get_display (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), NULL);

  return self->display;
}

/**
 * hexz_boot_set_display:
 * @self: a boot that has not started
 * @display: the value of QEMU's `-display` option, such as `none` or `gtk`
 *
 * Sets the display.
 *
 * Since: 1.0
 */
void
hexz_boot_set_display (HexzBoot   *self,
                       const char *display)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));
  g_return_if_fail (display != NULL);

  boot_set_string (self, &self->display, display, PROP_DISPLAY);
}

/**
 * hexz_boot_get_disk_interface:
 * @self: a boot
 *
 * Gets the interface of the disk.
 *
 * Returns: the interface, `ide` by default
 *
 * Since: 1.0
 */
const char *
hexz_boot_get_disk_interface (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), NULL);

  return self->disk_interface;
}

/**
 * hexz_boot_set_disk_interface:
 * @self: a boot that has not started
 * @disk_interface: the `if=` value of QEMU's `-drive`, such as `ide` or
 *   `virtio`
 *
 * Sets the interface of the disk.
 *
 * Since: 1.0
 */
void
hexz_boot_set_disk_interface (HexzBoot   *self,
                              const char *disk_interface)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));
  g_return_if_fail (disk_interface != NULL);

  boot_set_string (self, &self->disk_interface, disk_interface, PROP_DISK_INTERFACE);
}

/**
 * hexz_boot_get_qemu_binary:
 * @self: a boot
 *
 * Gets the QEMU program.
 *
 * Returns: (type filename): the program
 *
 * Since: 1.0
 */
const char *
hexz_boot_get_qemu_binary (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), NULL);

  return self->qemu_binary;
}

/**
 * hexz_boot_set_qemu_binary:
 * @self: a boot that has not started
 * @qemu_binary: (type filename): a path, or a name looked up in `PATH`
 *
 * Sets the QEMU program, `qemu-system-x86_64` by default.
 *
 * Since: 1.0
 */
void
hexz_boot_set_qemu_binary (HexzBoot   *self,
                           const char *qemu_binary)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));
  g_return_if_fail (qemu_binary != NULL);

  boot_set_string (self, &self->qemu_binary, qemu_binary, PROP_QEMU_BINARY);
}

/**
 * hexz_boot_get_plugin_path:
 * @self: a boot
 *
 * Gets the path of the nbdkit plugin.
 *
 * Returns: (type filename): the plugin's path
 *
 * Since: 1.0
 */
const char *
hexz_boot_get_plugin_path (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), NULL);

  return self->plugin_path;
}

/**
 * hexz_boot_set_plugin_path:
 * @self: a boot that has not started
 * @plugin_path: (nullable) (type filename): the path of `hexz-plugin.so`,
 *   or %NULL for the default
 *
 * Sets the nbdkit plugin that serves the disk.
 *
 * Since: 1.0
 */
void
hexz_boot_set_plugin_path (HexzBoot   *self,
                           const char *plugin_path)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));

  if (plugin_path == NULL)
    plugin_path = boot_default_plugin_path ();

  boot_set_string (self, &self->plugin_path, plugin_path, PROP_PLUGIN_PATH);
}

/**
 * hexz_boot_get_stop_timeout:
 * @self: a boot
 *
 * Gets how long a stop waits at each step.
 *
 * Returns: the timeout in milliseconds
 *
 * Since: 1.0
 */
guint
hexz_boot_get_stop_timeout (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), 0);

  return self->stop_timeout;
}

/**
 * hexz_boot_set_stop_timeout:
 * @self: a boot
 * @timeout_ms: the timeout in milliseconds
 *
 * Sets how long a stop waits for QEMU to exit before it sends SIGTERM, and
 * after SIGTERM before it sends SIGKILL.
 *
 * Since: 1.0
 */
void
hexz_boot_set_stop_timeout (HexzBoot *self,
                            guint     timeout_ms)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));

  if (self->stop_timeout == timeout_ms)
    return;

  self->stop_timeout = timeout_ms;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_STOP_TIMEOUT]);
}

/**
 * hexz_boot_get_start_paused:
 * @self: a boot
 *
 * Gets whether the machine stays paused once it is loaded.
 *
 * Returns: %TRUE when the machine starts paused
 *
 * Since: 1.0
 */
gboolean
hexz_boot_get_start_paused (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), FALSE);

  return self->start_paused;
}

/**
 * hexz_boot_set_start_paused:
 * @self: a boot that has not started
 * @start_paused: whether the machine stays paused once it is loaded
 *
 * Sets whether the machine stays paused once it is loaded; see
 * [property@Hexz.Boot:start-paused].
 *
 * Since: 1.0
 */
void
hexz_boot_set_start_paused (HexzBoot *self,
                            gboolean  start_paused)
{
  g_return_if_fail (HEXZ_IS_BOOT (self));

  start_paused = !!start_paused;
  if (self->start_paused == start_paused)
    return;

  self->start_paused = start_paused;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_START_PAUSED]);
}

/**
 * hexz_boot_get_running:
 * @self: a boot
 *
 * Checks whether the machine has started and has not stopped yet.
 *
 * Returns: %TRUE while the machine runs
 *
 * Since: 1.0
 */
gboolean
hexz_boot_get_running (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), FALSE);

  return self->phase == BOOT_PHASE_RUNNING;
}

/**
 * hexz_boot_get_restored_memory:
 * @self: a boot
 *
 * Checks whether the start loaded the snapshot's memory, so that the
 * machine resumed where the snapshot was taken instead of booting.
 *
 * Returns: %TRUE once the memory was restored
 *
 * Since: 1.0
 */
gboolean
hexz_boot_get_restored_memory (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), FALSE);

  return self->restored_memory;
}

/**
 * hexz_boot_get_directory:
 * @self: a boot
 *
 * Gets the private folder that contains the sockets, the logs and an
 * ephemeral overlay. It exists from the start until the machine stops.
 *
 * Returns: (nullable) (type filename): the folder, or %NULL before the
 *   start
 *
 * Since: 1.0
 */
const char *
hexz_boot_get_directory (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), NULL);

  return self->directory;
}

/**
 * hexz_boot_get_qemu_pid:
 * @self: a boot
 *
 * Gets the process id of QEMU. It stays set after QEMU exited.
 *
 * Returns: the process id, or 0 when QEMU was not started
 *
 * Since: 1.0
 */
GPid
hexz_boot_get_qemu_pid (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), 0);

  return self->qemu_pid;
}

/**
 * hexz_boot_get_nbdkit_pid:
 * @self: a boot
 *
 * Gets the process id of nbdkit. It stays set after nbdkit exited.
 *
 * Returns: the process id, or 0 when nbdkit was not started
 *
 * Since: 1.0
 */
GPid
hexz_boot_get_nbdkit_pid (HexzBoot *self)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), 0);

  return self->nbdkit_pid;
}

/**
 * hexz_boot_start_async:
 * @self: a boot that has not started
 * @cancellable: (nullable): a cancellable for the start
 * @callback: (scope async): the function to call once the machine runs
 * @user_data: the data to pass to @callback
 *
 * Starts nbdkit and QEMU, and loads the snapshot's memory when it contains
 * some. The operation completes once the machine runs (after the memory
 * was restored) or once everything it started was stopped again after a
 * failure or a cancellation.
 *
 * Since: 1.0
 */
void
hexz_boot_start_async (HexzBoot            *self,
                       GCancellable        *cancellable,
                       GAsyncReadyCallback  callback,
                       gpointer             user_data)
{
  g_autoptr(StartState) state = NULL;
  g_autoptr(GFile) file = NULL;

  g_return_if_fail (HEXZ_IS_BOOT (self));
  g_return_if_fail (self->snapshot_path != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  state = g_atomic_rc_box_new0 (StartState);
  state->self = g_object_ref (self);
  state->task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (state->task, hexz_boot_start_async);
  state->cancellable = cancellable != NULL ? g_object_ref (cancellable) : g_cancellable_new ();

  if (self->phase != BOOT_PHASE_IDLE || self->start != NULL)
    {
      g_task_return_new_error (state->task, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_BUSY,
                               /* Translators: %s is a file name. */
                               _("The boot of “%s” was already started; create a new boot"),
                               self->snapshot_path);
      g_clear_object (&state->task);
      return;
    }

  self->start = start_state_ref (state);

  file = g_file_new_for_path (self->snapshot_path);
  hexz_snapshot_open_async (file, G_PRIORITY_DEFAULT, state->cancellable,
                            start_on_snapshot_opened, start_state_ref (state));
}

/**
 * hexz_boot_start_finish:
 * @self: a boot
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Hexz.Boot.start_async].
 *
 * Returns: %TRUE if the machine runs
 *
 * Since: 1.0
 */
gboolean
hexz_boot_start_finish (HexzBoot      *self,
                        GAsyncResult  *result,
                        GError       **error)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == hexz_boot_start_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
boot_destroy_source (gpointer data)
{
  GSource *source = data;

  g_source_destroy (source);
  g_source_unref (source);
}

static gboolean
boot_on_wait_cancelled (GCancellable *cancellable,
                        gpointer      user_data)
{
  GTask *task = user_data;
  HexzBoot *self = g_task_get_source_object (task);
  GList *link = g_list_find (self->wait_tasks, task);

  if (link != NULL)
    {
      self->wait_tasks = g_list_delete_link (self->wait_tasks, link);
      g_task_return_error_if_cancelled (task);
      g_object_unref (task);
    }

  return G_SOURCE_REMOVE;
}

/**
 * hexz_boot_wait_async:
 * @self: a boot
 * @cancellable: (nullable): a cancellable for the wait; cancelling it
 *   leaves the machine running
 * @callback: (scope async): the function to call once the machine stopped
 * @user_data: the data to pass to @callback
 *
 * Waits until QEMU exited, nbdkit was stopped and the private folder was
 * removed.
 *
 * Since: 1.0
 */
void
hexz_boot_wait_async (HexzBoot            *self,
                      GCancellable        *cancellable,
                      GAsyncReadyCallback  callback,
                      gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (HEXZ_IS_BOOT (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_boot_wait_async);
  g_task_set_check_cancellable (task, TRUE);

  switch (self->phase)
    {
    case BOOT_PHASE_IDLE:
      g_task_return_new_error (task, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_BUSY,
                               /* Translators: %s is a file name. */
                               _("The boot of “%s” was not started"), self->snapshot_path);
      return;

    case BOOT_PHASE_STOPPED:
      if (self->exit_error != NULL)
        g_task_return_error (task, g_error_copy (self->exit_error));
      else
        g_task_return_boolean (task, TRUE);
      return;

    case BOOT_PHASE_STARTING:
    case BOOT_PHASE_RUNNING:
    case BOOT_PHASE_STOPPING:
    default:
      if (cancellable != NULL)
        {
          GSource *source = g_cancellable_source_new (cancellable);

          /* The task owns the source, so the source never outlives it. */
          g_source_set_callback (source, G_SOURCE_FUNC (boot_on_wait_cancelled), task, NULL);
          g_source_attach (source, g_task_get_context (task));
          g_task_set_task_data (task, source, boot_destroy_source);
        }

      self->wait_tasks = g_list_append (self->wait_tasks, g_steal_pointer (&task));
      return;
    }
}

/**
 * hexz_boot_wait_finish:
 * @self: a boot
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Hexz.Boot.wait_async].
 *
 * Returns: %TRUE if QEMU exited with status 0, or was stopped with
 *   [method@Hexz.Boot.stop_async]; %FALSE with an error that quotes QEMU's
 *   log when it failed, or when nbdkit stopped while the machine ran
 *
 * Since: 1.0
 */
gboolean
hexz_boot_wait_finish (HexzBoot      *self,
                       GAsyncResult  *result,
                       GError       **error)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == hexz_boot_wait_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

static gboolean
boot_on_stop_timeout (gpointer user_data)
{
  HexzBoot *self = user_data;

  self->stop_timer_id = 0;
  g_debug ("Boot: QEMU did not exit within %u ms, terminating it", self->stop_timeout);
  boot_teardown (self);

  return G_SOURCE_REMOVE;
}

static void
boot_on_quit_sent (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(HexzBoot) self = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;

  /* QEMU may close the connection before it replies. */
  reply = hexz_qmp_client_execute_finish (HEXZ_QMP_CLIENT (source), result, &error);
  if (reply == NULL)
    g_debug ("Boot: quit: %s", error->message);
}

static gboolean
boot_on_powerdown_timeout (gpointer user_data)
{
  HexzBoot *self = user_data;

  self->stop_timer_id = 0;
  g_debug ("Boot: the guest did not power down within %u ms, sending quit", self->stop_timeout);

  if (self->control == NULL)
    {
      boot_teardown (self);
      return G_SOURCE_REMOVE;
    }

  hexz_qmp_client_execute_async (self->control, "quit", NULL, NULL, NULL,
                                 boot_on_quit_sent, g_object_ref (self));
  self->stop_timer_id = g_timeout_add (self->stop_timeout, boot_on_stop_timeout, self);

  return G_SOURCE_REMOVE;
}

/**
 * hexz_boot_stop_async:
 * @self: a boot
 * @mode: how to ask QEMU to stop
 * @cancellable: (nullable): a cancellable for the wait; cancelling it does
 *   not stop the shutdown
 * @callback: (scope async): the function to call once the machine stopped
 * @user_data: the data to pass to @callback
 *
 * Shuts the machine down cleanly: sends QMP `quit` (or `system_powerdown`
 * first, for %HEXZ_BOOT_STOP_POWERDOWN), sends SIGTERM to QEMU when it has
 * not exited after [property@Hexz.Boot:stop-timeout], then SIGKILL after
 * the same time. Then stops nbdkit the same way, and removes the sockets,
 * the logs, an ephemeral overlay and the private folder.
 *
 * Stopping a boot that is still starting makes the start fail with
 * %G_IO_ERROR_CANCELLED. Stopping a boot that was not started or has
 * stopped succeeds at once.
 *
 * Since: 1.0
 */
void
hexz_boot_stop_async (HexzBoot            *self,
                      HexzBootStopMode     mode,
                      GCancellable        *cancellable,
                      GAsyncReadyCallback  callback,
                      gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (HEXZ_IS_BOOT (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_boot_stop_async);

  if ((self->phase == BOOT_PHASE_IDLE && self->start == NULL) ||
      self->phase == BOOT_PHASE_STOPPED)
    {
      g_task_return_boolean (task, TRUE);
      return;
    }

  self->stop_tasks = g_list_append (self->stop_tasks, g_steal_pointer (&task));

  if (self->stop_requested)
    return;

  self->stop_requested = TRUE;

  if (self->start != NULL)
    {
      g_debug ("Boot: stop requested while starting");
      if (self->start != NULL)
        start_fail (self->start, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                      _("The boot was stopped while starting")));
      return;
    }

  boot_set_phase (self, BOOT_PHASE_STOPPING);

  if (self->control == NULL)
    {
      boot_teardown (self);
      return;
    }

  if (mode == HEXZ_BOOT_STOP_POWERDOWN)
    {
      g_debug ("Boot: sending system_powerdown to QEMU (pid %d)", (int) self->qemu_pid);
      hexz_qmp_client_execute_async (self->control, "system_powerdown", NULL, NULL, NULL,
                                     boot_on_quit_sent, g_object_ref (self));
      self->stop_timer_id = g_timeout_add (self->stop_timeout, boot_on_powerdown_timeout, self);
      return;
    }

  g_debug ("Boot: sending quit to QEMU (pid %d)", (int) self->qemu_pid);
  hexz_qmp_client_execute_async (self->control, "quit", NULL, NULL, NULL,
                                 boot_on_quit_sent, g_object_ref (self));
  self->stop_timer_id = g_timeout_add (self->stop_timeout, boot_on_stop_timeout, self);
}

/**
 * hexz_boot_stop_finish:
 * @self: a boot
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Hexz.Boot.stop_async].
 *
 * Returns: %TRUE once the machine stopped and its files were removed
 *
 * Since: 1.0
 */
gboolean
hexz_boot_stop_finish (HexzBoot      *self,
                       GAsyncResult  *result,
                       GError       **error)
{
  g_return_val_if_fail (HEXZ_IS_BOOT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == hexz_boot_stop_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}
