/* hexz-capture.c: live snapshots of a running QEMU virtual machine
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/**
 * HexzCapture:
 *
 * Takes one snapshot of a running QEMU virtual machine: its disk and its
 * memory at one instant, in one snapshot file.
 *
 * The machine boots from a base snapshot and writes to a copy-on-write
 * overlay (see [class@Hexz.Overlay]). A capture sends commands to the
 * machine's QMP monitor. It pauses the machine, copies the overlay's
 * modified pages and streams the machine's memory out of QEMU's migration
 * through a pipe into the new snapshot. Then it resumes the machine and
 * writes the disk stream from the base and the copied pages while the
 * machine runs.
 *
 * Three modes get the memory (see [enum@Hexz.CaptureMode]). Paused keeps
 * the machine paused during the whole memory dump. Background lets QEMU
 * resume the guest right after saving the device state and stream the
 * memory as it was at the pause. Live copies the memory while the guest
 * runs and lets QEMU pause it once the copy converges.
 *
 * From the moment the machine is paused, every failure (an error reply, a
 * failed or stalled migration, a write error, a cancellation) cancels the
 * migration, resumes the machine if it was running before, restores the
 * migration settings the capture changed, and leaves no file at the output
 * path. The overlay is only read.
 *
 * A run that is killed before its cleanup cannot undo anything. It leaves
 * a marker file beside the QMP socket (`SOCKET.hexz-capture`) that records
 * the machine's run state and migration settings from before the run. The
 * next run on that socket restores those settings, resumes the machine if
 * the killed run found it running, and logs a message saying so.
 * [method@Hexz.Capture.recover_async], which `hexz-snap resume` calls,
 * undoes the same without taking a snapshot. In background mode a helper
 * process reads the rest of a killed run's memory stream, because QEMU 7.2
 * cannot migrate again after a background migration whose stream broke.
 *
 * ```c
 * g_autoptr(HexzCapture) capture = hexz_capture_new ();
 * g_autoptr(GFile) output = g_file_new_for_path ("vm-now.hexz");
 *
 * hexz_capture_set_socket_path (capture, "/run/vm/qmp.sock");
 * hexz_capture_set_overlay (capture, "/run/vm/disk.overlay");
 * hexz_capture_set_base_path (capture, "vm-base.hexz");
 * hexz_capture_set_output (capture, output);
 * hexz_capture_run_async (capture, cancellable, on_captured, NULL);
 * ```
 *
 * Since: 1.0
 */

#include "config.h"

#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <glib-unix.h>
#include <gio/gunixfdlist.h>
#include <gio/gunixinputstream.h>

#include "hexz-capture.h"
#include "hexz-capture-private.h"
#include "hexz-util-private.h"
#include "hexz-overlay-private.h"
#include "hexz-snapshot-private.h"
#include "hexz-commit-private.h"
#include "hexz-enum-types.h"
#include "hexz-i18n-private.h"
#include "hexz-overlay.h"
#include "hexz-snapshot-writer.h"
#include "hexz-util-private.h"

/* The name under which the pipe's write end is passed to QEMU. */
#define CAPTURE_FD_NAME "hexz-snapshot"

/* QEMU's default max-bandwidth throttles even a paused machine's dump, so
 * the capture raises it to 1 TiB/s, which no machine reaches. */
#define CAPTURE_MAX_BANDWIDTH (G_GINT64_CONSTANT (1) << 40)

#define DEFAULT_STALL_TIMEOUT_S 30
#define DEFAULT_LIVE_TIMEOUT_S 60
#define DEFAULT_POLL_INTERVAL_MS 1000
#define DEFAULT_CLEANUP_TIMEOUT_MS 30000

/* How often the run state is checked while QEMU finishes a migration. */
#define RUN_STATE_RETRY_MS 20

struct _HexzCapture
{
  GObject parent_instance;

  char *socket_path;
  HexzQmpClient *qmp_client;
  char *overlay;
  char *base_path;
  HexzSnapshot *base;
  GFile *output;
  HexzCaptureMode mode;
  gboolean thin;
  HexzCodec codec;
  int level;
  guint block_size;
  guint threads;
  char *message;
  guint stall_timeout;
  guint live_timeout;
  guint64 live_bandwidth;
  gboolean allow_larger_overlay;

  gboolean check_free_space;
  guint poll_interval;
  guint cleanup_timeout;
  guint connect_timeout;

  HexzCapturePhase phase;
  HexzCaptureMode chosen_mode;
  char *fallback_reason;
  gint64 pause_time;
  gint64 downtime;
  gboolean paused_to_converge;
  gboolean running;
};

enum {
  PROP_0,
  PROP_SOCKET_PATH,
  PROP_QMP_CLIENT,
  PROP_OVERLAY,
  PROP_BASE_PATH,
  PROP_BASE,
  PROP_OUTPUT,
  PROP_MODE,
  PROP_THIN,
  PROP_CODEC,
  PROP_LEVEL,
  PROP_BLOCK_SIZE,
  PROP_THREADS,
  PROP_MESSAGE,
  PROP_STALL_TIMEOUT,
  PROP_LIVE_TIMEOUT,
  PROP_LIVE_BANDWIDTH,
  PROP_ALLOW_LARGER_OVERLAY,
  PROP_PHASE,
  PROP_CHOSEN_MODE,
  PROP_FALLBACK_REASON,
  PROP_PAUSE_TIME,
  PROP_DOWNTIME,
  PROP_PAUSED_TO_CONVERGE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_PROGRESS,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (HexzCapture, hexz_capture, G_TYPE_OBJECT)

/**
 * hexz_capture_error_quark:
 *
 * Gets the error domain of live snapshots, %HEXZ_CAPTURE_ERROR.
 *
 * Returns: the error domain
 *
 * Since: 1.0
 */
G_DEFINE_QUARK (hexz-capture-error-quark, hexz_capture_error)

/* The state of one run, which owns the task until the run completes. Every
 * pending callback keeps a reference, so a callback that arrives after a
 * failure finds the state alive and returns without acting. */
typedef struct _CaptureState CaptureState;

typedef void (*CaptureStep) (CaptureState *state);

struct _CaptureState
{
  HexzCapture *self;
  GTask *task;
  GMainContext *context;

  /* The caller's cancellable starts the cleanup. The internal one stops
   * the data path (splice, event wait) once the run fails; cleanup
   * commands use neither. */
  GCancellable *user_cancellable;
  gulong user_cancelled_id;
  GCancellable *cancellable;

  HexzQmpClient *client;
  gboolean own_client;
  HexzSnapshot *base;
  HexzOverlay *overlay;
  HexzOverlay *disk_copy;
  HexzSnapshotWriter *writer;
  char *output_dir;
  guint64 disk_size;

  /* The machine's state and settings before the run. */
  gboolean was_running;
  HexzRunState initial_run_state;
  guint64 ram_size;
  char *vm_name;
  /* The machine's configuration, recorded for booting the snapshot:
   * guest CPUs (0 if unknown), versioned machine type, kernel, command
   * line and initrd (NULL if unknown or unset). */
  guint cpus;
  char *machine_type;
  char *kernel;
  char *append;
  char *initrd;
  guint machine_queries;
  gboolean has_background_snapshot;
  gboolean saved_events;
  gboolean saved_background_snapshot;
  gint64 saved_max_bandwidth;
  gboolean has_saved_max_bandwidth;

  HexzCaptureMode mode;

  /* Changes made to the machine, so that cleanup undoes exactly those.
   * A flag is set when the command is sent, because QEMU may act on a
   * command whose reply never comes. */
  gboolean capabilities_changed;
  gboolean parameters_changed;
  gboolean stop_sent;
  gboolean getfd_sent;
  gboolean migrate_sent;
  gboolean migration_finished;
  gboolean vm_resumed;
  gint64 migrate_time;
  gboolean converge_stop_sent;
  gint64 pause_start;
  gint64 pause_end;

  /* The memory stream. */
  GInputStream *memory_input;
  int drain_guard_fd;
  GCancellable *drain_cancellable;
  gboolean splice_running;
  gboolean splice_done;
  guint64 memory_bytes;
  gboolean query_in_flight;
  guint poll_source;
  guint64 last_transferred;
  gint64 last_progress_time;
  gint64 downtime;

  /* The run-state wait shared by the resume and cleanup paths. */
  CaptureStep resume_next;
  gint64 resume_deadline;
  gboolean cont_accepted;

  CaptureStep settings_next;

  /* A worker thread (page copy or merge) uses the writer and the copied
   * pages, so the cleanup waits for it before dropping them. */
  gboolean worker_running;
  gboolean cleanup_waits_for_worker;

  /* The marker file beside the QMP socket (see capture_write_marker()),
   * NULL without a socket path; marker_written once this run wrote it. */
  char *marker_path;
  gboolean marker_written;
  gint64 previous_migration_deadline;
  guint64 previous_migration_transferred;

  /* A recovery (hexz_capture_recover_async()) instead of a snapshot, and
   * what it did so far. */
  gboolean recovering;
  HexzCaptureRecovery recovery;

  gint64 cleanup_deadline;
  guint64 cleanup_transferred;
  gboolean migrate_cancel_sent;
  gboolean failing;
  gboolean connection_lost;
  GError *error;
  GString *cleanup_notes;
};

static CaptureState *
capture_state_ref (CaptureState *state)
{
  return g_atomic_rc_box_acquire (state);
}

static void capture_release_drain_guard (CaptureState *state);

static void
capture_state_clear (CaptureState *state)
{
  g_clear_object (&state->self);
  g_clear_object (&state->task);
  g_clear_pointer (&state->context, g_main_context_unref);
  g_clear_object (&state->user_cancellable);
  g_clear_object (&state->cancellable);
  g_clear_object (&state->client);
  g_clear_object (&state->base);
  g_clear_object (&state->overlay);
  g_clear_object (&state->disk_copy);
  g_clear_object (&state->writer);
  g_clear_pointer (&state->output_dir, g_free);
  g_clear_pointer (&state->vm_name, g_free);
  g_clear_pointer (&state->machine_type, g_free);
  g_clear_pointer (&state->kernel, g_free);
  g_clear_pointer (&state->append, g_free);
  g_clear_pointer (&state->initrd, g_free);
  g_clear_object (&state->memory_input);
  g_clear_object (&state->drain_cancellable);
  capture_release_drain_guard (state);
  g_clear_error (&state->error);
  if (state->cleanup_notes != NULL)
    g_string_free (state->cleanup_notes, TRUE);
  g_free (state->marker_path);
}

static void
capture_state_unref (CaptureState *state)
{
  g_atomic_rc_box_release_full (state, (GDestroyNotify) capture_state_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CaptureState, capture_state_unref)

static void capture_fail (CaptureState *state,
                          GError       *error);

/* Utilities */

static void
capture_set_phase (CaptureState     *state,
                   HexzCapturePhase  phase)
{
  HexzCapture *self = state->self;

  if (self->phase == phase)
    return;

  g_debug ("Capture: phase %s", hexz_capture_phase_to_string (phase));
  self->phase = phase;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PHASE]);
  g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, phase, (guint64) 0, (guint64) 0);
}

static void
capture_progress (CaptureState *state,
                  guint64       done,
                  guint64       expected)
{
  g_signal_emit (state->self, signals[SIGNAL_PROGRESS], 0, state->self->phase, done, expected);
}

static gboolean
capture_is_connection_error (const GError *error)
{
  return g_error_matches (error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED) ||
         g_error_matches (error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_PROTOCOL) ||
         g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CLOSED) ||
         g_error_matches (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE) ||
         g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED);
}

/* Wraps a failed QMP command's error into one that names the command. */
static GError *
capture_command_error (const char *command,
                       GError     *error)
{
  GError *wrapped;

  if (capture_is_connection_error (error))
    wrapped = g_error_new (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_CONNECTION_LOST,
                           /* Translators: %s is a QMP command name, then an error message. */
                           _("Lost the QMP connection during “%s”: %s"),
                           command, error->message);
  else
    wrapped = g_error_new (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_FAILED,
                           /* Translators: %s is a QMP command name, then an error message. */
                           _("QEMU rejected “%s”: %s"), command, error->message);

  g_error_free (error);
  return wrapped;
}

static JsonObject *
capture_reply_object (JsonNode *reply)
{
  if (reply != NULL && JSON_NODE_HOLDS_OBJECT (reply))
    return json_node_get_object (reply);

  return NULL;
}

static gboolean
cancel_cancellable_cb (gpointer user_data)
{
  g_autoptr(GCancellable) cancellable = g_weak_ref_get (user_data);

  if (cancellable != NULL)
    g_cancellable_cancel (cancellable);
  return G_SOURCE_REMOVE;
}

static void
weak_ref_free (gpointer user_data)
{
  g_weak_ref_clear (user_data);
  g_free (user_data);
}

static void
destroy_timeout_source (gpointer  user_data,
                        GObject  *where_the_object_was)
{
  GSource *source = user_data;

  g_source_destroy (source);
  g_source_unref (source);
}

/* Creates a cancellable for one command, cancelled after the cleanup
 * timeout so that a hung QEMU cannot hold the cleanup forever. The timeout
 * keeps only a weak reference to the cancellable and is destroyed with it,
 * so a finished command leaves no source on the caller's main context. */
static GCancellable *
capture_timeout_cancellable (CaptureState *state)
{
  GCancellable *cancellable = g_cancellable_new ();
  GSource *source = g_timeout_source_new (state->self->cleanup_timeout);
  GWeakRef *weak = g_new0 (GWeakRef, 1);

  g_weak_ref_init (weak, cancellable);
  g_source_set_callback (source, cancel_cancellable_cb, weak, weak_ref_free);
  g_source_attach (source, state->context);
  g_object_weak_ref (G_OBJECT (cancellable), destroy_timeout_source, source);

  return cancellable;
}

static void
capture_execute (CaptureState        *state,
                 const char          *command,
                 JsonObject          *arguments,
                 GUnixFDList         *fd_list,
                 GAsyncReadyCallback  callback)
{
  g_autoptr(GCancellable) cancellable = capture_timeout_cancellable (state);

  g_debug ("Capture: sending %s", command);
  hexz_qmp_client_execute_async (state->client, command, arguments, fd_list,
                                 cancellable, callback, capture_state_ref (state));
}

static JsonNode *
capture_execute_finish (CaptureState  *state,
                        GAsyncResult  *result,
                        GError       **error)
{
  return hexz_qmp_client_execute_finish (state->client, result, error);
}

static JsonObject *
capabilities_argument (const char *first_name,
                       ...) G_GNUC_NULL_TERMINATED;

/* Builds `{"capabilities": [{"capability": NAME, "state": BOOL}, ...]}`
 * from NAME, gboolean pairs. */
static JsonObject *
capabilities_argument (const char *first_name,
                       ...)
{
  JsonObject *arguments = json_object_new ();
  JsonArray *list = json_array_new ();
  const char *name;
  va_list args;

  va_start (args, first_name);
  for (name = first_name; name != NULL; name = va_arg (args, const char *))
    {
      JsonObject *item = json_object_new ();

      json_object_set_string_member (item, "capability", name);
      json_object_set_boolean_member (item, "state", va_arg (args, gboolean));
      json_array_add_object_element (list, item);
    }
  va_end (args);

  json_object_set_array_member (arguments, "capabilities", list);
  return arguments;
}

/* Completion */

static void
capture_remove_poll (CaptureState *state)
{
  if (state->poll_source != 0)
    {
      g_source_remove (state->poll_source);
      state->poll_source = 0;
    }
}

static void
capture_complete (CaptureState *state)
{
  HexzCapture *self = state->self;
  g_autoptr(GTask) task = g_steal_pointer (&state->task);

  capture_remove_poll (state);
  g_cancellable_cancel (state->cancellable);
  if (state->user_cancelled_id != 0)
    {
      g_cancellable_disconnect (state->user_cancellable, state->user_cancelled_id);
      state->user_cancelled_id = 0;
    }

  self->running = FALSE;
  capture_release_drain_guard (state);

  /* A note means the cleanup could not restore everything: the marker then
   * stays for the next run. A failed recovery keeps the marker as well, so
   * that it can be tried again. */
  if (state->marker_written && state->cleanup_notes == NULL && !state->connection_lost &&
      (!state->recovering || state->error == NULL))
    g_unlink (state->marker_path);

  /* A QMP socket serves one client at a time: free it for the next. */
  if (state->own_client)
    hexz_qmp_client_close (state->client);

  if (state->error != NULL)
    {
      capture_set_phase (state, HEXZ_CAPTURE_PHASE_FAILED);
      g_task_return_error (task, g_steal_pointer (&state->error));
    }
  else
    {
      /* The snapshot is good, so a setting left changed is only logged;
       * the marker stays, and the next run restores the setting. */
      if (state->cleanup_notes != NULL)
        /* Translators: %s is one or more sentences, each after a space,
         * on the settings that could not be restored. */
        g_message (_("The snapshot was written, but QEMU kept a changed setting:%s"),
                   state->cleanup_notes->str);
      capture_set_phase (state, HEXZ_CAPTURE_PHASE_DONE);
      if (state->recovering)
        g_task_set_task_data (task, GUINT_TO_POINTER (state->recovery), NULL);
      g_task_return_boolean (task, TRUE);
    }
}

/* Migration settings: saved in the prepare step, restored on every path. */

static void capture_restore_parameters (CaptureState *state);

static void
capture_settings_done (CaptureState *state)
{
  CaptureStep next = state->settings_next;

  state->settings_next = NULL;
  next (state);
}

/* Ends @error's message with a full stop, so that a sentence can follow. */
static void
capture_end_sentence (GError *error)
{
  char *message;

  g_strchomp (error->message);
  if (g_str_has_suffix (error->message, "."))
    return;

  message = g_strconcat (error->message, ".", NULL);
  g_free (error->message);
  error->message = message;
}

static void
capture_note (CaptureState *state,
              const char   *what,
              const GError *error)
{
  if (state->cleanup_notes == NULL)
    state->cleanup_notes = g_string_new (NULL);

  g_string_append_printf (state->cleanup_notes, " %s: %s.", what, error->message);
  g_debug ("Capture: %s: %s", what, error->message);

  if (capture_is_connection_error (error))
    state->connection_lost = TRUE;
}

