/* fuzz-qmp.c: feed a fuzzed byte stream to the QMP client as its server
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Input layout:
 *
 *   u8 control   bits 0-2: the size of the pieces the stream is sent in
 *                (see piece_sizes), or 7 for one line per piece, as QEMU
 *                sends; bit 3: vary the size from piece to piece; bit 4:
 *                cancel the `stop` command right after sending it
 *   stream       the bytes a QMP server sends: greeting, replies, events
 *
 * The client talks over one end of a socketpair; the harness writes the
 * stream to the other end piece by piece, running the client's main
 * context after every piece, and discards what the client sends. Once
 * connected, the client sends, in this order and so with these ids:
 * qmp_capabilities (hexz-1), query-status (hexz-2), stop (hexz-3), cont
 * (hexz-4), query-migrate (hexz-5), query-name through execute_json
 * (hexz-6) and getfd with a descriptor (hexz-7), and it waits for a STOP
 * event and for a MIGRATION event whose status is "completed". At the end of the stream the harness
 * closes its end, and every operation must finish.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gunixfdlist.h>

#include "hexz.h"

#include "fuzz-common.h"

#define CONTROL_PIECE_SIZE   0x07
#define CONTROL_VARY_PIECES  (1u << 3)
#define CONTROL_CANCEL_STOP  (1u << 4)

#define PIECE_LINE 7

static const gsize piece_sizes[] = { 1, 2, 3, 7, 64, 509, 4096 };

/* Main context iterations after the end of the stream before the harness
 * calls a run stuck. Each iteration blocks until something happens, so
 * this only counts wake-ups. */
#define MAX_FINAL_ITERATIONS 100000

typedef struct
{
  HexzQmpClient *client;
  GCancellable  *stop_cancellable;
  guint          control;
  guint          outstanding;
  guint          events;
} Run;

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  fuzz_init_logging ();
  return 0;
}

static void
on_operation_done (Run *run)
{
  if (run->outstanding == 0)
    abort ();
  run->outstanding--;
}

static void
on_query_status (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(GError) error = NULL;
  gboolean running = FALSE;
  HexzRunState state;

  state = hexz_qmp_client_query_status_finish (HEXZ_QMP_CLIENT (source), result, &running,
                                               &error);
  hexz_run_state_to_string (state);
  on_operation_done (user_data);
}

static void
on_stop (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  hexz_qmp_client_stop_finish (HEXZ_QMP_CLIENT (source), result, &error);
  if (error != NULL)
    hexz_qmp_error_get_class (error);
  on_operation_done (user_data);
}

static void
on_cont (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  hexz_qmp_client_cont_finish (HEXZ_QMP_CLIENT (source), result, &error);
  if (error != NULL)
    hexz_qmp_error_get_class (error);
  on_operation_done (user_data);
}

static void
on_query_migrate (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(HexzMigrationInfo) info = NULL;
  g_autoptr(GError) error = NULL;

  info = hexz_qmp_client_query_migrate_finish (HEXZ_QMP_CLIENT (source), result, &error);
  if (info != NULL)
    {
      hexz_migration_status_to_string (hexz_migration_info_get_status (info));
      hexz_migration_info_get_status_string (info);
      hexz_migration_info_get_ram_total (info);
      hexz_migration_info_get_ram_remaining (info);
      hexz_migration_info_get_ram_transferred (info);
      hexz_migration_info_get_error_desc (info);
    }
  on_operation_done (user_data);
}

static void
on_execute_json (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *json = NULL;

  json = hexz_qmp_client_execute_json_finish (HEXZ_QMP_CLIENT (source), result, &error);
  on_operation_done (user_data);
}

static void
on_event_waited (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(JsonObject) data = NULL;
  g_autoptr(GError) error = NULL;
  gint64 timestamp_us;

  data = hexz_qmp_client_wait_event_finish (HEXZ_QMP_CLIENT (source), result, &timestamp_us,
                                            &error);
  on_operation_done (user_data);
}

static gboolean
is_migration_completed (const char *name,
                        JsonObject *data,
                        gpointer    user_data)
{
  JsonNode *status = json_object_get_member (data, "status");

  return status != NULL && JSON_NODE_HOLDS_VALUE (status) &&
         json_node_get_value_type (status) == G_TYPE_STRING &&
         g_strcmp0 (json_node_get_string (status), "completed") == 0;
}

static void
on_event (HexzQmpClient *client,
          const char    *name,
          JsonObject    *data,
          gint64         timestamp_us,
          gpointer       user_data)
{
  Run *run = user_data;

  run->events++;
  json_object_get_size (data);
}

static void
on_getfd (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(GError) error = NULL;

  node = hexz_qmp_client_execute_finish (HEXZ_QMP_CLIENT (source), result, &error);
  on_operation_done (user_data);
}

/* Sends `getfd` with a descriptor of /dev/null, so that the path that
 * passes descriptors with a command's first byte runs too. */
static void
send_getfd (Run *run)
{
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(JsonObject) arguments = json_object_new ();
  g_autoptr(GError) error = NULL;
  int fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);

  if (fd < 0 || g_unix_fd_list_append (fd_list, fd, &error) < 0)
    g_error ("Cannot pass /dev/null to the QMP client: %s", g_strerror (errno));
  close (fd);

  json_object_set_string_member (arguments, "fdname", "fuzz");
  run->outstanding++;
  hexz_qmp_client_execute_async (run->client, "getfd", arguments, fd_list, NULL, on_getfd,
                                 run);
}

