/* hexz-restore.c: loading a snapshot's memory into QEMU
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gunixfdlist.h>

#include "hexz-restore.h"
#include "hexz-enum-types.h"
#include "hexz-i18n-private.h"
#include "hexz-snapshot-private.h"

/* The name under which the stream's socket is passed to QEMU. */
#define RESTORE_FD_NAME "hexz-restore"

/* How often the run state is polled while QEMU loads the stream. */
#define RESTORE_POLL_MS 50

/* The state of one restore: it owns the task; every pending callback holds
 * a reference. */
typedef struct
{
  GTask *task;
  HexzQmpClient *client;
  HexzSnapshot *snapshot;
  HexzRestoreFlags flags;
  GCancellable *cancellable;
  GMainContext *context;
  GSocket *socket;
  gboolean fed;
} RestoreState;

static RestoreState *
restore_state_ref (RestoreState *state)
{
  return g_atomic_rc_box_acquire (state);
}

static void
restore_state_clear (RestoreState *state)
{
  g_clear_object (&state->task);
  g_clear_object (&state->client);
  g_clear_object (&state->snapshot);
  g_clear_object (&state->cancellable);
  g_clear_pointer (&state->context, g_main_context_unref);
  g_clear_object (&state->socket);
}

static void
restore_state_unref (RestoreState *state)
{
  g_atomic_rc_box_release_full (state, (GDestroyNotify) restore_state_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RestoreState, restore_state_unref)

static void
restore_complete (RestoreState *state,
                  GError       *error)
{
  g_autoptr(GTask) task = g_steal_pointer (&state->task);

  if (task == NULL)
    {
      g_clear_error (&error);
      return;
    }

  if (state->socket != NULL)
    g_socket_close (state->socket, NULL);

  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static GError *
restore_command_error (const char *command,
                       GError     *error)
{
  GError *wrapped;

  if (g_error_matches (error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED))
    wrapped = g_error_new (error->domain, error->code,
                           /* Translators: %s is a QMP command name, then an error message. */
                           _("QEMU closed the connection during “%s”; it may have rejected "
                             "the memory stream (see its log): %s"),
                           command, error->message);
  else
    wrapped = g_error_new (error->domain, error->code,
                           /* Translators: %s is a QMP command name, then an error message. */
                           _("QEMU rejected “%s”: %s"), command, error->message);

  g_error_free (error);
  return wrapped;
}

/* Last step: resume unless asked not to. The loaded machine takes the run
 * state the source had when the stream was written. */

static void restore_check_status (RestoreState *state);

static void
restore_on_cont (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(RestoreState) state = user_data;
  GError *error = NULL;

  if (!hexz_qmp_client_cont_finish (state->client, result, &error))
    {
      restore_complete (state, restore_command_error ("cont", error));
      return;
    }

  restore_complete (state, NULL);
}

static gboolean
restore_retry_cb (gpointer user_data)
{
  restore_check_status (user_data);
  return G_SOURCE_REMOVE;
}

static void
restore_on_status (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(RestoreState) state = user_data;
  GError *error = NULL;
  HexzRunState run_state;
  gboolean running = FALSE;
  GSource *retry;

  run_state = hexz_qmp_client_query_status_finish (state->client, result, &running, &error);
  if (error != NULL)
    {
      restore_complete (state, restore_command_error ("query-status", error));
      return;
    }

  if (run_state == HEXZ_RUN_STATE_INMIGRATE)
    {
      if (g_cancellable_set_error_if_cancelled (state->cancellable, &error))
        {
          restore_complete (state, error);
          return;
        }

      retry = g_timeout_source_new (RESTORE_POLL_MS);
      g_source_set_callback (retry, restore_retry_cb, restore_state_ref (state),
                             (GDestroyNotify) restore_state_unref);
      g_source_attach (retry, state->context);
      g_source_unref (retry);
      return;
    }

  g_debug ("Restore: memory loaded, machine is %s", hexz_run_state_to_string (run_state));

  if (running || (state->flags & HEXZ_RESTORE_FLAGS_KEEP_PAUSED) != 0)
    {
      restore_complete (state, NULL);
      return;
    }

  hexz_qmp_client_cont_async (state->client, NULL, restore_on_cont, restore_state_ref (state));
}

static void
restore_check_status (RestoreState *state)
{
  hexz_qmp_client_query_status_async (state->client, NULL, restore_on_status,
                                      restore_state_ref (state));
}

/* Bytes of memory stream read and written at a time. */
#define FEED_CHUNK_SIZE (1024 * 1024)

/* Writes the memory stream into the socket QEMU reads from. Runs in a
 * worker thread; a socket rather than a pipe, so that a QEMU that exits
 * early gives an error instead of SIGPIPE. */
static void
restore_feed_thread (GTask        *task,
                     gpointer      source_object,
                     gpointer      task_data,
                     GCancellable *cancellable)
{
  RestoreState *state = task_data;
  g_autoptr(GInputStream) input = NULL;
  g_autoptr(GSocketConnection) connection = NULL;
  GOutputStream *output;
  g_autofree guint8 *buffer = NULL;
  GError *error = NULL;
  gssize count = 0;

  input = hexz_snapshot_open_stream (state->snapshot, HEXZ_STREAM_MEMORY);
  connection = g_socket_connection_factory_create_connection (state->socket);
  output = g_io_stream_get_output_stream (G_IO_STREAM (connection));

  /* Not g_output_stream_splice(): its 8 KiB chunks made QEMU's load of a
   * 1 GiB stream two to four times slower than 1 MiB writes. */
  buffer = g_malloc (FEED_CHUNK_SIZE);
  for (;;)
    {
      gssize n_read = g_input_stream_read (input, buffer, FEED_CHUNK_SIZE, cancellable, &error);

      if (n_read < 0)
        {
          g_task_return_error (task, error);
          return;
        }
      if (n_read == 0)
        break;

      if (!g_output_stream_write_all (output, buffer, n_read, NULL, cancellable, &error))
        {
          g_task_return_error (task, error);
          return;
        }
      count += n_read;
    }

  /* Shutting down the write side gives QEMU the end of the stream. */
  if (!g_socket_shutdown (state->socket, FALSE, TRUE, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  g_debug ("Restore: wrote %" G_GSSIZE_FORMAT " bytes of memory stream", count);
  g_task_return_boolean (task, TRUE);
}

static void
restore_on_fed (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(RestoreState) state = user_data;
  GError *error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      g_autofree char *name = g_file_get_parse_name (hexz_snapshot_get_file (state->snapshot));
      GError *wrapped;

      /* QEMU closes its end when it rejects the stream, typically because
       * its devices differ from those of the machine that was saved. */
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE) ||
          g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED))
        wrapped = g_error_new (error->domain, error->code,
                               /* Translators: %s is a file name, then an error message. */
                               _("QEMU stopped reading the memory of “%s” (%s): it rejected "
                                 "the stream, and its log says why. Start QEMU with the "
                                 "devices and options of the machine the snapshot was "
                                 "taken from"),
                               name, error->message);
      else
        wrapped = g_error_new (error->domain, error->code,
                               /* Translators: %s is a file name, then an error message. */
                               _("Feeding the memory of “%s” to QEMU failed: %s"),
                               name, error->message);
      g_error_free (error);
      restore_complete (state, wrapped);
      return;
    }

  state->fed = TRUE;
  restore_check_status (state);
}