static void
capture_on_capabilities_restored (GObject      *source,
                                  GAsyncResult *result,
                                  gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;

  reply = capture_execute_finish (state, result, &error);
  if (reply == NULL)
    capture_note (state, _("Restoring the migration capabilities failed"), error);
  else
    state->capabilities_changed = FALSE;

  capture_restore_parameters (state);
}

static void
capture_restore_settings (CaptureState *state,
                          CaptureStep   next)
{
  JsonObject *arguments;

  /* A failure while the success path restores the settings lets that
   * restore finish and continue with the cleanup. */
  if (state->settings_next != NULL)
    {
      state->settings_next = next;
      return;
    }

  state->settings_next = next;

  if (!state->capabilities_changed || state->connection_lost)
    {
      capture_restore_parameters (state);
      return;
    }

  if (state->has_background_snapshot)
    arguments = capabilities_argument ("events", state->saved_events,
                                       "background-snapshot", state->saved_background_snapshot,
                                       NULL);
  else
    arguments = capabilities_argument ("events", state->saved_events, NULL);

  capture_execute (state, "migrate-set-capabilities", arguments, NULL,
                   capture_on_capabilities_restored);
  json_object_unref (arguments);
}

static void
capture_on_parameters_restored (GObject      *source,
                                GAsyncResult *result,
                                gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;

  reply = capture_execute_finish (state, result, &error);
  if (reply == NULL)
    capture_note (state, _("Restoring the migration bandwidth failed"), error);
  else
    state->parameters_changed = FALSE;

  capture_settings_done (state);
}

static void
capture_restore_parameters (CaptureState *state)
{
  g_autoptr(JsonObject) arguments = NULL;

  if (!state->parameters_changed || state->connection_lost)
    {
      capture_settings_done (state);
      return;
    }

  arguments = json_object_new ();
  json_object_set_int_member (arguments, "max-bandwidth", state->saved_max_bandwidth);
  capture_execute (state, "migrate-set-parameters", arguments, NULL,
                   capture_on_parameters_restored);
}

/* Resuming: shared by the success path and the cleanup. QEMU rejects
 * `cont` while the machine is in finish-migrate, so the run state is
 * polled until it leaves that state. */

static void capture_resume_check (CaptureState *state);

static void
capture_resume_done (CaptureState *state)
{
  CaptureStep next = state->resume_next;

  state->resume_next = NULL;
  next (state);
}

static void
capture_resume_failed (CaptureState *state,
                       GError       *error)
{
  if (state->failing)
    {
      capture_note (state, _("Resuming the virtual machine failed"), error);
      g_error_free (error);
      capture_resume_done (state);
      return;
    }

  /* This resume has ended, so the cleanup starts one of its own. */
  state->resume_next = NULL;
  capture_fail (state, error);
}

static gboolean
capture_resume_retry_cb (gpointer user_data)
{
  CaptureState *state = user_data;

  capture_resume_check (state);
  return G_SOURCE_REMOVE;
}

static void
capture_resume_retry (CaptureState *state)
{
  GSource *source;

  if (g_get_monotonic_time () > state->resume_deadline)
    {
      capture_resume_failed (state,
                             g_error_new_literal (HEXZ_CAPTURE_ERROR,
                                                  HEXZ_CAPTURE_ERROR_RESUME_FAILED,
                                                  _("The virtual machine did not leave the "
                                                    "finish-migrate state in time")));
      return;
    }

  source = g_timeout_source_new (RUN_STATE_RETRY_MS);
  g_source_set_callback (source, capture_resume_retry_cb, capture_state_ref (state),
                         (GDestroyNotify) capture_state_unref);
  g_source_attach (source, state->context);
  g_source_unref (source);
}

static void
capture_on_cont (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(GError) error = NULL;

  if (!hexz_qmp_client_cont_finish (state->client, result, &error))
    {
      /* QEMU 7.2 still rejects `cont` for a moment after the migration
       * reports completion ("Migration is not finalized yet"). */
      if (g_error_matches (error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_GENERIC_ERROR) &&
          strstr (error->message, "not finalized") != NULL)
        {
          capture_resume_retry (state);
          return;
        }

      capture_resume_failed (state, capture_command_error ("cont", g_steal_pointer (&error)));
      return;
    }

  state->cont_accepted = TRUE;
  capture_resume_check (state);
}

static void
capture_on_resume_status (GObject      *source,
                          GAsyncResult *result,
                          gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancellable = NULL;
  HexzRunState run_state;
  gboolean running = FALSE;

  run_state = hexz_qmp_client_query_status_finish (state->client, result, &running, &error);
  if (error != NULL)
    {
      capture_resume_failed (state, capture_command_error ("query-status", g_steal_pointer (&error)));
      return;
    }

  g_debug ("Capture: run state %s", hexz_run_state_to_string (run_state));

  if (running)
    {
      if (!state->vm_resumed)
        {
          state->vm_resumed = TRUE;
          state->pause_end = g_get_monotonic_time ();
        }
      capture_resume_done (state);
      return;
    }

  if (run_state == HEXZ_RUN_STATE_FINISH_MIGRATE)
    {
      capture_resume_retry (state);
      return;
    }

  /* QEMU 7.2 sets the run state to running before it replies to cont. A
   * machine that is not running afterwards was stopped again, by an I/O
   * error with werror=stop, a guest panic or another client, and another
   * cont would only repeat that. */
  if (state->cont_accepted)
    {
      capture_resume_failed (state,
                             g_error_new (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_RESUME_FAILED,
                                          /* Translators: %s is a QEMU run state such as
                                           * paused or io-error. */
                                          _("QEMU accepted “cont”, but the virtual machine "
                                            "is %s instead of running; check QEMU’s log"),
                                          hexz_run_state_to_string (run_state)));
      return;
    }

  cancellable = capture_timeout_cancellable (state);
  hexz_qmp_client_cont_async (state->client, cancellable, capture_on_cont,
                              capture_state_ref (state));
}

static void
capture_resume_check (CaptureState *state)
{
  g_autoptr(GCancellable) cancellable = capture_timeout_cancellable (state);

  hexz_qmp_client_query_status_async (state->client, cancellable,
                                      capture_on_resume_status, capture_state_ref (state));
}

/* Resumes the machine if it ran before the capture, then calls @next. */
static void
capture_resume_vm (CaptureState *state,
                   CaptureStep   next)
{
  /* A failure while the success path resumes the machine lets that
   * resume finish and continue with the cleanup. */
  if (state->resume_next != NULL)
    {
      state->resume_next = next;
      return;
    }

  state->resume_next = next;
  state->resume_deadline = g_get_monotonic_time () +
                           (gint64) state->self->cleanup_timeout * 1000;

  if (!state->was_running || state->vm_resumed || state->connection_lost)
    {
      capture_resume_done (state);
      return;
    }

  capture_resume_check (state);
}

/* Cleanup after a failure: stop the data path, cancel the migration,
 * resume the machine, restore the settings, drop the partial file. */

static void capture_cleanup_migration (CaptureState *state);
static void capture_cleanup_fd        (CaptureState *state);
static void recover_query_run_state   (CaptureState *state);
static void recover_take_over         (CaptureState *state);
static void capture_cleanup_vm        (CaptureState *state);
static void capture_cleanup_finish    (CaptureState *state);

static void
capture_on_drained (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(GError) error = NULL;
  gssize count;

  count = g_input_stream_skip_finish (G_INPUT_STREAM (source), result, &error);
  if (count > 0)
    {
      g_input_stream_skip_async (G_INPUT_STREAM (source), 1024 * 1024, G_PRIORITY_DEFAULT,
                                 state->drain_cancellable, capture_on_drained,
                                 capture_state_ref (state));
      return;
    }

  g_debug ("Capture: drained the cancelled memory stream");
  g_input_stream_close (G_INPUT_STREAM (source), NULL, NULL);
}

static void
capture_cleanup_memory (CaptureState *state)
{
  /* The splice returns soon after the internal cancellable is cancelled;
   * its callback comes back here. */
  if (state->splice_running)
    return;

  if (state->memory_input != NULL)
    {
      /* A background migration is left to finish into nowhere: see
       * capture_cleanup_migration(). */
      if (state->mode == HEXZ_CAPTURE_MODE_BACKGROUND && state->migrate_sent &&
          !state->migration_finished && !state->connection_lost)
        {
          state->drain_cancellable = g_cancellable_new ();
          g_input_stream_skip_async (state->memory_input, 1024 * 1024, G_PRIORITY_DEFAULT,
                                     state->drain_cancellable, capture_on_drained,
                                     capture_state_ref (state));
        }
      else
        {
          /* Closing the read end makes a QEMU that is still writing fail
           * with EPIPE instead of blocking forever on a full pipe. */
          g_input_stream_close (state->memory_input, NULL, NULL);
        }
      g_clear_object (&state->memory_input);
    }

  capture_cleanup_migration (state);
}

static void capture_cleanup_poll_migration (CaptureState *state);
static void capture_on_migrate_cancel      (GObject      *source,
                                            GAsyncResult *result,
                                            gpointer      user_data);

static gboolean
capture_cleanup_poll_migration_cb (gpointer user_data)
{
  capture_cleanup_poll_migration (user_data);
  return G_SOURCE_REMOVE;
}

static void
capture_on_cleanup_migration_status (GObject      *source,
                                     GAsyncResult *result,
                                     gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(HexzMigrationInfo) info = NULL;
  g_autoptr(GError) error = NULL;
  HexzMigrationStatus status;
  GSource *retry;

  info = hexz_qmp_client_query_migrate_finish (state->client, result, &error);
  if (info == NULL)
    {
      capture_note (state, _("Checking the cancelled migration failed"), error);
      capture_cleanup_fd (state);
      return;
    }

  status = hexz_migration_info_get_status (info);
  if (!hexz_migration_status_is_running (status) && status != HEXZ_MIGRATION_STATUS_CANCELLING)
    {
      g_debug ("Capture: migration ended as %s", hexz_migration_info_get_status_string (info));
      state->migration_finished = TRUE;
      capture_cleanup_fd (state);
      return;
    }

  /* A background migration that still makes progress gets more time;
   * one that stalls is cancelled after all. */
  if (!state->migrate_cancel_sent)
    {
      guint64 transferred = hexz_migration_info_get_ram_transferred (info);

      if (transferred > state->cleanup_transferred)
        {
          state->cleanup_transferred = transferred;
          state->cleanup_deadline = g_get_monotonic_time () +
                                    (gint64) state->self->cleanup_timeout * 1000;
        }
      else if (g_get_monotonic_time () > state->cleanup_deadline)
        {
          state->migrate_cancel_sent = TRUE;
          state->cleanup_deadline = g_get_monotonic_time () +
                                    (gint64) state->self->cleanup_timeout * 1000;
          capture_execute (state, "migrate_cancel", NULL, NULL, capture_on_migrate_cancel);
          return;
        }
    }
  else if (g_get_monotonic_time () > state->cleanup_deadline)
    {
      g_autoptr(GError) timeout = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                                       _("The migration did not end in time"));
      capture_note (state, _("Cancelling the migration failed"), timeout);
      capture_cleanup_fd (state);
      return;
    }

  retry = g_timeout_source_new (RUN_STATE_RETRY_MS * 5);
  g_source_set_callback (retry, capture_cleanup_poll_migration_cb,
                         capture_state_ref (state), (GDestroyNotify) capture_state_unref);
  g_source_attach (retry, state->context);
  g_source_unref (retry);
}

static void
capture_cleanup_poll_migration (CaptureState *state)
{
  g_autoptr(GCancellable) cancellable = capture_timeout_cancellable (state);

  hexz_qmp_client_query_migrate_async (state->client, cancellable,
                                       capture_on_cleanup_migration_status,
                                       capture_state_ref (state));
}

static void
capture_on_migrate_cancel (GObject      *source,
                           GAsyncResult *result,
                           gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;

  reply = capture_execute_finish (state, result, &error);
  if (reply == NULL)
    {
      capture_note (state, _("Cancelling the migration failed"), error);
      if (state->connection_lost)
        {
          capture_cleanup_fd (state);
          return;
        }
    }

  capture_cleanup_poll_migration (state);
}

static void
capture_on_closefd (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;

  reply = capture_execute_finish (state, result, &error);
  if (reply == NULL && capture_is_connection_error (error))
    state->connection_lost = TRUE;

  capture_cleanup_vm (state);
}

/* A `migrate` that QEMU rejected leaves the passed descriptor in QEMU's
 * table. A migration that started has taken it already, so QEMU then
 * rejects this closefd, which does no harm. */
static void
capture_cleanup_fd (CaptureState *state)
{
  g_autoptr(JsonObject) arguments = NULL;

  if (!state->getfd_sent || state->connection_lost)
    {
      capture_cleanup_vm (state);
      return;
    }

  arguments = json_object_new ();
  json_object_set_string_member (arguments, "fdname", CAPTURE_FD_NAME);
  capture_execute (state, "closefd", arguments, NULL, capture_on_closefd);
}

static void
capture_cleanup_migration (CaptureState *state)
{
  state->cleanup_deadline = g_get_monotonic_time () +
                            (gint64) state->self->cleanup_timeout * 1000;

  if (state->connection_lost)
    {
      capture_cleanup_vm (state);
      return;
    }

  /* QEMU 7.2 under KVM can leave the guest's vCPUs stuck when a
   * background migration is cancelled or fails early: query-status reports
   * running, but the guest executes nothing and `stop` hangs (seen in the
   * capture-qemu cancel tests, about one run in ten). A background
   * migration is therefore left to complete while the pipe is drained,
   * and cancelled only if it stops making progress. The guest runs in the
   * meantime. */
  if (state->migrate_sent && !state->migration_finished &&
      state->mode == HEXZ_CAPTURE_MODE_BACKGROUND && state->drain_cancellable != NULL)
    {
      capture_cleanup_poll_migration (state);
      return;
    }

  if (state->migrate_sent && !state->migration_finished)
    {
      state->migrate_cancel_sent = TRUE;
      capture_execute (state, "migrate_cancel", NULL, NULL, capture_on_migrate_cancel);
      return;
    }

  capture_cleanup_fd (state);
}

static void
capture_cleanup_settings (CaptureState *state)
{
  capture_restore_settings (state, capture_cleanup_finish);
}

static void
capture_cleanup_vm (CaptureState *state)
{
  if (state->stop_sent || state->migrate_sent)
    capture_resume_vm (state, capture_cleanup_settings);
  else
    capture_cleanup_settings (state);
}

static void
capture_cleanup_finish (CaptureState *state)
{
  GError *error = state->error;
  gboolean may_be_paused;

  if (state->worker_running)
    {
      state->cleanup_waits_for_worker = TRUE;
      return;
    }

  g_cancellable_cancel (state->drain_cancellable);
  if (state->writer != NULL)
    hexz_snapshot_writer_abort (state->writer);
  g_clear_object (&state->disk_copy);

  /* The notes and the advice follow the error as sentences of their own. */
  if (state->cleanup_notes != NULL)
    {
      char *message;

      capture_end_sentence (error);
      message = g_strconcat (error->message, state->cleanup_notes->str, NULL);
      g_free (error->message);
      error->message = message;
    }

  /* The cleanup resumed the machine if it could, so a machine that ran
   * before and is not known to run again is paused. */
  may_be_paused = state->was_running && !state->vm_resumed &&
                  (state->stop_sent || state->migrate_sent);
  if (may_be_paused)
    {
      const char *socket_path = state->self->socket_path;
      char *message;

      capture_end_sentence (error);
      if (socket_path != NULL)
        message = g_strdup_printf (
            /* Translators: the first %s is an error message, the others the
             * QMP socket's path. */
            _("%s The virtual machine may still be paused. Resume it with "
              "“hexz-snap resume --socket %s” or by sending "
              "{\"execute\":\"qmp_capabilities\"}{\"execute\":\"cont\"} to %s."),
            error->message, socket_path, socket_path);
      else
        message = g_strdup_printf (
            /* Translators: %s is an error message. */
            _("%s The virtual machine may still be paused. Resume it with "
              "“hexz-snap resume --socket” and its QMP socket, or by sending "
              "{\"execute\":\"cont\"} on its QMP monitor."),
            error->message);
      g_free (error->message);
      error->message = message;

      /* A paused machine matters more than what made the run fail: a
       * caller that ignores cancellations must still see this error. */
      error->domain = HEXZ_CAPTURE_ERROR;
      error->code = state->connection_lost ? HEXZ_CAPTURE_ERROR_CONNECTION_LOST
                                           : HEXZ_CAPTURE_ERROR_RESUME_FAILED;
    }

  capture_complete (state);
}

/* Starts the cleanup with @error as the run's error. Only the first
 * failure counts; later ones are logged. */
static void
capture_fail (CaptureState *state,
              GError       *error)
{
  g_assert (error != NULL);

  if (state->failing)
    {
      g_debug ("Capture: later failure ignored: %s", error->message);
      g_error_free (error);
      return;
    }

  g_debug ("Capture: failed in phase %s: %s",
           hexz_capture_phase_to_string (state->self->phase), error->message);

  state->failing = TRUE;
  state->error = error;
  if (capture_is_connection_error (error) ||
      g_error_matches (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_CONNECTION_LOST))
    state->connection_lost = TRUE;

  capture_remove_poll (state);
  g_cancellable_cancel (state->cancellable);
  capture_set_phase (state, HEXZ_CAPTURE_PHASE_CLEANUP);

  capture_cleanup_memory (state);
}

static gboolean
capture_on_user_cancelled_idle (gpointer user_data)
{
  CaptureState *state = user_data;

  /* Once the file is being closed the snapshot is as good as written, so
   * a cancellation that arrives then is ignored. */
  if (state->self->phase == HEXZ_CAPTURE_PHASE_FINALIZE)
    {
      g_debug ("Capture: cancellation ignored while closing the file");
      return G_SOURCE_REMOVE;
    }

  if (state->task != NULL && !state->failing)
    capture_fail (state, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                              state->recovering ? _("The recovery was cancelled")
                                                                : _("The snapshot was cancelled")));

  return G_SOURCE_REMOVE;
}

