/* test-qmp-client.c: HexzQmpClient against a scripted mock QMP server
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Each test starts a mock server, a GSocketService on a unix socket in a
 * temporary folder. The service accepts on the test's main context and
 * hands each connection to a script, which runs in its own thread with
 * blocking socket calls, so that a script reads like the conversation it
 * plays. The client runs on the test's main context. The two sides meet
 * through `go` tokens (test to server) and a stage counter (server to
 * test).
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gunixfdmessage.h>
#include <glib/gstdio.h>
#include <glib-unix.h>

#include "hexz-qmp-client.h"
#include "hexz-qmp-client-private.h"
#include "hexz-enum-types.h"

#define GREETING \
  "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, " \
  "\"package\": \"Debian 1:7.2+dfsg-7\"}, \"capabilities\": [\"oob\"]}}\r\n"

/* How long a test waits for a condition before it fails. */
#define TEST_DEADLINE_US (5 * G_USEC_PER_SEC)

typedef struct _Mock Mock;
typedef void (*MockScript) (Mock *mock);

struct _Mock
{
  char              *dir;
  char              *path;
  GSocketService    *service;
  GAsyncQueue       *accepted;
  GSocketConnection *socket_connection;
  GSocket           *connection;
  GThread     *thread;
  MockScript   script;
  GByteArray  *input;
  GArray      *received_fds;
  GAsyncQueue *go_queue;
  gint         stage;
  gpointer     data;
};

/* Mock server side, run in the server thread */

/* Takes the next connection that the service accepted. */
static void
mock_accept (Mock *mock)
{
  mock->socket_connection = g_async_queue_timeout_pop (mock->accepted, TEST_DEADLINE_US);
  g_assert_nonnull (mock->socket_connection);
  mock->connection = g_object_ref (g_socket_connection_get_socket (mock->socket_connection));
  g_socket_set_blocking (mock->connection, TRUE);
}

static gboolean
mock_try_send (Mock       *mock,
               const char *data,
               gsize       size)
{
  while (size > 0)
    {
      g_autoptr(GError) error = NULL;
      gssize sent = g_socket_send (mock->connection, data, size, NULL, &error);

      if (sent < 0)
        return FALSE;
      data += sent;
      size -= (gsize) sent;
    }

  return TRUE;
}

static void
mock_send (Mock       *mock,
           const char *text)
{
  g_assert_true (mock_try_send (mock, text, strlen (text)));
}

/* Sends @text in pieces of @piece_size bytes with a pause after each, so
 * that the client receives them in separate reads. */
static void
mock_send_pieces (Mock       *mock,
                  const char *text,
                  gsize       piece_size,
                  gulong      pause_us)
{
  gsize size = strlen (text);

  for (gsize offset = 0; offset < size; offset += piece_size)
    {
      g_assert_true (mock_try_send (mock, text + offset, MIN (piece_size, size - offset)));
      if (pause_us > 0)
        g_usleep (pause_us);
    }
}

/* Reads one line, keeping file descriptors that arrive with its bytes.
 * Returns NULL at the end of the stream. */
static char *
mock_read_line (Mock *mock)
{
  for (;;)
    {
      guint8 chunk[4096];
      GInputVector vector = { chunk, sizeof chunk };
      GSocketControlMessage **messages = NULL;
      gint n_messages = 0;
      gint flags = 0;
      guint8 *newline;
      gssize received;

      /* An empty GByteArray has no data pointer, and memchr() needs one. */
      newline = mock->input->len > 0 ? memchr (mock->input->data, '\n', mock->input->len) : NULL;
      if (newline != NULL)
        {
          gsize size = (gsize) (newline - mock->input->data);
          char *line = g_strndup ((const char *) mock->input->data, size);

          g_byte_array_remove_range (mock->input, 0, (guint) size + 1);
          return line;
        }

      received = g_socket_receive_message (mock->connection, NULL, &vector, 1,
                                           &messages, &n_messages, &flags, NULL, NULL);
      for (gint i = 0; i < n_messages; i++)
        {
          if (G_IS_UNIX_FD_MESSAGE (messages[i]))
            {
              gint n_fds = 0;
              g_autofree gint *fds = g_unix_fd_message_steal_fds (G_UNIX_FD_MESSAGE (messages[i]),
                                                                  &n_fds);

              g_array_append_vals (mock->received_fds, fds, (guint) n_fds);
            }
          g_object_unref (messages[i]);
        }
      g_free (messages);

      if (received <= 0)
        return NULL;
      g_byte_array_append (mock->input, chunk, (guint) received);
    }
}

/* Reads a command, checks its name, and returns it. */
static JsonObject *
mock_expect (Mock       *mock,
             const char *command)
{
  g_autofree char *line = mock_read_line (mock);
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(GError) error = NULL;
  JsonObject *object;

  g_assert_nonnull (line);
  node = json_from_string (line, &error);
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
  object = json_node_get_object (node);
  g_assert_cmpstr (json_object_get_string_member (object, "execute"), ==, command);
  g_assert_true (json_object_has_member (object, "id"));

  return json_object_ref (object);
}

static void
mock_expect_eof (Mock *mock)
{
  g_autofree char *line = mock_read_line (mock);

  g_assert_null (line);
}

/* Replies to @command with @return_json as the `return` member. */
static void
mock_reply (Mock       *mock,
            JsonObject *command,
            const char *return_json)
{
  g_autofree char *text = g_strdup_printf ("{\"return\": %s, \"id\": \"%s\"}\n", return_json,
                                           json_object_get_string_member (command, "id"));

  mock_send (mock, text);
}

static void
mock_reply_error (Mock       *mock,
                  JsonObject *command,
                  const char *error_json)
{
  g_autofree char *text = g_strdup_printf ("{\"error\": %s, \"id\": \"%s\"}\n", error_json,
                                           json_object_get_string_member (command, "id"));

  mock_send (mock, text);
}

static void
mock_handshake (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;

  mock_accept (mock);
  mock_send (mock, GREETING);
  command = mock_expect (mock, "qmp_capabilities");
  g_assert_false (json_object_has_member (command, "arguments"));
  mock_reply (mock, command, "{}");
}

static void
mock_wait_go (Mock *mock)
{
  g_async_queue_pop (mock->go_queue);
}

static void
mock_set_stage (Mock *mock,
                gint  stage)
{
  g_atomic_int_set (&mock->stage, stage);
}

static gpointer
mock_thread (gpointer user_data)
{
  Mock *mock = user_data;

  mock->script (mock);

  /* The connection also references the socket, so close it explicitly. */
  if (mock->connection != NULL)
    g_socket_close (mock->connection, NULL);
  g_clear_object (&mock->connection);
  g_clear_object (&mock->socket_connection);

  return NULL;
}

/* Runs on the test's main context. */
static gboolean
mock_on_incoming (GSocketService    *service,
                  GSocketConnection *connection,
                  GObject           *source_object,
                  Mock              *mock)
{
  g_async_queue_push (mock->accepted, g_object_ref (connection));
  return TRUE;
}

/* Test side */

static Mock *
mock_new (MockScript script)
{
  g_autoptr(GSocketAddress) address = NULL;
  g_autoptr(GError) error = NULL;
  Mock *mock = g_new0 (Mock, 1);

  mock->dir = g_dir_make_tmp ("hexz-qmp-XXXXXX", &error);
  g_assert_no_error (error);
  mock->path = g_build_filename (mock->dir, "qmp.sock", NULL);
  mock->input = g_byte_array_new ();
  mock->received_fds = g_array_new (FALSE, FALSE, sizeof (gint));
  mock->go_queue = g_async_queue_new ();
  mock->accepted = g_async_queue_new_full (g_object_unref);
  mock->script = script;

  mock->service = g_socket_service_new ();
  address = g_unix_socket_address_new (mock->path);
  g_socket_listener_add_address (G_SOCKET_LISTENER (mock->service), address,
                                 G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT,
                                 NULL, NULL, &error);
  g_assert_no_error (error);
  g_signal_connect (mock->service, "incoming", G_CALLBACK (mock_on_incoming), mock);
  g_socket_service_start (mock->service);

  if (script != NULL)
    mock->thread = g_thread_new ("mock-qmp", mock_thread, mock);

  return mock;
}

/* Adds a listener on an ephemeral TCP port of 127.0.0.1 and returns the
 * port. */
static guint16
mock_listen_loopback (Mock *mock)
{
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) error = NULL;

  g_socket_listener_add_address (G_SOCKET_LISTENER (mock->service), address,
                                 G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                                 NULL, &bound, &error);
  g_assert_no_error (error);

  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

static void
mock_go (Mock *mock)
{
  g_async_queue_push (mock->go_queue, GINT_TO_POINTER (1));
}

static gint
mock_get_stage (Mock *mock)
{
  return g_atomic_int_get (&mock->stage);
}

/* Joins the server thread, which checks that the script ran to its end. */
static void
mock_free (Mock *mock)
{
  if (mock->thread != NULL)
    g_thread_join (mock->thread);

  /* Let closed streams of the client finish on the main context. */
  while (g_main_context_iteration (NULL, FALSE))
    ;

  for (guint i = 0; i < mock->received_fds->len; i++)
    close (g_array_index (mock->received_fds, gint, i));
  g_array_unref (mock->received_fds);
  g_socket_service_stop (mock->service);
  g_socket_listener_close (G_SOCKET_LISTENER (mock->service));
  g_object_unref (mock->service);
  g_async_queue_unref (mock->accepted);
  g_unlink (mock->path);
  g_rmdir (mock->dir);
  g_byte_array_unref (mock->input);
  g_async_queue_unref (mock->go_queue);
  g_free (mock->path);
  g_free (mock->dir);
  g_free (mock);
}

/* Runs the main context until @condition holds, and fails the test when it
 * does not hold within TEST_DEADLINE_US. */