static void
restore_on_migrate_incoming (GObject      *source,
                             GAsyncResult *result,
                             gpointer      user_data)
{
  g_autoptr(RestoreState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GTask) feed = NULL;
  GError *error = NULL;

  reply = hexz_qmp_client_execute_finish (state->client, result, &error);
  if (reply == NULL)
    {
      restore_complete (state, restore_command_error ("migrate-incoming", error));
      return;
    }

  feed = g_task_new (NULL, state->cancellable, restore_on_fed, restore_state_ref (state));
  g_task_set_source_tag (feed, restore_on_migrate_incoming);
  g_task_set_task_data (feed, restore_state_ref (state), (GDestroyNotify) restore_state_unref);
  g_task_run_in_thread (feed, restore_feed_thread);
}

static void
restore_on_getfd (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(RestoreState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(JsonObject) arguments = NULL;
  GError *error = NULL;

  reply = hexz_qmp_client_execute_finish (state->client, result, &error);
  if (reply == NULL)
    {
      restore_complete (state, restore_command_error ("getfd", error));
      return;
    }

  arguments = json_object_new ();
  json_object_set_string_member (arguments, "uri", "fd:" RESTORE_FD_NAME);
  hexz_qmp_client_execute_async (state->client, "migrate-incoming", arguments, NULL,
                                 state->cancellable, restore_on_migrate_incoming,
                                 restore_state_ref (state));
}

static void
restore_pass_socket (RestoreState *state)
{
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(JsonObject) arguments = NULL;
  GError *error = NULL;
  int fds[2];

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    {
      int saved_errno = errno;

      restore_complete (state, g_error_new (G_IO_ERROR, g_io_error_from_errno (saved_errno),
                                            /* Translators: %s is an error message. */
                                            _("Cannot create a socket pair: %s"),
                                            g_strerror (saved_errno)));
      return;
    }

  state->socket = g_socket_new_from_fd (fds[0], &error);
  if (state->socket == NULL)
    {
      close (fds[0]);
      close (fds[1]);
      restore_complete (state, error);
      return;
    }

  if (g_unix_fd_list_append (fd_list, fds[1], &error) < 0)
    {
      close (fds[1]);
      restore_complete (state, error);
      return;
    }
  close (fds[1]);

  arguments = json_object_new ();
  json_object_set_string_member (arguments, "fdname", RESTORE_FD_NAME);
  hexz_qmp_client_execute_async (state->client, "getfd", arguments, fd_list,
                                 state->cancellable, restore_on_getfd, restore_state_ref (state));
}

/* Before any byte is sent, the RAM size and CPU count the snapshot
 * records are compared with QEMU's: QEMU would reject the stream part way
 * with only "Size mismatch" in its log, and exit. A failed query skips its
 * check, as QEMU still checks the stream itself. */

static void
restore_on_cpus (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(RestoreState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;
  gint64 recorded = hexz_snapshot_get_metadata_int (state->snapshot, HEXZ_METADATA_CPUS);

  reply = hexz_qmp_client_execute_finish (state->client, result, &error);
  if (reply == NULL)
    g_debug ("Restore: query-cpus-fast failed: %s", error->message);
  else if (recorded > 0 && JSON_NODE_HOLDS_ARRAY (reply) &&
           json_array_get_length (json_node_get_array (reply)) != recorded)
    {
      restore_complete (state,
                        g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                     /* Translators: %s is a file name, then two CPU counts. */
                                     _("The snapshot “%s” contains the memory of a machine whose "
                                       "CPU count is %d, but QEMU's is %u: start QEMU with "
                                       "-smp %d"),
                                     hexz_snapshot_get_display_name (state->snapshot),
                                     (int) recorded,
                                     json_array_get_length (json_node_get_array (reply)),
                                     (int) recorded));
      return;
    }

  restore_pass_socket (state);
}

static void
restore_on_memory_size (GObject      *source,
                        GAsyncResult *result,
                        gpointer      user_data)
{
  g_autoptr(RestoreState) state = user_data;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(GError) error = NULL;
  gint64 recorded = hexz_snapshot_get_metadata_int (state->snapshot, HEXZ_METADATA_RAM_SIZE);
  JsonObject *object;
  gint64 actual = 0;

  reply = hexz_qmp_client_execute_finish (state->client, result, &error);
  object = reply != NULL && JSON_NODE_HOLDS_OBJECT (reply) ? json_node_get_object (reply) : NULL;
  if (object != NULL)
    actual = json_object_get_int_member_with_default (object, "base-memory", 0);
  else if (error != NULL)
    g_debug ("Restore: query-memory-size-summary failed: %s", error->message);

  if (recorded > 0 && actual > 0 && recorded != actual)
    {
      g_autofree char *saved = g_format_size_full (recorded, G_FORMAT_SIZE_IEC_UNITS);
      g_autofree char *running = g_format_size_full (actual, G_FORMAT_SIZE_IEC_UNITS);

      restore_complete (state,
                        g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                     /* Translators: %s is a file name, then two sizes and a
                                      * number of MiB. */
                                     _("The snapshot “%s” contains the memory of a machine with "
                                       "%s of RAM, but QEMU has %s: start QEMU with -m %" PRIu64
                                       "M"),
                                     hexz_snapshot_get_display_name (state->snapshot),
                                     saved, running, (guint64) recorded >> 20));
      return;
    }

  hexz_qmp_client_execute_async (state->client, "query-cpus-fast", NULL, NULL,
                                 state->cancellable, restore_on_cpus, restore_state_ref (state));
}