/* Runs in whichever thread cancelled the cancellable. */
static void
capture_on_user_cancelled (GCancellable *cancellable,
                           gpointer      user_data)
{
  CaptureState *state = user_data;

  GSource *source = g_idle_source_new ();

  /* Always deferred, even from the context's own thread, because the
   * cancellable may be cancelled already when the run connects to it. The
   * high priority puts it before the completion of a running step. */
  g_source_set_priority (source, G_PRIORITY_HIGH);
  g_source_set_callback (source, capture_on_user_cancelled_idle,
                         capture_state_ref (state), (GDestroyNotify) capture_state_unref);
  g_source_attach (source, state->context);
  g_source_unref (source);
}

/* Step 7: finalize */

static void
capture_on_closed (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(GError) error = NULL;

  if (!hexz_snapshot_writer_close_finish (state->writer, result, &error))
    {
      capture_fail (state, g_steal_pointer (&error));
      return;
    }

  g_debug ("Capture: snapshot written");
  capture_complete (state);
}

static void
capture_set_metadata_string (CaptureState *state,
                             const char   *key,
                             const char   *value)
{
  g_autoptr(JsonNode) node = json_node_new (JSON_NODE_VALUE);

  json_node_set_string (node, value);
  hexz_snapshot_writer_set_metadata (state->writer, key, node);
}

static void
capture_set_metadata_int (CaptureState *state,
                          const char   *key,
                          gint64        value)
{
  g_autoptr(JsonNode) node = json_node_new (JSON_NODE_VALUE);

  json_node_set_int (node, value);
  hexz_snapshot_writer_set_metadata (state->writer, key, node);
}

static void
capture_finalize (CaptureState *state)
{
  HexzCapture *self = state->self;
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *created = g_date_time_format_iso8601 (now);
  const char *version = hexz_qmp_client_get_qemu_version (state->client);

  capture_set_phase (state, HEXZ_CAPTURE_PHASE_FINALIZE);

  if (version != NULL)
    capture_set_metadata_string (state, "qemu-version", version);
  if (state->vm_name != NULL)
    capture_set_metadata_string (state, "vm-name", state->vm_name);
  capture_set_metadata_int (state, HEXZ_METADATA_RAM_SIZE, (gint64) state->ram_size);
  if (state->cpus > 0)
    capture_set_metadata_int (state, HEXZ_METADATA_CPUS, state->cpus);
  /* QOM names a machine type's class NAME-machine; -machine takes NAME. */
  if (state->machine_type != NULL && g_str_has_suffix (state->machine_type, "-machine"))
    {
      g_autofree char *machine = g_strndup (state->machine_type,
                                            strlen (state->machine_type) - strlen ("-machine"));

      capture_set_metadata_string (state, HEXZ_METADATA_MACHINE_TYPE, machine);
    }
  if (state->kernel != NULL)
    capture_set_metadata_string (state, HEXZ_METADATA_KERNEL, state->kernel);
  if (state->append != NULL)
    capture_set_metadata_string (state, HEXZ_METADATA_APPEND, state->append);
  if (state->initrd != NULL)
    capture_set_metadata_string (state, HEXZ_METADATA_INITRD, state->initrd);
  capture_set_metadata_string (state, "capture-mode", hexz_capture_mode_to_string (state->mode));
  capture_set_metadata_int (state, "pause-time-us", self->pause_time);
  if (self->downtime >= 0)
    capture_set_metadata_int (state, "qemu-downtime-ms", self->downtime);
  capture_set_metadata_string (state, "base-id", hexz_snapshot_get_id (state->base));
  capture_set_metadata_string (state, "created", created);
  if (self->message != NULL)
    hexz_snapshot_writer_set_message (state->writer, self->message);

  hexz_snapshot_writer_close_async (state->writer, state->cancellable,
                                    capture_on_closed, capture_state_ref (state));
}

/* Step 5b: the disk stream, written from the base and the copied pages
 * while the machine runs again. The base never changes, so unmodified
 * blocks (thick) or parent references (thin) can come later. */

static void
capture_merge_thread (GTask        *task,
                      gpointer      source_object,
                      gpointer      task_data,
                      GCancellable *cancellable)
{
  CaptureState *state = task_data;
  g_autoptr(HexzPageSource) source = hexz_page_source_new_for_overlay (state->disk_copy);
  GError *error = NULL;

  if (!hexz_commit_merge_disk (state->writer, state->base, source, state->disk_size,
                               state->self->thin, NULL, NULL, cancellable, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  g_task_return_boolean (task, TRUE);
}

static void
capture_on_disk_merged (GObject      *source,
                        GAsyncResult *result,
                        gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(GError) error = NULL;

  state->worker_running = FALSE;
  if (!g_task_propagate_boolean (G_TASK (result), &error) && !state->failing)
    {
      capture_fail (state, g_steal_pointer (&error));
      return;
    }

  if (state->failing)
    {
      if (state->cleanup_waits_for_worker)
        capture_cleanup_finish (state);
      return;
    }

  g_clear_object (&state->disk_copy);
  capture_finalize (state);
}

static void
capture_merge_disk (CaptureState *state)
{
  g_autoptr(GTask) task = NULL;

  if (state->failing)
    return;

  capture_set_phase (state, HEXZ_CAPTURE_PHASE_MERGE);

  task = g_task_new (NULL, state->cancellable, capture_on_disk_merged, capture_state_ref (state));
  g_task_set_source_tag (task, capture_merge_disk);
  g_task_set_task_data (task, capture_state_ref (state), (GDestroyNotify) capture_state_unref);
  state->worker_running = TRUE;
  g_task_run_in_thread (task, capture_merge_thread);
}

/* Step 6: resume */

static void
capture_on_resumed (CaptureState *state)
{
  HexzCapture *self = state->self;

  if (state->failing)
    return;

  /* A machine that was paused before the capture stays paused: the
   * capture paused nothing. */
  if (!state->was_running)
    {
      self->pause_time = 0;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PAUSE_TIME]);
    }
  else if (state->vm_resumed || state->pause_start != 0)
    {
      gint64 end = state->vm_resumed ? state->pause_end : g_get_monotonic_time ();

      self->pause_time = state->pause_start != 0 ? end - state->pause_start : 0;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PAUSE_TIME]);
    }

  g_debug ("Capture: machine paused for %" G_GINT64_FORMAT " µs", self->pause_time);

  capture_restore_settings (state, capture_merge_disk);
}

static void
capture_resume (CaptureState *state)
{
  capture_set_phase (state, HEXZ_CAPTURE_PHASE_RESUME);
  capture_resume_vm (state, capture_on_resumed);
}

/* Step 5a: copy the overlay's modified pages while the machine is paused,
 * into a private overlay whose files are unlinked at once. */

/* Pages copied by one write: 1 MiB. */
#define COPY_RUN_PAGES 256

/* The copy's folder in the output's folder: COPY_FOLDER_PREFIX and six
 * characters, with COPY_FILE_NAME and its .meta file. It exists only while
 * the copy's files are created, locked with flock() by its run. */
#define COPY_FOLDER_PREFIX ".hexz-capture-"
#define COPY_FILE_NAME "disk.overlay"

static void
capture_remove_stale_copy_folder (int         fd,
                                  const char *path,
                                  gpointer    user_data)
{
  g_autofree char *meta_name = hexz_overlay_get_meta_path_for (COPY_FILE_NAME);

  unlinkat (fd, COPY_FILE_NAME, 0);
  unlinkat (fd, meta_name, 0);
  if (g_rmdir (path) == 0)
    g_debug ("Capture: removed the folder %s that a killed run left", path);
  else
    g_debug ("Capture: could not remove the stale folder %s: %s", path, g_strerror (errno));
}

static gboolean
capture_copy_pages (CaptureState  *state,
                    GCancellable  *cancellable,
                    GError       **error)
{
  g_autoptr(HexzOverlay) source = NULL;
  g_autoptr(HexzOverlay) copy = NULL;
  g_autofree guint64 *pages = NULL;
  g_autofree char *folder = NULL;
  g_autofree char *copy_path = NULL;
  g_autofree char *meta_path = NULL;
  g_autofree guint8 *buffer = NULL;
  gsize n_pages = 0;
  int folder_fd;

  /* Reopened here, not in the preflight, because the list of modified
   * pages is read when the overlay is opened. */
  source = hexz_overlay_open_path (state->self->overlay, state->disk_size, cancellable, error);
  if (source == NULL)
    return FALSE;

  /* Copy folders that killed runs left behind go first. */
  hexz_remove_stale_entries (state->output_dir, COPY_FOLDER_PREFIX, "", TRUE,
                             capture_remove_stale_copy_folder, NULL);

  folder = g_build_filename (state->output_dir, COPY_FOLDER_PREFIX "XXXXXX", NULL);
  if (g_mkdtemp_full (folder, 0700) == NULL)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   /* Translators: %s is a folder name, then an error message. */
                   _("Cannot create a temporary folder in “%s”: %s"),
                   state->output_dir, g_strerror (saved_errno));
      return FALSE;
    }

  /* The lock keeps other runs from removing the folder while it is in use. */
  folder_fd = open (folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (folder_fd >= 0)
    flock (folder_fd, LOCK_EX | LOCK_NB);

  copy_path = g_build_filename (folder, COPY_FILE_NAME, NULL);
  meta_path = hexz_overlay_get_meta_path_for (copy_path);
  copy = hexz_overlay_create_path (copy_path, state->disk_size, HEXZ_OVERLAY_CREATE_NONE, error);

  /* The copy keeps its descriptors open, so its files can go at once. */
  g_unlink (copy_path);
  g_unlink (meta_path);
  g_rmdir (folder);
  if (folder_fd >= 0)
    close (folder_fd);

  if (copy == NULL)
    return FALSE;

  pages = hexz_overlay_dup_modified_pages (source, &n_pages);
  g_debug ("Capture: copying %" G_GSIZE_FORMAT " modified pages", n_pages);

  /* The machine is paused during this copy, so runs of consecutive pages
   * go to the copy in one write each, which also appends their .meta
   * entries at once: per-page writes cost about 8 ms per MiB here. */
  buffer = g_malloc (COPY_RUN_PAGES * HEXZ_OVERLAY_PAGE_SIZE);

  for (gsize i = 0; i < n_pages;)
    {
      gsize run = 0;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return FALSE;

      do
        {
          if (!hexz_overlay_read_page (source, pages[i + run],
                                       buffer + run * HEXZ_OVERLAY_PAGE_SIZE, error))
            return FALSE;
          run++;
        }
      while (i + run < n_pages && run < COPY_RUN_PAGES &&
             pages[i + run] == pages[i] + run);

      if (!hexz_overlay_write (copy, pages[i] * HEXZ_OVERLAY_PAGE_SIZE, buffer,
                               run * HEXZ_OVERLAY_PAGE_SIZE, error))
        return FALSE;

      i += run;
    }

  state->disk_copy = g_steal_pointer (&copy);
  return TRUE;
}

static void
capture_copy_thread (GTask        *task,
                     gpointer      source_object,
                     gpointer      task_data,
                     GCancellable *cancellable)
{
  CaptureState *state = task_data;
  GError *error = NULL;

  if (!capture_copy_pages (state, cancellable, &error))
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void capture_start_memory (CaptureState *state);

static void
capture_on_disk_copied (GObject      *source,
                        GAsyncResult *result,
                        gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(GError) error = NULL;

  state->worker_running = FALSE;
  if (!g_task_propagate_boolean (G_TASK (result), &error) && !state->failing)
    {
      capture_fail (state, g_steal_pointer (&error));
      return;
    }

  if (state->failing)
    {
      if (state->cleanup_waits_for_worker)
        capture_cleanup_finish (state);
      return;
    }

  if (state->mode == HEXZ_CAPTURE_MODE_LIVE)
    capture_resume (state);
  else
    capture_start_memory (state);
}

static void
capture_copy_disk (CaptureState *state)
{
  g_autoptr(GTask) task = NULL;

  capture_set_phase (state, HEXZ_CAPTURE_PHASE_DISK);

  task = g_task_new (NULL, state->cancellable, capture_on_disk_copied, capture_state_ref (state));
  g_task_set_source_tag (task, capture_copy_disk);
  g_task_set_task_data (task, capture_state_ref (state), (GDestroyNotify) capture_state_unref);
  state->worker_running = TRUE;
  g_task_run_in_thread (task, capture_copy_thread);
}

/* Step 4: the memory, streamed from QEMU's migration through a pipe into
 * the snapshot. The stream is complete when QEMU reports the migration as
 * completed and the pipe reaches its end. */

static void capture_query_migration (CaptureState *state);

static void
capture_check_memory_done (CaptureState *state)
{
  if (!state->migration_finished || !state->splice_done || state->failing)
    return;

  capture_remove_poll (state);
  g_debug ("Capture: memory stream complete, %" G_GUINT64_FORMAT " bytes", state->memory_bytes);

  if (state->mode == HEXZ_CAPTURE_MODE_LIVE)
    capture_copy_disk (state);
  else
    capture_resume (state);
}

static void
capture_on_memory_spliced (GObject      *source,
                           GAsyncResult *result,
                           gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(GError) error = NULL;
  guint64 count;

  count = hexz_snapshot_writer_splice_finish (state->writer, result, &error);
  state->splice_running = FALSE;

  if (state->failing)
    {
      capture_cleanup_memory (state);
      return;
    }

  if (error != NULL)
    {
      GError *wrapped;

      /* The writer's message already names the file. */
      wrapped = g_error_new (error->domain, error->code,
                             /* Translators: %s is an error message. */
                             _("Writing the memory stream failed: %s"), error->message);
      capture_fail (state, wrapped);
      return;
    }

  if (!hexz_snapshot_writer_end_stream (state->writer, state->cancellable, &error))
    {
      capture_fail (state, g_steal_pointer (&error));
      return;
    }

  state->memory_bytes = count;
  state->splice_done = TRUE;
  g_clear_object (&state->memory_input);

  /* The pipe's end comes when QEMU closes it, normally right after the
   * migration completes; ask now rather than wait for the next poll. */
  if (!state->migration_finished)
    capture_query_migration (state);

  capture_check_memory_done (state);
}

/* A guest that writes memory faster than QEMU copies it never lets a live
 * migration converge, and the stall timeout does not see it because bytes
 * keep moving. Once live-timeout has passed, the capture pauses the guest
 * itself: no page changes any more, so the copy then finishes. */

static gboolean capture_stop_finish (CaptureState *state,
                                     GAsyncResult *result);

static void
capture_on_bandwidth_lifted (GObject      *source,
                             GAsyncResult *result,
                             gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;

  /* The copy still completes under the limit, only more slowly. */
  reply = capture_execute_finish (state, result, &error);
  if (reply == NULL)
    g_debug ("Capture: lifting the live bandwidth limit failed: %s", error->message);
}

static void
capture_on_converge_stopped (GObject      *source,
                             GAsyncResult *result,
                             gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;

  if (!capture_stop_finish (state, result))
    return;

  state->self->paused_to_converge = TRUE;
  g_object_notify_by_pspec (G_OBJECT (state->self), properties[PROP_PAUSED_TO_CONVERGE]);
}

static void
capture_check_convergence (CaptureState *state,
                           gint64        now)
{
  g_autoptr(GCancellable) cancellable = NULL;
  guint timeout = state->self->live_timeout;

  if (state->mode != HEXZ_CAPTURE_MODE_LIVE || timeout == 0 ||
      state->converge_stop_sent || state->pause_start != 0 ||
      now - state->migrate_time < (gint64) timeout * G_USEC_PER_SEC)
    return;

  g_debug ("Capture: the live copy has not converged in %u s; pausing the machine", timeout);

  /* The limit only spares the host while the guest runs. QEMU handles
   * commands in order, so the copy of the paused guest runs unlimited. */
  if (state->self->live_bandwidth != 0)
    {
      g_autoptr(JsonObject) arguments = json_object_new ();

      json_object_set_int_member (arguments, "max-bandwidth", CAPTURE_MAX_BANDWIDTH);
      capture_execute (state, "migrate-set-parameters", arguments, NULL,
                       capture_on_bandwidth_lifted);
    }

  cancellable = capture_timeout_cancellable (state);
  state->converge_stop_sent = TRUE;
  state->stop_sent = TRUE;
  hexz_qmp_client_stop_async (state->client, cancellable, capture_on_converge_stopped,
                              capture_state_ref (state));
}

static void
capture_on_migration_info (GObject      *source,
                           GAsyncResult *result,
                           gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;
  JsonObject *info;
  JsonObject *ram = NULL;
  const char *status_string;
  HexzMigrationStatus status;
  guint64 transferred = 0;
  guint64 total = 0;
  gint64 now;

  state->query_in_flight = FALSE;
  reply = capture_execute_finish (state, result, &error);

  if (state->failing || state->migration_finished)
    return;

  if (reply == NULL)
    {
      capture_fail (state, capture_command_error ("query-migrate", g_steal_pointer (&error)));
      return;
    }

  info = capture_reply_object (reply);
  status_string = info ? json_object_get_string_member_with_default (info, "status", "none") : "none";
  status = hexz_migration_status_from_string (status_string);
  if (info != NULL && json_object_has_member (info, "ram"))
    ram = json_object_get_object_member (info, "ram");
  if (ram != NULL)
    {
      transferred = json_object_get_int_member_with_default (ram, "transferred", 0);
      total = json_object_get_int_member_with_default (ram, "total", 0);
    }

  g_debug ("Capture: migration %s, %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " bytes",
           status_string, transferred, total);

  switch (status)
    {
    case HEXZ_MIGRATION_STATUS_COMPLETED:
      state->migration_finished = TRUE;
      state->self->downtime = json_object_get_int_member_with_default (info, "downtime", -1);
      g_object_notify_by_pspec (G_OBJECT (state->self), properties[PROP_DOWNTIME]);
      capture_progress (state, total, total);
      capture_check_memory_done (state);
      return;

    case HEXZ_MIGRATION_STATUS_FAILED:
    case HEXZ_MIGRATION_STATUS_CANCELLED:
      state->migration_finished = TRUE;
      capture_fail (state,
                    g_error_new (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_MIGRATION_FAILED,
                                 /* Translators: the first %s is a migration status
                                  * (failed, cancelled), the second QEMU's reason. */
                                 _("QEMU reports the memory dump as %s: %s"),
                                 status_string,
                                 json_object_get_string_member_with_default (info, "error-desc",
                                                                             _("no reason given"))));
      return;

    case HEXZ_MIGRATION_STATUS_NONE:
    default:
      /* Setup, active, device, wait-unplug and statuses this library does
       * not know all mean the migration is still under way. */
      break;
    }

  if (total > 0)
    capture_progress (state, transferred, total);

  now = g_get_monotonic_time ();
  capture_check_convergence (state, now);
  if (transferred > state->last_transferred || state->last_progress_time == 0)
    {
      state->last_transferred = transferred;
      state->last_progress_time = now;
    }
  else if (state->self->stall_timeout > 0 &&
           now - state->last_progress_time > (gint64) state->self->stall_timeout * G_USEC_PER_SEC)
    {
      capture_fail (state,
                    g_error_new (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_STALLED,
                                 /* Translators: %u is a number of seconds, %s a status. */
                                 _("The memory dump made no progress for %u seconds "
                                   "(migration status %s) and was cancelled"),
                                 state->self->stall_timeout, status_string));
    }
}

static void
capture_query_migration (CaptureState *state)
{
  if (state->query_in_flight || state->failing)
    return;

  state->query_in_flight = TRUE;
  capture_execute (state, "query-migrate", NULL, NULL, capture_on_migration_info);
}

static gboolean
capture_on_poll (gpointer user_data)
{
  CaptureState *state = user_data;

  capture_query_migration (state);
  return G_SOURCE_CONTINUE;
}

static gboolean
migration_event_is_final (const char *name,
                          JsonObject *data,
                          gpointer    user_data)
{
  HexzMigrationStatus status;

  status = hexz_migration_status_from_string (json_object_get_string_member_with_default (data, "status", ""));
  return status == HEXZ_MIGRATION_STATUS_COMPLETED ||
         status == HEXZ_MIGRATION_STATUS_FAILED ||
         status == HEXZ_MIGRATION_STATUS_CANCELLED;
}

static void
capture_on_migration_event (GObject      *source,
                            GAsyncResult *result,
                            gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonObject) data = NULL;
  g_autoptr(GError) error = NULL;

  data = hexz_qmp_client_wait_event_finish (state->client, result, NULL, &error);
  if (data == NULL || state->failing)
    return;

  g_debug ("Capture: MIGRATION event, status %s",
           json_object_get_string_member_with_default (data, "status", "?"));

  /* The event has no error text or downtime: query-migrate has both. */
  capture_query_migration (state);
}