#define RUN_UNTIL(condition) \
  G_STMT_START { \
    gint64 deadline_ = g_get_monotonic_time () + TEST_DEADLINE_US; \
    while (!(condition)) \
      { \
        if (!g_main_context_iteration (NULL, FALSE)) \
          g_usleep (500); \
        if (g_get_monotonic_time () > deadline_) \
          g_error ("Timed out waiting for: %s", #condition); \
      } \
  } G_STMT_END

typedef struct
{
  gboolean  done;
  guint     calls;
  JsonNode *node;
  GError   *error;
} CommandResult;

static void
command_result_clear (CommandResult *result)
{
  g_clear_pointer (&result->node, json_node_unref);
  g_clear_error (&result->error);
  result->done = FALSE;
  result->calls = 0;
}

static void
on_execute_done (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  CommandResult *command_result = user_data;

  command_result->calls++;
  command_result->done = TRUE;
  command_result->node = hexz_qmp_client_execute_finish (HEXZ_QMP_CLIENT (source), result,
                                                         &command_result->error);
}

static void
on_connect_done (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  CommandResult *command_result = user_data;

  command_result->calls++;
  command_result->done = TRUE;
  hexz_qmp_client_connect_finish (HEXZ_QMP_CLIENT (source), result, &command_result->error);
}

static HexzQmpClient *
connect_client (Mock *mock)
{
  HexzQmpClient *client = hexz_qmp_client_new ();
  CommandResult result = { 0 };

  hexz_qmp_client_connect_to_path_async (client, mock->path, NULL, on_connect_done, &result);
  RUN_UNTIL (result.done);
  g_assert_no_error (result.error);
  g_assert_true (hexz_qmp_client_get_connected (client));

  return client;
}

static void
execute (HexzQmpClient *client,
         const char    *command,
         CommandResult *result)
{
  hexz_qmp_client_execute_async (client, command, NULL, NULL, NULL, on_execute_done, result);
}

typedef struct
{
  GPtrArray *names;
  GPtrArray *data;
  GArray    *timestamps;
  guint      disconnected;
  GError    *disconnect_error;
  GString   *order;
} Recorder;

static void
on_event (HexzQmpClient *client,
          const char    *name,
          JsonObject    *data,
          gint64         timestamp_us,
          Recorder      *recorder)
{
  g_ptr_array_add (recorder->names, g_strdup (name));
  g_ptr_array_add (recorder->data, json_object_ref (data));
  g_array_append_val (recorder->timestamps, timestamp_us);
  g_string_append_printf (recorder->order, "event:%s;", name);
}

static void
on_disconnected (HexzQmpClient *client,
                 const GError  *error,
                 Recorder      *recorder)
{
  recorder->disconnected++;
  g_clear_error (&recorder->disconnect_error);
  recorder->disconnect_error = g_error_copy (error);
}

static void
recorder_init (Recorder      *recorder,
               HexzQmpClient *client)
{
  recorder->names = g_ptr_array_new_with_free_func (g_free);
  recorder->data = g_ptr_array_new_with_free_func ((GDestroyNotify) json_object_unref);
  recorder->timestamps = g_array_new (FALSE, FALSE, sizeof (gint64));
  recorder->order = g_string_new (NULL);
  recorder->disconnected = 0;
  recorder->disconnect_error = NULL;
  g_signal_connect (client, "event", G_CALLBACK (on_event), recorder);
  g_signal_connect (client, "disconnected", G_CALLBACK (on_disconnected), recorder);
}

static void
recorder_clear (Recorder *recorder)
{
  g_ptr_array_unref (recorder->names);
  g_ptr_array_unref (recorder->data);
  g_array_unref (recorder->timestamps);
  g_string_free (recorder->order, TRUE);
  g_clear_error (&recorder->disconnect_error);
}

/* Greeting and framing */

static void
script_greeting_split (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;

  mock_accept (mock);
  mock_send_pieces (mock,
                    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 1, \"minor\": 2, \"major\": 7}, ",
                    1024, 20000);
  mock_send_pieces (mock, "\"package\": \"test\"}, \"capabilities\": [\"oob\", \"x\"]}}\r", 1024, 20000);
  mock_send_pieces (mock, "\n", 1024, 0);
  command = mock_expect (mock, "qmp_capabilities");
  mock_reply (mock, command, "{}");
  mock_expect_eof (mock);
}

static void
on_notify (GObject    *object,
           GParamSpec *pspec,
           GString    *notified)
{
  g_string_append_printf (notified, "%s;", pspec->name);
}

static void
test_greeting_split (void)
{
  Mock *mock = mock_new (script_greeting_split);
  g_autoptr(HexzQmpClient) client = hexz_qmp_client_new ();
  g_autoptr(GString) notified = g_string_new (NULL);
  g_auto(GStrv) capabilities = NULL;
  g_autofree char *version = NULL;
  CommandResult result = { 0 };
  guint major, minor, micro;

  g_signal_connect (client, "notify", G_CALLBACK (on_notify), notified);
  g_assert_null (hexz_qmp_client_get_qemu_version (client));

  hexz_qmp_client_connect_to_path_async (client, mock->path, NULL, on_connect_done, &result);
  RUN_UNTIL (result.done);
  g_assert_no_error (result.error);

  g_assert_true (hexz_qmp_client_get_connected (client));
  g_assert_cmpstr (hexz_qmp_client_get_qemu_version (client), ==, "7.2.1");
  g_assert_cmpstr (hexz_qmp_client_get_qemu_package (client), ==, "test");
  g_assert_true (hexz_qmp_client_get_qemu_version_numbers (client, &major, &minor, &micro));
  g_assert_cmpuint (major, ==, 7);
  g_assert_cmpuint (minor, ==, 2);
  g_assert_cmpuint (micro, ==, 1);
  g_assert_cmpstrv (hexz_qmp_client_get_capabilities (client),
                    ((const char * const[]) { "oob", "x", NULL }));

  g_object_get (client, "qemu-version", &version, "capabilities", &capabilities, NULL);
  g_assert_cmpstr (version, ==, "7.2.1");
  g_assert_cmpuint (g_strv_length (capabilities), ==, 2);
  g_assert_nonnull (strstr (notified->str, "connected;"));
  g_assert_nonnull (strstr (notified->str, "qemu-version;"));

  g_clear_object (&client);
  mock_free (mock);
}

static void
script_reply_and_event_together (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;
  g_autofree char *text = NULL;

  mock_handshake (mock);
  command = mock_expect (mock, "query-status");
  text = g_strdup_printf ("{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 250}}\n"
                          "{\"return\": {\"status\": \"paused\", \"running\": false}, \"id\": \"%s\"}\n",
                          json_object_get_string_member (command, "id"));
  mock_send (mock, text);
  mock_expect_eof (mock);
}

static void
test_framing_reply_and_event (void)
{
  Mock *mock = mock_new (script_reply_and_event_together);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult result = { 0 };
  Recorder recorder;

  recorder_init (&recorder, client);
  execute (client, "query-status", &result);
  RUN_UNTIL (result.done);

  g_assert_no_error (result.error);
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (result.node), "status"),
                   ==, "paused");
  g_assert_cmpuint (recorder.names->len, ==, 1);
  g_assert_cmpstr (g_ptr_array_index (recorder.names, 0), ==, "STOP");
  g_assert_cmpint (g_array_index (recorder.timestamps, gint64, 0), ==,
                   G_GINT64_CONSTANT (1700000000) * G_USEC_PER_SEC + 250);
  g_assert_cmpuint (json_object_get_size (g_ptr_array_index (recorder.data, 0)), ==, 0);

  command_result_clear (&result);
  recorder_clear (&recorder);
  g_clear_object (&client);
  mock_free (mock);
}

/* Timestamps whose microseconds overflow gint64, negative ones and
 * non-integer ones fall back to the time of arrival. */
static void
script_bad_timestamps (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;
  g_autofree char *text = NULL;

  mock_handshake (mock);
  command = mock_expect (mock, "query-status");
  mock_send (mock,
             "{\"event\": \"A\", \"timestamp\": {\"seconds\": 9223372036854775807, \"microseconds\": 999999}}\n"
             "{\"event\": \"B\", \"timestamp\": {\"seconds\": -9223372036854775808, \"microseconds\": -1}}\n"
             "{\"event\": \"C\", \"timestamp\": {\"seconds\": 1e300, \"microseconds\": 0}}\n"
             "{\"event\": \"D\", \"timestamp\": {\"seconds\": 5, \"microseconds\": 2000000}}\n"
             "{\"event\": \"E\", \"timestamp\": {\"seconds\": 5.0, \"microseconds\": 7}}\n");
  text = g_strdup_printf ("{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": \"%s\"}\n",
                          json_object_get_string_member (command, "id"));
  mock_send (mock, text);
  mock_expect_eof (mock);
}

static void
test_events_bad_timestamps (void)
{
  Mock *mock = mock_new (script_bad_timestamps);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult result = { 0 };
  Recorder recorder;
  gint64 before = g_get_real_time ();
  gint64 after;

  recorder_init (&recorder, client);
  execute (client, "query-status", &result);
  RUN_UNTIL (result.done);
  after = g_get_real_time ();

  g_assert_no_error (result.error);
  g_assert_cmpuint (recorder.timestamps->len, ==, 5);
  for (guint i = 0; i < 4; i++)
    {
      gint64 timestamp = g_array_index (recorder.timestamps, gint64, i);

      g_assert_cmpint (timestamp, >=, before);
      g_assert_cmpint (timestamp, <=, after);
    }
  g_assert_cmpint (g_array_index (recorder.timestamps, gint64, 4), ==, 5 * G_USEC_PER_SEC + 7);

  command_result_clear (&result);
  recorder_clear (&recorder);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_byte_at_a_time (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;
  g_autofree char *text = NULL;

  mock_handshake (mock);
  command = mock_expect (mock, "query-name");
  text = g_strdup_printf ("{\"return\": {\"name\": \"vm \\u00e9\\n\"}, \"id\": \"%s\"}\r\n",
                          json_object_get_string_member (command, "id"));
  mock_send_pieces (mock, text, 1, 200);
  mock_expect_eof (mock);
}

static void
test_framing_byte_at_a_time (void)
{
  Mock *mock = mock_new (script_byte_at_a_time);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult result = { 0 };

  execute (client, "query-name", &result);
  RUN_UNTIL (result.done);
  g_assert_no_error (result.error);
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (result.node), "name"),
                   ==, "vm é\n");

  command_result_clear (&result);
  g_clear_object (&client);
  mock_free (mock);
}

#define LARGE_REPLY_SIZE (200 * 1024)