static void
restore_on_initial_status (GObject      *source,
                           GAsyncResult *result,
                           gpointer      user_data)
{
  g_autoptr(RestoreState) state = user_data;
  GError *error = NULL;
  HexzRunState run_state;

  run_state = hexz_qmp_client_query_status_finish (state->client, result, NULL, &error);
  if (error != NULL)
    {
      restore_complete (state, restore_command_error ("query-status", error));
      return;
    }

  if (run_state != HEXZ_RUN_STATE_INMIGRATE)
    {
      restore_complete (state,
                        g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                     /* Translators: %s is a QEMU run state. */
                                     _("QEMU is not waiting for an incoming migration (its "
                                       "state is %s); start it with “-incoming defer”"),
                                     hexz_run_state_to_string (run_state)));
      return;
    }

  hexz_qmp_client_execute_async (state->client, "query-memory-size-summary", NULL, NULL,
                                 state->cancellable, restore_on_memory_size,
                                 restore_state_ref (state));
}

/**
 * hexz_restore_memory_async:
 * @client: a QMP client connected to a QEMU started with `-incoming defer`
 * @snapshot: a snapshot with a memory stream
 * @flags: options
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): the function to call when the memory is loaded
 * @user_data: the data to pass to @callback
 *
 * Loads the snapshot's memory into QEMU. The restore passes a socket with
 * `getfd`, starts `migrate-incoming` on it and writes the memory stream into
 * it. Once QEMU has loaded the stream, the machine is resumed unless @flags
 * contain %HEXZ_RESTORE_FLAGS_KEEP_PAUSED. The machine must use the same
 * configuration (memory size, CPUs, devices) as the one the snapshot was
 * taken from, and its disk should hold the snapshot's disk stream. A RAM
 * size or CPU count that differs from the one the snapshot records is
 * reported before anything is sent.
 *
 * QEMU exits when it rejects the stream, and the error then reports a
 * closed connection.
 *
 * Since: 1.0
 */