static void
capture_on_migrate (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;
  GSource *poll;

  reply = capture_execute_finish (state, result, &error);
  if (state->failing)
    return;

  if (reply == NULL)
    {
      capture_fail (state, capture_command_error ("migrate", g_steal_pointer (&error)));
      return;
    }

  state->last_progress_time = g_get_monotonic_time ();
  state->migrate_time = state->last_progress_time;

  poll = g_timeout_source_new (state->self->poll_interval);
  g_source_set_callback (poll, capture_on_poll, capture_state_ref (state),
                         (GDestroyNotify) capture_state_unref);
  state->poll_source = g_source_attach (poll, state->context);
  g_source_unref (poll);

  capture_query_migration (state);
}

/* Converts QEMU's wall-clock timestamp of an event to the monotonic
 * clock, so that the pause does not count the time the event waited in
 * this process's main loop, which the memory stream keeps busy. The
 * result is kept between @earliest and now, for a QEMU whose clock
 * differs from ours. */
static gint64
capture_event_monotonic_time (gint64 timestamp_us,
                              gint64 earliest)
{
  gint64 now = g_get_monotonic_time ();
  gint64 age = g_get_real_time () - timestamp_us;

  if (timestamp_us <= 0 || age < 0)
    return now;

  return MAX (now - age, earliest);
}

/* QEMU resumes the guest itself in background mode, and pauses it itself
 * in live mode: the RESUME and STOP events time the pause. */
static void
capture_on_run_state_event (GObject      *source,
                            GAsyncResult *result,
                            gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonObject) data = NULL;
  g_autoptr(GError) error = NULL;
  gint64 timestamp_us = 0;

  data = hexz_qmp_client_wait_event_finish (state->client, result, &timestamp_us, &error);
  if (data == NULL || state->failing)
    return;

  if (state->mode == HEXZ_CAPTURE_MODE_BACKGROUND && !state->vm_resumed)
    {
      g_debug ("Capture: QEMU resumed the machine");
      state->vm_resumed = TRUE;
      state->pause_end = capture_event_monotonic_time (timestamp_us, state->pause_start);
    }
  else if (state->mode == HEXZ_CAPTURE_MODE_LIVE && state->pause_start == 0)
    {
      g_debug ("Capture: QEMU paused the machine");
      state->pause_start = capture_event_monotonic_time (timestamp_us, 0);
    }
}

static void
capture_wait_run_state_event (CaptureState *state)
{
  const char *name = state->mode == HEXZ_CAPTURE_MODE_BACKGROUND ? "RESUME" : "STOP";

  hexz_qmp_client_discard_events (state->client, name);
  hexz_qmp_client_wait_event_async (state->client, name, NULL, NULL, NULL, 0,
                                    state->cancellable, capture_on_run_state_event,
                                    capture_state_ref (state));
}

static void
capture_migrate (CaptureState *state)
{
  g_autoptr(JsonObject) arguments = json_object_new ();

  json_object_set_string_member (arguments, "uri", "fd:" CAPTURE_FD_NAME);

  hexz_qmp_client_discard_events (state->client, "MIGRATION");
  hexz_qmp_client_wait_event_async (state->client, "MIGRATION", migration_event_is_final,
                                    NULL, NULL, 0, state->cancellable,
                                    capture_on_migration_event, capture_state_ref (state));

  if (state->mode == HEXZ_CAPTURE_MODE_BACKGROUND || state->mode == HEXZ_CAPTURE_MODE_LIVE)
    capture_wait_run_state_event (state);

  state->migrate_sent = TRUE;
  capture_execute (state, "migrate", arguments, NULL, capture_on_migrate);
}

static void
capture_on_getfd (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;

  reply = capture_execute_finish (state, result, &error);
  if (state->failing)
    return;

  if (reply == NULL)
    {
      capture_fail (state, capture_command_error ("getfd", g_steal_pointer (&error)));
      return;
    }

  capture_migrate (state);
}

/* The drain guard of a background migration.
 *
 * QEMU 7.2 does not recover from a background migration whose stream
 * breaks: the guest memory stays registered for write tracking, so every
 * later migration of that QEMU fails ("uffd_change_protection() failed")
 * and background-snapshot is refused, until QEMU restarts. A run that is
 * killed closes the read end of the memory pipe and breaks the stream. In
 * background mode a run therefore starts a small process that keeps a copy
 * of the read end and waits for the run to end, killed or not. It then
 * reads the pipe to its end and discards the data, so that QEMU completes
 * the migration. After a completed run the pipe is already at its end and
 * the process exits at once. */

/* Runs in the guard process, forked from a process that may have other
 * threads: only async-signal-safe calls. */
static void G_GNUC_NORETURN
drain_guard_main (int memory_fd,
                  int lifeline_fd,
                  int max_fd)
{
  static char buffer[64 * 1024];
  struct pollfd lifeline = { .fd = lifeline_fd, .events = POLLIN };
  int low = MIN (memory_fd, lifeline_fd);
  int high = MAX (memory_fd, lifeline_fd);
  gboolean closed = FALSE;

  /* Every other descriptor goes: copies of the QMP connection, of the
   * temporary file and its lock, of the caller's standard output or of the
   * pipe's write end would keep them open after the run. */
#ifdef SYS_close_range
  closed = (low == 0 || syscall (SYS_close_range, 0u, (unsigned int) low - 1, 0u) == 0) &&
           (high == low + 1 ||
            syscall (SYS_close_range, (unsigned int) low + 1, (unsigned int) high - 1, 0u) == 0) &&
           syscall (SYS_close_range, (unsigned int) high + 1, ~0u, 0u) == 0;
#endif
  if (!closed)
    for (int fd = 0; fd < max_fd; fd++)
      if (fd != memory_fd && fd != lifeline_fd)
        close (fd);

  /* The run keeps the other end of the lifeline open until it ends. */
  while (poll (&lifeline, 1, -1) < 0 && errno == EINTR)
    ;

  for (;;)
    {
      ssize_t n = read (memory_fd, buffer, sizeof buffer);

      if (n == 0 || (n < 0 && errno != EINTR))
        break;
    }

  _exit (0);
}

static gboolean
capture_start_drain_guard (CaptureState  *state,
                           int            memory_fd,
                           GError       **error)
{
  int lifeline[2];
  int max_fd = (int) MIN (sysconf (_SC_OPEN_MAX), 65536);
  int saved_errno;
  pid_t pid;

  if (!g_unix_open_pipe (lifeline, FD_CLOEXEC, error))
    return FALSE;

  /* The guard is forked twice, so that it is not this process's child and
   * needs no reaping, and it outlives this process. The middle process's
   * exit status is not checked: under valgrind it reports the leaks of its
   * copy of the heap. FIXME: a failure of the second fork goes unnoticed,
   * and the run then has no guard; a status pipe would report it. */
  pid = fork ();
  saved_errno = errno;
  if (pid == 0)
    {
      if (fork () == 0)
        drain_guard_main (memory_fd, lifeline[0], max_fd);
      _exit (0);
    }

  close (lifeline[0]);
  if (pid < 0)
    {
      close (lifeline[1]);
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   /* Translators: %s is the system's reason. */
                   _("Cannot start the process that completes the memory dump if this "
                     "snapshot is interrupted: %s; free some memory or processes, or use "
                     "the paused or live mode"),
                   g_strerror (saved_errno));
      return FALSE;
    }

  while (waitpid (pid, NULL, 0) < 0 && errno == EINTR)
    ;

  g_debug ("Capture: drain guard started");
  state->drain_guard_fd = lifeline[1];
  return TRUE;
}

/* Lets the guard drain the pipe: it is at its end after a completed run,
 * and after a failed one the cleanup already waited for the migration. */
static void
capture_release_drain_guard (CaptureState *state)
{
  if (state->drain_guard_fd >= 0)
    {
      close (state->drain_guard_fd);
      state->drain_guard_fd = -1;
    }
}

static void
capture_start_memory (CaptureState *state)
{
  g_autoptr(GUnixFDList) fd_list = NULL;
  g_autoptr(JsonObject) arguments = NULL;
  g_autoptr(GError) error = NULL;
  int fds[2];

  capture_set_phase (state, HEXZ_CAPTURE_PHASE_MEMORY);

  if (!g_unix_open_pipe (fds, FD_CLOEXEC, &error))
    {
      capture_fail (state, g_steal_pointer (&error));
      return;
    }

  if (state->mode == HEXZ_CAPTURE_MODE_BACKGROUND &&
      !capture_start_drain_guard (state, fds[0], &error))
    {
      close (fds[0]);
      close (fds[1]);
      capture_fail (state, g_steal_pointer (&error));
      return;
    }

  /* The list keeps its own copy of the write end. Closing ours means the
   * pipe ends when QEMU closes the copy it received. */
  fd_list = g_unix_fd_list_new ();
  if (g_unix_fd_list_append (fd_list, fds[1], &error) < 0)
    {
      close (fds[0]);
      close (fds[1]);
      capture_fail (state, g_steal_pointer (&error));
      return;
    }
  close (fds[1]);

  state->memory_input = g_unix_input_stream_new (fds[0], TRUE);

  state->splice_running = TRUE;
  hexz_snapshot_writer_splice_async (state->writer, state->memory_input, state->cancellable,
                                     capture_on_memory_spliced, capture_state_ref (state));

  arguments = json_object_new ();
  json_object_set_string_member (arguments, "fdname", CAPTURE_FD_NAME);
  state->getfd_sent = TRUE;
  capture_execute (state, "getfd", arguments, fd_list, capture_on_getfd);
}

/* Step 3: pause */

/* Finishes a `stop`. Returns FALSE when it failed, which fails the run,
 * or when the run is failing already. */
static gboolean
capture_stop_finish (CaptureState *state,
                     GAsyncResult *result)
{
  g_autoptr(GError) error = NULL;

  if (!hexz_qmp_client_stop_finish (state->client, result, &error))
    {
      if (!state->failing)
        capture_fail (state, capture_command_error ("stop", g_steal_pointer (&error)));
      return FALSE;
    }

  return !state->failing;
}

static void
capture_on_stopped (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;

  if (capture_stop_finish (state, result))
    capture_copy_disk (state);
}

static void
capture_pause (CaptureState *state)
{
  g_autoptr(GCancellable) cancellable = capture_timeout_cancellable (state);

  capture_set_phase (state, HEXZ_CAPTURE_PHASE_PAUSE);

  state->stop_sent = TRUE;
  state->pause_start = g_get_monotonic_time ();
  hexz_qmp_client_stop_async (state->client, cancellable, capture_on_stopped,
                              capture_state_ref (state));
}

/* Step 2: prepare. Everything here happens before the machine is paused,
 * and only the migration settings are changed. */

static void
capture_start (CaptureState *state)
{
  HexzCapture *self = state->self;
  g_autoptr(GError) error = NULL;

  if (state->failing)
    return;

  self->chosen_mode = state->mode;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CHOSEN_MODE]);
  g_debug ("Capture: mode %s", hexz_capture_mode_to_string (state->mode));

  state->writer = hexz_snapshot_writer_new (self->output);
  hexz_snapshot_writer_set_codec (state->writer, self->codec);
  if (self->level != 0)
    hexz_snapshot_writer_set_level (state->writer, self->level);
  hexz_snapshot_writer_set_block_size (state->writer, self->block_size);
  if (self->threads != 0)
    hexz_snapshot_writer_set_threads (state->writer, self->threads);
  if (self->thin)
    hexz_snapshot_writer_set_parent (state->writer, state->base);

  /* Opening the stream creates the file, which is better done and checked
   * before the machine is paused. */
  if (!hexz_snapshot_writer_begin_stream (state->writer, HEXZ_STREAM_MEMORY,
                                          state->ram_size, &error))
    {
      capture_fail (state, g_steal_pointer (&error));
      return;
    }

  if (state->mode == HEXZ_CAPTURE_MODE_LIVE)
    capture_start_memory (state);
  else
    capture_pause (state);
}

static void
capture_on_parameters_set (GObject      *source,
                           GAsyncResult *result,
                           gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;

  reply = capture_execute_finish (state, result, &error);
  if (state->failing)
    return;

  if (reply == NULL)
    {
      capture_fail (state, capture_command_error ("migrate-set-parameters", g_steal_pointer (&error)));
      return;
    }

  capture_start (state);
}

static void
capture_set_parameters (CaptureState *state)
{
  g_autoptr(JsonObject) arguments = json_object_new ();
  gint64 bandwidth = CAPTURE_MAX_BANDWIDTH;

  if (state->mode == HEXZ_CAPTURE_MODE_LIVE && state->self->live_bandwidth != 0)
    bandwidth = (gint64) state->self->live_bandwidth;

  g_debug ("Capture: max-bandwidth %" G_GINT64_FORMAT " bytes/s", bandwidth);
  json_object_set_int_member (arguments, "max-bandwidth", bandwidth);
  state->parameters_changed = TRUE;
  capture_execute (state, "migrate-set-parameters", arguments, NULL, capture_on_parameters_set);
}

static void capture_set_capabilities (CaptureState *state);

static void
capture_on_capabilities_set (GObject      *source,
                             GAsyncResult *result,
                             gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;
  HexzCapture *self = state->self;

  reply = capture_execute_finish (state, result, &error);
  if (state->failing)
    return;

  if (reply == NULL && state->mode == HEXZ_CAPTURE_MODE_BACKGROUND &&
      self->mode == HEXZ_CAPTURE_MODE_AUTO && !capture_is_connection_error (error))
    {
      /* The machine is not paused yet, so auto can still fall back. */
      g_free (self->fallback_reason);
      self->fallback_reason = g_strdup_printf (
          /* Translators: %s is QEMU's error message. */
          _("QEMU rejected the background-snapshot capability (%s); taking a paused snapshot"),
          error->message);
      g_message ("%s", self->fallback_reason);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FALLBACK_REASON]);

      state->mode = HEXZ_CAPTURE_MODE_PAUSED;
      capture_set_capabilities (state);
      return;
    }

  if (reply == NULL)
    {
      capture_fail (state, capture_command_error ("migrate-set-capabilities", g_steal_pointer (&error)));
      return;
    }

  capture_set_parameters (state);
}

static void
capture_set_capabilities (CaptureState *state)
{
  g_autoptr(JsonObject) arguments = NULL;

  /* background-snapshot is set off as well as on: left on from an
   * earlier run, it would make QEMU resume a machine the user paused. */
  if (state->has_background_snapshot)
    arguments = capabilities_argument ("events", TRUE,
                                       "background-snapshot",
                                       state->mode == HEXZ_CAPTURE_MODE_BACKGROUND,
                                       NULL);
  else
    arguments = capabilities_argument ("events", TRUE, NULL);

  state->capabilities_changed = TRUE;
  capture_execute (state, "migrate-set-capabilities", arguments, NULL, capture_on_capabilities_set);
}

static gboolean
capture_choose_mode (CaptureState  *state,
                     GError       **error)
{
  HexzCapture *self = state->self;

  switch (self->mode)
    {
    case HEXZ_CAPTURE_MODE_AUTO:
      if (state->has_background_snapshot && state->was_running)
        state->mode = HEXZ_CAPTURE_MODE_BACKGROUND;
      else
        state->mode = HEXZ_CAPTURE_MODE_PAUSED;
      return TRUE;

    case HEXZ_CAPTURE_MODE_BACKGROUND:
      if (!state->has_background_snapshot)
        {
          g_set_error_literal (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_UNSUPPORTED,
                               _("This QEMU does not offer the background-snapshot "
                                 "migration capability; use the paused or live mode"));
          return FALSE;
        }
      if (!state->was_running)
        {
          g_set_error_literal (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                               _("The virtual machine is paused, and a background snapshot "
                                 "would resume it; use the paused mode"));
          return FALSE;
        }
      state->mode = HEXZ_CAPTURE_MODE_BACKGROUND;
      return TRUE;

    case HEXZ_CAPTURE_MODE_PAUSED:
    case HEXZ_CAPTURE_MODE_LIVE:
    default:
      state->mode = self->mode;
      return TRUE;
    }
}

