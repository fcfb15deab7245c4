/* test-qmp-qemu.c: HexzQmpClient against a real QEMU
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Each test starts its own QEMU without a guest (the firmware finds no boot
 * device and idles), which is enough for the monitor.
 */

#include "config.h"

#include <string.h>
#include <unistd.h>

#include <glib-unix.h>
#include <gio/gunixinputstream.h>

#include "hexz-qmp-client.h"
#include "hexz-test-qemu.h"

#define QEMU_TEST_TIMEOUT_MS 20000

static const char * const qemu_args[] = {
  "-nodefaults", "-machine", "pc", "-m", "64", "-display", "none", NULL
};

typedef struct
{
  HexzTestQemu  *qemu;
  HexzQmpClient *client;
} Fixture;

static void
fixture_set_up (Fixture       *fixture,
                gconstpointer  data)
{
  fixture->qemu = hexz_test_qemu_start (qemu_args);
  if (fixture->qemu == NULL)
    return;

  fixture->client = hexz_test_qemu_connect (fixture->qemu);
}

static void
fixture_tear_down (Fixture       *fixture,
                   gconstpointer  data)
{
  g_clear_object (&fixture->client);
  g_clear_pointer (&fixture->qemu, hexz_test_qemu_free);
}

typedef struct
{
  gboolean           done;
  JsonNode          *node;
  JsonObject        *event;
  HexzRunState       state;
  gboolean           running;
  HexzMigrationInfo *info;
  GError            *error;
} Result;

static void
result_clear (Result *result)
{
  g_clear_pointer (&result->node, json_node_unref);
  g_clear_pointer (&result->event, json_object_unref);
  g_clear_pointer (&result->info, hexz_migration_info_unref);
  g_clear_error (&result->error);
  result->done = FALSE;
}

static void
on_execute_done (GObject      *source,
                 GAsyncResult *async_result,
                 gpointer      user_data)
{
  Result *result = user_data;

  result->node = hexz_qmp_client_execute_finish (HEXZ_QMP_CLIENT (source), async_result,
                                                 &result->error);
  result->done = TRUE;
}

static void
on_event_done (GObject      *source,
               GAsyncResult *async_result,
               gpointer      user_data)
{
  Result *result = user_data;

  result->event = hexz_qmp_client_wait_event_finish (HEXZ_QMP_CLIENT (source), async_result,
                                                     NULL, &result->error);
  result->done = TRUE;
}

static void
on_status_done (GObject      *source,
                GAsyncResult *async_result,
                gpointer      user_data)
{
  Result *result = user_data;

  result->state = hexz_qmp_client_query_status_finish (HEXZ_QMP_CLIENT (source), async_result,
                                                       &result->running, &result->error);
  result->done = TRUE;
}

static void
on_migrate_done (GObject      *source,
                 GAsyncResult *async_result,
                 gpointer      user_data)
{
  Result *result = user_data;

  result->info = hexz_qmp_client_query_migrate_finish (HEXZ_QMP_CLIENT (source), async_result,
                                                       &result->error);
  result->done = TRUE;
}

static void
on_stop_done (GObject      *source,
              GAsyncResult *async_result,
              gpointer      user_data)
{
  Result *result = user_data;

  hexz_qmp_client_stop_finish (HEXZ_QMP_CLIENT (source), async_result, &result->error);
  result->done = TRUE;
}

static void
on_cont_done (GObject      *source,
              GAsyncResult *async_result,
              gpointer      user_data)
{
  Result *result = user_data;

  hexz_qmp_client_cont_finish (HEXZ_QMP_CLIENT (source), async_result, &result->error);
  result->done = TRUE;
}

static void
on_connect_done (GObject      *source,
                 GAsyncResult *async_result,
                 gpointer      user_data)
{
  Result *result = user_data;

  hexz_qmp_client_connect_finish (HEXZ_QMP_CLIENT (source), async_result, &result->error);
  result->done = TRUE;
}