void
hexz_restore_memory_async (HexzQmpClient       *client,
                           HexzSnapshot        *snapshot,
                           HexzRestoreFlags     flags,
                           GCancellable        *cancellable,
                           GAsyncReadyCallback  callback,
                           gpointer             user_data)
{
  g_autoptr(RestoreState) state = NULL;

  g_return_if_fail (HEXZ_IS_QMP_CLIENT (client));
  g_return_if_fail (HEXZ_IS_SNAPSHOT (snapshot));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  state = g_atomic_rc_box_new0 (RestoreState);
  state->task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (state->task, hexz_restore_memory_async);
  state->client = g_object_ref (client);
  state->snapshot = g_object_ref (snapshot);
  state->flags = flags;
  state->cancellable = cancellable ? g_object_ref (cancellable) : NULL;
  state->context = g_main_context_ref_thread_default ();

  if (!hexz_snapshot_has_memory (snapshot))
    {
      g_autofree char *name = g_file_get_parse_name (hexz_snapshot_get_file (snapshot));

      restore_complete (state, g_error_new (HEXZ_SNAPSHOT_ERROR, HEXZ_SNAPSHOT_ERROR_NO_STREAM,
                                            /* Translators: %s is a file name. */
                                            _("The snapshot “%s” has no memory stream, so "
                                              "there is no memory to restore: start a "
                                              "machine from its disk instead (hexz-snap "
                                              "boot)"), name));
      return;
    }

  hexz_qmp_client_query_status_async (client, cancellable, restore_on_initial_status,
                                      restore_state_ref (state));
}

/**
 * hexz_restore_memory_finish:
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a restore started with [func@Hexz.restore_memory_async].
 *
 * Returns: %TRUE if the memory was loaded and, without
 *   %HEXZ_RESTORE_FLAGS_KEEP_PAUSED, the machine resumed
 *
 * Since: 1.0
 */
gboolean
hexz_restore_memory_finish (GAsyncResult  *result,
                            GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == hexz_restore_memory_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}