/* Marker of a run in progress.
 *
 * A capture that is killed (SIGKILL, a crash) after it changed the
 * machine cannot undo its changes: the machine may stay paused, and the
 * migration settings stay changed, so that the next capture would take
 * them for the originals. Before changing anything, a run writes a marker
 * beside the QMP socket (`SOCKET.hexz-capture`) with its pid, the run
 * state and the migration settings it found, and it removes the marker
 * once its cleanup restored them. A run that finds the marker of a process
 * that no longer exists takes over its saved state: it restores those
 * settings at its end, resumes the machine when the killed run had found
 * it running, and logs a message. */

#define MARKER_GROUP "capture"

/* Loads the marker into @marker and returns the pid of the run that wrote
 * it when that process no longer exists, 0 otherwise. */
static gint64
capture_load_dead_marker (CaptureState *state,
                          GKeyFile     *marker)
{
  gint64 pid;

  if (state->marker_path == NULL ||
      !g_key_file_load_from_file (marker, state->marker_path, G_KEY_FILE_NONE, NULL))
    return 0;

  /* Only a process that no longer exists (ESRCH) left its marker behind. */
  pid = g_key_file_get_int64 (marker, MARKER_GROUP, "pid", NULL);
  if (pid <= 0 || pid > G_MAXINT || pid == getpid () ||
      kill ((pid_t) pid, 0) == 0 || errno != ESRCH)
    {
      g_debug ("Capture: leaving marker %s of pid %" G_GINT64_FORMAT " alone",
               state->marker_path, pid);
      return 0;
    }

  return pid;
}

/* Takes over the settings saved in the marker of a dead run, as the ones
 * to restore, and sets @was_running to the run state that run found.
 * Returns the dead run's pid, or 0 when there is no such marker. Both a
 * capture and a recovery take over a marker through this function. */
static gint64
capture_take_over_marker (CaptureState *state,
                          gboolean     *was_running)
{
  g_autoptr(GKeyFile) marker = g_key_file_new ();
  gint64 pid;

  pid = capture_load_dead_marker (state, marker);
  if (pid == 0)
    return 0;

  *was_running = g_key_file_get_boolean (marker, MARKER_GROUP, "was-running", NULL);
  state->saved_events = g_key_file_get_boolean (marker, MARKER_GROUP, "events", NULL);
  if (state->has_background_snapshot && g_key_file_has_key (marker, MARKER_GROUP, "background-snapshot", NULL))
    state->saved_background_snapshot = g_key_file_get_boolean (marker, MARKER_GROUP, "background-snapshot", NULL);
  if (g_key_file_has_key (marker, MARKER_GROUP, "max-bandwidth", NULL))
    {
      state->saved_max_bandwidth = g_key_file_get_int64 (marker, MARKER_GROUP, "max-bandwidth", NULL);
      state->has_saved_max_bandwidth = TRUE;
    }

  return pid;
}

/* Returns TRUE when the marker's run had found the machine running and
 * this run resumes it. */
static gboolean
capture_adopt_marker (CaptureState *state)
{
  gboolean marker_was_running = FALSE;
  gboolean resumes;
  gint64 pid;

  pid = capture_take_over_marker (state, &marker_was_running);
  if (pid == 0)
    return FALSE;

  resumes = marker_was_running && !state->was_running;
  if (resumes)
    state->was_running = TRUE;

  if (resumes)
    /* Translators: the first placeholder is a process id, the second a file
     * name. */
    g_message (_("The virtual machine was left paused by an earlier snapshot (process %"
                 PRId64 ", marker “%s”) that ended before it could resume it. "
                 "This snapshot resumes it and restores the migration settings."),
               pid, state->marker_path);
  else
    /* Translators: the first placeholder is a process id, the second a file
     * name. */
    g_message (_("An earlier snapshot (process %" PRId64 ", marker “%s”) ended "
                 "before it restored the migration settings. This snapshot restores them."),
               pid, state->marker_path);

  return resumes;
}

static gboolean
capture_write_marker (CaptureState  *state,
                      GError       **error)
{
  g_autoptr(GKeyFile) marker = g_key_file_new ();
  g_autofree char *contents = NULL;
  gsize length;

  if (state->marker_path == NULL)
    return TRUE;

  g_key_file_set_int64 (marker, MARKER_GROUP, "pid", getpid ());
  g_key_file_set_boolean (marker, MARKER_GROUP, "was-running", state->was_running);
  g_key_file_set_boolean (marker, MARKER_GROUP, "events", state->saved_events);
  if (state->has_background_snapshot)
    g_key_file_set_boolean (marker, MARKER_GROUP, "background-snapshot",
                            state->saved_background_snapshot);
  g_key_file_set_int64 (marker, MARKER_GROUP, "max-bandwidth", state->saved_max_bandwidth);

  contents = g_key_file_to_data (marker, &length, NULL);
  if (!g_file_set_contents_full (state->marker_path, contents, length,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600, error))
    return FALSE;

  state->marker_written = TRUE;
  return TRUE;
}

static void
capture_configure (CaptureState *state)
{
  g_autoptr(GError) error = NULL;

  if (!capture_choose_mode (state, &error))
    {
      capture_fail (state, g_steal_pointer (&error));
      return;
    }

  /* Without the marker only the recovery after a kill is lost, so a
   * socket in a folder the user cannot write to does not stop the run. */
  if (!capture_write_marker (state, &error))
    g_debug ("Capture: no marker written: %s", error->message);

  capture_set_capabilities (state);
}

static void
capture_on_adopted_resume (GObject      *source,
                           GAsyncResult *result,
                           gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(GError) error = NULL;

  if (!hexz_qmp_client_cont_finish (state->client, result, &error))
    {
      if (!state->failing)
        capture_fail (state, capture_command_error ("cont", g_steal_pointer (&error)));
      return;
    }
  if (state->failing)
    return;

  state->initial_run_state = HEXZ_RUN_STATE_RUNNING;
  capture_configure (state);
}

/* The machine's configuration, which booting the snapshot needs: QEMU
 * loads a memory stream only into the same machine type and CPUs, and a
 * kernel given with -kernel adds an option ROM the stream contains. Each
 * reply is only metadata, so a failed query is logged and skipped. */

typedef struct {
  CaptureState *state;
  const char *property;
  char **value;
} MachineQuery;

static void
capture_machine_queries_done (CaptureState *state)
{
  if (--state->machine_queries > 0 || state->failing)
    return;

  /* A run killed after its migration completed leaves the machine in
   * postmigrate, where QEMU rejects any new migration, so it is resumed
   * before this run pauses it again. */
  if (capture_adopt_marker (state) && state->initial_run_state == HEXZ_RUN_STATE_POSTMIGRATE)
    {
      g_autoptr(GCancellable) cancellable = capture_timeout_cancellable (state);

      hexz_qmp_client_cont_async (state->client, cancellable, capture_on_adopted_resume,
                                  capture_state_ref (state));
      return;
    }

  /* A machine that was paused when an earlier migration ended stays in
   * postmigrate, and QEMU rejects any new migration there. Only running
   * it leaves that state, which this capture must not do on its own. */
  if (state->initial_run_state == HEXZ_RUN_STATE_POSTMIGRATE && !state->was_running)
    {
      capture_fail (state,
                    g_error_new (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                                 /* Translators: %s is a QMP socket path. */
                                 _("The virtual machine is still stopped by an earlier "
                                   "snapshot or migration (QEMU state postmigrate), and QEMU "
                                   "takes no new snapshot in that state: resume it, for "
                                   "instance with “hexz-snap resume --socket %s”, and "
                                   "snapshot it again"),
                                 state->self->socket_path != NULL ? state->self->socket_path
                                                                  : "SOCKET"));
      return;
    }

  capture_configure (state);
}

static void
capture_on_machine_property (GObject      *source,
                             GAsyncResult *result,
                             gpointer      user_data)
{
  MachineQuery *query = user_data;
  g_autoptr(CaptureState) state = query->state;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;

  reply = capture_execute_finish (state, result, &error);
  if (reply == NULL)
    g_debug ("Capture: reading the machine's %s failed: %s", query->property, error->message);
  else if (JSON_NODE_HOLDS_VALUE (reply) && json_node_get_value_type (reply) == G_TYPE_STRING &&
           json_node_get_string (reply)[0] != '\0')
    *query->value = g_strdup (json_node_get_string (reply));
  g_free (query);

  capture_machine_queries_done (state);
}

static void
capture_on_cpus (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;

  reply = capture_execute_finish (state, result, &error);
  if (reply == NULL)
    g_debug ("Capture: query-cpus-fast failed: %s", error->message);
  else if (JSON_NODE_HOLDS_ARRAY (reply))
    state->cpus = json_array_get_length (json_node_get_array (reply));

  capture_machine_queries_done (state);
}

static void
capture_query_machine (CaptureState *state)
{
  const struct {
    const char *property;
    char **value;
  } properties_to_read[] = {
    { "type", &state->machine_type },
    { "kernel", &state->kernel },
    { "append", &state->append },
    { "initrd", &state->initrd },
  };

  state->machine_queries = 1 + G_N_ELEMENTS (properties_to_read);
  capture_execute (state, "query-cpus-fast", NULL, NULL, capture_on_cpus);

  for (guint i = 0; i < G_N_ELEMENTS (properties_to_read); i++)
    {
      g_autoptr(JsonObject) arguments = json_object_new ();
      g_autoptr(GCancellable) cancellable = capture_timeout_cancellable (state);
      MachineQuery *query = g_new (MachineQuery, 1);

      query->state = capture_state_ref (state);
      query->property = properties_to_read[i].property;
      query->value = properties_to_read[i].value;
      json_object_set_string_member (arguments, "path", "/machine");
      json_object_set_string_member (arguments, "property", query->property);
      g_debug ("Capture: sending qom-get %s", query->property);
      hexz_qmp_client_execute_async (state->client, "qom-get", arguments, NULL, cancellable,
                                     capture_on_machine_property, query);
    }
}

static void
capture_on_name (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;
  JsonObject *object;

  reply = capture_execute_finish (state, result, &error);
  if (state->failing)
    return;

  /* The name is only metadata: a failure here is not worth stopping for. */
  object = capture_reply_object (reply);
  if (object != NULL && json_object_has_member (object, "name"))
    state->vm_name = g_strdup (json_object_get_string_member (object, "name"));
  else if (error != NULL)
    g_debug ("Capture: query-name failed: %s", error->message);
  g_clear_error (&error);

  capture_query_machine (state);
}

static void
capture_on_parameters (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;
  JsonObject *object;

  reply = capture_execute_finish (state, result, &error);
  if (state->failing)
    return;

  if (reply == NULL)
    {
      capture_fail (state, capture_command_error ("query-migrate-parameters", g_steal_pointer (&error)));
      return;
    }

  object = capture_reply_object (reply);
  if (object == NULL || !json_object_has_member (object, "max-bandwidth"))
    {
      capture_fail (state, g_error_new_literal (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_UNSUPPORTED,
                                                _("QEMU reports no max-bandwidth migration "
                                                  "parameter")));
      return;
    }
  state->saved_max_bandwidth = json_object_get_int_member (object, "max-bandwidth");
  state->has_saved_max_bandwidth = TRUE;

  capture_execute (state, "query-name", NULL, NULL, capture_on_name);
}

static void
capture_on_capabilities (GObject      *source,
                         GAsyncResult *result,
                         gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;
  JsonArray *list;

  reply = capture_execute_finish (state, result, &error);
  if (state->failing)
    return;

  if (reply == NULL)
    {
      capture_fail (state, capture_command_error ("query-migrate-capabilities", g_steal_pointer (&error)));
      return;
    }

  list = JSON_NODE_HOLDS_ARRAY (reply) ? json_node_get_array (reply) : NULL;
  for (guint i = 0; list != NULL && i < json_array_get_length (list); i++)
    {
      JsonObject *item = json_array_get_object_element (list, i);
      const char *name;
      gboolean enabled;

      if (item == NULL)
        continue;

      name = json_object_get_string_member_with_default (item, "capability", "");
      enabled = json_object_get_boolean_member_with_default (item, "state", FALSE);

      if (g_str_equal (name, "events"))
        state->saved_events = enabled;
      else if (g_str_equal (name, "background-snapshot"))
        {
          state->has_background_snapshot = TRUE;
          state->saved_background_snapshot = enabled;
        }
    }

  if (state->recovering)
    recover_take_over (state);
  else
    capture_execute (state, "query-migrate-parameters", NULL, NULL, capture_on_parameters);
}

static void capture_on_previous_migration (GObject      *source,
                                           GAsyncResult *result,
                                           gpointer      user_data);

static gboolean
capture_query_previous_migration_cb (gpointer user_data)
{
  CaptureState *state = user_data;
  g_autoptr(GCancellable) cancellable = capture_timeout_cancellable (state);

  hexz_qmp_client_query_migrate_async (state->client, cancellable,
                                       capture_on_previous_migration, capture_state_ref (state));
  return G_SOURCE_REMOVE;
}

/* A killed background run leaves its migration to a process that drains
 * it (see capture_start_drain_guard()). So when the marker of a killed run
 * is there, a migration under way ends by itself, and this run waits for
 * it as long as it makes progress: it fails once the migration stalls for
 * the cleanup timeout. Returns FALSE when it does not wait. */
static gboolean
capture_wait_previous_migration (CaptureState      *state,
                                 HexzMigrationInfo *info)
{
  g_autoptr(GKeyFile) marker = g_key_file_new ();
  guint64 transferred = hexz_migration_info_get_ram_transferred (info);
  gint64 now = g_get_monotonic_time ();
  GSource *source;
  gint64 pid;

  if (state->previous_migration_deadline == 0)
    {
      pid = capture_load_dead_marker (state, marker);
      if (pid == 0)
        return FALSE;

      /* Translators: the placeholder is a process id. */
      g_message (_("Waiting for the memory dump of an earlier snapshot (process %" PRId64
                   ") that ended early, so that QEMU can take a new one"), pid);
    }
  else if (transferred <= state->previous_migration_transferred &&
           now > state->previous_migration_deadline)
    {
      return FALSE;
    }

  if (state->previous_migration_deadline == 0 ||
      transferred > state->previous_migration_transferred)
    {
      state->previous_migration_transferred = transferred;
      state->previous_migration_deadline = now + (gint64) state->self->cleanup_timeout * 1000;
    }

  state->recovery |= HEXZ_CAPTURE_RECOVERY_WAITED_FOR_MIGRATION;
  source = g_timeout_source_new (RUN_STATE_RETRY_MS * 5);
  g_source_set_callback (source, capture_query_previous_migration_cb, capture_state_ref (state),
                         (GDestroyNotify) capture_state_unref);
  g_source_attach (source, state->context);
  g_source_unref (source);
  return TRUE;
}

static void
capture_on_previous_migration (GObject      *source,
                               GAsyncResult *result,
                               gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(HexzMigrationInfo) info = NULL;
  g_autoptr(GError) error = NULL;

  info = hexz_qmp_client_query_migrate_finish (state->client, result, &error);
  if (state->failing)
    return;

  if (info == NULL)
    {
      capture_fail (state, capture_command_error ("query-migrate", g_steal_pointer (&error)));
      return;
    }

  if (hexz_migration_status_is_running (hexz_migration_info_get_status (info)) &&
      capture_wait_previous_migration (state, info))
    return;

  if (hexz_migration_status_is_running (hexz_migration_info_get_status (info)))
    {
      capture_fail (state,
                    g_error_new (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                                 /* Translators: %s is a migration status. */
                                 _("A migration is already under way (status %s); wait for it "
                                   "to end or cancel it"),
                                 hexz_migration_info_get_status_string (info)));
      return;
    }

  capture_execute (state, "query-migrate-capabilities", NULL, NULL, capture_on_capabilities);
}

/* Finishes the query-status that starts a snapshot or a recovery and
 * records the run state in @state. Returns FALSE when the run failed or
 * fails now, so that the caller stops. */
static gboolean
capture_finish_run_state (CaptureState *state,
                          GAsyncResult *result,
                          gboolean     *running)
{
  g_autoptr(GError) error = NULL;
  HexzRunState run_state;

  run_state = hexz_qmp_client_query_status_finish (state->client, result, running, &error);
  if (state->failing)
    return FALSE;

  if (error != NULL)
    {
      capture_fail (state, capture_command_error ("query-status", g_steal_pointer (&error)));
      return FALSE;
    }

  g_debug ("Capture: machine is %s before the %s", hexz_run_state_to_string (run_state),
           state->recovering ? "recovery" : "snapshot");
  state->initial_run_state = run_state;

  return TRUE;
}

static void
capture_on_run_state (GObject      *source,
                      GAsyncResult *result,
                      gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(GCancellable) cancellable = NULL;
  HexzRunState run_state;
  gboolean running = FALSE;

  if (!capture_finish_run_state (state, result, &running))
    return;

  run_state = state->initial_run_state;
  state->was_running = running;

  if (run_state == HEXZ_RUN_STATE_INMIGRATE || run_state == HEXZ_RUN_STATE_FINISH_MIGRATE)
    {
      capture_fail (state,
                    g_error_new (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                                 /* Translators: %s is a QEMU run state. */
                                 _("The virtual machine is in the %s state, in the middle "
                                   "of a migration, and cannot be snapshotted now: wait "
                                   "until QEMU reports it running or paused (a QEMU "
                                   "started with “-incoming defer” needs its memory "
                                   "restored first), then try again"),
                                 hexz_run_state_to_string (run_state)));
      return;
    }

  cancellable = capture_timeout_cancellable (state);
  hexz_qmp_client_query_migrate_async (state->client, cancellable,
                                       capture_on_previous_migration, capture_state_ref (state));
}

static void
capture_prepare (CaptureState *state)
{
  g_autoptr(GCancellable) cancellable = capture_timeout_cancellable (state);

  capture_set_phase (state, HEXZ_CAPTURE_PHASE_PREPARE);
  hexz_qmp_client_query_status_async (state->client, cancellable,
                                      capture_on_run_state, capture_state_ref (state));
}

/* Step 1: preflight, before anything reaches the machine but queries. */