static HexzRunState
query_status (HexzQmpClient *client,
              gboolean      *running)
{
  Result result = { 0 };
  HexzRunState state;

  hexz_qmp_client_query_status_async (client, NULL, on_status_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (result.error);
  state = result.state;
  *running = result.running;
  result_clear (&result);

  return state;
}

static void
test_greeting (Fixture       *fixture,
               gconstpointer  data)
{
  const char * const *capabilities;
  g_autofree char *expected = NULL;
  guint major, minor, micro;

  if (fixture->qemu == NULL)
    return;

  g_assert_true (hexz_qmp_client_get_connected (fixture->client));
  g_assert_true (hexz_qmp_client_get_qemu_version_numbers (fixture->client, &major, &minor, &micro));
  g_assert_cmpuint (major, >=, 7);
  expected = g_strdup_printf ("%u.%u.%u", major, minor, micro);
  g_assert_cmpstr (hexz_qmp_client_get_qemu_version (fixture->client), ==, expected);
  g_test_message ("QEMU %s, package “%s”", expected,
                  hexz_qmp_client_get_qemu_package (fixture->client));

  capabilities = hexz_qmp_client_get_capabilities (fixture->client);
  g_assert_nonnull (capabilities);
  g_assert_true (g_strv_contains (capabilities, "oob"));
}

static void
test_status (Fixture       *fixture,
             gconstpointer  data)
{
  Result result = { 0 };
  gboolean running = FALSE;

  if (fixture->qemu == NULL)
    return;

  g_assert_cmpint (query_status (fixture->client, &running), ==, HEXZ_RUN_STATE_RUNNING);
  g_assert_true (running);

  hexz_qmp_client_query_migrate_async (fixture->client, NULL, on_migrate_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (result.error);
  g_assert_cmpint (hexz_migration_info_get_status (result.info), ==, HEXZ_MIGRATION_STATUS_NONE);
  result_clear (&result);
}

static void
test_stop_cont (Fixture       *fixture,
                gconstpointer  data)
{
  Result command = { 0 };
  Result event = { 0 };
  gboolean running = TRUE;

  if (fixture->qemu == NULL)
    return;

  /* QEMU emits STOP before its reply to `stop`; the waiter is armed first. */
  hexz_qmp_client_discard_events (fixture->client, NULL);
  hexz_qmp_client_wait_event_async (fixture->client, "STOP", NULL, NULL, NULL,
                                    QEMU_TEST_TIMEOUT_MS, NULL, on_event_done, &event);
  hexz_qmp_client_stop_async (fixture->client, NULL, on_stop_done, &command);
  HEXZ_TEST_RUN_UNTIL (command.done && event.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (command.error);
  g_assert_no_error (event.error);
  g_assert_cmpint (query_status (fixture->client, &running), ==, HEXZ_RUN_STATE_PAUSED);
  g_assert_false (running);
  result_clear (&command);
  result_clear (&event);

  hexz_qmp_client_wait_event_async (fixture->client, "RESUME", NULL, NULL, NULL,
                                    QEMU_TEST_TIMEOUT_MS, NULL, on_event_done, &event);
  hexz_qmp_client_cont_async (fixture->client, NULL, on_cont_done, &command);
  HEXZ_TEST_RUN_UNTIL (command.done && event.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (command.error);
  g_assert_no_error (event.error);
  g_assert_cmpint (query_status (fixture->client, &running), ==, HEXZ_RUN_STATE_RUNNING);
  g_assert_true (running);
  result_clear (&command);
  result_clear (&event);
}

static void
test_command_not_found (Fixture       *fixture,
                        gconstpointer  data)
{
  Result result = { 0 };

  if (fixture->qemu == NULL)
    return;

  hexz_qmp_client_execute_async (fixture->client, "hexz-no-such-command", NULL, NULL, NULL,
                                 on_execute_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_error (result.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_COMMAND_NOT_FOUND);
  g_assert_cmpstr (hexz_qmp_error_get_class (result.error), ==, "CommandNotFound");
  g_assert_nonnull (strstr (result.error->message, "hexz-no-such-command"));
  result_clear (&result);

  /* The connection is still usable. */
  hexz_qmp_client_execute_async (fixture->client, "query-name", NULL, NULL, NULL,
                                 on_execute_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (result.error);
  result_clear (&result);
}

static void
test_getfd (Fixture       *fixture,
            gconstpointer  data)
{
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(JsonObject) arguments = json_object_new ();
  g_autoptr(GError) error = NULL;
  Result result = { 0 };
  gint pipe_fds[2];

  if (fixture->qemu == NULL)
    return;

  g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error);
  g_assert_no_error (error);
  g_unix_fd_list_append (fd_list, pipe_fds[1], &error);
  g_assert_no_error (error);
  close (pipe_fds[0]);
  close (pipe_fds[1]);

  json_object_set_string_member (arguments, "fdname", "hexz-test");
  hexz_qmp_client_execute_async (fixture->client, "getfd", arguments, fd_list, NULL,
                                 on_execute_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (result.error);
  result_clear (&result);

  /* QEMU keeps the descriptor under that name until closefd. */
  hexz_qmp_client_execute_async (fixture->client, "closefd", arguments, NULL, NULL,
                                 on_execute_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (result.error);
  result_clear (&result);

  hexz_qmp_client_execute_async (fixture->client, "closefd", arguments, NULL, NULL,
                                 on_execute_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_error (result.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_GENERIC_ERROR);
  g_assert_nonnull (strstr (result.error->message, "hexz-test"));
  result_clear (&result);

  /* getfd without a descriptor is QEMU's own error, with an id. */
  hexz_qmp_client_execute_async (fixture->client, "getfd", arguments, NULL, NULL,
                                 on_execute_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_error (result.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_GENERIC_ERROR);
  result_clear (&result);
}

/* add-fd puts a descriptor into an fd set, which query-fdsets then lists
 * with the number QEMU gave it. */
static void
test_add_fd (Fixture       *fixture,
             gconstpointer  data)
{
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(JsonObject) arguments = json_object_new ();
  g_autoptr(GError) error = NULL;
  Result result = { 0 };
  JsonObject *added;
  JsonArray *fdsets;
  gint64 fdset_id;
  gint64 fd;
  gboolean listed = FALSE;
  gint pipe_fds[2];

  if (fixture->qemu == NULL)
    return;

  g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error);
  g_assert_no_error (error);
  g_unix_fd_list_append (fd_list, pipe_fds[0], &error);
  g_assert_no_error (error);
  close (pipe_fds[0]);
  close (pipe_fds[1]);

  json_object_set_string_member (arguments, "opaque", "hexz-test");
  hexz_qmp_client_execute_async (fixture->client, "add-fd", arguments, fd_list, NULL,
                                 on_execute_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (result.error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (result.node));
  added = json_node_get_object (result.node);
  fdset_id = json_object_get_int_member (added, "fdset-id");
  fd = json_object_get_int_member (added, "fd");
  g_assert_cmpint (fd, >, 2);
  result_clear (&result);

  hexz_qmp_client_execute_async (fixture->client, "query-fdsets", NULL, NULL, NULL,
                                 on_execute_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (result.error);
  fdsets = json_node_get_array (result.node);
  for (guint i = 0; i < json_array_get_length (fdsets); i++)
    {
      JsonObject *fdset = json_array_get_object_element (fdsets, i);
      JsonArray *fds = json_object_get_array_member (fdset, "fds");

      if (json_object_get_int_member (fdset, "fdset-id") != fdset_id)
        continue;

      for (guint j = 0; j < json_array_get_length (fds); j++)
        {
          JsonObject *entry = json_array_get_object_element (fds, j);

          if (json_object_get_int_member (entry, "fd") == fd)
            {
              g_assert_cmpstr (json_object_get_string_member (entry, "opaque"), ==, "hexz-test");
              listed = TRUE;
            }
        }
    }
  g_assert_true (listed);
  result_clear (&result);

  /* Without a descriptor, add-fd is QEMU's own error. */
  hexz_qmp_client_execute_async (fixture->client, "add-fd", NULL, NULL, NULL,
                                 on_execute_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_error (result.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_GENERIC_ERROR);
  result_clear (&result);
}

static void
test_large_reply (Fixture       *fixture,
                  gconstpointer  data)
{
  Result result = { 0 };
  g_autofree char *text = NULL;

  if (fixture->qemu == NULL)
    return;

  hexz_qmp_client_execute_async (fixture->client, "query-qmp-schema", NULL, NULL, NULL,
                                 on_execute_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (result.error);
  g_assert_true (JSON_NODE_HOLDS_ARRAY (result.node));
  text = json_to_string (result.node, FALSE);
  g_test_message ("query-qmp-schema returned %zu bytes", strlen (text));
  g_assert_cmpuint (strlen (text), >, 64 * 1024);
  result_clear (&result);
}

static void
on_splice_done (GObject      *source,
                GAsyncResult *async_result,
                gpointer      user_data)
{
  Result *result = user_data;

  g_output_stream_splice_finish (G_OUTPUT_STREAM (source), async_result, &result->error);
  result->done = TRUE;
}

static gboolean
is_migration_finished (const char *name,
                       JsonObject *data,
                       gpointer    user_data)
{
  const char *status = json_object_get_string_member_with_default (data, "status", "");

  return !hexz_migration_status_is_running (hexz_migration_status_from_string (status));
}

static void
execute_json (HexzQmpClient *client,
              const char    *command,
              const char    *arguments_json)
{
  g_autoptr(JsonNode) arguments = json_from_string (arguments_json, NULL);
  Result result = { 0 };

  hexz_qmp_client_execute_async (client, command, json_node_get_object (arguments), NULL, NULL,
                                 on_execute_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (result.error);
  result_clear (&result);
}

/* Runs the sequence a live snapshot uses: the waiter for the end of the
 * migration is armed before `migrate`, and the stream leaves through a
 * pipe passed with getfd. */
static void
test_migrate_to_pipe (Fixture       *fixture,
                      gconstpointer  data)
{
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(GInputStream) pipe_input = NULL;
  g_autoptr(GOutputStream) memory = g_memory_output_stream_new_resizable ();
  g_autoptr(GError) error = NULL;
  Result command = { 0 };
  Result event = { 0 };
  Result splice = { 0 };
  HexzRunState state;
  gboolean running = TRUE;
  const guint8 *stream_data;
  gsize stream_size;
  gint pipe_fds[2];

  if (fixture->qemu == NULL)
    return;

  g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error);
  g_assert_no_error (error);
  g_unix_fd_list_append (fd_list, pipe_fds[1], &error);
  g_assert_no_error (error);
  close (pipe_fds[1]);
  pipe_input = g_unix_input_stream_new (pipe_fds[0], TRUE);
  g_output_stream_splice_async (memory, pipe_input,
                                G_OUTPUT_STREAM_SPLICE_CLOSE_SOURCE | G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET,
                                G_PRIORITY_DEFAULT, NULL, on_splice_done, &splice);

  hexz_qmp_client_execute_json_async (fixture->client, "getfd", "{\"fdname\": \"migration\"}",
                                      fd_list, NULL, NULL, NULL);
  /* The list keeps a duplicate of the write end. The pipe reaches its end
   * only once QEMU and this list have closed theirs. */
  g_clear_object (&fd_list);
  /* QEMU emits MIGRATION events only with the `events` capability. */
  execute_json (fixture->client, "migrate-set-capabilities",
                "{\"capabilities\": [{\"capability\": \"events\", \"state\": true}]}");

  hexz_qmp_client_discard_events (fixture->client, "MIGRATION");
  hexz_qmp_client_wait_event_async (fixture->client, "MIGRATION", is_migration_finished, NULL, NULL,
                                    QEMU_TEST_TIMEOUT_MS, NULL, on_event_done, &event);
  execute_json (fixture->client, "migrate", "{\"uri\": \"fd:migration\"}");

  HEXZ_TEST_RUN_UNTIL (event.done && splice.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (event.error);
  g_assert_cmpstr (json_object_get_string_member (event.event, "status"), ==, "completed");
  g_assert_no_error (splice.error);

  /* A QEMU migration stream starts with the magic "QEVM". */
  stream_data = g_memory_output_stream_get_data (G_MEMORY_OUTPUT_STREAM (memory));
  stream_size = g_memory_output_stream_get_data_size (G_MEMORY_OUTPUT_STREAM (memory));
  g_test_message ("Migration stream of %" G_GSIZE_FORMAT " bytes", stream_size);
  g_assert_cmpuint (stream_size, >, 4);
  g_assert_cmpmem (stream_data, 4, "QEVM", 4);

  hexz_qmp_client_query_migrate_async (fixture->client, NULL, on_migrate_done, &command);
  HEXZ_TEST_RUN_UNTIL (command.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (command.error);
  g_assert_cmpint (hexz_migration_info_get_status (command.info), ==, HEXZ_MIGRATION_STATUS_COMPLETED);
  g_assert_cmpuint (hexz_migration_info_get_ram_total (command.info), >=, 64 * 1024 * 1024);
  g_assert_cmpuint (hexz_migration_info_get_ram_transferred (command.info), >, 0);
  result_clear (&command);

  /* QEMU stops the VM at the end of a pre-copy migration; wait out
   * finish-migrate, where it rejects cont. */
  do
    state = query_status (fixture->client, &running);
  while (state == HEXZ_RUN_STATE_FINISH_MIGRATE);
  g_assert_cmpint (state, ==, HEXZ_RUN_STATE_POSTMIGRATE);
  g_assert_false (running);

  hexz_qmp_client_cont_async (fixture->client, NULL, on_cont_done, &command);
  HEXZ_TEST_RUN_UNTIL (command.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_no_error (command.error);
  result_clear (&command);
  g_assert_cmpint (query_status (fixture->client, &running), ==, HEXZ_RUN_STATE_RUNNING);

  result_clear (&event);
  result_clear (&splice);
}

static void
test_second_client_busy (Fixture       *fixture,
                         gconstpointer  data)
{
  g_autoptr(HexzQmpClient) second = hexz_qmp_client_new ();
  Result result = { 0 };

  if (fixture->qemu == NULL)
    return;

  /* The monitor serves the fixture's client, so the second one gets no
   * greeting. */
  hexz_qmp_client_set_connect_timeout (second, 500);
  hexz_qmp_client_connect_to_path_async (second, hexz_test_qemu_get_qmp_path (fixture->qemu),
                                         NULL, on_connect_done, &result);
  HEXZ_TEST_RUN_UNTIL (result.done, QEMU_TEST_TIMEOUT_MS);
  g_assert_error (result.error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_NO_GREETING);
  g_assert_nonnull (strstr (result.error->message, "busy"));
  result_clear (&result);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add ("/qmp-qemu/greeting", Fixture, NULL, fixture_set_up, test_greeting, fixture_tear_down);
  g_test_add ("/qmp-qemu/status", Fixture, NULL, fixture_set_up, test_status, fixture_tear_down);
  g_test_add ("/qmp-qemu/stop-cont", Fixture, NULL, fixture_set_up, test_stop_cont, fixture_tear_down);
  g_test_add ("/qmp-qemu/command-not-found", Fixture, NULL, fixture_set_up,
              test_command_not_found, fixture_tear_down);
  g_test_add ("/qmp-qemu/getfd", Fixture, NULL, fixture_set_up, test_getfd, fixture_tear_down);
  g_test_add ("/qmp-qemu/add-fd", Fixture, NULL, fixture_set_up, test_add_fd, fixture_tear_down);
  g_test_add ("/qmp-qemu/large-reply", Fixture, NULL, fixture_set_up, test_large_reply,
              fixture_tear_down);
  g_test_add ("/qmp-qemu/migrate-to-pipe", Fixture, NULL, fixture_set_up, test_migrate_to_pipe,
              fixture_tear_down);
  g_test_add ("/qmp-qemu/second-client-busy", Fixture, NULL, fixture_set_up,
              test_second_client_busy, fixture_tear_down);

  return g_test_run ();
}