static void
send_commands (Run *run)
{
  HexzQmpClient *client = run->client;

  run->outstanding += 7;
  hexz_qmp_client_query_status_async (client, NULL, on_query_status, run);
  hexz_qmp_client_stop_async (client, run->stop_cancellable, on_stop, run);
  if (run->control & CONTROL_CANCEL_STOP)
    g_cancellable_cancel (run->stop_cancellable);
  hexz_qmp_client_cont_async (client, NULL, on_cont, run);
  hexz_qmp_client_query_migrate_async (client, NULL, on_query_migrate, run);
  hexz_qmp_client_execute_json_async (client, "query-name", NULL, NULL, NULL, on_execute_json,
                                      run);
  hexz_qmp_client_wait_event_async (client, "STOP", NULL, NULL, NULL, 0, NULL,
                                    on_event_waited, run);
  hexz_qmp_client_wait_event_async (client, "MIGRATION", is_migration_completed, NULL, NULL,
                                    0, NULL, on_event_waited, run);
  send_getfd (run);
}

static void
on_connected (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Run *run = user_data;
  g_autoptr(GError) error = NULL;

  if (hexz_qmp_client_connect_finish (HEXZ_QMP_CLIENT (source), result, &error))
    {
      guint major, minor, micro;

      hexz_qmp_client_get_qemu_version (run->client);
      hexz_qmp_client_get_qemu_version_numbers (run->client, &major, &minor, &micro);
      hexz_qmp_client_get_qemu_package (run->client);
      hexz_qmp_client_get_capabilities (run->client);
      send_commands (run);
    }

  on_operation_done (run);
}

static void
iterate_pending (GMainContext *context)
{
  for (guint i = 0; i < 1000 && g_main_context_iteration (context, FALSE); i++)
    ;
}

/* Reads and drops what the client sent, without blocking. */
static void
drain (int fd)
{
  char buffer[4096];

  while (read (fd, buffer, sizeof buffer) > 0)
    ;
}

static void
send_piece (int           fd,
            GMainContext *context,
            const guint8 *data,
            gsize         size)
{
  while (size > 0)
    {
      gssize n = send (fd, data, size, MSG_NOSIGNAL);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && errno == EAGAIN)
        {
          drain (fd);
          g_main_context_iteration (context, TRUE);
          continue;
        }
      if (n < 0)
        return;  /* the client closed its end */

      data += n;
      size -= n;
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  FuzzInput input = { data, size };
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GSocketConnection) connection = NULL;
  g_autoptr(GError) error = NULL;
  Run run = { 0 };
  gsize piece_size;
  gsize offset;
  int fds[2];

  run.control = fuzz_input_take_u8 (&input);
  if ((run.control & CONTROL_PIECE_SIZE) == PIECE_LINE)
    piece_size = 0;
  else
    piece_size = piece_sizes[run.control & CONTROL_PIECE_SIZE];

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) != 0)
    g_error ("socketpair() failed: %s", g_strerror (errno));

  g_main_context_push_thread_default (context);

  socket = g_socket_new_from_fd (fds[0], &error);
  g_assert_no_error (error);
  connection = g_socket_connection_factory_create_connection (socket);

  run.client = hexz_qmp_client_new ();
  run.stop_cancellable = g_cancellable_new ();
  hexz_qmp_client_set_connect_timeout (run.client, 0);
  hexz_qmp_client_set_command_timeout (run.client, 0);
  g_signal_connect (run.client, "event", G_CALLBACK (on_event), &run);

  run.outstanding = 1;
  hexz_qmp_client_connect_to_stream_async (run.client, G_IO_STREAM (connection), NULL,
                                           on_connected, &run);
  iterate_pending (context);

  for (offset = 0; offset < input.size; )
    {
      gsize n = piece_size;

      if (piece_size == 0)
        {
          const guint8 *newline = memchr (input.data + offset, '\n', input.size - offset);

          n = newline != NULL ? (gsize) (newline - input.data - offset) + 1 : input.size - offset;
        }
      else if (run.control & CONTROL_VARY_PIECES)
        {
          n = 1 + (offset * 31 + 7) % piece_size;
        }
      n = MIN (n, input.size - offset);

      send_piece (fds[1], context, input.data + offset, n);
      offset += n;
      drain (fds[1]);
      iterate_pending (context);
    }

  /* End of stream: every operation must now finish. */
  shutdown (fds[1], SHUT_WR);
  for (guint i = 0; run.outstanding > 0 || hexz_qmp_client_get_connected (run.client); i++)
    {
      if (i == MAX_FINAL_ITERATIONS)
        g_error ("%u QMP operations did not finish after the server closed the connection",
                 run.outstanding);
      drain (fds[1]);
      g_main_context_iteration (context, TRUE);
    }

  hexz_qmp_client_close (run.client);
  g_clear_object (&run.client);
  g_clear_object (&run.stop_cancellable);
  g_clear_object (&connection);
  g_clear_object (&socket);
  iterate_pending (context);

  g_main_context_pop_thread_default (context);
  close (fds[1]);

  return 0;
}