static gboolean
capture_check_space (CaptureState  *state,
                     GError       **error)
{
  struct statvfs info;
  guint64 available;
  guint64 needed;

  if (!state->self->check_free_space)
    return TRUE;

  if (statvfs (state->output_dir, &info) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   /* Translators: %s is a folder name, then an error message. */
                   _("Cannot check the free space in “%s”: %s"),
                   state->output_dir, g_strerror (saved_errno));
      return FALSE;
    }

  /* Compression usually needs less, but incompressible memory needs all
   * of it, and the copied pages sit in the output folder meanwhile. */
  available = (guint64) info.f_bavail * info.f_frsize;
  needed = state->ram_size + hexz_overlay_get_data_size (state->overlay);
  if (available < needed)
    {
      g_set_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_NO_SPACE,
                   /* Translators: %s is a folder name, the numbers are sizes in bytes. */
                   _("Not enough free space in “%s”: %" PRIu64 " bytes free, "
                     "%" PRIu64 " needed for the memory and the modified disk "
                     "pages; free some space or write elsewhere"),
                   state->output_dir, available, needed);
      return FALSE;
    }

  return TRUE;
}

static void
capture_on_memory_size (GObject      *source,
                        GAsyncResult *result,
                        gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;
  JsonObject *object;

  reply = capture_execute_finish (state, result, &error);
  if (state->failing)
    return;

  if (reply == NULL)
    {
      capture_fail (state, capture_command_error ("query-memory-size-summary",
                                                  g_steal_pointer (&error)));
      return;
    }

  object = capture_reply_object (reply);
  if (object != NULL)
    state->ram_size = json_object_get_int_member_with_default (object, "base-memory", 0) +
                      json_object_get_int_member_with_default (object, "plugged-memory", 0);
  g_debug ("Capture: machine has %" G_GUINT64_FORMAT " bytes of RAM", state->ram_size);

  if (!capture_check_space (state, &error))
    {
      capture_fail (state, g_steal_pointer (&error));
      return;
    }

  capture_prepare (state);
}

static void
capture_on_connected (GObject      *source,
                      GAsyncResult *result,
                      gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(GError) error = NULL;

  if (!hexz_qmp_client_connect_finish (state->client, result, &error))
    {
      /* The client's error names the socket already. */
      if (!state->failing)
        capture_fail (state, g_steal_pointer (&error));
      return;
    }

  if (state->failing)
    return;

  if (state->recovering)
    recover_query_run_state (state);
  else
    capture_execute (state, "query-memory-size-summary", NULL, NULL, capture_on_memory_size);
}

static gboolean
capture_check_inputs (CaptureState  *state,
                      GError       **error)
{
  HexzCapture *self = state->self;
  g_autoptr(GFile) folder = NULL;
  g_autofree char *output_path = NULL;
  guint64 overlay_size;

  if (self->output == NULL || (output_path = g_file_get_path (self->output)) == NULL)
    {
      g_set_error_literal (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                           _("No local output file is set"));
      return FALSE;
    }

  if (self->overlay == NULL)
    {
      g_set_error_literal (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                           _("No overlay is set"));
      return FALSE;
    }

  if (self->qmp_client == NULL && self->socket_path == NULL)
    {
      g_set_error_literal (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                           _("Neither a QMP socket nor a QMP client is set"));
      return FALSE;
    }

  if (self->base != NULL)
    state->base = g_object_ref (self->base);
  else if (self->base_path != NULL)
    state->base = hexz_snapshot_open_path (self->base_path, state->user_cancellable, error);
  else
    g_set_error_literal (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                         _("No base snapshot is set"));
  if (state->base == NULL)
    return FALSE;

  state->disk_size = hexz_snapshot_get_disk_size (state->base);
  if (state->disk_size == 0)
    {
      g_autofree char *base_name = g_file_get_parse_name (hexz_snapshot_get_file (state->base));

      g_set_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                   /* Translators: %s is a file name. */
                   _("The base snapshot “%s” has no disk stream"), base_name);
      return FALSE;
    }

  /* A larger overlay means the disk grew: it is accepted only on request,
   * and then the disk takes the overlay's size. */
  {
    struct stat info;

    if (g_stat (self->overlay, &info) != 0)
      {
        int saved_errno = errno;

        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                     /* Translators: %s is a file name, then an error message. */
                     _("Cannot open the overlay “%s”: %s"),
                     self->overlay, g_strerror (saved_errno));
        return FALSE;
      }
    overlay_size = info.st_size;
  }

  if (overlay_size > state->disk_size)
    {
      if (!self->allow_larger_overlay)
        {
          g_set_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                       /* Translators: %s is a file name, the numbers are sizes in bytes. */
                       _("The overlay “%s” (%" PRIu64 " bytes) is larger than "
                         "the base's disk (%" PRIu64 " bytes); check that it "
                         "belongs to this base, or allow a larger overlay"),
                       self->overlay, overlay_size, state->disk_size);
          return FALSE;
        }
      state->disk_size = overlay_size;
    }

  state->overlay = hexz_overlay_open_path (self->overlay, state->disk_size,
                                           state->user_cancellable, error);
  if (state->overlay == NULL ||
      !hexz_overlay_check_base_id (-1, self->overlay, state->base, error))
    return FALSE;

  folder = g_file_get_parent (self->output);
  state->output_dir = folder ? g_file_get_path (folder) : g_strdup (".");
  if (!g_file_test (state->output_dir, G_FILE_TEST_IS_DIR) ||
      access (state->output_dir, W_OK | X_OK) != 0)
    {
      g_set_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                   /* Translators: %s is a folder name. */
                   _("The output folder “%s” does not exist or is not writable"),
                   state->output_dir);
      return FALSE;
    }

  /* The machine reads the overlay and the whole chain of bases while it
   * runs, so the output may replace none of them. */
  {
    g_autoptr(GPtrArray) inputs = g_ptr_array_new_with_free_func (g_free);
    GError *local_error = NULL;

    g_ptr_array_add (inputs, g_strdup (self->overlay));
    g_ptr_array_add (inputs, hexz_overlay_get_meta_path_for (self->overlay));
    for (HexzSnapshot *base = state->base; base != NULL; base = hexz_snapshot_get_parent (base))
      g_ptr_array_add (inputs, g_file_get_path (hexz_snapshot_get_file (base)));

    if (!hexz_check_output_path (output_path, (const char * const *) inputs->pdata, inputs->len,
                                 &local_error))
      {
        local_error->domain = HEXZ_CAPTURE_ERROR;
        local_error->code = HEXZ_CAPTURE_ERROR_INVALID_INPUT;
        g_propagate_error (error, local_error);
        return FALSE;
      }
  }

  return TRUE;
}

static void
capture_preflight (CaptureState *state)
{
  HexzCapture *self = state->self;
  g_autoptr(GError) error = NULL;

  capture_set_phase (state, HEXZ_CAPTURE_PHASE_PREFLIGHT);

  /* The same message as a cancellation later in the run. */
  if (g_cancellable_is_cancelled (state->user_cancellable))
    {
      capture_fail (state, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                _("The snapshot was cancelled")));
      return;
    }

  if (!capture_check_inputs (state, &error))
    {
      capture_fail (state, g_steal_pointer (&error));
      return;
    }

  if (self->qmp_client != NULL)
    {
      state->client = g_object_ref (self->qmp_client);
      if (!hexz_qmp_client_get_connected (state->client))
        {
          capture_fail (state, g_error_new_literal (HEXZ_CAPTURE_ERROR,
                                                    HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                                                    _("The QMP client is not connected")));
          return;
        }
      capture_execute (state, "query-memory-size-summary", NULL, NULL, capture_on_memory_size);
      return;
    }

  state->client = hexz_qmp_client_new ();
  state->own_client = TRUE;
  if (self->connect_timeout != 0)
    hexz_qmp_client_set_connect_timeout (state->client, self->connect_timeout);
  hexz_qmp_client_connect_to_path_async (state->client, self->socket_path,
                                         state->user_cancellable, capture_on_connected,
                                         capture_state_ref (state));
}

static CaptureState *
capture_state_new (HexzCapture         *self,
                   GCancellable        *cancellable,
                   GAsyncReadyCallback  callback,
                   gpointer             user_data,
                   gpointer             source_tag)
{
  CaptureState *state = g_atomic_rc_box_new0 (CaptureState);

  state->self = g_object_ref (self);
  state->drain_guard_fd = -1;
  if (self->socket_path != NULL)
    state->marker_path = g_strconcat (self->socket_path, ".hexz-capture", NULL);
  state->task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (state->task, source_tag);
  /* The run reports its own cancellation error once the cleanup is done. */
  g_task_set_check_cancellable (state->task, FALSE);
  state->context = g_main_context_ref_thread_default ();
  state->cancellable = g_cancellable_new ();
  if (cancellable != NULL)
    {
      state->user_cancellable = g_object_ref (cancellable);
      state->user_cancelled_id = g_cancellable_connect (cancellable,
                                                        G_CALLBACK (capture_on_user_cancelled),
                                                        capture_state_ref (state),
                                                        (GDestroyNotify) capture_state_unref);
    }

  return state;
}

/**
 * hexz_capture_run_async:
 * @self: a capture
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): the function to call when the snapshot is
 *   written or the capture failed
 * @user_data: the data to pass to @callback
 *
 * Takes the snapshot. The run checks the inputs, pauses the machine as the
 * mode requires, writes its memory and disk into the output file and
 * resumes it.
 *
 * Cancelling @cancellable runs the same cleanup as any failure: the
 * migration is cancelled, the machine resumed if it ran before, the
 * migration settings restored and the partial file removed. The cleanup
 * runs to its end before @callback is called. A cancellation that arrives
 * while the file is being closed ([enum@Hexz.CapturePhase.FINALIZE]) is
 * ignored, and the snapshot completes.
 *
 * When the cleanup could not resume a machine that ran before, whatever
 * the first failure was, the error is
 * [error@Hexz.CaptureError.CONNECTION_LOST] or
 * [error@Hexz.CaptureError.RESUME_FAILED], and its message states that
 * the machine may still be paused and how to resume it.
 *
 * Only one run may be under way at a time.
 *
 * Since: 1.0
 */
void
hexz_capture_run_async (HexzCapture         *self,
                        GCancellable        *cancellable,
                        GAsyncReadyCallback  callback,
                        gpointer             user_data)
{
  CaptureState *state;

  g_return_if_fail (HEXZ_IS_CAPTURE (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));
  g_return_if_fail (!self->running);

  self->running = TRUE;
  self->pause_time = -1;
  self->downtime = -1;
  if (self->paused_to_converge)
    {
      self->paused_to_converge = FALSE;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PAUSED_TO_CONVERGE]);
    }
  self->chosen_mode = self->mode;
  g_clear_pointer (&self->fallback_reason, g_free);

  state = capture_state_new (self, cancellable, callback, user_data, hexz_capture_run_async);
  capture_preflight (state);
  capture_state_unref (state);
}

/**
 * hexz_capture_run_finish:
 * @self: a capture
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a run started with [method@Hexz.Capture.run_async].
 *
 * Returns: %TRUE if the snapshot file was written
 *
 * Since: 1.0
 */
gboolean
hexz_capture_run_finish (HexzCapture   *self,
                         GAsyncResult  *result,
                         GError       **error)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == hexz_capture_run_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Recovery after a killed capture.
 *
 * The chain connects and reads the run state. Without the marker of a dead
 * run it only resumes a paused machine. With such a marker it waits for
 * the dead run's migration, as a capture's takeover does
 * (capture_wait_previous_migration()), and reads which capabilities QEMU
 * offers. Then it takes over the marker's settings, resumes the machine if
 * the dead run had found it running, restores the settings and removes the
 * marker. A failure goes through the capture's cleanup, which restores the
 * settings it can and keeps the marker. */

static void
recover_on_settings_restored (CaptureState *state)
{
  if (state->cleanup_notes != NULL)
    {
      GError *error;

      /* The notes follow the error as sentences, and the cleanup must not
       * try the same commands again. */
      state->capabilities_changed = FALSE;
      state->parameters_changed = FALSE;
      error = g_error_new (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_FAILED,
                           /* Translators: %s is the marker file's path. */
                           _("Could not undo all the changes of the killed snapshot "
                             "recorded in “%s”; the marker stays, so that the next "
                             "recovery or snapshot tries again"),
                           state->marker_path);
      capture_fail (state, error);
      return;
    }

  if (state->marker_written)
    state->recovery |= HEXZ_CAPTURE_RECOVERY_SETTINGS_RESTORED;
  capture_complete (state);
}

static void
recover_on_resumed (CaptureState *state)
{
  if (state->cont_accepted)
    state->recovery |= HEXZ_CAPTURE_RECOVERY_RESUMED;

  capture_set_phase (state, HEXZ_CAPTURE_PHASE_CLEANUP);
  capture_restore_settings (state, recover_on_settings_restored);
}

static void
recover_resume (CaptureState *state)
{
  capture_set_phase (state, HEXZ_CAPTURE_PHASE_RESUME);
  capture_resume_vm (state, recover_on_resumed);
}

/* Called once the dead run's migration ended and the capabilities QEMU
 * offers are known. */
static void
recover_take_over (CaptureState *state)
{
  gboolean marker_was_running = FALSE;
  gint64 pid;

  pid = capture_take_over_marker (state, &marker_was_running);
  if (pid == 0)
    {
      /* The marker went away meanwhile: nothing but the pause to undo. */
      state->was_running = TRUE;
      recover_resume (state);
      return;
    }

  g_debug ("Capture: recovering after process %" G_GINT64_FORMAT
           " (machine %s then)", pid, marker_was_running ? "running" : "paused");
  state->recovery |= HEXZ_CAPTURE_RECOVERY_FOUND_MARKER;
  state->marker_written = TRUE;
  state->was_running = marker_was_running;
  state->capabilities_changed = TRUE;
  state->parameters_changed = state->has_saved_max_bandwidth;
  recover_resume (state);
}

static void
recover_on_run_state (GObject      *source,
                      GAsyncResult *result,
                      gpointer      user_data)
{
  g_autoptr(CaptureState) state = user_data;
  g_autoptr(GKeyFile) marker = g_key_file_new ();
  g_autoptr(GCancellable) cancellable = NULL;
  gboolean running = FALSE;

  if (!capture_finish_run_state (state, result, &running))
    return;

  /* There cont would only make QEMU start the machine once an incoming
   * migration loads it. */
  if (state->initial_run_state == HEXZ_RUN_STATE_INMIGRATE)
    {
      capture_fail (state,
                    g_error_new_literal (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                                         _("QEMU waits for an incoming migration and has no "
                                           "machine to resume yet: restore a snapshot into "
                                           "it first")));
      return;
    }

  if (capture_load_dead_marker (state, marker) == 0)
    {
      /* Without a dead run's marker there are no settings to restore: a
       * paused machine is only resumed. */
      state->was_running = TRUE;
      recover_resume (state);
      return;
    }

  cancellable = capture_timeout_cancellable (state);
  hexz_qmp_client_query_migrate_async (state->client, cancellable,
                                       capture_on_previous_migration, capture_state_ref (state));
}

static void
recover_query_run_state (CaptureState *state)
{
  g_autoptr(GCancellable) cancellable = capture_timeout_cancellable (state);

  capture_set_phase (state, HEXZ_CAPTURE_PHASE_PREPARE);
  hexz_qmp_client_query_status_async (state->client, cancellable,
                                      recover_on_run_state, capture_state_ref (state));
}

/**
 * hexz_capture_recover_async:
 * @self: a capture
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): the function to call when the recovery is done
 * @user_data: the data to pass to @callback
 *
 * Undoes what a capture that was killed (SIGKILL, a crash) left changed
 * on the machine of [property@Hexz.Capture:socket-path], without taking a
 * snapshot.
 *
 * A killed capture leaves a marker file beside the QMP socket
 * (`SOCKET.hexz-capture`) with the machine's run state and migration
 * settings from before it. When the process that wrote the marker no
 * longer exists, the recovery first waits for that run's migration to end,
 * as long as it makes progress. Then it resumes the machine if that run
 * had found it running, restores the migration capabilities and the
 * bandwidth it saved, and removes the marker. The marker of a process that
 * still exists is left alone.
 *
 * Without such a marker the recovery resumes a paused machine, whatever
 * paused it. A QEMU waiting for an incoming migration is refused with
 * [error@Hexz.CaptureError.INVALID_INPUT].
 *
 * The capture connects to [property@Hexz.Capture:socket-path] unless
 * [property@Hexz.Capture:qmp-client] is set; the marker is only found
 * through the socket path, so set it in both cases. The other properties
 * are not used. A failed recovery restores what it can and keeps the
 * marker, so that it can be tried again.
 *
 * Only one run or recovery may be under way at a time.
 *
 * Since: 1.0
 */
void
hexz_capture_recover_async (HexzCapture         *self,
                            GCancellable        *cancellable,
                            GAsyncReadyCallback  callback,
                            gpointer             user_data)
{
  CaptureState *state;

  g_return_if_fail (HEXZ_IS_CAPTURE (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));
  g_return_if_fail (!self->running);

  self->running = TRUE;
  state = capture_state_new (self, cancellable, callback, user_data, hexz_capture_recover_async);
  state->recovering = TRUE;

  if (g_cancellable_is_cancelled (cancellable))
    capture_fail (state, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                              _("The recovery was cancelled")));
  else if (self->qmp_client == NULL && self->socket_path == NULL)
    capture_fail (state, g_error_new_literal (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                                              _("Neither a QMP socket nor a QMP client is set")));
  else if (self->qmp_client != NULL && !hexz_qmp_client_get_connected (self->qmp_client))
    capture_fail (state, g_error_new_literal (HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                                              _("The QMP client is not connected")));
  else if (self->qmp_client != NULL)
    {
      state->client = g_object_ref (self->qmp_client);
      recover_query_run_state (state);
    }
  else
    {
      state->client = hexz_qmp_client_new ();
      state->own_client = TRUE;
      if (self->connect_timeout != 0)
        hexz_qmp_client_set_connect_timeout (state->client, self->connect_timeout);
      hexz_qmp_client_connect_to_path_async (state->client, self->socket_path,
                                             state->user_cancellable, capture_on_connected,
                                             capture_state_ref (state));
    }

  capture_state_unref (state);
}