static void
script_large_reply (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;
  g_autofree char *filler = g_strnfill (LARGE_REPLY_SIZE, 'a');
  g_autofree char *text = NULL;

  mock_handshake (mock);
  command = mock_expect (mock, "query-qmp-schema");
  text = g_strdup_printf ("{\"return\": [{\"name\": \"%s\"}], \"id\": \"%s\"}\n", filler,
                          json_object_get_string_member (command, "id"));
  mock_send_pieces (mock, text, 4096, 100);
  mock_expect_eof (mock);
}

static void
test_framing_large_reply (void)
{
  Mock *mock = mock_new (script_large_reply);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult result = { 0 };
  JsonArray *array;

  execute (client, "query-qmp-schema", &result);
  RUN_UNTIL (result.done);
  g_assert_no_error (result.error);
  g_assert_true (JSON_NODE_HOLDS_ARRAY (result.node));
  array = json_node_get_array (result.node);
  g_assert_cmpuint (json_array_get_length (array), ==, 1);
  g_assert_cmpuint (strlen (json_object_get_string_member (json_array_get_object_element (array, 0),
                                                           "name")),
                    ==, LARGE_REPLY_SIZE);

  command_result_clear (&result);
  g_clear_object (&client);
  mock_free (mock);
}

#define RANDOM_SPLIT_EVENTS 200

static void
script_random_splits (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;
  g_autoptr(GString) text = g_string_new (NULL);
  gsize offset = 0;

  mock_handshake (mock);
  command = mock_expect (mock, "query-events");

  /* Events with both line terminators, then the reply, sent in pieces of
   * random size that cut lines, terminators and UTF-8 sequences anywhere. */
  for (guint i = 0; i < RANDOM_SPLIT_EVENTS; i++)
    g_string_append_printf (text, "{\"event\": \"E%u\", \"data\": {\"text\": \"\u00e9t\u00e9 %u\"}}%s",
                            i, i, i % 2 == 0 ? "\r\n" : "\n");
  g_string_append_printf (text, "{\"return\": {\"count\": %u}, \"id\": \"%s\"}\n",
                          RANDOM_SPLIT_EVENTS, json_object_get_string_member (command, "id"));

  while (offset < text->len)
    {
      /* MIN() evaluates its arguments twice, so draw the size first. */
      gsize random_size = (gsize) g_test_rand_int_range (1, 97);
      gsize piece = MIN (random_size, text->len - offset);

      g_assert_true (mock_try_send (mock, text->str + offset, piece));
      offset += piece;
      if (g_test_rand_int_range (0, 8) == 0)
        g_usleep (100);
    }
  mock_expect_eof (mock);
}

static void
test_framing_random_splits (void)
{
  Mock *mock = mock_new (script_random_splits);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult result = { 0 };
  Recorder recorder;

  recorder_init (&recorder, client);
  execute (client, "query-events", &result);
  RUN_UNTIL (result.done);
  g_assert_no_error (result.error);
  g_assert_cmpint (json_object_get_int_member (json_node_get_object (result.node), "count"),
                   ==, RANDOM_SPLIT_EVENTS);

  g_assert_cmpuint (recorder.names->len, ==, RANDOM_SPLIT_EVENTS);
  for (guint i = 0; i < RANDOM_SPLIT_EVENTS; i++)
    {
      g_autofree char *name = g_strdup_printf ("E%u", i);
      g_autofree char *expected = g_strdup_printf ("été %u", i);

      g_assert_cmpstr (g_ptr_array_index (recorder.names, i), ==, name);
      g_assert_cmpstr (json_object_get_string_member (g_ptr_array_index (recorder.data, i), "text"),
                       ==, expected);
    }

  command_result_clear (&result);
  recorder_clear (&recorder);
  g_clear_object (&client);
  mock_free (mock);
}

#define OVERSIZED_LINE_SIZE (17 * 1024 * 1024)

static void
script_oversized_line (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;
  g_autofree char *line = g_malloc (OVERSIZED_LINE_SIZE);
  gboolean sent;

  mock_handshake (mock);
  command = mock_expect (mock, "query-status");

  /* A JSON string that never ends: the client must give up at its limit
   * instead of buffering the whole line. */
  memset (line, 'b', OVERSIZED_LINE_SIZE);
  memcpy (line, "{\"return\": \"", 12);
  line[OVERSIZED_LINE_SIZE - 1] = '\n';
  sent = mock_try_send (mock, line, OVERSIZED_LINE_SIZE);

  /* The client closes the connection: either the send already failed, or
   * the next read returns the end of the stream. */
  if (sent)
    mock_expect_eof (mock);
  mock_set_stage (mock, 1);
}