/**
 * hexz_capture_recover_finish:
 * @self: a capture
 * @result: the result passed to the callback
 * @recovery: (out) (optional): return location for what the recovery did
 * @error: return location for an error
 *
 * Finishes a recovery started with [method@Hexz.Capture.recover_async].
 *
 * Returns: %TRUE if nothing a killed capture changed is left to undo and
 *   the machine runs when it should
 *
 * Since: 1.0
 */
gboolean
hexz_capture_recover_finish (HexzCapture          *self,
                             GAsyncResult         *result,
                             HexzCaptureRecovery  *recovery,
                             GError              **error)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == hexz_capture_recover_async, FALSE);

  if (recovery != NULL)
    *recovery = GPOINTER_TO_UINT (g_task_get_task_data (G_TASK (result)));

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Enumerations */

/**
 * hexz_capture_mode_to_string:
 * @mode: a capture mode
 *
 * Gets the mode's name as used on the command line and in snapshot
 * metadata: `auto`, `background`, `paused` or `live`.
 *
 * Returns: the name, or `unknown` for a value outside the enumeration
 *
 * Since: 1.0
 */
const char *
hexz_capture_mode_to_string (HexzCaptureMode mode)
{
  switch (mode)
    {
    case HEXZ_CAPTURE_MODE_AUTO:
      return "auto";
    case HEXZ_CAPTURE_MODE_BACKGROUND:
      return "background";
    case HEXZ_CAPTURE_MODE_PAUSED:
      return "paused";
    case HEXZ_CAPTURE_MODE_LIVE:
      return "live";
    default:
      return "unknown";
    }
}

/**
 * hexz_capture_mode_from_string:
 * @name: a mode name: `auto`, `background`, `paused` or `live`
 * @mode: (out): the mode
 *
 * Parses a capture mode name, ignoring case.
 *
 * Returns: %TRUE if @name names a mode
 *
 * Since: 1.0
 */
gboolean
hexz_capture_mode_from_string (const char      *name,
                               HexzCaptureMode *mode)
{
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (mode != NULL, FALSE);

  for (HexzCaptureMode m = HEXZ_CAPTURE_MODE_AUTO; m <= HEXZ_CAPTURE_MODE_LIVE; m++)
    {
      if (g_ascii_strcasecmp (name, hexz_capture_mode_to_string (m)) == 0)
        {
          *mode = m;
          return TRUE;
        }
    }

  return FALSE;
}

/**
 * hexz_capture_phase_to_string:
 * @phase: a capture phase
 *
 * Gets a short English name of the phase for logs and progress output,
 * such as `memory` or `resume`.
 *
 * Returns: the name, or `unknown` for a value outside the enumeration
 *
 * Since: 1.0
 */
const char *
hexz_capture_phase_to_string (HexzCapturePhase phase)
{
  static const char * const names[] = {
    [HEXZ_CAPTURE_PHASE_IDLE] = "idle",
    [HEXZ_CAPTURE_PHASE_PREFLIGHT] = "preflight",
    [HEXZ_CAPTURE_PHASE_PREPARE] = "prepare",
    [HEXZ_CAPTURE_PHASE_PAUSE] = "pause",
    [HEXZ_CAPTURE_PHASE_DISK] = "disk",
    [HEXZ_CAPTURE_PHASE_MEMORY] = "memory",
    [HEXZ_CAPTURE_PHASE_RESUME] = "resume",
    [HEXZ_CAPTURE_PHASE_MERGE] = "merge",
    [HEXZ_CAPTURE_PHASE_FINALIZE] = "finalize",
    [HEXZ_CAPTURE_PHASE_CLEANUP] = "cleanup",
    [HEXZ_CAPTURE_PHASE_DONE] = "done",
    [HEXZ_CAPTURE_PHASE_FAILED] = "failed",
  };

  if ((guint) phase >= G_N_ELEMENTS (names))
    return "unknown";

  return names[phase];
}

/* GObject */

static void
hexz_capture_finalize (GObject *object)
{
  HexzCapture *self = HEXZ_CAPTURE (object);

  g_clear_pointer (&self->socket_path, g_free);
  g_clear_object (&self->qmp_client);
  g_clear_pointer (&self->overlay, g_free);
  g_clear_pointer (&self->base_path, g_free);
  g_clear_object (&self->base);
  g_clear_object (&self->output);
  g_clear_pointer (&self->message, g_free);
  g_clear_pointer (&self->fallback_reason, g_free);

  G_OBJECT_CLASS (hexz_capture_parent_class)->finalize (object);
}

static void
hexz_capture_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  HexzCapture *self = HEXZ_CAPTURE (object);

  switch (prop_id)
    {
    case PROP_SOCKET_PATH:
      g_value_set_string (value, self->socket_path);
      break;
    case PROP_QMP_CLIENT:
      g_value_set_object (value, self->qmp_client);
      break;
    case PROP_OVERLAY:
      g_value_set_string (value, self->overlay);
      break;
    case PROP_BASE_PATH:
      g_value_set_string (value, self->base_path);
      break;
    case PROP_BASE:
      g_value_set_object (value, self->base);
      break;
    case PROP_OUTPUT:
      g_value_set_object (value, self->output);
      break;
    case PROP_MODE:
      g_value_set_enum (value, self->mode);
      break;
    case PROP_THIN:
      g_value_set_boolean (value, self->thin);
      break;
    case PROP_CODEC:
      g_value_set_enum (value, self->codec);
      break;
    case PROP_LEVEL:
      g_value_set_int (value, self->level);
      break;
    case PROP_BLOCK_SIZE:
      g_value_set_uint (value, self->block_size);
      break;
    case PROP_THREADS:
      g_value_set_uint (value, self->threads);
      break;
    case PROP_MESSAGE:
      g_value_set_string (value, self->message);
      break;
    case PROP_STALL_TIMEOUT:
      g_value_set_uint (value, self->stall_timeout);
      break;
    case PROP_LIVE_TIMEOUT:
      g_value_set_uint (value, self->live_timeout);
      break;

    case PROP_LIVE_BANDWIDTH:
      g_value_set_uint64 (value, self->live_bandwidth);
      break;
    case PROP_ALLOW_LARGER_OVERLAY:
      g_value_set_boolean (value, self->allow_larger_overlay);
      break;
    case PROP_PHASE:
      g_value_set_enum (value, self->phase);
      break;
    case PROP_CHOSEN_MODE:
      g_value_set_enum (value, self->chosen_mode);
      break;
    case PROP_FALLBACK_REASON:
      g_value_set_string (value, self->fallback_reason);
      break;
    case PROP_PAUSE_TIME:
      g_value_set_int64 (value, self->pause_time);
      break;
    case PROP_DOWNTIME:
      g_value_set_int64 (value, self->downtime);
      break;
    case PROP_PAUSED_TO_CONVERGE:
      g_value_set_boolean (value, self->paused_to_converge);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_capture_set_property (GObject      *object,
                           guint         prop_id,
                           const GValue *value,
                           GParamSpec   *pspec)
{
  HexzCapture *self = HEXZ_CAPTURE (object);

  switch (prop_id)
    {
    case PROP_SOCKET_PATH:
      hexz_capture_set_socket_path (self, g_value_get_string (value));
      break;
    case PROP_QMP_CLIENT:
      hexz_capture_set_qmp_client (self, g_value_get_object (value));
      break;
    case PROP_OVERLAY:
      hexz_capture_set_overlay (self, g_value_get_string (value));
      break;
    case PROP_BASE_PATH:
      hexz_capture_set_base_path (self, g_value_get_string (value));
      break;
    case PROP_BASE:
      hexz_capture_set_base (self, g_value_get_object (value));
      break;
    case PROP_OUTPUT:
      hexz_capture_set_output (self, g_value_get_object (value));
      break;
    case PROP_MODE:
      hexz_capture_set_mode (self, g_value_get_enum (value));
      break;
    case PROP_THIN:
      hexz_capture_set_thin (self, g_value_get_boolean (value));
      break;
    case PROP_CODEC:
      hexz_capture_set_codec (self, g_value_get_enum (value));
      break;
    case PROP_LEVEL:
      hexz_capture_set_level (self, g_value_get_int (value));
      break;
    case PROP_BLOCK_SIZE:
      hexz_capture_set_block_size (self, g_value_get_uint (value));
      break;
    case PROP_THREADS:
      hexz_capture_set_threads (self, g_value_get_uint (value));
      break;
    case PROP_MESSAGE:
      hexz_capture_set_message (self, g_value_get_string (value));
      break;
    case PROP_STALL_TIMEOUT:
      hexz_capture_set_stall_timeout (self, g_value_get_uint (value));
      break;
    case PROP_LIVE_TIMEOUT:
      hexz_capture_set_live_timeout (self, g_value_get_uint (value));
      break;

    case PROP_LIVE_BANDWIDTH:
      hexz_capture_set_live_bandwidth (self, g_value_get_uint64 (value));
      break;
    case PROP_ALLOW_LARGER_OVERLAY:
      hexz_capture_set_allow_larger_overlay (self, g_value_get_boolean (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_capture_class_init (HexzCaptureClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY;
  GParamFlags ro = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY;

  object_class->finalize = hexz_capture_finalize;
  object_class->get_property = hexz_capture_get_property;
  object_class->set_property = hexz_capture_set_property;

  /**
   * HexzCapture:socket-path: (getter get_socket_path) (setter set_socket_path)
   *
   * The path of the machine's QMP unix socket. Used when
   * [property@Hexz.Capture:qmp-client] is unset; the capture then opens
   * and closes its own connection.
   *
   * Since: 1.0
   */
  properties[PROP_SOCKET_PATH] =
    g_param_spec_string ("socket-path", NULL, NULL, NULL, rw);

  /**
   * HexzCapture:qmp-client: (getter get_qmp_client) (setter set_qmp_client)
   *
   * A connected QMP client for the machine, used instead of
   * [property@Hexz.Capture:socket-path].
   *
   * Since: 1.0
   */
  properties[PROP_QMP_CLIENT] =
    g_param_spec_object ("qmp-client", NULL, NULL, HEXZ_TYPE_QMP_CLIENT, rw);

  /**
   * HexzCapture:overlay: (getter get_overlay) (setter set_overlay)
   *
   * The path of the overlay file the machine writes its disk changes to.
   * Its `.meta` file sits beside it. The capture only reads both.
   *
   * Since: 1.0
   */
  properties[PROP_OVERLAY] =
    g_param_spec_string ("overlay", NULL, NULL, NULL, rw);

  /**
   * HexzCapture:base-path: (getter get_base_path) (setter set_base_path)
   *
   * The path of the snapshot the machine booted from, used when
   * [property@Hexz.Capture:base] is unset.
   *
   * Since: 1.0
   */
  properties[PROP_BASE_PATH] =
    g_param_spec_string ("base-path", NULL, NULL, NULL, rw);

  /**
   * HexzCapture:base: (getter get_base) (setter set_base)
   *
   * The snapshot the machine booted from.
   *
   * Since: 1.0
   */
  properties[PROP_BASE] =
    g_param_spec_object ("base", NULL, NULL, HEXZ_TYPE_SNAPSHOT, rw);

  /**
   * HexzCapture:output: (getter get_output) (setter set_output)
   *
   * The snapshot file to write. It appears only once complete; an existing
   * file is replaced then, and left untouched if the capture fails.
   *
   * Since: 1.0
   */
  properties[PROP_OUTPUT] =
    g_param_spec_object ("output", NULL, NULL, G_TYPE_FILE, rw);

  /**
   * HexzCapture:mode: (getter get_mode) (setter set_mode)
   *
   * How the memory is captured.
   *
   * Since: 1.0
   */
  properties[PROP_MODE] =
    g_param_spec_enum ("mode", NULL, NULL, HEXZ_TYPE_CAPTURE_MODE,
                       HEXZ_CAPTURE_MODE_AUTO, rw);

  /**
   * HexzCapture:thin: (getter get_thin) (setter set_thin)
   *
   * Whether the new snapshot refers to the base for unmodified disk blocks
   * instead of holding a copy of them.
   *
   * Since: 1.0
   */
  properties[PROP_THIN] =
    g_param_spec_boolean ("thin", NULL, NULL, FALSE, rw);

  /**
   * HexzCapture:codec: (getter get_codec) (setter set_codec)
   *
   * The compression of the new snapshot's blocks.
   *
   * Since: 1.0
   */
  properties[PROP_CODEC] =
    g_param_spec_enum ("codec", NULL, NULL, HEXZ_TYPE_CODEC, HEXZ_CODEC_LZ4, rw);

  /**
   * HexzCapture:level: (getter get_level) (setter set_level)
   *
   * The codec's compression level; 0 keeps the writer's default.
   *
   * Since: 1.0
   */
  properties[PROP_LEVEL] =
    g_param_spec_int ("level", NULL, NULL, -100, 100, 0, rw);

  /**
   * HexzCapture:block-size: (getter get_block_size) (setter set_block_size)
   *
   * The block size of the new snapshot, in bytes: a power of two from
   * %HEXZ_MIN_BLOCK_SIZE to %HEXZ_MAX_BLOCK_SIZE.
   *
   * Since: 1.0
   */
  properties[PROP_BLOCK_SIZE] =
    g_param_spec_uint ("block-size", NULL, NULL, HEXZ_MIN_BLOCK_SIZE, HEXZ_MAX_BLOCK_SIZE,
                       HEXZ_DEFAULT_BLOCK_SIZE, rw);

  /**
   * HexzCapture:threads: (getter get_threads) (setter set_threads)
   *
   * The number of compression threads; 0 keeps the writer's default.
   *
   * Since: 1.0
   */
  properties[PROP_THREADS] =
    g_param_spec_uint ("threads", NULL, NULL, 0, 1024, 0, rw);

  /**
   * HexzCapture:message: (getter get_message) (setter set_message)
   *
   * A message recorded in the new snapshot's metadata.
   *
   * Since: 1.0
   */
  properties[PROP_MESSAGE] =
    g_param_spec_string ("message", NULL, NULL, NULL, rw);

  /**
   * HexzCapture:stall-timeout: (getter get_stall_timeout) (setter set_stall_timeout)
   *
   * How long, in seconds, the memory dump may transfer nothing before the
   * capture cancels it; 0 waits forever.
   *
   * Since: 1.0
   */
  properties[PROP_STALL_TIMEOUT] =
    g_param_spec_uint ("stall-timeout", NULL, NULL, 0, G_MAXUINT, DEFAULT_STALL_TIMEOUT_S, rw);

  /**
   * HexzCapture:live-timeout: (getter get_live_timeout) (setter set_live_timeout)
   *
   * In live mode, how long, in seconds, the guest keeps running while
   * QEMU copies its memory. A guest that writes memory faster than it is
   * copied never lets the copy finish, so after this time the capture
   * pauses the guest, the copy completes, and
   * [property@Hexz.Capture:paused-to-converge] is set. 0 waits for
   * QEMU to converge, however long that takes.
   *
   * Since: 1.0
   */
  properties[PROP_LIVE_TIMEOUT] =
    g_param_spec_uint ("live-timeout", NULL, NULL, 0, G_MAXUINT, DEFAULT_LIVE_TIMEOUT_S, rw);

  /**
   * HexzCapture:live-bandwidth: (getter get_live_bandwidth) (setter set_live_bandwidth)
   *
   * In live mode, the most bytes per second QEMU sends of the memory
   * while the guest runs, which bounds the host I/O and CPU time the
   * snapshot takes from other work. 0, the default, sets no limit.
   *
   * A lower limit makes the copy take longer, and a guest that writes
   * memory faster than the limit lets the copy converge only once
   * [property@Hexz.Capture:live-timeout] pauses it. Once the guest is
   * paused the limit is lifted, so that the pause is as short as
   * possible. The other modes ignore this property.
   *
   * Since: 1.0
   */
  properties[PROP_LIVE_BANDWIDTH] =
    g_param_spec_uint64 ("live-bandwidth", NULL, NULL, 0, G_MAXINT64, 0, rw);

  /**
   * HexzCapture:allow-larger-overlay: (getter get_allow_larger_overlay) (setter set_allow_larger_overlay)
   *
   * Whether an overlay larger than the base's disk is accepted, as after
   * growing the disk. The new snapshot's disk then has the overlay's size.
   *
   * Since: 1.0
   */
  properties[PROP_ALLOW_LARGER_OVERLAY] =
    g_param_spec_boolean ("allow-larger-overlay", NULL, NULL, FALSE, rw);

  /**
   * HexzCapture:phase: (getter get_phase)
   *
   * The step the capture is in.
   *
   * Since: 1.0
   */
  properties[PROP_PHASE] =
    g_param_spec_enum ("phase", NULL, NULL, HEXZ_TYPE_CAPTURE_PHASE,
                       HEXZ_CAPTURE_PHASE_IDLE, ro);

  /**
   * HexzCapture:chosen-mode: (getter get_chosen_mode)
   *
   * The mode the run uses: [property@Hexz.Capture:mode] with `auto`
   * resolved. Set once the machine's state is known.
   *
   * Since: 1.0
   */
  properties[PROP_CHOSEN_MODE] =
    g_param_spec_enum ("chosen-mode", NULL, NULL, HEXZ_TYPE_CAPTURE_MODE,
                       HEXZ_CAPTURE_MODE_AUTO, ro);

  /**
   * HexzCapture:fallback-reason: (getter get_fallback_reason)
   *
   * Why the auto mode took a paused snapshot although QEMU lists the
   * background-snapshot capability, or %NULL.
   *
   * Since: 1.0
   */
  properties[PROP_FALLBACK_REASON] =
    g_param_spec_string ("fallback-reason", NULL, NULL, NULL, ro);

  /**
   * HexzCapture:pause-time: (getter get_pause_time)
   *
   * How long the machine was paused, in microseconds, as measured by the
   * capture from sending `stop` to seeing the machine run again; 0 when the
   * machine was already paused before the capture, which leaves it paused;
   * -1 before a run completes.
   *
   * Since: 1.0
   */
  properties[PROP_PAUSE_TIME] =
    g_param_spec_int64 ("pause-time", NULL, NULL, -1, G_MAXINT64, -1, ro);

  /**
   * HexzCapture:downtime: (getter get_downtime)
   *
   * The downtime QEMU reported for the migration, in milliseconds; -1 if
   * unknown.
   *
   * Since: 1.0
   */
  properties[PROP_DOWNTIME] =
    g_param_spec_int64 ("downtime", NULL, NULL, -1, G_MAXINT64, -1, ro);

  /**
   * HexzCapture:paused-to-converge: (getter get_paused_to_converge)
   *
   * Whether the last live capture paused the guest itself because the
   * memory copy had not converged within
   * [property@Hexz.Capture:live-timeout]. The guest was then paused for
   * the rest of the copy, as in paused mode.
   *
   * Since: 1.0
   */
  properties[PROP_PAUSED_TO_CONVERGE] =
    g_param_spec_boolean ("paused-to-converge", NULL, NULL, FALSE, ro);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * HexzCapture::progress:
   * @self: the capture
   * @phase: the current phase
   * @done: the bytes done in this phase
   * @expected: the bytes expected in this phase, or 0 if unknown
   *
   * Emitted when a phase starts (with @done and @expected 0) and while
   * the memory is streamed, about once per poll interval.
   *
   * Since: 1.0
   */
  signals[SIGNAL_PROGRESS] =
    g_signal_new ("progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 3,
                  HEXZ_TYPE_CAPTURE_PHASE, G_TYPE_UINT64, G_TYPE_UINT64);
}

static void
hexz_capture_init (HexzCapture *self)
{
  self->mode = HEXZ_CAPTURE_MODE_AUTO;
  self->codec = HEXZ_CODEC_LZ4;
  self->block_size = HEXZ_DEFAULT_BLOCK_SIZE;
  self->stall_timeout = DEFAULT_STALL_TIMEOUT_S;
  self->live_timeout = DEFAULT_LIVE_TIMEOUT_S;
  self->check_free_space = TRUE;
  self->poll_interval = DEFAULT_POLL_INTERVAL_MS;
  self->cleanup_timeout = DEFAULT_CLEANUP_TIMEOUT_MS;
  self->phase = HEXZ_CAPTURE_PHASE_IDLE;
  self->chosen_mode = HEXZ_CAPTURE_MODE_AUTO;
  self->pause_time = -1;
  self->downtime = -1;
}

/**
 * hexz_capture_new:
 *
 * Creates a capture. Set at least the QMP socket or client, the overlay,
 * the base and the output before running it.
 *
 * Returns: (transfer full): a new capture
 *
 * Since: 1.0
 */
HexzCapture *
hexz_capture_new (void)
{
  return g_object_new (HEXZ_TYPE_CAPTURE, NULL);
}

/**
 * hexz_capture_get_socket_path: (get-property socket-path)
 * @self: a capture
 *
 * Gets the QMP socket path.
 *
 * Returns: (nullable) (transfer none): the QMP socket path
 *
 * Since: 1.0
 */
const char *
hexz_capture_get_socket_path (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), NULL);

  return self->socket_path;
}

/**
 * hexz_capture_set_socket_path: (set-property socket-path)
 * @self: a capture
 * @socket_path: (nullable): the QMP socket's path
 *
 * Sets [property@Hexz.Capture:socket-path].
 *
 * Since: 1.0
 */
void
hexz_capture_set_socket_path (HexzCapture *self,
                              const char *socket_path)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (g_strcmp0 (self->socket_path, socket_path) == 0)
    return;

  g_free (self->socket_path);
  self->socket_path = g_strdup (socket_path);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SOCKET_PATH]);
}

/**
 * hexz_capture_get_overlay: (get-property overlay)
 * @self: a capture
 *
 * Gets the overlay path.
 *
 * Returns: (nullable) (transfer none): the overlay path
 *
 * Since: 1.0
 */
const char *
hexz_capture_get_overlay (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), NULL);

  return self->overlay;
}

/**
 * hexz_capture_set_overlay: (set-property overlay)
 * @self: a capture
 * @overlay: (nullable): the overlay's path
 *
 * Sets [property@Hexz.Capture:overlay].
 *
 * Since: 1.0
 */
void
hexz_capture_set_overlay (HexzCapture *self,
                          const char *overlay)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (g_strcmp0 (self->overlay, overlay) == 0)
    return;

  g_free (self->overlay);
  self->overlay = g_strdup (overlay);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_OVERLAY]);
}

/**
 * hexz_capture_get_base_path: (get-property base-path)
 * @self: a capture
 *
 * Gets the base snapshot path.
 *
 * Returns: (nullable) (transfer none): the base snapshot path
 *
 * Since: 1.0
 */
const char *
hexz_capture_get_base_path (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), NULL);

  return self->base_path;
}

/**
 * hexz_capture_set_base_path: (set-property base-path)
 * @self: a capture
 * @base_path: (nullable): the base snapshot's path
 *
 * Sets [property@Hexz.Capture:base-path].
 *
 * Since: 1.0
 */
void
hexz_capture_set_base_path (HexzCapture *self,
                            const char *base_path)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (g_strcmp0 (self->base_path, base_path) == 0)
    return;

  g_free (self->base_path);
  self->base_path = g_strdup (base_path);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_BASE_PATH]);
}

/**
 * hexz_capture_get_message: (get-property message)
 * @self: a capture
 *
 * Gets the message.
 *
 * Returns: (nullable) (transfer none): the message
 *
 * Since: 1.0
 */
const char *
hexz_capture_get_message (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), NULL);

  return self->message;
}

/**
 * hexz_capture_set_message: (set-property message)
 * @self: a capture
 * @message: (nullable): the message
 *
 * Sets [property@Hexz.Capture:message].
 *
 * Since: 1.0
 */
void
hexz_capture_set_message (HexzCapture *self,
                          const char *message)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (g_strcmp0 (self->message, message) == 0)
    return;

  g_free (self->message);
  self->message = g_strdup (message);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MESSAGE]);
}

/**
 * hexz_capture_get_qmp_client: (get-property qmp-client)
 * @self: a capture
 *
 * Gets the QMP client.
 *
 * Returns: (nullable) (transfer none): the QMP client
 *
 * Since: 1.0
 */
HexzQmpClient *
hexz_capture_get_qmp_client (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), NULL);

  return self->qmp_client;
}

/**
 * hexz_capture_set_qmp_client: (set-property qmp-client)
 * @self: a capture
 * @client: (nullable): a connected QMP client
 *
 * Sets [property@Hexz.Capture:qmp-client].
 *
 * Since: 1.0
 */
void
hexz_capture_set_qmp_client (HexzCapture *self,
                             HexzQmpClient *client)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (!g_set_object (&self->qmp_client, client))
    return;

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_QMP_CLIENT]);
}

/**
 * hexz_capture_get_base: (get-property base)
 * @self: a capture
 *
 * Gets the base snapshot.
 *
 * Returns: (nullable) (transfer none): the base snapshot
 *
 * Since: 1.0
 */
HexzSnapshot *
hexz_capture_get_base (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), NULL);

  return self->base;
}

/**
 * hexz_capture_set_base: (set-property base)
 * @self: a capture
 * @base: (nullable): the base snapshot
 *
 * Sets [property@Hexz.Capture:base].
 *
 * Since: 1.0
 */
void
hexz_capture_set_base (HexzCapture *self,
                       HexzSnapshot *base)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (!g_set_object (&self->base, base))
    return;

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_BASE]);
}

/**
 * hexz_capture_get_output: (get-property output)
 * @self: a capture
 *
 * Gets the output file.
 *
 * Returns: (nullable) (transfer none): the output file
 *
 * Since: 1.0
 */
GFile *
hexz_capture_get_output (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), NULL);

  return self->output;
}

/**
 * hexz_capture_set_output: (set-property output)
 * @self: a capture
 * @output: (nullable): the output file
 *
 * Sets [property@Hexz.Capture:output].
 *
 * Since: 1.0
 */
void
hexz_capture_set_output (HexzCapture *self,
                         GFile *output)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (!g_set_object (&self->output, output))
    return;

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_OUTPUT]);
}

/**
 * hexz_capture_get_mode: (get-property mode)
 * @self: a capture
 *
 * Gets the capture mode.
 *
 * Returns: the capture mode
 *
 * Since: 1.0
 */
HexzCaptureMode
hexz_capture_get_mode (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->mode;
}

/**
 * hexz_capture_set_mode: (set-property mode)
 * @self: a capture
 * @mode: the capture mode
 *
 * Sets [property@Hexz.Capture:mode].
 *
 * Since: 1.0
 */
void
hexz_capture_set_mode (HexzCapture *self,
                       HexzCaptureMode mode)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (self->mode == mode)
    return;

  self->mode = mode;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MODE]);
}

/**
 * hexz_capture_get_thin: (get-property thin)
 * @self: a capture
 *
 * Gets the thin flag.
 *
 * Returns: the value of [property@Hexz.Capture:thin]
 *
 * Since: 1.0
 */
gboolean
hexz_capture_get_thin (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->thin;
}

/**
 * hexz_capture_set_thin: (set-property thin)
 * @self: a capture
 * @thin: whether to write a thin snapshot
 *
 * Sets [property@Hexz.Capture:thin].
 *
 * Since: 1.0
 */
void
hexz_capture_set_thin (HexzCapture *self,
                       gboolean thin)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  thin = !!thin;
  if (self->thin == thin)
    return;

  self->thin = thin;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_THIN]);
}

/**
 * hexz_capture_get_codec: (get-property codec)
 * @self: a capture
 *
 * Gets the codec.
 *
 * Returns: the codec
 *
 * Since: 1.0
 */
HexzCodec
hexz_capture_get_codec (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->codec;
}

/**
 * hexz_capture_set_codec: (set-property codec)
 * @self: a capture
 * @codec: the codec
 *
 * Sets [property@Hexz.Capture:codec].
 *
 * Since: 1.0
 */
void
hexz_capture_set_codec (HexzCapture *self,
                        HexzCodec codec)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (self->codec == codec)
    return;

  self->codec = codec;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CODEC]);
}

/**
 * hexz_capture_get_level: (get-property level)
 * @self: a capture
 *
 * Gets the compression level.
 *
 * Returns: the compression level
 *
 * Since: 1.0
 */
int
hexz_capture_get_level (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->level;
}

/**
 * hexz_capture_set_level: (set-property level)
 * @self: a capture
 * @level: the compression level, 0 for the default
 *
 * Sets [property@Hexz.Capture:level].
 *
 * Since: 1.0
 */
void
hexz_capture_set_level (HexzCapture *self,
                        int level)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (self->level == level)
    return;

  self->level = level;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LEVEL]);
}

/**
 * hexz_capture_get_block_size: (get-property block-size)
 * @self: a capture
 *
 * Gets the block size.
 *
 * Returns: the block size
 *
 * Since: 1.0
 */
guint
hexz_capture_get_block_size (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->block_size;
}

/**
 * hexz_capture_set_block_size: (set-property block-size)
 * @self: a capture
 * @block_size: the block size in bytes
 *
 * Sets [property@Hexz.Capture:block-size].
 *
 * Since: 1.0
 */
void
hexz_capture_set_block_size (HexzCapture *self,
                             guint block_size)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (self->block_size == block_size)
    return;

  self->block_size = block_size;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_BLOCK_SIZE]);
}

/**
 * hexz_capture_get_threads: (get-property threads)
 * @self: a capture
 *
 * Gets the number of compression threads.
 *
 * Returns: the number of threads, 0 for the writer's default
 *
 * Since: 1.0
 */
guint
hexz_capture_get_threads (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->threads;
}

/**
 * hexz_capture_set_threads: (set-property threads)
 * @self: a capture
 * @threads: the number of compression threads, 0 for the writer's default
 *
 * Sets [property@Hexz.Capture:threads].
 *
 * Since: 1.0
 */
void
hexz_capture_set_threads (HexzCapture *self,
                          guint        threads)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (self->threads == threads)
    return;

  self->threads = threads;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_THREADS]);
}

/**
 * hexz_capture_get_stall_timeout: (get-property stall-timeout)
 * @self: a capture
 *
 * Gets the stall timeout.
 *
 * Returns: the stall timeout
 *
 * Since: 1.0
 */
guint
hexz_capture_get_stall_timeout (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->stall_timeout;
}

/**
 * hexz_capture_set_stall_timeout: (set-property stall-timeout)
 * @self: a capture
 * @seconds: the stall timeout in seconds, 0 for none
 *
 * Sets [property@Hexz.Capture:stall-timeout].
 *
 * Since: 1.0
 */
void
hexz_capture_set_stall_timeout (HexzCapture *self,
                                guint seconds)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (self->stall_timeout == seconds)
    return;

  self->stall_timeout = seconds;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_STALL_TIMEOUT]);
}

/**
 * hexz_capture_get_live_bandwidth: (get-property live-bandwidth)
 * @self: a capture
 *
 * Gets [property@Hexz.Capture:live-bandwidth].
 *
 * Returns: the limit in bytes per second, 0 for none
 *
 * Since: 1.0
 */
guint64
hexz_capture_get_live_bandwidth (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->live_bandwidth;
}

/**
 * hexz_capture_set_live_bandwidth: (set-property live-bandwidth)
 * @self: a capture
 * @bytes_per_second: the limit in bytes per second, 0 for none
 *
 * Sets [property@Hexz.Capture:live-bandwidth].
 *
 * Since: 1.0
 */
void
hexz_capture_set_live_bandwidth (HexzCapture *self,
                                 guint64      bytes_per_second)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));
  g_return_if_fail (bytes_per_second <= G_MAXINT64);

  if (self->live_bandwidth == bytes_per_second)
    return;

  self->live_bandwidth = bytes_per_second;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LIVE_BANDWIDTH]);
}

/**
 * hexz_capture_get_live_timeout: (get-property live-timeout)
 * @self: a capture
 *
 * Gets [property@Hexz.Capture:live-timeout].
 *
 * Returns: the live timeout in seconds, 0 for none
 *
 * Since: 1.0
 */
guint
hexz_capture_get_live_timeout (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->live_timeout;
}

/**
 * hexz_capture_set_live_timeout: (set-property live-timeout)
 * @self: a capture
 * @seconds: the live timeout in seconds, 0 for none
 *
 * Sets [property@Hexz.Capture:live-timeout].
 *
 * Since: 1.0
 */
void
hexz_capture_set_live_timeout (HexzCapture *self,
                               guint        seconds)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  if (self->live_timeout == seconds)
    return;

  self->live_timeout = seconds;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LIVE_TIMEOUT]);
}

/**
 * hexz_capture_get_allow_larger_overlay: (get-property allow-larger-overlay)
 * @self: a capture
 *
 * Gets the larger-overlay flag.
 *
 * Returns: the value of [property@Hexz.Capture:allow-larger-overlay]
 *
 * Since: 1.0
 */
gboolean
hexz_capture_get_allow_larger_overlay (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->allow_larger_overlay;
}

/**
 * hexz_capture_set_allow_larger_overlay: (set-property allow-larger-overlay)
 * @self: a capture
 * @allow: whether to accept a larger overlay
 *
 * Sets [property@Hexz.Capture:allow-larger-overlay].
 *
 * Since: 1.0
 */
void
hexz_capture_set_allow_larger_overlay (HexzCapture *self,
                                       gboolean allow)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  allow = !!allow;
  if (self->allow_larger_overlay == allow)
    return;

  self->allow_larger_overlay = allow;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ALLOW_LARGER_OVERLAY]);
}

/**
 * hexz_capture_get_phase: (get-property phase)
 * @self: a capture
 *
 * Gets [property@Hexz.Capture:phase].
 *
 * Returns: the current phase
 *
 * Since: 1.0
 */
HexzCapturePhase
hexz_capture_get_phase (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->phase;
}

/**
 * hexz_capture_get_chosen_mode: (get-property chosen-mode)
 * @self: a capture
 *
 * Gets [property@Hexz.Capture:chosen-mode].
 *
 * Returns: the mode the run uses, with auto resolved
 *
 * Since: 1.0
 */
HexzCaptureMode
hexz_capture_get_chosen_mode (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->chosen_mode;
}

/**
 * hexz_capture_get_fallback_reason: (get-property fallback-reason)
 * @self: a capture
 *
 * Gets [property@Hexz.Capture:fallback-reason].
 *
 * Returns: (nullable): why auto mode fell back to a paused snapshot, or %NULL
 *
 * Since: 1.0
 */
const char *
hexz_capture_get_fallback_reason (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), NULL);

  return self->fallback_reason;
}

/**
 * hexz_capture_get_pause_time: (get-property pause-time)
 * @self: a capture
 *
 * Gets [property@Hexz.Capture:pause-time].
 *
 * Returns: how long the machine was paused, in microseconds, or -1
 *
 * Since: 1.0
 */
gint64
hexz_capture_get_pause_time (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->pause_time;
}

/**
 * hexz_capture_get_downtime: (get-property downtime)
 * @self: a capture
 *
 * Gets [property@Hexz.Capture:downtime].
 *
 * Returns: QEMU's reported downtime in milliseconds, or -1
 *
 * Since: 1.0
 */
gint64
hexz_capture_get_downtime (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), 0);

  return self->downtime;
}

/**
 * hexz_capture_get_paused_to_converge: (get-property paused-to-converge)
 * @self: a capture
 *
 * Gets [property@Hexz.Capture:paused-to-converge].
 *
 * Returns: %TRUE if the last live capture paused the guest to finish
 *
 * Since: 1.0
 */
gboolean
hexz_capture_get_paused_to_converge (HexzCapture *self)
{
  g_return_val_if_fail (HEXZ_IS_CAPTURE (self), FALSE);

  return self->paused_to_converge;
}

/* Private knobs for the test suite */

void
hexz_capture_set_check_free_space (HexzCapture *self,
                                   gboolean     check)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  self->check_free_space = check;
}

void
hexz_capture_set_poll_interval (HexzCapture *self,
                                guint        interval_ms)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));
  g_return_if_fail (interval_ms > 0);

  self->poll_interval = interval_ms;
}

void
hexz_capture_set_connect_timeout (HexzCapture *self,
                                  guint        timeout_ms)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));

  self->connect_timeout = timeout_ms;
}

void
hexz_capture_set_cleanup_timeout (HexzCapture *self,
                                  guint        timeout_ms)
{
  g_return_if_fail (HEXZ_IS_CAPTURE (self));
  g_return_if_fail (timeout_ms > 0);

  self->cleanup_timeout = timeout_ms;
}