static void
test_framing_oversized (void)
{
  Mock *mock = mock_new (script_oversized_line);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult result = { 0 };
  Recorder recorder;

  recorder_init (&recorder, client);
  g_test_expect_message ("Hexz", G_LOG_LEVEL_MESSAGE, "*larger than 16777216 bytes*");
  execute (client, "query-status", &result);
  RUN_UNTIL (result.done && mock_get_stage (mock) == 1);
  g_test_assert_expected_messages ();

  g_assert_error (result.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (result.error->message, "larger than"));
  g_assert_cmpuint (recorder.disconnected, ==, 1);
  g_assert_error (recorder.disconnect_error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_PROTOCOL);
  g_assert_false (hexz_qmp_client_get_connected (client));

  command_result_clear (&result);
  recorder_clear (&recorder);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_eof_mid_line (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;

  mock_handshake (mock);
  command = mock_expect (mock, "query-status");
  mock_send (mock, "{\"return\": {}, \"id\"");
}

static void
test_framing_eof_mid_line (void)
{
  Mock *mock = mock_new (script_eof_mid_line);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult result = { 0 };
  Recorder recorder;

  recorder_init (&recorder, client);
  g_test_expect_message ("Hexz", G_LOG_LEVEL_MESSAGE, "*in the middle of a message*");
  execute (client, "query-status", &result);
  RUN_UNTIL (result.done);
  RUN_UNTIL (recorder.disconnected > 0);
  g_test_assert_expected_messages ();

  g_assert_error (result.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED);
  g_assert_cmpuint (recorder.disconnected, ==, 1);
  g_assert_error (recorder.disconnect_error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_PROTOCOL);

  command_result_clear (&result);
  recorder_clear (&recorder);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_events_before_greeting (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;

  mock_accept (mock);
  mock_send (mock, "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n"
                   "{\"event\": \"NIC_RX_FILTER_CHANGED\", \"data\": {\"name\": \"n0\"}, "
                   "\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}}\n");
  mock_send (mock, GREETING);
  command = mock_expect (mock, "qmp_capabilities");
  mock_reply (mock, command, "{}");
  mock_expect_eof (mock);
}

static void
test_greeting_events_before (void)
{
  Mock *mock = mock_new (script_events_before_greeting);
  g_autoptr(HexzQmpClient) client = hexz_qmp_client_new ();
  CommandResult result = { 0 };
  Recorder recorder;

  recorder_init (&recorder, client);
  hexz_qmp_client_connect_to_path_async (client, mock->path, NULL, on_connect_done, &result);
  RUN_UNTIL (result.done);

  g_assert_no_error (result.error);
  g_assert_cmpuint (recorder.names->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (recorder.names, 0), ==, "RESUME");
  g_assert_cmpstr (g_ptr_array_index (recorder.names, 1), ==, "NIC_RX_FILTER_CHANGED");
  g_assert_cmpstr (json_object_get_string_member (g_ptr_array_index (recorder.data, 1), "name"),
                   ==, "n0");
  g_assert_cmpstr (hexz_qmp_client_get_qemu_version (client), ==, "7.2.0");

  command_result_clear (&result);
  recorder_clear (&recorder);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_too_many_events_before_greeting (Mock *mock)
{
  mock_accept (mock);
  for (guint i = 0; i <= HEXZ_QMP_MAX_EVENTS_BEFORE_GREETING; i++)
    mock_send (mock, "{\"event\": \"RESUME\"}\n");
  mock_expect_eof (mock);
}

static void
test_greeting_too_many_events (void)
{
  Mock *mock = mock_new (script_too_many_events_before_greeting);
  g_autoptr(HexzQmpClient) client = hexz_qmp_client_new ();
  CommandResult result = { 0 };
  Recorder recorder;

  recorder_init (&recorder, client);
  g_test_expect_message ("Hexz", G_LOG_LEVEL_MESSAGE, "*sent no QMP greeting*");
  hexz_qmp_client_connect_to_path_async (client, mock->path, NULL, on_connect_done, &result);
  RUN_UNTIL (result.done);
  g_test_assert_expected_messages ();

  g_assert_error (result.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_PROTOCOL);
  g_assert_cmpuint (recorder.names->len, ==, HEXZ_QMP_MAX_EVENTS_BEFORE_GREETING);
  /* A client that never connected does not report a disconnection. */
  g_assert_cmpuint (recorder.disconnected, ==, 0);

  command_result_clear (&result);
  recorder_clear (&recorder);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_never_greets (Mock *mock)
{
  mock_accept (mock);
  mock_expect_eof (mock);
}

static void
test_connect_no_greeting (void)
{
  Mock *mock = mock_new (script_never_greets);
  g_autoptr(HexzQmpClient) client = hexz_qmp_client_new ();
  CommandResult result = { 0 };
  gint64 start = g_get_monotonic_time ();

  hexz_qmp_client_set_connect_timeout (client, 200);
  hexz_qmp_client_connect_to_path_async (client, mock->path, NULL, on_connect_done, &result);
  RUN_UNTIL (result.done);

  g_assert_error (result.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_NO_GREETING);
  g_assert_nonnull (strstr (result.error->message, "busy"));
  g_assert_nonnull (strstr (result.error->message, mock->path));
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 200 * 1000);
  g_assert_false (hexz_qmp_client_get_connected (client));

  command_result_clear (&result);
  g_clear_object (&client);
  mock_free (mock);
}

static void
test_connect_missing_socket (void)
{
  Mock *mock = mock_new (NULL);
  g_autoptr(HexzQmpClient) client = hexz_qmp_client_new ();
  g_autofree char *path = g_build_filename (mock->dir, "absent.sock", NULL);
  CommandResult result = { 0 };

  hexz_qmp_client_connect_to_path_async (client, path, NULL, on_connect_done, &result);
  RUN_UNTIL (result.done);

  g_assert_error (result.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (result.error->message, path));

  command_result_clear (&result);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_connectable (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;

  mock_handshake (mock);
  command = mock_expect (mock, "query-name");
  mock_reply (mock, command, "{\"name\": \"tcp\"}");
  mock_expect_eof (mock);
}

/* Any GSocketConnectable works, here a host name and port on loopback.
 * Such a connection cannot pass file descriptors. */
static void
test_connect_connectable (void)
{
  Mock *mock = mock_new (script_connectable);
  g_autoptr(HexzQmpClient) client = hexz_qmp_client_new ();
  g_autoptr(GSocketConnectable) connectable = NULL;
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(GError) error = NULL;
  CommandResult connected = { 0 };
  CommandResult getfd = { 0 };
  CommandResult name = { 0 };
  guint16 port = mock_listen_loopback (mock);

  connectable = g_network_address_new ("127.0.0.1", port);
  hexz_qmp_client_connect_async (client, connectable, NULL, on_connect_done, &connected);
  RUN_UNTIL (connected.done);
  g_assert_no_error (connected.error);
  g_assert_true (hexz_qmp_client_get_connected (client));
  g_assert_cmpstr (hexz_qmp_client_get_qemu_version (client), ==, "7.2.0");

  g_unix_fd_list_append (fd_list, 0, &error);
  g_assert_no_error (error);
  hexz_qmp_client_execute_async (client, "getfd", NULL, fd_list, NULL, on_execute_done, &getfd);
  RUN_UNTIL (getfd.done);
  g_assert_error (getfd.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_NOT_SUPPORTED);

  execute (client, "query-name", &name);
  RUN_UNTIL (name.done);
  g_assert_no_error (name.error);
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (name.node), "name"),
                   ==, "tcp");

  command_result_clear (&connected);
  command_result_clear (&getfd);
  command_result_clear (&name);
  g_clear_object (&client);
  mock_free (mock);
}

static void
test_connect_cancel_before (void)
{
  Mock *mock = mock_new (NULL);
  g_autoptr(HexzQmpClient) client = hexz_qmp_client_new ();
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  CommandResult result = { 0 };

  g_cancellable_cancel (cancellable);
  hexz_qmp_client_connect_to_path_async (client, mock->path, cancellable, on_connect_done, &result);
  RUN_UNTIL (result.done);

  g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (result.calls, ==, 1);

  command_result_clear (&result);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_accept_then_wait_eof (Mock *mock)
{
  mock_accept (mock);
  mock_set_stage (mock, 1);
  mock_expect_eof (mock);
}

static void
test_connect_cancel_during (void)
{
  Mock *mock = mock_new (script_accept_then_wait_eof);
  g_autoptr(HexzQmpClient) client = hexz_qmp_client_new ();
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  CommandResult result = { 0 };

  hexz_qmp_client_connect_to_path_async (client, mock->path, cancellable, on_connect_done, &result);
  RUN_UNTIL (mock_get_stage (mock) == 1);
  g_assert_false (result.done);
  g_cancellable_cancel (cancellable);
  RUN_UNTIL (result.done);

  g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (result.calls, ==, 1);

  command_result_clear (&result);
  g_clear_object (&client);
  mock_free (mock);
}

/* Replies and errors */

static void
script_event_between_command_and_reply (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;

  mock_handshake (mock);
  command = mock_expect (mock, "stop");
  mock_send (mock, "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 5, \"microseconds\": 0}}\n");
  g_usleep (20000);
  mock_reply (mock, command, "{}");
  mock_expect_eof (mock);
}

static void
on_execute_record_order (GObject      *source,
                         GAsyncResult *result,
                         gpointer      user_data)
{
  Recorder *recorder = user_data;
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(GError) error = NULL;

  node = hexz_qmp_client_execute_finish (HEXZ_QMP_CLIENT (source), result, &error);
  g_assert_no_error (error);
  g_string_append (recorder->order, "reply;");
}

static void
test_events_between_command_and_reply (void)
{
  Mock *mock = mock_new (script_event_between_command_and_reply);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  Recorder recorder;

  recorder_init (&recorder, client);
  hexz_qmp_client_execute_async (client, "stop", NULL, NULL, NULL, on_execute_record_order, &recorder);
  RUN_UNTIL (strstr (recorder.order->str, "reply;") != NULL);

  g_assert_cmpstr (recorder.order->str, ==, "event:STOP;reply;");

  recorder_clear (&recorder);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_out_of_order (Mock *mock)
{
  g_autoptr(JsonObject) first = NULL;
  g_autoptr(JsonObject) second = NULL;

  mock_handshake (mock);
  first = mock_expect (mock, "query-name");
  second = mock_expect (mock, "query-uuid");
  g_assert_cmpstr (json_object_get_string_member (first, "id"), !=,
                   json_object_get_string_member (second, "id"));
  mock_reply (mock, second, "{\"UUID\": \"u\"}");
  mock_reply (mock, first, "{\"name\": \"n\"}");
  mock_expect_eof (mock);
}

static void
test_replies_out_of_order (void)
{
  Mock *mock = mock_new (script_out_of_order);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult first = { 0 };
  CommandResult second = { 0 };

  execute (client, "query-name", &first);
  execute (client, "query-uuid", &second);
  RUN_UNTIL (first.done && second.done);

  g_assert_no_error (first.error);
  g_assert_no_error (second.error);
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (first.node), "name"), ==, "n");
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (second.node), "UUID"), ==, "u");

  command_result_clear (&first);
  command_result_clear (&second);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_unknown_id (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;

  mock_handshake (mock);
  command = mock_expect (mock, "query-name");
  mock_send (mock, "{\"return\": {\"name\": \"wrong\"}, \"id\": \"no-such-id\"}\n");
  mock_send (mock, "{\"return\": {\"name\": \"wrong\"}, \"id\": 7}\n");
  mock_reply (mock, command, "{\"name\": \"right\"}");
  mock_expect_eof (mock);
}

static void
test_replies_unknown_id (void)
{
  Mock *mock = mock_new (script_unknown_id);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult result = { 0 };

  g_test_expect_message ("Hexz", G_LOG_LEVEL_MESSAGE, "*unknown id \"no-such-id\"*");
  g_test_expect_message ("Hexz", G_LOG_LEVEL_MESSAGE, "*unknown id 7*");
  execute (client, "query-name", &result);
  RUN_UNTIL (result.done);
  g_test_assert_expected_messages ();

  g_assert_no_error (result.error);
  g_assert_cmpuint (result.calls, ==, 1);
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (result.node), "name"),
                   ==, "right");

  command_result_clear (&result);
  g_clear_object (&client);
  mock_free (mock);
}

/* Messages that carry the pending command's id but no `return` or
 * `error` member, among them an event, must not complete the command. */
static void
script_not_a_reply (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;
  g_autofree char *text = NULL;
  const char *id;

  mock_handshake (mock);
  command = mock_expect (mock, "query-name");
  id = json_object_get_string_member (command, "id");
  text = g_strdup_printf ("{\"event\": \"STOP\", \"data\": {}, \"id\": \"%s\"}\n"
                          "{\"event\": \"RESUME\", \"return\": {\"name\": \"event\"}, \"id\": \"%s\"}\n"
                          "{\"id\": \"%s\"}\n"
                          "{\"QMP\": {}, \"id\": \"%s\"}\n",
                          id, id, id, id);
  mock_send (mock, text);
  mock_reply (mock, command, "{\"name\": \"reply\"}");
  mock_expect_eof (mock);
}

static void
test_replies_not_a_reply (void)
{
  Mock *mock = mock_new (script_not_a_reply);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult result = { 0 };
  Recorder recorder;

  recorder_init (&recorder, client);
  g_test_expect_message ("Hexz", G_LOG_LEVEL_MESSAGE, "*neither a reply nor an event*");
  g_test_expect_message ("Hexz", G_LOG_LEVEL_MESSAGE, "*second QMP greeting*");
  execute (client, "query-name", &result);
  RUN_UNTIL (result.done);
  g_test_assert_expected_messages ();

  g_assert_no_error (result.error);
  g_assert_cmpuint (result.calls, ==, 1);
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (result.node), "name"),
                   ==, "reply");
  g_assert_cmpstr (recorder.order->str, ==, "event:STOP;event:RESUME;");

  command_result_clear (&result);
  recorder_clear (&recorder);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_errors (Mock *mock)
{
  const char *errors[] = {
    "{\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}",
    "{\"class\": \"GenericError\", \"desc\": \"Generic trouble\"}",
    "{\"class\": \"DeviceNotActive\", \"desc\": \"d\"}",
    "{\"class\": \"DeviceNotFound\", \"desc\": \"d\"}",
    "{\"class\": \"KVMMissingCap\", \"desc\": \"d\"}",
    "{\"class\": \"FutureError\", \"desc\": \"Something new\"}",
    "{}",
    "\"x\"",
    "{\"class\": \"GenericError\"}",
  };

  mock_handshake (mock);
  for (guint i = 0; i < G_N_ELEMENTS (errors); i++)
    {
      g_autoptr(JsonObject) command = mock_expect (mock, "nope");

      mock_reply_error (mock, command, errors[i]);
    }
  mock_expect_eof (mock);
}

static void
test_errors_reply (void)
{
  const struct {
    HexzQmpError  code;
    const char   *qmp_class;
    const char   *message_part;
  } expected[] = {
    { HEXZ_QMP_ERROR_COMMAND_NOT_FOUND, "CommandNotFound", "The command nope has not been found" },
    { HEXZ_QMP_ERROR_GENERIC_ERROR, "GenericError", "Generic trouble" },
    { HEXZ_QMP_ERROR_DEVICE_NOT_ACTIVE, "DeviceNotActive", "d" },
    { HEXZ_QMP_ERROR_DEVICE_NOT_FOUND, "DeviceNotFound", "d" },
    { HEXZ_QMP_ERROR_KVM_MISSING_CAP, "KVMMissingCap", "d" },
    { HEXZ_QMP_ERROR_FAILED, "FutureError", "Something new" },
    { HEXZ_QMP_ERROR_FAILED, NULL, "malformed error: {}" },
    { HEXZ_QMP_ERROR_FAILED, NULL, "malformed error: \"x\"" },
    { HEXZ_QMP_ERROR_FAILED, "GenericError", "malformed error" },
  };
  Mock *mock = mock_new (script_errors);
  g_autoptr(HexzQmpClient) client = connect_client (mock);

  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    {
      CommandResult result = { 0 };
      g_autoptr(GError) copy = NULL;

      execute (client, "nope", &result);
      RUN_UNTIL (result.done);

      g_assert_null (result.node);
      g_assert_error (result.error, HEXZ_QMP_ERROR, (gint) expected[i].code);
      g_assert_nonnull (strstr (result.error->message, expected[i].message_part));
      g_assert_nonnull (strstr (result.error->message, "“nope”"));
      g_assert_cmpstr (hexz_qmp_error_get_class (result.error), ==, expected[i].qmp_class);

      /* The class survives a copy, as errors are copied between tasks. */
      copy = g_error_copy (result.error);
      g_assert_cmpstr (hexz_qmp_error_get_class (copy), ==, expected[i].qmp_class);

      command_result_clear (&result);
    }

  g_assert_true (hexz_qmp_client_get_connected (client));
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_error_without_id (Mock *mock)
{
  g_autoptr(JsonObject) first = NULL;
  g_autoptr(JsonObject) second = NULL;
  g_autoptr(JsonObject) third = NULL;

  mock_handshake (mock);

  /* With no command pending, an id-less error is only logged. */
  mock_send (mock, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"stray\"}}\n");

  first = mock_expect (mock, "getfd");
  second = mock_expect (mock, "query-status");
  mock_send (mock, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray ''\"}}\n");
  mock_reply (mock, second, "{\"status\": \"running\", \"running\": true}");

  third = mock_expect (mock, "query-name");
  mock_reply (mock, third, "{}");
  mock_expect_eof (mock);
}

static void
test_errors_without_id (void)
{
  Mock *mock = mock_new (script_error_without_id);
  g_autoptr(HexzQmpClient) client = NULL;
  CommandResult first = { 0 };
  CommandResult second = { 0 };
  CommandResult third = { 0 };

  g_test_expect_message ("Hexz", G_LOG_LEVEL_MESSAGE, "*without an id*while no command is pending*");
  g_test_expect_message ("Hexz", G_LOG_LEVEL_MESSAGE, "*without an id*oldest unanswered command “getfd”*");
  client = connect_client (mock);
  execute (client, "getfd", &first);
  execute (client, "query-status", &second);
  RUN_UNTIL (first.done && second.done);
  g_test_assert_expected_messages ();

  g_assert_error (first.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_GENERIC_ERROR);
  g_assert_nonnull (strstr (first.error->message, "stray"));
  g_assert_no_error (second.error);

  execute (client, "query-name", &third);
  RUN_UNTIL (third.done);
  g_assert_no_error (third.error);

  command_result_clear (&first);
  command_result_clear (&second);
  command_result_clear (&third);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_error_without_id_cancelled (Mock *mock)
{
  g_autoptr(JsonObject) cancelled = NULL;
  g_autoptr(JsonObject) next = NULL;

  mock_handshake (mock);
  cancelled = mock_expect (mock, "query-cancelled");
  mock_set_stage (mock, 1);
  next = mock_expect (mock, "query-next");

  /* The id-less error is the reply to the cancelled command, the oldest
   * one this server received, so it must not fail the next command. */
  mock_send (mock, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\n");
  mock_reply (mock, next, "{}");
  mock_expect_eof (mock);
}

static void
test_errors_without_id_cancelled (void)
{
  Mock *mock = mock_new (script_error_without_id_cancelled);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  CommandResult cancelled = { 0 };
  CommandResult next = { 0 };

  hexz_qmp_client_execute_async (client, "query-cancelled", NULL, NULL, cancellable,
                                 on_execute_done, &cancelled);
  RUN_UNTIL (mock_get_stage (mock) == 1);
  g_cancellable_cancel (cancellable);
  RUN_UNTIL (cancelled.done);
  g_assert_error (cancelled.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);

  g_test_expect_message ("Hexz", G_LOG_LEVEL_MESSAGE, "*without an id*cancelled or timed-out command*");
  execute (client, "query-next", &next);
  RUN_UNTIL (next.done);
  g_test_assert_expected_messages ();
  g_assert_no_error (next.error);

  command_result_clear (&cancelled);
  command_result_clear (&next);
  g_clear_object (&client);
  mock_free (mock);
}

/* Connection loss, cancellation and timeouts */

static void
script_close_with_pending (Mock *mock)
{
  g_autoptr(JsonObject) first = NULL;
  g_autoptr(JsonObject) second = NULL;

  mock_handshake (mock);
  first = mock_expect (mock, "query-name");
  second = mock_expect (mock, "query-uuid");
}

static void
test_disconnect_pending (void)
{
  Mock *mock = mock_new (script_close_with_pending);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult first = { 0 };
  CommandResult second = { 0 };
  CommandResult after = { 0 };
  Recorder recorder;

  recorder_init (&recorder, client);
  execute (client, "query-name", &first);
  execute (client, "query-uuid", &second);
  RUN_UNTIL (first.done && second.done);

  g_assert_error (first.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (first.error->message, "closed the connection"));
  g_assert_error (second.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED);
  g_assert_cmpuint (first.calls, ==, 1);
  g_assert_cmpuint (second.calls, ==, 1);
  g_assert_cmpuint (recorder.disconnected, ==, 1);
  g_assert_error (recorder.disconnect_error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED);
  g_assert_false (hexz_qmp_client_get_connected (client));

  /* A closed client fails new commands at once and stays quiet. */
  execute (client, "query-name", &after);
  RUN_UNTIL (after.done);
  g_assert_error (after.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED);
  hexz_qmp_client_close (client);
  g_assert_cmpuint (recorder.disconnected, ==, 1);

  command_result_clear (&first);
  command_result_clear (&second);
  command_result_clear (&after);
  recorder_clear (&recorder);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_cancel (Mock *mock)
{
  g_autoptr(JsonObject) during = NULL;
  g_autoptr(JsonObject) next = NULL;

  mock_handshake (mock);

  /* The command cancelled before the call never reaches the server. */
  during = mock_expect (mock, "query-during");
  mock_set_stage (mock, 1);
  mock_wait_go (mock);
  mock_reply (mock, during, "{\"late\": true}");

  next = mock_expect (mock, "query-next");
  mock_reply (mock, next, "{\"next\": true}");
  mock_expect_eof (mock);
}

static void
test_cancel_command (void)
{
  Mock *mock = mock_new (script_cancel);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  g_autoptr(GCancellable) before = g_cancellable_new ();
  g_autoptr(GCancellable) during = g_cancellable_new ();
  CommandResult before_result = { 0 };
  CommandResult during_result = { 0 };
  CommandResult next_result = { 0 };

  g_cancellable_cancel (before);
  hexz_qmp_client_execute_async (client, "query-before", NULL, NULL, before,
                                 on_execute_done, &before_result);
  hexz_qmp_client_execute_async (client, "query-during", NULL, NULL, during,
                                 on_execute_done, &during_result);
  RUN_UNTIL (before_result.done && mock_get_stage (mock) == 1);
  g_assert_error (before_result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);

  g_assert_false (during_result.done);
  g_cancellable_cancel (during);
  RUN_UNTIL (during_result.done);
  g_assert_error (during_result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);

  /* The late reply is dropped without a message, and the next command gets
   * its own reply. */
  mock_go (mock);
  execute (client, "query-next", &next_result);
  RUN_UNTIL (next_result.done);
  g_assert_no_error (next_result.error);
  g_assert_true (json_object_get_boolean_member (json_node_get_object (next_result.node), "next"));
  g_assert_cmpuint (during_result.calls, ==, 1);
  g_assert_cmpuint (before_result.calls, ==, 1);

  command_result_clear (&before_result);
  command_result_clear (&during_result);
  command_result_clear (&next_result);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_timeout (Mock *mock)
{
  g_autoptr(JsonObject) slow = NULL;
  g_autoptr(JsonObject) next = NULL;

  mock_handshake (mock);
  slow = mock_expect (mock, "query-slow");
  mock_wait_go (mock);
  mock_reply (mock, slow, "{}");
  next = mock_expect (mock, "query-next");
  mock_reply (mock, next, "{\"next\": true}");
  mock_expect_eof (mock);
}

static void
test_timeout_command (void)
{
  Mock *mock = mock_new (script_timeout);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult slow = { 0 };
  CommandResult next = { 0 };
  guint timeout_ms = 0;
  gint64 start;

  g_assert_cmpuint (hexz_qmp_client_get_command_timeout (client), >, 0);
  g_object_set (client, "command-timeout", 150, NULL);
  g_object_get (client, "command-timeout", &timeout_ms, NULL);
  g_assert_cmpuint (timeout_ms, ==, 150);

  start = g_get_monotonic_time ();
  execute (client, "query-slow", &slow);
  RUN_UNTIL (slow.done);
  g_assert_error (slow.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_TIMED_OUT);
  g_assert_nonnull (strstr (slow.error->message, "query-slow"));
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 150 * 1000);
  g_assert_true (hexz_qmp_client_get_connected (client));

  mock_go (mock);
  hexz_qmp_client_set_command_timeout (client, 0);
  execute (client, "query-next", &next);
  RUN_UNTIL (next.done);
  g_assert_no_error (next.error);
  g_assert_cmpuint (slow.calls, ==, 1);

  command_result_clear (&slow);
  command_result_clear (&next);
  g_clear_object (&client);
  mock_free (mock);
}

/* Events */

typedef struct
{
  gboolean    done;
  JsonObject *data;
  gint64      timestamp_us;
  GError     *error;
} EventResult;

static void
event_result_clear (EventResult *result)
{
  g_clear_pointer (&result->data, json_object_unref);
  g_clear_error (&result->error);
  result->done = FALSE;
}

static void
on_wait_event_done (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  EventResult *event_result = user_data;

  g_assert_false (event_result->done);
  event_result->done = TRUE;
  event_result->data = hexz_qmp_client_wait_event_finish (HEXZ_QMP_CLIENT (source), result,
                                                          &event_result->timestamp_us,
                                                          &event_result->error);
}

static gboolean
is_migration_completed (const char *name,
                        JsonObject *data,
                        gpointer    user_data)
{
  guint *calls = user_data;

  (*calls)++;
  return g_strcmp0 (json_object_get_string_member_with_default (data, "status", NULL),
                    "completed") == 0;
}

static void
script_events (Mock *mock)
{
  mock_handshake (mock);

  /* Stage 1: the backlog. */
  mock_wait_go (mock);
  mock_send (mock, "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 10, \"microseconds\": 1}}\n");
  mock_set_stage (mock, 1);

  /* Stage 2: a wait with a predicate skips the first MIGRATION event. */
  mock_wait_go (mock);
  mock_send (mock, "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"setup\"}, "
                   "\"timestamp\": {\"seconds\": 11, \"microseconds\": 0}}\n");
  mock_send (mock, "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 11, \"microseconds\": 5}}\n");
  mock_send (mock, "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}, "
                   "\"timestamp\": {\"seconds\": 12, \"microseconds\": 0}}\n");
  mock_set_stage (mock, 2);

  /* Stage 3: after discard_events, an older event is not taken. */
  mock_wait_go (mock);
  mock_send (mock, "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false}}\n");
  mock_set_stage (mock, 3);
  mock_wait_go (mock);
  mock_send (mock, "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true}}\n");
  mock_expect_eof (mock);
}

static void
on_stop_detail (HexzQmpClient *client,
                const char    *name,
                JsonObject    *data,
                gint64         timestamp_us,
                guint         *count)
{
  g_assert_cmpstr (name, ==, "STOP");
  (*count)++;
}

static void
test_events_wait (void)
{
  Mock *mock = mock_new (script_events);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  EventResult stop = { 0 };
  EventResult again = { 0 };
  EventResult migration = { 0 };
  EventResult timed_out = { 0 };
  EventResult cancelled = { 0 };
  EventResult shutdown = { 0 };
  guint predicate_calls = 0;
  guint stop_signals = 0;
  Recorder recorder;

  recorder_init (&recorder, client);
  g_signal_connect (client, "event::STOP", G_CALLBACK (on_stop_detail), &stop_signals);

  /* An event that arrived before the wait is taken from the backlog, once. */
  mock_go (mock);
  RUN_UNTIL (mock_get_stage (mock) == 1 && recorder.names->len == 1);
  hexz_qmp_client_wait_event_async (client, "STOP", NULL, NULL, NULL, 1000, NULL,
                                    on_wait_event_done, &stop);
  RUN_UNTIL (stop.done);
  g_assert_no_error (stop.error);
  g_assert_cmpint (stop.timestamp_us, ==, 10 * G_USEC_PER_SEC + 1);
  g_assert_cmpuint (stop_signals, ==, 1);

  hexz_qmp_client_wait_event_async (client, "STOP", NULL, NULL, NULL, 100, NULL,
                                    on_wait_event_done, &again);
  RUN_UNTIL (again.done);
  g_assert_error (again.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_TIMED_OUT);
  g_assert_null (again.data);

  /* A predicate receives every MIGRATION event until it accepts one. */
  hexz_qmp_client_wait_event_async (client, "MIGRATION", is_migration_completed,
                                    &predicate_calls, NULL, 2000, NULL,
                                    on_wait_event_done, &migration);
  hexz_qmp_client_wait_event_async (client, "NEVER", NULL, NULL, NULL, 50, NULL,
                                    on_wait_event_done, &timed_out);
  hexz_qmp_client_wait_event_async (client, "RESUME", NULL, NULL, NULL, 0, cancellable,
                                    on_wait_event_done, &cancelled);
  g_cancellable_cancel (cancellable);
  RUN_UNTIL (cancelled.done && timed_out.done);
  g_assert_error (cancelled.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_error (timed_out.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_TIMED_OUT);
  g_assert_nonnull (strstr (timed_out.error->message, "NEVER"));

  mock_go (mock);
  RUN_UNTIL (migration.done);
  g_assert_no_error (migration.error);
  g_assert_cmpstr (json_object_get_string_member (migration.data, "status"), ==, "completed");
  g_assert_cmpuint (predicate_calls, ==, 2);

  /* The RESUME event that no waiter took is in the backlog. */
  event_result_clear (&cancelled);
  hexz_qmp_client_wait_event_async (client, "RESUME", NULL, NULL, NULL, 1000, NULL,
                                    on_wait_event_done, &cancelled);
  RUN_UNTIL (cancelled.done);
  g_assert_no_error (cancelled.error);
  g_assert_cmpint (cancelled.timestamp_us, ==, 11 * G_USEC_PER_SEC + 5);

  /* Arm after discarding: the older SHUTDOWN is not taken. */
  mock_go (mock);
  RUN_UNTIL (mock_get_stage (mock) == 3 && recorder.names->len == 5);
  hexz_qmp_client_discard_events (client, "SHUTDOWN");
  hexz_qmp_client_wait_event_async (client, "SHUTDOWN", NULL, NULL, NULL, 2000, NULL,
                                    on_wait_event_done, &shutdown);
  mock_go (mock);
  RUN_UNTIL (shutdown.done);
  g_assert_no_error (shutdown.error);
  g_assert_true (json_object_get_boolean_member (shutdown.data, "guest"));

  event_result_clear (&stop);
  event_result_clear (&again);
  event_result_clear (&migration);
  event_result_clear (&timed_out);
  event_result_clear (&cancelled);
  event_result_clear (&shutdown);
  recorder_clear (&recorder);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_wait_disconnect (Mock *mock)
{
  mock_handshake (mock);
  mock_wait_go (mock);
}

static void
free_counter (gpointer data)
{
  (*(guint *) data)++;
}

static void
test_events_wait_disconnect (void)
{
  Mock *mock = mock_new (script_wait_disconnect);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  EventResult result = { 0 };
  guint freed = 0;

  hexz_qmp_client_wait_event_async (client, "MIGRATION", is_migration_completed, &freed,
                                    free_counter, 0, NULL, on_wait_event_done, &result);
  mock_go (mock);
  RUN_UNTIL (result.done);
  g_assert_error (result.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED);
  g_assert_cmpuint (freed, ==, 1);

  event_result_clear (&result);
  g_clear_object (&client);
  mock_free (mock);
}

/* File descriptor passing */

static void
script_getfd (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;
  JsonObject *arguments;
  struct stat st;
  gint fd;

  mock_handshake (mock);
  command = mock_expect (mock, "getfd");
  arguments = json_object_get_object_member (command, "arguments");
  g_assert_cmpstr (json_object_get_string_member (arguments, "fdname"), ==, "snapshot");

  g_assert_cmpuint (mock->received_fds->len, ==, 1);
  fd = g_array_index (mock->received_fds, gint, 0);
  g_assert_cmpint (fstat (fd, &st), ==, 0);
  g_assert_true (S_ISFIFO (st.st_mode));
  g_assert_cmpint (write (fd, "ping", 4), ==, 4);

  mock_reply (mock, command, "{}");
  mock_expect_eof (mock);
}

static void
test_fd_getfd (void)
{
  Mock *mock = mock_new (script_getfd);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(JsonObject) arguments = json_object_new ();
  g_autoptr(GError) error = NULL;
  CommandResult result = { 0 };
  gint pipe_fds[2];
  char buffer[8] = { 0 };

  g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error);
  g_assert_no_error (error);
  g_unix_fd_list_append (fd_list, pipe_fds[1], &error);
  g_assert_no_error (error);
  close (pipe_fds[1]);

  json_object_set_string_member (arguments, "fdname", "snapshot");
  hexz_qmp_client_execute_async (client, "getfd", arguments, fd_list, NULL, on_execute_done, &result);
  RUN_UNTIL (result.done);
  g_assert_no_error (result.error);

  /* The server wrote into the pipe through the descriptor it received. */
  g_assert_cmpint (read (pipe_fds[0], buffer, 4), ==, 4);
  g_assert_cmpstr (buffer, ==, "ping");
  close (pipe_fds[0]);

  command_result_clear (&result);
  g_clear_object (&client);
  mock_free (mock);
}

static void
script_stream (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;

  mock_handshake (mock);
  command = mock_expect (mock, "query-name");
  mock_reply (mock, command, "{\"name\": \"stream\"}");
  mock_expect_eof (mock);
}

static void
test_fd_plain_stream (void)
{
  Mock *mock = mock_new (script_stream);
  g_autoptr(HexzQmpClient) client = hexz_qmp_client_new ();
  g_autoptr(GSocketClient) socket_client = g_socket_client_new ();
  g_autoptr(GSocketAddress) address = g_unix_socket_address_new (mock->path);
  g_autoptr(GSocketConnection) connection = NULL;
  g_autoptr(GIOStream) stream = NULL;
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(GError) error = NULL;
  CommandResult connected = { 0 };
  CommandResult getfd = { 0 };
  CommandResult name = { 0 };

  /* A stream that is not a GSocketConnection, as an embedding application
   * may hand over. */
  connection = g_socket_client_connect (socket_client, G_SOCKET_CONNECTABLE (address), NULL, &error);
  g_assert_no_error (error);
  stream = g_simple_io_stream_new (g_io_stream_get_input_stream (G_IO_STREAM (connection)),
                                   g_io_stream_get_output_stream (G_IO_STREAM (connection)));

  hexz_qmp_client_connect_to_stream_async (client, stream, NULL, on_connect_done, &connected);
  RUN_UNTIL (connected.done);
  g_assert_no_error (connected.error);

  g_unix_fd_list_append (fd_list, 0, &error);
  g_assert_no_error (error);
  hexz_qmp_client_execute_async (client, "getfd", NULL, fd_list, NULL, on_execute_done, &getfd);
  RUN_UNTIL (getfd.done);
  g_assert_error (getfd.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_NOT_SUPPORTED);

  execute (client, "query-name", &name);
  RUN_UNTIL (name.done);
  g_assert_no_error (name.error);

  command_result_clear (&connected);
  command_result_clear (&getfd);
  command_result_clear (&name);
  g_clear_object (&client);
  g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
  mock_free (mock);
}

/* Disposal */

typedef struct
{
  CommandResult result;
  gboolean      client_connected;
} DisposeCheck;

static void
on_execute_check_client (GObject      *source,
                         GAsyncResult *result,
                         gpointer      user_data)
{
  DisposeCheck *check = user_data;

  check->client_connected = hexz_qmp_client_get_connected (HEXZ_QMP_CLIENT (source));
  on_execute_done (source, result, &check->result);
}

static void
script_dispose (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;

  mock_handshake (mock);
  command = mock_expect (mock, "query-name");
  mock_wait_go (mock);
  mock_send (mock, "{\"event\": \"STOP\"}\n");
  mock_reply (mock, command, "{\"name\": \"kept\"}");
  mock_expect_eof (mock);
  mock_set_stage (mock, 1);
}

static void
test_dispose_pending (void)
{
  Mock *mock = mock_new (script_dispose);
  HexzQmpClient *client = connect_client (mock);
  HexzQmpClient *weak = client;
  DisposeCheck check = { 0 };
  Recorder recorder;

  recorder_init (&recorder, client);
  g_object_add_weak_pointer (G_OBJECT (client), (gpointer *) &weak);

  /* The pending command holds the client, so dropping the caller's
   * reference neither disposes it nor loses the reply. */
  hexz_qmp_client_execute_async (client, "query-name", NULL, NULL, NULL,
                                 on_execute_check_client, &check);
  g_object_unref (client);
  g_assert_nonnull (weak);

  mock_go (mock);
  RUN_UNTIL (check.result.done);
  g_assert_no_error (check.result.error);
  g_assert_true (check.client_connected);
  g_assert_cmpuint (check.result.calls, ==, 1);

  /* Once the callback returned, the client is gone and has closed the
   * connection without emitting ::disconnected. */
  RUN_UNTIL (weak == NULL && mock_get_stage (mock) == 1);
  g_assert_cmpuint (recorder.disconnected, ==, 0);
  g_assert_cmpuint (recorder.names->len, ==, 1);

  command_result_clear (&check.result);
  recorder_clear (&recorder);
  mock_free (mock);
}

static void
script_dispose_waiting (Mock *mock)
{
  mock_handshake (mock);
  mock_expect_eof (mock);
  mock_set_stage (mock, 1);
}

static void
test_dispose_idle (void)
{
  Mock *mock = mock_new (script_dispose_waiting);
  HexzQmpClient *client = connect_client (mock);
  HexzQmpClient *weak = client;
  Recorder recorder;

  recorder_init (&recorder, client);
  g_object_add_weak_pointer (G_OBJECT (client), (gpointer *) &weak);
  g_object_unref (client);
  g_assert_null (weak);

  RUN_UNTIL (mock_get_stage (mock) == 1);
  g_assert_cmpuint (recorder.disconnected, ==, 0);

  recorder_clear (&recorder);
  mock_free (mock);
}

/* Typed helpers */

typedef struct
{
  gboolean           done;
  HexzRunState       state;
  gboolean           running;
  HexzMigrationInfo *info;
  GError            *error;
} HelperResult;

static void
on_query_status_done (GObject      *source,
                      GAsyncResult *result,
                      gpointer      user_data)
{
  HelperResult *helper = user_data;

  helper->done = TRUE;
  helper->state = hexz_qmp_client_query_status_finish (HEXZ_QMP_CLIENT (source), result,
                                                       &helper->running, &helper->error);
}

static void
on_query_migrate_done (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  HelperResult *helper = user_data;

  helper->done = TRUE;
  helper->info = hexz_qmp_client_query_migrate_finish (HEXZ_QMP_CLIENT (source), result,
                                                       &helper->error);
}

static void
on_stop_done (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  HelperResult *helper = user_data;

  helper->done = TRUE;
  hexz_qmp_client_stop_finish (HEXZ_QMP_CLIENT (source), result, &helper->error);
}

static void
on_cont_done (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  HelperResult *helper = user_data;

  helper->done = TRUE;
  hexz_qmp_client_cont_finish (HEXZ_QMP_CLIENT (source), result, &helper->error);
}

static void
helper_result_clear (HelperResult *helper)
{
  g_clear_pointer (&helper->info, hexz_migration_info_unref);
  g_clear_error (&helper->error);
  helper->done = FALSE;
}

static void
script_helpers (Mock *mock)
{
  const char *migrations[] = {
    "{}",
    "{\"status\": \"active\", \"ram\": {\"transferred\": 1000, \"total\": 4096, \"remaining\": 3096}}",
    "{\"status\": \"postcopy-recover-setup\"}",
    "{\"status\": \"something-newer\"}",
    "{\"status\": \"failed\", \"error-desc\": \"Unable to write to file\"}",
  };
  g_autoptr(JsonObject) status = NULL;
  g_autoptr(JsonObject) stop = NULL;
  g_autoptr(JsonObject) cont = NULL;
  g_autoptr(JsonObject) bad_status = NULL;

  mock_handshake (mock);
  status = mock_expect (mock, "query-status");
  mock_reply (mock, status, "{\"status\": \"paused\", \"singlestep\": false, \"running\": false}");
  bad_status = mock_expect (mock, "query-status");
  mock_reply (mock, bad_status, "{\"status\": \"brand-new\", \"running\": true}");
  for (guint i = 0; i < G_N_ELEMENTS (migrations); i++)
    {
      g_autoptr(JsonObject) command = mock_expect (mock, "query-migrate");

      mock_reply (mock, command, migrations[i]);
    }
  stop = mock_expect (mock, "stop");
  mock_reply (mock, stop, "{}");
  cont = mock_expect (mock, "cont");
  mock_reply_error (mock, cont, "{\"class\": \"GenericError\", \"desc\": \"Migration is not finalized yet\"}");
  mock_expect_eof (mock);
}

static void
test_helpers (void)
{
  const struct {
    HexzMigrationStatus  status;
    const char          *status_string;
    gboolean             running;
    guint64              transferred;
    guint64              total;
    guint64              remaining;
    const char          *error_desc;
  } expected[] = {
    { HEXZ_MIGRATION_STATUS_NONE, "none", FALSE, 0, 0, 0, NULL },
    { HEXZ_MIGRATION_STATUS_ACTIVE, "active", TRUE, 1000, 4096, 3096, NULL },
    { HEXZ_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP, "postcopy-recover-setup", TRUE, 0, 0, 0, NULL },
    { HEXZ_MIGRATION_STATUS_UNKNOWN, "something-newer", TRUE, 0, 0, 0, NULL },
    { HEXZ_MIGRATION_STATUS_FAILED, "failed", FALSE, 0, 0, 0, "Unable to write to file" },
  };
  Mock *mock = mock_new (script_helpers);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  HelperResult helper = { 0 };

  hexz_qmp_client_query_status_async (client, NULL, on_query_status_done, &helper);
  RUN_UNTIL (helper.done);
  g_assert_no_error (helper.error);
  g_assert_cmpint (helper.state, ==, HEXZ_RUN_STATE_PAUSED);
  g_assert_false (helper.running);
  helper_result_clear (&helper);

  hexz_qmp_client_query_status_async (client, NULL, on_query_status_done, &helper);
  RUN_UNTIL (helper.done);
  g_assert_no_error (helper.error);
  g_assert_cmpint (helper.state, ==, HEXZ_RUN_STATE_UNKNOWN);
  g_assert_true (helper.running);
  helper_result_clear (&helper);

  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    {
      hexz_qmp_client_query_migrate_async (client, NULL, on_query_migrate_done, &helper);
      RUN_UNTIL (helper.done);
      g_assert_no_error (helper.error);
      g_assert_cmpint (hexz_migration_info_get_status (helper.info), ==, expected[i].status);
      g_assert_cmpstr (hexz_migration_info_get_status_string (helper.info), ==,
                       expected[i].status_string);
      g_assert_cmpint (hexz_migration_status_is_running (hexz_migration_info_get_status (helper.info)),
                       ==, expected[i].running);
      g_assert_cmpuint (hexz_migration_info_get_ram_transferred (helper.info), ==, expected[i].transferred);
      g_assert_cmpuint (hexz_migration_info_get_ram_total (helper.info), ==, expected[i].total);
      g_assert_cmpuint (hexz_migration_info_get_ram_remaining (helper.info), ==, expected[i].remaining);
      g_assert_cmpstr (hexz_migration_info_get_error_desc (helper.info), ==, expected[i].error_desc);
      helper_result_clear (&helper);
    }

  hexz_qmp_client_stop_async (client, NULL, on_stop_done, &helper);
  RUN_UNTIL (helper.done);
  g_assert_no_error (helper.error);
  helper_result_clear (&helper);

  hexz_qmp_client_cont_async (client, NULL, on_cont_done, &helper);
  RUN_UNTIL (helper.done);
  g_assert_error (helper.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_GENERIC_ERROR);
  g_assert_nonnull (strstr (helper.error->message, "not finalized"));
  helper_result_clear (&helper);

  g_clear_object (&client);
  mock_free (mock);
}

/* Every status QEMU 7.2 reports, spelled as in its QAPI schema, and one it
 * does not, which counts as still running. */
static const struct {
  const char          *name;
  HexzMigrationStatus  status;
  gboolean             running;
} migration_statuses[] = {
  { "none", HEXZ_MIGRATION_STATUS_NONE, FALSE },
  { "setup", HEXZ_MIGRATION_STATUS_SETUP, TRUE },
  { "cancelling", HEXZ_MIGRATION_STATUS_CANCELLING, TRUE },
  { "cancelled", HEXZ_MIGRATION_STATUS_CANCELLED, FALSE },
  { "active", HEXZ_MIGRATION_STATUS_ACTIVE, TRUE },
  { "postcopy-active", HEXZ_MIGRATION_STATUS_POSTCOPY_ACTIVE, TRUE },
  { "postcopy-paused", HEXZ_MIGRATION_STATUS_POSTCOPY_PAUSED, TRUE },
  { "postcopy-recover-setup", HEXZ_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP, TRUE },
  { "postcopy-recover", HEXZ_MIGRATION_STATUS_POSTCOPY_RECOVER, TRUE },
  { "completed", HEXZ_MIGRATION_STATUS_COMPLETED, FALSE },
  { "failed", HEXZ_MIGRATION_STATUS_FAILED, FALSE },
  { "colo", HEXZ_MIGRATION_STATUS_COLO, TRUE },
  { "pre-switchover", HEXZ_MIGRATION_STATUS_PRE_SWITCHOVER, TRUE },
  { "device", HEXZ_MIGRATION_STATUS_DEVICE, TRUE },
  { "wait-unplug", HEXZ_MIGRATION_STATUS_WAIT_UNPLUG, TRUE },
  { "postcopy-something-new", HEXZ_MIGRATION_STATUS_UNKNOWN, TRUE },
};

static void
script_migration_statuses (Mock *mock)
{
  mock_handshake (mock);
  for (guint i = 0; i < G_N_ELEMENTS (migration_statuses); i++)
    {
      g_autoptr(JsonObject) command = mock_expect (mock, "query-migrate");
      g_autofree char *reply = g_strdup_printf ("{\"status\": \"%s\"}",
                                                migration_statuses[i].name);

      mock_reply (mock, command, reply);
    }
  mock_expect_eof (mock);
}

static void
test_helpers_migration_statuses (void)
{
  Mock *mock = mock_new (script_migration_statuses);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  GEnumClass *statuses = g_type_class_ref (HEXZ_TYPE_MIGRATION_STATUS);
  HelperResult helper = { 0 };

  /* The table covers every value of the enumeration. */
  g_assert_cmpuint (statuses->n_values, ==, G_N_ELEMENTS (migration_statuses));

  for (guint i = 0; i < G_N_ELEMENTS (migration_statuses); i++)
    {
      HexzMigrationStatus status;

      hexz_qmp_client_query_migrate_async (client, NULL, on_query_migrate_done, &helper);
      RUN_UNTIL (helper.done);
      g_assert_no_error (helper.error);

      status = hexz_migration_info_get_status (helper.info);
      g_test_message ("Migration status “%s”", migration_statuses[i].name);
      g_assert_cmpint (status, ==, migration_statuses[i].status);
      g_assert_cmpstr (hexz_migration_info_get_status_string (helper.info), ==,
                       migration_statuses[i].name);
      g_assert_cmpint (hexz_migration_status_is_running (status), ==,
                       migration_statuses[i].running);
      helper_result_clear (&helper);
    }

  g_type_class_unref (statuses);
  g_clear_object (&client);
  mock_free (mock);
}

/* Debug logging */

static void
script_debug_log (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;

  mock_handshake (mock);
  command = mock_expect (mock, "query-name");
  mock_send (mock, "{\"event\": \"STOP\"}\n");
  mock_reply (mock, command, "{\"name\": \"logged\"}");
  mock_expect_eof (mock);
}

/* With G_MESSAGES_DEBUG, every message sent and received is logged. */
static void
test_debug_log (void)
{
  if (g_test_subprocess ())
    {
      Mock *mock = NULL;
      g_autoptr(HexzQmpClient) client = NULL;
      CommandResult result = { 0 };

      /* In the C locale GLib would print the arrows as "?". */
      setlocale (LC_ALL, "C.UTF-8");
      g_setenv ("G_MESSAGES_DEBUG", "Hexz", TRUE);
      g_log_writer_default_set_use_stderr (TRUE);
      mock = mock_new (script_debug_log);
      client = connect_client (mock);
      execute (client, "query-name", &result);
      RUN_UNTIL (result.done);
      g_assert_no_error (result.error);

      command_result_clear (&result);
      g_clear_object (&client);
      mock_free (mock);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("*QMP ← {\"QMP\": {\"version\"*");
  g_test_trap_assert_stderr ("*QMP → {\"execute\":\"qmp_capabilities\"*");
  g_test_trap_assert_stderr ("*QMP ← {\"return\": {}, \"id\"*");
  g_test_trap_assert_stderr ("*QMP → {\"execute\":\"query-name\"*");
  g_test_trap_assert_stderr ("*QMP ← {\"event\": \"STOP\"}*");
  g_test_trap_assert_stderr ("*QMP ← {\"return\": {\"name\": \"logged\"}*");
}

static void
test_helpers_names (void)
{
  GEnumClass *run_states = g_type_class_ref (HEXZ_TYPE_RUN_STATE);
  GEnumClass *statuses = g_type_class_ref (HEXZ_TYPE_MIGRATION_STATUS);

  /* Every value's name parses back to the value. */
  for (guint i = 1; i < run_states->n_values; i++)
    {
      HexzRunState state = (HexzRunState) run_states->values[i].value;

      g_assert_cmpint (hexz_run_state_from_string (hexz_run_state_to_string (state)), ==, state);
    }
  for (guint i = 1; i < statuses->n_values; i++)
    {
      HexzMigrationStatus status = (HexzMigrationStatus) statuses->values[i].value;

      g_assert_cmpint (hexz_migration_status_from_string (hexz_migration_status_to_string (status)),
                       ==, status);
    }

  g_assert_cmpint (hexz_run_state_from_string ("finish-migrate"), ==, HEXZ_RUN_STATE_FINISH_MIGRATE);
  g_assert_cmpint (hexz_run_state_from_string ("nonsense"), ==, HEXZ_RUN_STATE_UNKNOWN);
  g_assert_cmpint (hexz_migration_status_from_string ("wait-unplug"), ==, HEXZ_MIGRATION_STATUS_WAIT_UNPLUG);
  g_assert_true (hexz_migration_status_is_running (HEXZ_MIGRATION_STATUS_PRE_SWITCHOVER));
  g_assert_false (hexz_migration_status_is_running (HEXZ_MIGRATION_STATUS_CANCELLED));
  g_assert_cmpstr (hexz_migration_status_to_string ((HexzMigrationStatus) 999), ==, "unknown");

  g_type_class_unref (run_states);
  g_type_class_unref (statuses);
}

static void
on_execute_json_done (GObject      *source,
                      GAsyncResult *result,
                      gpointer      user_data)
{
  CommandResult *command_result = user_data;
  g_autofree char *text = NULL;

  command_result->done = TRUE;
  text = hexz_qmp_client_execute_json_finish (HEXZ_QMP_CLIENT (source), result,
                                              &command_result->error);
  if (text != NULL)
    command_result->node = json_from_string (text, NULL);
}

static void
script_execute_json (Mock *mock)
{
  g_autoptr(JsonObject) command = NULL;
  JsonObject *arguments;

  mock_handshake (mock);
  command = mock_expect (mock, "migrate-set-parameters");
  arguments = json_object_get_object_member (command, "arguments");
  g_assert_cmpint (json_object_get_int_member (arguments, "max-bandwidth"), ==, 1073741824);
  mock_reply (mock, command, "{}");
  mock_expect_eof (mock);
}

static void
test_execute_json (void)
{
  Mock *mock = mock_new (script_execute_json);
  g_autoptr(HexzQmpClient) client = connect_client (mock);
  CommandResult invalid = { 0 };
  CommandResult result = { 0 };

  hexz_qmp_client_execute_json_async (client, "migrate-set-parameters", "[1, 2]", NULL, NULL,
                                      on_execute_json_done, &invalid);
  RUN_UNTIL (invalid.done);
  g_assert_error (invalid.error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);

  hexz_qmp_client_execute_json_async (client, "migrate-set-parameters",
                                      "{\"max-bandwidth\": 1073741824}", NULL, NULL,
                                      on_execute_json_done, &result);
  RUN_UNTIL (result.done);
  g_assert_no_error (result.error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (result.node));

  command_result_clear (&invalid);
  command_result_clear (&result);
  g_clear_object (&client);
  mock_free (mock);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/qmp-client/greeting/split", test_greeting_split);
  g_test_add_func ("/qmp-client/greeting/events-before", test_greeting_events_before);
  g_test_add_func ("/qmp-client/greeting/too-many-events", test_greeting_too_many_events);
  g_test_add_func ("/qmp-client/connect/no-greeting", test_connect_no_greeting);
  g_test_add_func ("/qmp-client/connect/missing-socket", test_connect_missing_socket);
  g_test_add_func ("/qmp-client/connect/connectable", test_connect_connectable);
  g_test_add_func ("/qmp-client/connect/cancel-before", test_connect_cancel_before);
  g_test_add_func ("/qmp-client/connect/cancel-during", test_connect_cancel_during);
  g_test_add_func ("/qmp-client/framing/reply-and-event", test_framing_reply_and_event);
  g_test_add_func ("/qmp-client/framing/byte-at-a-time", test_framing_byte_at_a_time);
  g_test_add_func ("/qmp-client/framing/large-reply", test_framing_large_reply);
  g_test_add_func ("/qmp-client/framing/random-splits", test_framing_random_splits);
  g_test_add_func ("/qmp-client/framing/oversized", test_framing_oversized);
  g_test_add_func ("/qmp-client/framing/eof-mid-line", test_framing_eof_mid_line);
  g_test_add_func ("/qmp-client/replies/event-before-reply", test_events_between_command_and_reply);
  g_test_add_func ("/qmp-client/replies/out-of-order", test_replies_out_of_order);
  g_test_add_func ("/qmp-client/replies/unknown-id", test_replies_unknown_id);
  g_test_add_func ("/qmp-client/replies/not-a-reply", test_replies_not_a_reply);
  g_test_add_func ("/qmp-client/errors/reply", test_errors_reply);
  g_test_add_func ("/qmp-client/errors/without-id", test_errors_without_id);
  g_test_add_func ("/qmp-client/errors/without-id-cancelled", test_errors_without_id_cancelled);
  g_test_add_func ("/qmp-client/disconnect/pending", test_disconnect_pending);
  g_test_add_func ("/qmp-client/cancel/command", test_cancel_command);
  g_test_add_func ("/qmp-client/timeout/command", test_timeout_command);
  g_test_add_func ("/qmp-client/events/wait", test_events_wait);
  g_test_add_func ("/qmp-client/events/wait-disconnect", test_events_wait_disconnect);
  g_test_add_func ("/qmp-client/events/bad-timestamps", test_events_bad_timestamps);
  g_test_add_func ("/qmp-client/fd/getfd", test_fd_getfd);
  g_test_add_func ("/qmp-client/fd/plain-stream", test_fd_plain_stream);
  g_test_add_func ("/qmp-client/dispose/pending", test_dispose_pending);
  g_test_add_func ("/qmp-client/dispose/idle", test_dispose_idle);
  g_test_add_func ("/qmp-client/helpers/typed", test_helpers);
  g_test_add_func ("/qmp-client/helpers/migration-statuses", test_helpers_migration_statuses);
  g_test_add_func ("/qmp-client/helpers/names", test_helpers_names);
  g_test_add_func ("/qmp-client/debug-log", test_debug_log);
  g_test_add_func ("/qmp-client/execute/json", test_execute_json);

  return g_test_run ();
}
