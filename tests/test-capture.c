/* test-capture.c: the live-snapshot chain against a scripted QMP server
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The mock server replaces QEMU. It replies to the commands the chain
 * sends, receives the pipe passed with getfd, writes a fake migration stream
 * into it and records every command, so that the tests can check which
 * commands reached the "machine" on each failure path.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include <glib/gstdio.h>
#include <gio/gunixfdmessage.h>

#include "hexz.h"
#include "hexz-capture-private.h"

#define DISK_SIZE (1024 * 1024)
#define RAM_SIZE (64 * 1024 * 1024)
#define ORIGINAL_BANDWIDTH 33554432
#define MODIFIED_PAGE 7

typedef struct
{
  char *dir;
  char *socket_path;
  GSocket *listener;
  GThread *thread;
  GCancellable *stop;

  GMutex lock;
  GPtrArray *commands;
  gsize bytes_received;

  /* Script */
  gboolean greet;
  char run_state[32];
  gboolean offer_background;
  gboolean reject_background;
  char *fail_command;
  const char * const *statuses;
  const char *error_desc;
  guint finish_migrate_polls;
  guint cont_rejects;
  gsize stream_size;
  gboolean hold_stream;
  gboolean converge_when_paused;
  /* Complete the migration only after the first query-migrate, keeping
   * the pipe open until a query-migrate reports the completion, so that
   * only the MIGRATION event or a later poll can end the memory phase. */
  gboolean late_completion;
  /* Reject migrate-set-parameters when it sets the original bandwidth. */
  gboolean reject_bandwidth_restore;
  /* cont succeeds, but the machine stops at once with an I/O error. */
  gboolean cont_stops;
  gboolean stream_written;
  /* Send no MIGRATION events even with the events capability on. */
  gboolean ignore_events;
  gint64 ram_size;
  char *cancel_on;
  GCancellable *cancel;
  GMainContext *context;

  /* Machine state */
  gboolean events;
  gboolean background;
  gint64 max_bandwidth;
  /* The settings in force when the migrate command arrived. */
  gint64 max_bandwidth_at_migrate;
  /* The bandwidth in force when query-migrate first reported completion. */
  gint64 max_bandwidth_at_completion;
  gboolean events_at_migrate;
  int fd;
  gboolean migrating;
  guint status_index;
  char migration_status[32];
} MockQemu;

static void
mock_send_all (GSocket    *socket,
               const char *data,
               gsize       length)
{
  while (length > 0)
    {
      gssize n = g_socket_send (socket, data, length, NULL, NULL);

      if (n <= 0)
        return;
      data += n;
      length -= n;
    }
}

static void
mock_send (GSocket    *socket,
           JsonObject *object)
{
  g_autoptr(JsonNode) node = json_node_init_object (json_node_alloc (), object);
  g_autofree char *text = json_to_string (node, FALSE);
  g_autofree char *line = g_strconcat (text, "\r\n", NULL);

  mock_send_all (socket, line, strlen (line));
}

static void
mock_send_event (GSocket    *socket,
                 const char *status)
{
  g_autoptr(JsonObject) event = json_object_new ();
  JsonObject *data = json_object_new ();
  JsonObject *timestamp = json_object_new ();

  json_object_set_string_member (data, "status", status);
  json_object_set_int_member (timestamp, "seconds", 1);
  json_object_set_int_member (timestamp, "microseconds", 0);
  json_object_set_string_member (event, "event", "MIGRATION");
  json_object_set_object_member (event, "data", data);
  json_object_set_object_member (event, "timestamp", timestamp);
  mock_send (socket, event);
}

static gboolean
mock_cancel_cb (gpointer user_data)
{
  g_cancellable_cancel (G_CANCELLABLE (user_data));
  return G_SOURCE_REMOVE;
}

static void
mock_write_stream (MockQemu *mock,
                   gboolean  close_fd)
{
  g_autofree guint8 *buffer = g_malloc (mock->stream_size);

  for (gsize i = 0; i < mock->stream_size; i++)
    buffer[i] = (guint8) (i * 7 + i / 4096);

  for (gsize done = 0; done < mock->stream_size;)
    {
      gssize n = write (mock->fd, buffer + done, mock->stream_size - done);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      done += n;
    }

  if (close_fd)
    {
      close (mock->fd);
      mock->fd = -1;
    }
}

static void
mock_close_fd (MockQemu *mock)
{
  if (mock->fd >= 0)
    {
      close (mock->fd);
      mock->fd = -1;
    }
}

/* Returns the reply's "return" value, or NULL after setting @error_desc. */
static JsonNode *
mock_handle (MockQemu    *mock,
             GSocket     *socket,
             const char  *command,
             JsonObject  *arguments,
             int          fd,
             char       **error_desc)
{
  g_autoptr(JsonBuilder) builder = json_builder_new ();

  if (mock->fail_command != NULL && g_str_equal (command, mock->fail_command))
    {
      *error_desc = g_strdup_printf ("mock failure of %s", command);
      return NULL;
    }

  json_builder_begin_object (builder);

  if (g_str_equal (command, "query-memory-size-summary"))
    {
      json_builder_set_member_name (builder, "base-memory");
      json_builder_add_int_value (builder, mock->ram_size);
    }
  else if (g_str_equal (command, "query-status"))
    {
      if (g_str_equal (mock->run_state, "finish-migrate"))
        {
          if (mock->finish_migrate_polls > 0)
            mock->finish_migrate_polls--;
          else
            g_strlcpy (mock->run_state, "postmigrate", sizeof mock->run_state);
        }
      json_builder_set_member_name (builder, "status");
      json_builder_add_string_value (builder, mock->run_state);
      json_builder_set_member_name (builder, "running");
      json_builder_add_boolean_value (builder, g_str_equal (mock->run_state, "running"));
      json_builder_set_member_name (builder, "singlestep");
      json_builder_add_boolean_value (builder, FALSE);
    }
  else if (g_str_equal (command, "query-migrate"))
    {
      if (mock->migrating)
        {
          const char *status = mock->statuses[mock->status_index];

          /* A guest that dirties memory faster than it is copied keeps
           * the migration active for as long as it runs. */
          if (mock->converge_when_paused && g_str_equal (mock->run_state, "running"))
            status = "active";
          else if (mock->statuses[mock->status_index + 1] != NULL)
            mock->status_index++;
          if (!g_str_equal (mock->migration_status, "cancelled"))
            g_strlcpy (mock->migration_status, status, sizeof mock->migration_status);
          if (g_str_equal (mock->migration_status, "completed") &&
              mock->max_bandwidth_at_completion == 0)
            mock->max_bandwidth_at_completion = mock->max_bandwidth;

          if (g_str_equal (mock->migration_status, "completed") && !mock->background)
            {
              if (g_str_equal (mock->run_state, "paused") || g_str_equal (mock->run_state, "running"))
                g_strlcpy (mock->run_state,
                           mock->finish_migrate_polls > 0 ? "finish-migrate" : "postmigrate",
                           sizeof mock->run_state);
            }
          if (!g_str_equal (mock->migration_status, "active") &&
              !g_str_equal (mock->migration_status, "setup"))
            mock->migrating = !g_str_equal (mock->migration_status, "completed") &&
                              !g_str_equal (mock->migration_status, "failed") &&
                              !g_str_equal (mock->migration_status, "cancelled");
        }

      if (mock->migration_status[0] != '\0')
        {
          json_builder_set_member_name (builder, "status");
          json_builder_add_string_value (builder, mock->migration_status);
          json_builder_set_member_name (builder, "ram");
          json_builder_begin_object (builder);
          json_builder_set_member_name (builder, "transferred");
          json_builder_add_int_value (builder, mock->hold_stream ? 0 : (gint64) mock->stream_size);
          json_builder_set_member_name (builder, "total");
          json_builder_add_int_value (builder, RAM_SIZE);
          json_builder_end_object (builder);
        }
      if (g_str_equal (mock->migration_status, "completed"))
        {
          json_builder_set_member_name (builder, "downtime");
          json_builder_add_int_value (builder, 12);
        }
      if ((g_str_equal (mock->migration_status, "failed") ||
           g_str_equal (mock->migration_status, "cancelled")) && mock->error_desc != NULL)
        {
          json_builder_set_member_name (builder, "error-desc");
          json_builder_add_string_value (builder, mock->error_desc);
        }
    }
  else if (g_str_equal (command, "query-migrate-capabilities"))
    {
      json_builder_end_object (builder);
      json_builder_reset (builder);
      json_builder_begin_array (builder);
      json_builder_begin_object (builder);
      json_builder_set_member_name (builder, "capability");
      json_builder_add_string_value (builder, "events");
      json_builder_set_member_name (builder, "state");
      json_builder_add_boolean_value (builder, mock->events);
      json_builder_end_object (builder);
      if (mock->offer_background)
        {
          json_builder_begin_object (builder);
          json_builder_set_member_name (builder, "capability");
          json_builder_add_string_value (builder, "background-snapshot");
          json_builder_set_member_name (builder, "state");
          json_builder_add_boolean_value (builder, mock->background);
          json_builder_end_object (builder);
        }
      json_builder_end_array (builder);
      return json_builder_get_root (builder);
    }
  else if (g_str_equal (command, "query-migrate-parameters"))
    {
      json_builder_set_member_name (builder, "max-bandwidth");
      json_builder_add_int_value (builder, mock->max_bandwidth);
      json_builder_set_member_name (builder, "downtime-limit");
      json_builder_add_int_value (builder, 300);
    }
  else if (g_str_equal (command, "query-name"))
    {
      json_builder_set_member_name (builder, "name");
      json_builder_add_string_value (builder, "mock-vm");
    }
  else if (g_str_equal (command, "migrate-set-capabilities"))
    {
      JsonArray *list = json_object_get_array_member (arguments, "capabilities");

      for (guint i = 0; i < json_array_get_length (list); i++)
        {
          JsonObject *item = json_array_get_object_element (list, i);
          const char *name = json_object_get_string_member (item, "capability");
          gboolean state = json_object_get_boolean_member (item, "state");

          if (g_str_equal (name, "background-snapshot") && state && mock->reject_background)
            {
              *error_desc = g_strdup ("Background-snapshot is not supported by host kernel");
              return NULL;
            }
        }
      for (guint i = 0; i < json_array_get_length (list); i++)
        {
          JsonObject *item = json_array_get_object_element (list, i);
          const char *name = json_object_get_string_member (item, "capability");
          gboolean state = json_object_get_boolean_member (item, "state");

          if (g_str_equal (name, "events"))
            mock->events = state;
          else if (g_str_equal (name, "background-snapshot"))
            mock->background = state;
        }
    }
  else if (g_str_equal (command, "migrate-set-parameters"))
    {
      if (mock->reject_bandwidth_restore &&
          json_object_get_int_member_with_default (arguments, "max-bandwidth", 0) == ORIGINAL_BANDWIDTH)
        {
          *error_desc = g_strdup ("mock failure of the bandwidth restore");
          return NULL;
        }
      if (json_object_has_member (arguments, "max-bandwidth"))
        mock->max_bandwidth = json_object_get_int_member (arguments, "max-bandwidth");
    }
  else if (g_str_equal (command, "stop"))
    {
      g_strlcpy (mock->run_state, "paused", sizeof mock->run_state);
    }
  else if (g_str_equal (command, "cont"))
    {
      if (g_str_equal (mock->run_state, "finish-migrate") || mock->cont_rejects > 0)
        {
          if (mock->cont_rejects > 0)
            mock->cont_rejects--;
          *error_desc = g_strdup ("Migration is not finalized yet");
          return NULL;
        }
      g_strlcpy (mock->run_state, mock->cont_stops ? "io-error" : "running",
                 sizeof mock->run_state);
    }
  else if (g_str_equal (command, "getfd"))
    {
      if (fd < 0)
        {
          *error_desc = g_strdup ("No file descriptor supplied via SCM_RIGHTS");
          return NULL;
        }
      mock_close_fd (mock);
      mock->fd = fd;
    }
  else if (g_str_equal (command, "closefd"))
    {
      mock_close_fd (mock);
    }
  else if (g_str_equal (command, "migrate"))
    {
      if (mock->fd < 0)
        {
          *error_desc = g_strdup ("File descriptor named 'hexz-snapshot' not found");
          return NULL;
        }
      mock->max_bandwidth_at_migrate = mock->max_bandwidth;
      mock->events_at_migrate = mock->events;
      mock->migrating = TRUE;
      mock->status_index = 0;
      g_strlcpy (mock->migration_status, "setup", sizeof mock->migration_status);
      if (mock->background)
        g_strlcpy (mock->run_state, "running", sizeof mock->run_state);
    }
  else if (g_str_equal (command, "migrate_cancel"))
    {
      if (mock->migrating)
        g_strlcpy (mock->migration_status, "cancelled", sizeof mock->migration_status);
      mock->migrating = FALSE;
      mock_close_fd (mock);
      if (g_str_equal (mock->run_state, "finish-migrate"))
        g_strlcpy (mock->run_state, "paused", sizeof mock->run_state);
    }
  else if (g_str_equal (command, "qmp_capabilities"))
    {
    }
  else
    {
      *error_desc = g_strdup_printf ("The command %s has not been found", command);
      return NULL;
    }

  json_builder_end_object (builder);
  return json_builder_get_root (builder);
}

static void
mock_serve_line (MockQemu   *mock,
                 GSocket    *socket,
                 const char *line,
                 int        *fd)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(JsonObject) reply = json_object_new ();
  g_autoptr(JsonNode) result = NULL;
  g_autofree char *error_desc = NULL;
  JsonObject *request;
  JsonObject *arguments = NULL;
  const char *command;
  gboolean start_stream = FALSE;
  gboolean send_events;

  if (!json_parser_load_from_data (parser, line, -1, NULL))
    return;

  request = json_node_get_object (json_parser_get_root (parser));
  command = json_object_get_string_member_with_default (request, "execute", "");
  if (json_object_has_member (request, "arguments"))
    arguments = json_object_get_object_member (request, "arguments");

  g_mutex_lock (&mock->lock);
  g_ptr_array_add (mock->commands, g_strdup (command));
  result = mock_handle (mock, socket, command, arguments, *fd, &error_desc);
  if (g_str_equal (command, "getfd") && result != NULL)
    *fd = -1;
  start_stream = g_str_equal (command, "migrate") && result != NULL && !mock->hold_stream &&
                 !mock->late_completion;
  send_events = mock->events && !mock->ignore_events;
  g_mutex_unlock (&mock->lock);

  if (mock->cancel_on != NULL && g_str_equal (command, mock->cancel_on))
    {
      g_main_context_invoke (mock->context, mock_cancel_cb, mock->cancel);
      /* Let the cancellation reach the chain before the reply does. */
      g_usleep (50 * 1000);
    }

  if (result != NULL)
    json_object_set_member (reply, "return", g_steal_pointer (&result));
  else
    {
      JsonObject *error = json_object_new ();

      json_object_set_string_member (error, "class", "GenericError");
      json_object_set_string_member (error, "desc", error_desc);
      json_object_set_object_member (reply, "error", error);
    }

  if (json_object_has_member (request, "id"))
    json_object_set_member (reply, "id", json_node_copy (json_object_get_member (request, "id")));

  mock_send (socket, reply);

  if (start_stream)
    {
      mock_write_stream (mock, TRUE);
      if (send_events)
        mock_send_event (socket, "completed");
    }

  if (mock->late_completion && g_str_equal (command, "query-migrate") && mock->fd >= 0)
    {
      if (!mock->stream_written)
        {
          mock_write_stream (mock, FALSE);
          mock->stream_written = TRUE;
          if (send_events)
            mock_send_event (socket, "completed");
        }
      else if (g_str_equal (mock->migration_status, "completed"))
        {
          mock_close_fd (mock);
        }
    }
}

static void
mock_serve_client (MockQemu *mock,
                   GSocket  *socket)
{
  g_autoptr(GString) pending = g_string_new (NULL);
  int fd = -1;

  if (mock->greet)
    {
      const char *greeting =
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
        "\"package\": \"mock\"}, \"capabilities\": [\"oob\"]}}\r\n";

      mock_send_all (socket, greeting, strlen (greeting));
    }

  for (;;)
    {
      char buffer[4096];
      GInputVector vector = { buffer, sizeof buffer };
      GSocketControlMessage **messages = NULL;
      int n_messages = 0;
      gssize n;
      char *newline;

      n = g_socket_receive_message (socket, NULL, &vector, 1, &messages, &n_messages,
                                    NULL, mock->stop, NULL);
      for (int i = 0; i < n_messages; i++)
        {
          if (G_IS_UNIX_FD_MESSAGE (messages[i]))
            {
              GUnixFDList *list = g_unix_fd_message_get_fd_list (G_UNIX_FD_MESSAGE (messages[i]));
              int *fds = g_unix_fd_list_steal_fds (list, NULL);

              if (fd >= 0)
                close (fd);
              fd = fds[0];
              g_free (fds);
            }
          g_object_unref (messages[i]);
        }
      g_free (messages);

      if (n <= 0)
        break;

      g_mutex_lock (&mock->lock);
      mock->bytes_received += n;
      g_mutex_unlock (&mock->lock);

      g_string_append_len (pending, buffer, n);
      while ((newline = strchr (pending->str, '\n')) != NULL)
        {
          g_autofree char *line = g_strndup (pending->str, newline - pending->str);

          g_string_erase (pending, 0, newline - pending->str + 1);
          g_strstrip (line);
          if (line[0] != '\0')
            mock_serve_line (mock, socket, line, &fd);
        }
    }

  if (fd >= 0)
    close (fd);
}

static gpointer
mock_thread (gpointer user_data)
{
  MockQemu *mock = user_data;

  for (;;)
    {
      g_autoptr(GSocket) client = g_socket_accept (mock->listener, mock->stop, NULL);

      if (client == NULL)
        break;

      g_socket_set_blocking (client, TRUE);
      mock_serve_client (mock, client);
    }

  return NULL;
}

static const char * const completed_statuses[] = { "active", "completed", NULL };

static MockQemu *
mock_new (void)
{
  MockQemu *mock = g_new0 (MockQemu, 1);
  g_autoptr(GSocketAddress) address = NULL;
  g_autoptr(GError) error = NULL;

  mock->dir = g_dir_make_tmp ("hexz-capture-mock-XXXXXX", &error);
  g_assert_no_error (error);
  mock->socket_path = g_build_filename (mock->dir, "qmp.sock", NULL);
  mock->listener = g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, 0, &error);
  g_assert_no_error (error);
  address = g_unix_socket_address_new (mock->socket_path);
  g_socket_bind (mock->listener, address, FALSE, &error);
  g_assert_no_error (error);
  g_socket_listen (mock->listener, &error);
  g_assert_no_error (error);
  g_socket_set_blocking (mock->listener, TRUE);

  g_mutex_init (&mock->lock);
  mock->commands = g_ptr_array_new_with_free_func (g_free);
  mock->stop = g_cancellable_new ();
  mock->greet = TRUE;
  g_strlcpy (mock->run_state, "running", sizeof mock->run_state);
  mock->statuses = completed_statuses;
  mock->stream_size = 300 * 1024;
  mock->max_bandwidth = ORIGINAL_BANDWIDTH;
  mock->ram_size = RAM_SIZE;
  mock->fd = -1;
  mock->context = g_main_context_ref_thread_default ();

  return mock;
}

static void
mock_start (MockQemu *mock)
{
  mock->thread = g_thread_new ("mock-qemu", mock_thread, mock);
}

static void
mock_free (MockQemu *mock)
{
  g_autofree char *marker_path = NULL;

  g_cancellable_cancel (mock->stop);
  if (mock->thread != NULL)
    g_thread_join (mock->thread);
  mock_close_fd (mock);
  g_object_unref (mock->listener);
  g_unlink (mock->socket_path);
  /* A capture that lost its connection keeps its marker beside the socket
   * on purpose, for the next capture to find. */
  marker_path = g_strconcat (mock->socket_path, ".hexz-capture", NULL);
  g_unlink (marker_path);
  g_rmdir (mock->dir);
  g_free (mock->socket_path);
  g_free (mock->dir);
  g_ptr_array_unref (mock->commands);
  g_object_unref (mock->stop);
  g_clear_object (&mock->cancel);
  g_free (mock->fail_command);
  g_free (mock->cancel_on);
  g_main_context_unref (mock->context);
  g_mutex_clear (&mock->lock);
  g_free (mock);
}

static guint
mock_count (MockQemu   *mock,
            const char *command)
{
  guint count = 0;

  g_mutex_lock (&mock->lock);
  for (guint i = 0; i < mock->commands->len; i++)
    if (g_str_equal (mock->commands->pdata[i], command))
      count++;
  g_mutex_unlock (&mock->lock);

  return count;
}

/* Counts @command among the commands sent after the first @after. */
static guint
mock_count_after (MockQemu   *mock,
                  const char *after,
                  const char *command)
{
  gboolean seen = FALSE;
  guint count = 0;

  g_mutex_lock (&mock->lock);
  for (guint i = 0; i < mock->commands->len; i++)
    {
      if (seen && g_str_equal (mock->commands->pdata[i], command))
        count++;
      if (g_str_equal (mock->commands->pdata[i], after))
        seen = TRUE;
    }
  g_mutex_unlock (&mock->lock);

  return count;
}

/* Fixture: a base snapshot, an overlay with one modified page, an output
 * path, and the mock. */

typedef struct
{
  char *dir;
  char *base_path;
  char *overlay_path;
  char *output_path;
  MockQemu *mock;
  HexzCapture *capture;
  GCancellable *cancellable;
  GAsyncResult *result;
  /* SHA-256 of the overlay and of its .meta file after the set-up. */
  char *overlay_checksum;
  char *meta_checksum;
} Fixture;

static char *
file_checksum (const char *path)
{
  g_autofree char *contents = NULL;
  gsize length = 0;
  g_autoptr(GError) error = NULL;

  g_file_get_contents (path, &contents, &length, &error);
  g_assert_no_error (error);

  return g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guchar *) contents, length);
}

static guint8
base_byte (guint64 offset)
{
  return (guint8) (offset / 512 + offset % 251);
}

static void
fixture_set_up (Fixture       *fixture,
                gconstpointer  data)
{
  g_autoptr(HexzSnapshotWriter) writer = NULL;
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(GFile) output = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *disk = g_malloc (DISK_SIZE);
  guint8 page[HEXZ_OVERLAY_PAGE_SIZE];

  fixture->dir = g_dir_make_tmp ("hexz-capture-XXXXXX", &error);
  g_assert_no_error (error);
  fixture->base_path = g_build_filename (fixture->dir, "base.hexz", NULL);
  fixture->overlay_path = g_build_filename (fixture->dir, "disk.overlay", NULL);
  fixture->output_path = g_build_filename (fixture->dir, "out.hexz", NULL);

  for (gsize i = 0; i < DISK_SIZE; i++)
    disk[i] = base_byte (i);

  writer = hexz_snapshot_writer_new_for_path (fixture->base_path);
  hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, DISK_SIZE, &error);
  g_assert_no_error (error);
  hexz_snapshot_writer_write (writer, disk, DISK_SIZE, NULL, &error);
  g_assert_no_error (error);
  hexz_snapshot_writer_end_stream (writer, NULL, &error);
  g_assert_no_error (error);
  hexz_snapshot_writer_close (writer, NULL, &error);
  g_assert_no_error (error);

  overlay = hexz_overlay_create_path (fixture->overlay_path, DISK_SIZE,
                                      HEXZ_OVERLAY_CREATE_NONE, &error);
  g_assert_no_error (error);
  memset (page, 0xa5, sizeof page);
  hexz_overlay_write (overlay, MODIFIED_PAGE * HEXZ_OVERLAY_PAGE_SIZE, page, sizeof page, &error);
  g_assert_no_error (error);
  hexz_overlay_sync (overlay, &error);
  g_assert_no_error (error);
  g_clear_object (&overlay);
  fixture->overlay_checksum = file_checksum (fixture->overlay_path);
  {
    g_autofree char *meta_path = hexz_overlay_get_meta_path_for (fixture->overlay_path);

    fixture->meta_checksum = file_checksum (meta_path);
  }

  fixture->mock = mock_new ();
  fixture->cancellable = g_cancellable_new ();

  output = g_file_new_for_path (fixture->output_path);
  fixture->capture = hexz_capture_new ();
  hexz_capture_set_socket_path (fixture->capture, fixture->mock->socket_path);
  hexz_capture_set_overlay (fixture->capture, fixture->overlay_path);
  hexz_capture_set_base_path (fixture->capture, fixture->base_path);
  hexz_capture_set_output (fixture->capture, output);
  hexz_capture_set_block_size (fixture->capture, 16 * 1024);
  hexz_capture_set_check_free_space (fixture->capture, FALSE);
  hexz_capture_set_poll_interval (fixture->capture, 20);
  hexz_capture_set_cleanup_timeout (fixture->capture, 3000);
}

static void
fixture_tear_down (Fixture       *fixture,
                   gconstpointer  data)
{
  g_autoptr(GDir) dir = NULL;
  const char *name;

  g_clear_object (&fixture->capture);
  g_clear_object (&fixture->result);
  g_clear_object (&fixture->cancellable);
  mock_free (fixture->mock);

  dir = g_dir_open (fixture->dir, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (fixture->dir, name, NULL);

      g_unlink (path);
    }
  g_rmdir (fixture->dir);

  g_free (fixture->base_path);
  g_free (fixture->overlay_path);
  g_free (fixture->output_path);
  g_free (fixture->overlay_checksum);
  g_free (fixture->meta_checksum);
  g_free (fixture->dir);
}

static void
on_run_done (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Fixture *fixture = user_data;

  fixture->result = g_object_ref (result);
  g_main_context_wakeup (NULL);
}

static gboolean
fixture_run (Fixture  *fixture,
             GError  **error)
{
  mock_start (fixture->mock);
  hexz_capture_run_async (fixture->capture, fixture->cancellable, on_run_done, fixture);

  while (fixture->result == NULL)
    g_main_context_iteration (NULL, TRUE);

  return hexz_capture_run_finish (fixture->capture, fixture->result, error);
}

/* Checks what every failure must leave behind. */
static void
assert_cleaned_up (Fixture    *fixture,
                   const char *expected_run_state)
{
  g_autofree guint8 *meta = NULL;
  gsize meta_length = 0;
  g_autofree char *meta_path = hexz_overlay_get_meta_path_for (fixture->overlay_path);

  g_assert_false (g_file_test (fixture->output_path, G_FILE_TEST_EXISTS));
  g_assert_cmpstr (fixture->mock->run_state, ==, expected_run_state);
  g_assert_cmpint (fixture->mock->max_bandwidth, ==, ORIGINAL_BANDWIDTH);
  g_assert_false (fixture->mock->events);
  g_assert_false (fixture->mock->background);
  g_assert_cmpint (hexz_capture_get_phase (fixture->capture), ==, HEXZ_CAPTURE_PHASE_FAILED);

  /* The overlay and its .meta file are only read. */
  g_assert_true (g_file_get_contents (meta_path, (char **) &meta, &meta_length, NULL));
  g_assert_cmpuint (meta_length, ==, 8);
  {
    g_autofree char *overlay_checksum = file_checksum (fixture->overlay_path);
    g_autofree char *meta_checksum = file_checksum (meta_path);

    g_assert_cmpstr (overlay_checksum, ==, fixture->overlay_checksum);
    g_assert_cmpstr (meta_checksum, ==, fixture->meta_checksum);
  }

  /* Nothing but the inputs is left in the folder. */
  {
    g_autoptr(GDir) dir = g_dir_open (fixture->dir, 0, NULL);
    guint count = 0;

    while (g_dir_read_name (dir) != NULL)
      count++;
    g_assert_cmpuint (count, ==, 3);
  }
}

static void
on_phase_notify (GObject    *object,
                 GParamSpec *pspec,
                 gpointer    user_data)
{
  GString *phases = user_data;

  g_string_append_printf (phases, "%s ",
                          hexz_capture_phase_to_string (hexz_capture_get_phase (HEXZ_CAPTURE (object))));
}

static void
on_progress_check (HexzCapture      *capture,
                   HexzCapturePhase  phase,
                   guint64           done,
                   guint64           expected,
                   gpointer          user_data)
{
  guint64 *memory_done = user_data;

  /* Progress belongs to the phase the capture is in. */
  g_assert_cmpint (phase, ==, hexz_capture_get_phase (capture));
  if (phase == HEXZ_CAPTURE_PHASE_MEMORY)
    {
      g_assert_cmpuint (done, >=, *memory_done);
      *memory_done = done;
    }
}

static void
test_paused_success (Fixture       *fixture,
                     gconstpointer  data)
{
  g_autoptr(GString) phases = g_string_new (NULL);
  guint64 memory_done = 0;
  g_autoptr(GError) error = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GBytes) memory = NULL;
  guint8 page[HEXZ_OVERLAY_PAGE_SIZE];
  guint8 byte;
  JsonObject *metadata;
  const guint8 *bytes;
  gsize length;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  hexz_capture_set_message (fixture->capture, "mock snapshot");
  g_signal_connect (fixture->capture, "notify::phase", G_CALLBACK (on_phase_notify), phases);
  g_signal_connect (fixture->capture, "progress", G_CALLBACK (on_progress_check), &memory_done);

  g_assert_true (fixture_run (fixture, &error));
  g_assert_no_error (error);

  /* Each phase is notified once, in the order of the steps. */
  g_assert_cmpstr (phases->str, ==,
                   "preflight prepare pause disk memory resume merge finalize done ");
  g_assert_cmpuint (memory_done, >, 0);

  g_assert_cmpuint (mock_count (fixture->mock, "stop"), ==, 1);
  g_assert_cmpuint (mock_count (fixture->mock, "getfd"), ==, 1);
  g_assert_cmpuint (mock_count (fixture->mock, "migrate"), ==, 1);
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 1);
  g_assert_cmpuint (mock_count (fixture->mock, "migrate_cancel"), ==, 0);
  g_assert_cmpstr (fixture->mock->run_state, ==, "running");
  /* The dump ran with events on and the bandwidth cap raised, and both
   * settings are back as they were. */
  g_assert_true (fixture->mock->events_at_migrate);
  g_assert_cmpint (fixture->mock->max_bandwidth_at_migrate, >, ORIGINAL_BANDWIDTH);
  g_assert_cmpint (fixture->mock->max_bandwidth, ==, ORIGINAL_BANDWIDTH);
  g_assert_false (fixture->mock->events);

  g_assert_cmpint (hexz_capture_get_chosen_mode (fixture->capture), ==, HEXZ_CAPTURE_MODE_PAUSED);
  g_assert_cmpint (hexz_capture_get_phase (fixture->capture), ==, HEXZ_CAPTURE_PHASE_DONE);
  g_assert_cmpint (hexz_capture_get_pause_time (fixture->capture), >, 0);
  g_assert_cmpint (hexz_capture_get_downtime (fixture->capture), ==, 12);

  snapshot = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (hexz_snapshot_get_disk_size (snapshot), ==, DISK_SIZE);
  g_assert_cmpuint (hexz_snapshot_get_memory_size (snapshot), ==, fixture->mock->stream_size);

  memory = hexz_snapshot_read_bytes (snapshot, HEXZ_STREAM_MEMORY, 0,
                                     fixture->mock->stream_size, NULL, &error);
  g_assert_no_error (error);
  bytes = g_bytes_get_data (memory, &length);
  g_assert_cmpuint (length, ==, fixture->mock->stream_size);
  for (gsize i = 0; i < length; i++)
    if (bytes[i] != (guint8) (i * 7 + i / 4096))
      g_assert_cmpuint (i, ==, G_MAXSIZE);

  hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, MODIFIED_PAGE * HEXZ_OVERLAY_PAGE_SIZE,
                      page, sizeof page, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (page[0], ==, 0xa5);
  g_assert_cmpuint (page[sizeof page - 1], ==, 0xa5);
  hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, 12345, &byte, 1, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (byte, ==, base_byte (12345));

  metadata = hexz_snapshot_get_metadata (snapshot);
  g_assert_nonnull (metadata);
  g_assert_cmpstr (json_object_get_string_member (metadata, "capture-mode"), ==, "paused");
  g_assert_cmpstr (json_object_get_string_member (metadata, "vm-name"), ==, "mock-vm");
  g_assert_cmpint (json_object_get_int_member (metadata, "ram-size"), ==, RAM_SIZE);
  g_assert_cmpint (json_object_get_int_member (metadata, "qemu-downtime-ms"), ==, 12);
  g_assert_cmpstr (json_object_get_string_member (metadata, "qemu-version"), ==, "7.2.0");
  g_assert_cmpint (json_object_get_int_member (metadata, "pause-time-us"), ==,
                   hexz_capture_get_pause_time (fixture->capture));
  g_assert_cmpstr (json_object_get_string_member (metadata, "message"), ==, "mock snapshot");
  {
    g_autoptr(HexzSnapshot) base = hexz_snapshot_open_path (fixture->base_path, NULL, &error);
    const char *created = json_object_get_string_member (metadata, "created");
    g_autoptr(GDateTime) time = NULL;

    g_assert_no_error (error);
    g_assert_cmpstr (json_object_get_string_member (metadata, "base-id"), ==,
                     hexz_snapshot_get_id (base));
    g_assert_nonnull (created);
    time = g_date_time_new_from_iso8601 (created, NULL);
    g_assert_nonnull (time);
  }
  /* The mock implements neither query-cpus-fast nor qom-get, so the
   * machine's configuration is left out and the capture goes on. */
  g_assert_false (json_object_has_member (metadata, "cpus"));
  g_assert_false (json_object_has_member (metadata, "machine-type"));
  g_assert_false (json_object_has_member (metadata, "kernel"));
}

static void
test_migrate_rejected (Fixture       *fixture,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  fixture->mock->fail_command = g_strdup ("migrate");

  g_assert_false (fixture_run (fixture, &error));
  g_assert_nonnull (error);
  g_test_message ("error: %s", error->message);
  g_assert_nonnull (strstr (error->message, "mock failure of migrate"));
  g_assert_cmpuint (mock_count (fixture->mock, "stop"), ==, 1);
  /* The descriptor QEMU kept for the rejected migrate is closed. */
  g_assert_cmpuint (mock_count (fixture->mock, "closefd"), ==, 1);
  g_assert_cmpint (fixture->mock->fd, ==, -1);
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 1);
  assert_cleaned_up (fixture, "running");
}

static const char * const failed_statuses[] = { "setup", "active", "failed", NULL };

static void
test_migration_failed (Fixture       *fixture,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  fixture->mock->statuses = failed_statuses;
  fixture->mock->error_desc = "Unable to write to socket: Broken pipe";
  fixture->mock->hold_stream = TRUE;

  g_assert_false (fixture_run (fixture, &error));
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_MIGRATION_FAILED);
  g_test_message ("error: %s", error->message);
  g_assert_nonnull (strstr (error->message, "Unable to write to socket: Broken pipe"));
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 1);
  assert_cleaned_up (fixture, "running");
}

static const char * const cancelled_statuses[] = { "setup", "active", "cancelled", NULL };

/* Someone else cancelled the migration: the run fails with QEMU's reason. */
static void
test_migration_cancelled (Fixture       *fixture,
                          gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  fixture->mock->statuses = cancelled_statuses;
  fixture->mock->error_desc = "Migration cancelled by another client";
  fixture->mock->hold_stream = TRUE;

  g_assert_false (fixture_run (fixture, &error));
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_MIGRATION_FAILED);
  g_test_message ("error: %s", error->message);
  g_assert_nonnull (strstr (error->message, "cancelled"));
  g_assert_nonnull (strstr (error->message, "Migration cancelled by another client"));
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 1);
  assert_cleaned_up (fixture, "running");
}

/* A command rejected by QEMU at each step from the settings to the
 * migration: the run fails with QEMU's reply and undoes what it did. */
static void
test_command_rejected (Fixture       *fixture,
                       gconstpointer  data)
{
  const char *command = data;
  g_autoptr(GError) error = NULL;
  g_autofree char *expected = g_strdup_printf ("mock failure of %s", command);

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  fixture->mock->fail_command = g_strdup (command);

  g_assert_false (fixture_run (fixture, &error));
  g_assert_nonnull (error);
  g_test_message ("error: %s", error->message);
  g_assert_nonnull (strstr (error->message, expected));
  g_assert_cmpuint (mock_count (fixture->mock, "migrate"), ==, 0);
  assert_cleaned_up (fixture, "running");
}

static gboolean
cancel_cb (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

/* The machine cannot be resumed after the memory dump, because QEMU
 * rejects cont (@data FALSE) or because the machine stops again at once
 * (@data TRUE). The run fails once, without retrying cont in a loop, and
 * the error says the machine may still be paused and how to resume it. */
static void
test_resume_failed (Fixture       *fixture,
                    gconstpointer  data)
{
  gboolean stops = GPOINTER_TO_INT (data);
  g_autoptr(GError) error = NULL;
  g_autofree char *resume = g_strdup_printf ("hexz-snap resume --socket %s",
                                             fixture->mock->socket_path);

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  if (stops)
    fixture->mock->cont_stops = TRUE;
  else
    fixture->mock->fail_command = g_strdup ("cont");
  /* A run that waits for ever is cancelled, and then fails below. */
  g_timeout_add_seconds (60, cancel_cb, fixture->cancellable);

  g_assert_false (fixture_run (fixture, &error));
  g_test_message ("error: %s", error->message);
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_RESUME_FAILED);
  if (stops)
    {
      g_assert_nonnull (strstr (error->message, "is io-error instead of running"));
      g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 1);
    }
  else
    {
      g_assert_nonnull (strstr (error->message, "mock failure of cont. "));
      /* The success path and the cleanup each try once. */
      g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 2);
    }
  g_assert_nonnull (strstr (error->message, "may still be paused"));
  g_assert_nonnull (strstr (error->message, resume));

  g_assert_false (g_file_test (fixture->output_path, G_FILE_TEST_EXISTS));
  g_assert_cmpint (fixture->mock->max_bandwidth, ==, ORIGINAL_BANDWIDTH);
  g_assert_false (fixture->mock->events);
  g_assert_cmpint (hexz_capture_get_phase (fixture->capture), ==, HEXZ_CAPTURE_PHASE_FAILED);
}

/* A setting that cannot be restored after the snapshot was taken is
 * logged, and the marker stays for the next run to restore it. */
static void
test_restore_setting_failed (Fixture       *fixture,
                             gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *marker_path = g_strconcat (fixture->mock->socket_path, ".hexz-capture", NULL);

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  fixture->mock->reject_bandwidth_restore = TRUE;

  g_test_expect_message ("Hexz", G_LOG_LEVEL_MESSAGE,
                         "*QEMU kept a changed setting: Restoring the migration bandwidth failed*");
  g_assert_true (fixture_run (fixture, &error));
  g_test_assert_expected_messages ();
  g_assert_no_error (error);

  g_assert_true (g_file_test (fixture->output_path, G_FILE_TEST_IS_REGULAR));
  g_assert_cmpstr (fixture->mock->run_state, ==, "running");
  g_assert_false (fixture->mock->events);
  g_assert_cmpint (fixture->mock->max_bandwidth, !=, ORIGINAL_BANDWIDTH);
  g_assert_true (g_file_test (marker_path, G_FILE_TEST_IS_REGULAR));
}

/* The MIGRATION event alone ends the memory phase: the backstop poll is
 * set to ten minutes and the pipe stays open until a query-migrate
 * reports the completion, so nothing else sends query-migrate. */
static void
test_completion_event (Fixture       *fixture,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  hexz_capture_set_poll_interval (fixture->capture, 10 * 60 * 1000);
  fixture->mock->late_completion = TRUE;
  /* Without the event the run would wait for the poll: cancel it then. */
  g_timeout_add_seconds (60, cancel_cb, fixture->cancellable);

  g_assert_true (fixture_run (fixture, &error));
  g_assert_no_error (error);
  g_assert_true (fixture->mock->events_at_migrate);
  g_assert_cmpuint (mock_count_after (fixture->mock, "migrate", "query-migrate"), ==, 2);
  g_assert_cmpstr (fixture->mock->run_state, ==, "running");
  g_assert_true (g_file_test (fixture->output_path, G_FILE_TEST_IS_REGULAR));
}

/* Without the MIGRATION event, the query-migrate poll completes the run. */
static void
test_completion_poll (Fixture       *fixture,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  fixture->mock->late_completion = TRUE;
  fixture->mock->ignore_events = TRUE;

  g_assert_true (fixture_run (fixture, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (mock_count_after (fixture->mock, "migrate", "query-migrate"), >=, 2);
  g_assert_cmpstr (fixture->mock->run_state, ==, "running");
  g_assert_true (g_file_test (fixture->output_path, G_FILE_TEST_IS_REGULAR));
}

/* The preflight's free-space check counts the RAM size QEMU reports, and
 * a failure leaves the machine untouched: only queries reach it. */
static void
test_no_space_preflight (Fixture       *fixture,
                         gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  hexz_capture_set_check_free_space (fixture->capture, TRUE);
  fixture->mock->ram_size = G_GINT64_CONSTANT (1) << 60;

  g_assert_false (fixture_run (fixture, &error));
  g_test_message ("error: %s", error->message);
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_NO_SPACE);
  g_assert_nonnull (strstr (error->message, fixture->dir));
  g_assert_cmpuint (mock_count (fixture->mock, "query-memory-size-summary"), ==, 1);
  g_assert_cmpuint (mock_count (fixture->mock, "migrate-set-capabilities"), ==, 0);
  g_assert_cmpuint (mock_count (fixture->mock, "migrate-set-parameters"), ==, 0);
  g_assert_cmpuint (mock_count (fixture->mock, "stop"), ==, 0);
  assert_cleaned_up (fixture, "running");
}

/* An output folder that does not exist is rejected before connecting. */
static void
test_output_folder_missing (Fixture       *fixture,
                            gconstpointer  data)
{
  g_autofree char *folder = g_build_filename (fixture->dir, "missing", NULL);
  g_autofree char *path = g_build_filename (folder, "out.hexz", NULL);
  g_autoptr(GFile) output = g_file_new_for_path (path);
  g_autoptr(GError) error = NULL;

  hexz_capture_set_output (fixture->capture, output);

  g_assert_false (fixture_run (fixture, &error));
  g_test_message ("error: %s", error->message);
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT);
  g_assert_nonnull (strstr (error->message, folder));
  g_assert_cmpuint (fixture->mock->bytes_received, ==, 0);
  g_assert_false (g_file_test (folder, G_FILE_TEST_EXISTS));
}

/* With allow-larger-overlay, a grown overlay sets the disk's size. */
static void
test_overlay_larger_allowed (Fixture       *fixture,
                             gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  guint8 page[HEXZ_OVERLAY_PAGE_SIZE];

  g_assert_cmpint (truncate (fixture->overlay_path, DISK_SIZE * 2), ==, 0);
  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  hexz_capture_set_allow_larger_overlay (fixture->capture, TRUE);

  g_assert_true (fixture_run (fixture, &error));
  g_assert_no_error (error);

  snapshot = hexz_snapshot_open_path (fixture->output_path, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (hexz_snapshot_get_disk_size (snapshot), ==, DISK_SIZE * 2);
  hexz_snapshot_read (snapshot, HEXZ_STREAM_DISK, MODIFIED_PAGE * HEXZ_OVERLAY_PAGE_SIZE,
                      page, sizeof page, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (page[0], ==, 0xa5);
}

static const char * const long_statuses[] = {
  "setup", "wait-unplug", "active", "device", "some-future-status", "active", "completed", NULL
};

static void
test_status_sequence (Fixture       *fixture,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  fixture->mock->statuses = long_statuses;

  g_assert_true (fixture_run (fixture, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (mock_count (fixture->mock, "query-migrate"), >=, 7);
  g_assert_cmpstr (fixture->mock->run_state, ==, "running");
  g_assert_true (g_file_test (fixture->output_path, G_FILE_TEST_IS_REGULAR));
}

static void
test_finish_migrate (Fixture       *fixture,
                     gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  fixture->mock->finish_migrate_polls = 3;
  fixture->mock->cont_rejects = 2;

  g_assert_true (fixture_run (fixture, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 3);
  g_assert_cmpstr (fixture->mock->run_state, ==, "running");
}

static void
test_no_greeting (Fixture       *fixture,
                  gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  fixture->mock->greet = FALSE;
  hexz_capture_set_connect_timeout (fixture->capture, 500);

  g_assert_false (fixture_run (fixture, &error));
  g_assert_nonnull (error);
  g_test_message ("error: %s", error->message);
  g_assert_error (error, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_NO_GREETING);
  g_assert_cmpuint (fixture->mock->bytes_received, ==, 0);
  g_assert_cmpuint (fixture->mock->commands->len, ==, 0);
  g_assert_false (g_file_test (fixture->output_path, G_FILE_TEST_EXISTS));
}

static void
test_cancel (Fixture       *fixture,
             gconstpointer  data)
{
  const char *command = data;
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  if (command == NULL)
    g_cancellable_cancel (fixture->cancellable);
  else
    {
      fixture->mock->cancel_on = g_strdup (command);
      fixture->mock->cancel = g_object_ref (fixture->cancellable);
    }
  if (g_strcmp0 (command, "migrate") == 0)
    fixture->mock->hold_stream = TRUE;

  g_assert_false (fixture_run (fixture, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpstr (error->message, ==, "The snapshot was cancelled");
  g_test_message ("error: %s", error->message);

  if (command == NULL)
    g_assert_cmpuint (fixture->mock->bytes_received, ==, 0);
  if (g_strcmp0 (command, "migrate") == 0)
    g_assert_cmpuint (mock_count (fixture->mock, "migrate_cancel"), ==, 1);
  if (fixture->mock->commands->len > 0 && mock_count (fixture->mock, "stop") > 0)
    g_assert_cmpuint (mock_count (fixture->mock, "cont"), >=, 1);
  assert_cleaned_up (fixture, "running");
}

static void
test_user_paused (Fixture       *fixture,
                  gconstpointer  data)
{
  gboolean fail = GPOINTER_TO_INT (data);
  g_autoptr(GError) error = NULL;

  g_strlcpy (fixture->mock->run_state, "paused", sizeof fixture->mock->run_state);
  fixture->mock->offer_background = TRUE;
  if (fail)
    fixture->mock->fail_command = g_strdup ("migrate");

  if (fail)
    {
      g_assert_false (fixture_run (fixture, &error));
      g_assert_nonnull (error);
      assert_cleaned_up (fixture, "paused");
    }
  else
    {
      g_assert_true (fixture_run (fixture, &error));
      g_assert_no_error (error);
      /* Auto must not pick background for a paused machine. */
      g_assert_cmpint (hexz_capture_get_chosen_mode (fixture->capture), ==,
                       HEXZ_CAPTURE_MODE_PAUSED);
      g_assert_cmpstr (fixture->mock->run_state, ==, "postmigrate");
      /* The capture paused nothing: the machine was paused already. */
      g_assert_cmpint (hexz_capture_get_pause_time (fixture->capture), ==, 0);
    }

  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 0);
}

/* A machine left stopped by an earlier migration is refused with a
 * message that says how to go on, before anything is changed. */
static void
test_postmigrate (Fixture       *fixture,
                  gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  g_strlcpy (fixture->mock->run_state, "postmigrate", sizeof fixture->mock->run_state);

  g_assert_false (fixture_run (fixture, &error));
  g_test_message ("%s", error->message);
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT);
  g_assert_nonnull (strstr (error->message, "hexz-snap resume --socket"));
  g_assert_cmpuint (mock_count (fixture->mock, "migrate"), ==, 0);
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 0);
  g_assert_cmpstr (fixture->mock->run_state, ==, "postmigrate");
  g_assert_false (g_file_test (fixture->output_path, G_FILE_TEST_EXISTS));
}

/* A machine in the middle of a migration is rejected before anything
 * is changed, with a message that names what to wait for. */
static void
test_migrating_machine (Fixture       *fixture,
                        gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  g_strlcpy (fixture->mock->run_state, "inmigrate", sizeof fixture->mock->run_state);

  g_assert_false (fixture_run (fixture, &error));
  g_test_message ("%s", error->message);
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT);
  g_assert_nonnull (strstr (error->message, "inmigrate"));
  g_assert_nonnull (strstr (error->message, "-incoming defer"));
  g_assert_cmpuint (mock_count (fixture->mock, "migrate-set-capabilities"), ==, 0);
  g_assert_cmpuint (mock_count (fixture->mock, "stop"), ==, 0);
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 0);
  g_assert_cmpstr (fixture->mock->run_state, ==, "inmigrate");
  g_assert_false (g_file_test (fixture->output_path, G_FILE_TEST_EXISTS));
}

static void
test_background (Fixture       *fixture,
                 gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  fixture->mock->offer_background = TRUE;

  g_assert_true (fixture_run (fixture, &error));
  g_assert_no_error (error);
  g_assert_cmpint (hexz_capture_get_chosen_mode (fixture->capture), ==,
                   HEXZ_CAPTURE_MODE_BACKGROUND);
  g_assert_null (hexz_capture_get_fallback_reason (fixture->capture));
  g_assert_cmpstr (fixture->mock->run_state, ==, "running");
  g_assert_false (fixture->mock->background);
  g_assert_cmpuint (mock_count (fixture->mock, "stop"), ==, 1);
}

/* Creates a copy folder as a killed run leaves it, with the copy's two
 * files, and its change time AGE seconds ago. */
static char *
make_copy_folder (Fixture    *fixture,
                  const char *name,
                  int         age)
{
  char *folder = g_build_filename (fixture->dir, name, NULL);
  g_autofree char *overlay = g_build_filename (folder, "disk.overlay", NULL);
  g_autofree char *meta = g_build_filename (folder, "disk.meta", NULL);
  g_autoptr(GError) error = NULL;
  struct utimbuf times;

  g_assert_cmpint (g_mkdir (folder, 0700), ==, 0);
  g_file_set_contents (overlay, "", 0, &error);
  g_assert_no_error (error);
  g_file_set_contents (meta, "", 0, &error);
  g_assert_no_error (error);
  times.actime = times.modtime = time (NULL) - age;
  g_assert_cmpint (g_utime (folder, &times), ==, 0);

  return folder;
}

static void
remove_copy_folder (const char *folder)
{
  g_autofree char *overlay = g_build_filename (folder, "disk.overlay", NULL);
  g_autofree char *meta = g_build_filename (folder, "disk.meta", NULL);

  g_unlink (overlay);
  g_unlink (meta);
  g_rmdir (folder);
}

/* A run removes the copy folders that killed runs left in the output's
 * folder, but not one that is recent or locked by a live run. */
static void
test_stale_copy_folder (Fixture       *fixture,
                        gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *stale = make_copy_folder (fixture, ".hexz-capture-Stale1", 60);
  g_autofree char *recent = make_copy_folder (fixture, ".hexz-capture-Fresh1", 0);
  g_autofree char *locked = make_copy_folder (fixture, ".hexz-capture-Locked", 60);
  int fd;

  fd = open (locked, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (flock (fd, LOCK_EX | LOCK_NB), ==, 0);

  g_assert_true (fixture_run (fixture, &error));
  g_assert_no_error (error);

  g_assert_false (g_file_test (stale, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (recent, G_FILE_TEST_IS_DIR));
  g_assert_true (g_file_test (locked, G_FILE_TEST_IS_DIR));

  close (fd);
  remove_copy_folder (recent);
  remove_copy_folder (locked);
}

/* A migration that a killed run left under way: the next run waits for
 * it when the killed run's marker is there, and fails at once without it. */
static const char * const leftover_statuses[] = { "active", "active", "completed", NULL };

static void
test_leftover_migration (Fixture       *fixture,
                         gconstpointer  data)
{
  gboolean with_marker = GPOINTER_TO_INT (data);
  g_autoptr(GError) error = NULL;
  g_autofree char *marker_path = g_strconcat (fixture->mock->socket_path, ".hexz-capture", NULL);
  g_autofree char *marker = NULL;
  pid_t pid;

  if (with_marker)
    {
      /* The pid of a process that has ended and was reaped. */
      pid = fork ();
      if (pid == 0)
        _exit (0);
      g_assert_cmpint (waitpid (pid, NULL, 0), ==, pid);

      marker = g_strdup_printf ("[capture]\npid=%d\nwas-running=true\nevents=false\n"
                                "max-bandwidth=%d\n", (int) pid, ORIGINAL_BANDWIDTH);
      g_file_set_contents (marker_path, marker, -1, &error);
      g_assert_no_error (error);
    }

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  fixture->mock->statuses = leftover_statuses;
  fixture->mock->migrating = TRUE;
  g_strlcpy (fixture->mock->migration_status, "active", sizeof fixture->mock->migration_status);

  if (with_marker)
    {
      g_assert_true (fixture_run (fixture, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (mock_count (fixture->mock, "query-migrate"), >=, 4);
      g_assert_cmpstr (fixture->mock->run_state, ==, "running");
      g_assert_false (g_file_test (marker_path, G_FILE_TEST_EXISTS));
    }
  else
    {
      g_assert_false (fixture_run (fixture, &error));
      g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT);
      g_assert_cmpuint (mock_count (fixture->mock, "stop"), ==, 0);
    }
}

/* Recovery after a killed run (hexz_capture_recover_async()). */

typedef enum {
  RECOVER_KILLED_RUNNING,
  RECOVER_KILLED_PAUSED,
  RECOVER_KILLED_MIGRATING,
  RECOVER_LIVE_MARKER,
  RECOVER_NO_MARKER,
  RECOVER_NO_MARKER_RUNNING,
  RECOVER_INMIGRATE,
  RECOVER_RESTORE_FAILS,
} RecoverCase;

static void
on_recover_done (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  Fixture *fixture = user_data;

  fixture->result = g_object_ref (result);
}

/* The commands the mock received, separated by spaces. */
static char *
mock_command_list (MockQemu *mock)
{
  GString *list = g_string_new (NULL);

  g_mutex_lock (&mock->lock);
  for (guint i = 0; i < mock->commands->len; i++)
    g_string_append_printf (list, "%s%s", i > 0 ? " " : "", (char *) mock->commands->pdata[i]);
  g_mutex_unlock (&mock->lock);

  return g_string_free (list, FALSE);
}

static pid_t
dead_pid (void)
{
  pid_t pid = fork ();

  /* The pid of a process that has ended and was reaped. */
  if (pid == 0)
    _exit (0);
  g_assert_cmpint (waitpid (pid, NULL, 0), ==, pid);
  return pid;
}

static void
test_recover (Fixture       *fixture,
              gconstpointer  data)
{
  RecoverCase recover_case = GPOINTER_TO_INT (data);
  MockQemu *mock = fixture->mock;
  g_autofree char *marker_path = g_strconcat (mock->socket_path, ".hexz-capture", NULL);
  g_autofree char *commands = NULL;
  g_autoptr(GError) error = NULL;
  HexzCaptureRecovery recovery = HEXZ_CAPTURE_RECOVERY_NONE;
  gboolean marker_was_running = recover_case != RECOVER_KILLED_PAUSED;
  gboolean ok;
  pid_t pid;

  /* What a run killed in the middle of a background snapshot leaves. */
  mock->offer_background = TRUE;
  mock->events = TRUE;
  mock->background = TRUE;
  mock->max_bandwidth = G_GINT64_CONSTANT (1) << 40;
  g_strlcpy (mock->run_state, "paused", sizeof mock->run_state);

  switch (recover_case)
    {
    case RECOVER_NO_MARKER:
    case RECOVER_NO_MARKER_RUNNING:
      pid = 0;
      break;
    case RECOVER_LIVE_MARKER:
      pid = getppid ();
      break;
    default:
      pid = dead_pid ();
      break;
    }

  if (pid != 0)
    {
      g_autofree char *marker = NULL;

      marker = g_strdup_printf ("[capture]\npid=%d\nwas-running=%s\nevents=false\n"
                                "background-snapshot=false\nmax-bandwidth=%d\n",
                                (int) pid, marker_was_running ? "true" : "false",
                                ORIGINAL_BANDWIDTH);
      g_file_set_contents (marker_path, marker, -1, &error);
      g_assert_no_error (error);
    }

  if (recover_case == RECOVER_NO_MARKER_RUNNING)
    g_strlcpy (mock->run_state, "running", sizeof mock->run_state);
  else if (recover_case == RECOVER_INMIGRATE)
    g_strlcpy (mock->run_state, "inmigrate", sizeof mock->run_state);
  else if (recover_case == RECOVER_RESTORE_FAILS)
    mock->reject_bandwidth_restore = TRUE;
  else if (recover_case == RECOVER_KILLED_MIGRATING)
    {
      mock->statuses = leftover_statuses;
      mock->migrating = TRUE;
      g_strlcpy (mock->migration_status, "active", sizeof mock->migration_status);
    }

  mock_start (mock);
  hexz_capture_recover_async (fixture->capture, NULL, on_recover_done, fixture);
  while (fixture->result == NULL)
    g_main_context_iteration (NULL, TRUE);
  ok = hexz_capture_recover_finish (fixture->capture, fixture->result, &recovery, &error);

  commands = mock_command_list (mock);
  g_test_message ("Commands: %s", commands);

  switch (recover_case)
    {
    case RECOVER_KILLED_RUNNING:
      g_assert_no_error (error);
      g_assert_true (ok);
      g_assert_cmpstr (commands, ==,
                       "qmp_capabilities query-status query-migrate "
                       "query-migrate-capabilities query-status cont query-status "
                       "migrate-set-capabilities migrate-set-parameters");
      g_assert_cmpint (recovery, ==, HEXZ_CAPTURE_RECOVERY_FOUND_MARKER |
                                     HEXZ_CAPTURE_RECOVERY_SETTINGS_RESTORED |
                                     HEXZ_CAPTURE_RECOVERY_RESUMED);
      g_assert_cmpstr (mock->run_state, ==, "running");
      break;

    case RECOVER_KILLED_PAUSED:
      g_assert_no_error (error);
      g_assert_true (ok);
      g_assert_cmpstr (commands, ==,
                       "qmp_capabilities query-status query-migrate "
                       "query-migrate-capabilities "
                       "migrate-set-capabilities migrate-set-parameters");
      g_assert_cmpint (recovery, ==, HEXZ_CAPTURE_RECOVERY_FOUND_MARKER |
                                     HEXZ_CAPTURE_RECOVERY_SETTINGS_RESTORED);
      g_assert_cmpstr (mock->run_state, ==, "paused");
      break;

    case RECOVER_KILLED_MIGRATING:
      g_assert_no_error (error);
      g_assert_true (ok);
      g_assert_cmpuint (mock_count (mock, "query-migrate"), >=, 3);
      g_assert_cmpuint (mock_count (mock, "cont"), ==, 1);
      g_assert_cmpuint (mock_count_after (mock, "cont", "migrate-set-capabilities"), ==, 1);
      g_assert_cmpint (recovery, ==, HEXZ_CAPTURE_RECOVERY_FOUND_MARKER |
                                     HEXZ_CAPTURE_RECOVERY_WAITED_FOR_MIGRATION |
                                     HEXZ_CAPTURE_RECOVERY_SETTINGS_RESTORED |
                                     HEXZ_CAPTURE_RECOVERY_RESUMED);
      g_assert_cmpstr (mock->run_state, ==, "running");
      break;

    case RECOVER_LIVE_MARKER:
    case RECOVER_NO_MARKER:
      /* No settings of a dead run to restore: only the pause is undone. */
      g_assert_no_error (error);
      g_assert_true (ok);
      g_assert_cmpstr (commands, ==, "qmp_capabilities query-status query-status cont query-status");
      g_assert_cmpint (recovery, ==, HEXZ_CAPTURE_RECOVERY_RESUMED);
      g_assert_cmpstr (mock->run_state, ==, "running");
      g_assert_true (mock->events);
      break;

    case RECOVER_NO_MARKER_RUNNING:
      g_assert_no_error (error);
      g_assert_true (ok);
      g_assert_cmpstr (commands, ==, "qmp_capabilities query-status query-status");
      g_assert_cmpint (recovery, ==, HEXZ_CAPTURE_RECOVERY_NONE);
      break;

    case RECOVER_INMIGRATE:
      g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT);
      g_assert_false (ok);
      g_assert_cmpstr (commands, ==, "qmp_capabilities query-status");
      break;

    case RECOVER_RESTORE_FAILS:
      g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_FAILED);
      g_assert_nonnull (strstr (error->message, "mock failure of the bandwidth restore"));
      g_assert_false (ok);
      g_assert_cmpuint (mock_count (mock, "migrate-set-parameters"), ==, 1);
      g_assert_cmpstr (mock->run_state, ==, "running");
      break;

    default:
      g_assert_not_reached ();
    }

  switch (recover_case)
    {
    case RECOVER_KILLED_RUNNING:
    case RECOVER_KILLED_PAUSED:
    case RECOVER_KILLED_MIGRATING:
      /* The saved values, not the ones the killed run had set. */
      g_assert_false (mock->events);
      g_assert_false (mock->background);
      g_assert_cmpint (mock->max_bandwidth, ==, ORIGINAL_BANDWIDTH);
      g_assert_false (g_file_test (marker_path, G_FILE_TEST_EXISTS));
      break;
    case RECOVER_LIVE_MARKER:
    case RECOVER_INMIGRATE:
    case RECOVER_RESTORE_FAILS:
      /* Left for a later recovery. */
      g_assert_true (g_file_test (marker_path, G_FILE_TEST_IS_REGULAR));
      break;
    default:
      g_assert_false (g_file_test (marker_path, G_FILE_TEST_EXISTS));
      break;
    }
}

static void
test_auto_fallback (Fixture       *fixture,
                    gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  fixture->mock->offer_background = TRUE;
  fixture->mock->reject_background = TRUE;

  g_test_expect_message ("Hexz", G_LOG_LEVEL_MESSAGE, "*background-snapshot*");
  g_assert_true (fixture_run (fixture, &error));
  g_test_assert_expected_messages ();
  g_assert_no_error (error);
  g_assert_cmpint (hexz_capture_get_chosen_mode (fixture->capture), ==, HEXZ_CAPTURE_MODE_PAUSED);
  g_assert_nonnull (hexz_capture_get_fallback_reason (fixture->capture));
  g_assert_nonnull (strstr (hexz_capture_get_fallback_reason (fixture->capture),
                            "Background-snapshot is not supported by host kernel"));
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 1);
  /* The rejected request and the paused-mode one came before the stop, and
   * only the final restore came after it. */
  g_assert_cmpuint (mock_count (fixture->mock, "migrate-set-capabilities"), ==, 3);
  g_assert_cmpuint (mock_count_after (fixture->mock, "stop", "migrate-set-capabilities"), ==, 1);
  g_assert_false (fixture->mock->background);
}

/* An explicit background mode is rejected before anything changes, for a
 * machine the user paused (@data TRUE: QEMU would resume it) and for a
 * QEMU without the capability (@data FALSE). */
static void
test_background_rejected (Fixture       *fixture,
                          gconstpointer  data)
{
  gboolean user_paused = GPOINTER_TO_INT (data);
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_BACKGROUND);
  fixture->mock->offer_background = user_paused;
  if (user_paused)
    g_strlcpy (fixture->mock->run_state, "paused", sizeof fixture->mock->run_state);

  g_assert_false (fixture_run (fixture, &error));
  g_test_message ("error: %s", error->message);
  if (user_paused)
    g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT);
  else
    g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_UNSUPPORTED);
  g_assert_cmpuint (mock_count (fixture->mock, "migrate-set-capabilities"), ==, 0);
  g_assert_cmpuint (mock_count (fixture->mock, "stop"), ==, 0);
  g_assert_cmpuint (mock_count (fixture->mock, "migrate"), ==, 0);
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 0);
  assert_cleaned_up (fixture, user_paused ? "paused" : "running");
}

static void
test_live (Fixture       *fixture,
           gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_LIVE);

  g_assert_true (fixture_run (fixture, &error));
  g_assert_no_error (error);
  g_assert_false (hexz_capture_get_paused_to_converge (fixture->capture));
  g_assert_cmpuint (mock_count (fixture->mock, "stop"), ==, 0);
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 1);
  g_assert_cmpstr (fixture->mock->run_state, ==, "running");
}

/* NOTE: only this mock covers the pause after live-timeout. The bundled
 * test guest, even rewriting its dirty region, lets QEMU 7.2 converge
 * within a few passes with a 1 ms downtime limit. Under TCG it dirties
 * pages more slowly than QEMU copies them, and nested KVM runs it slower
 * still. A real test needs a guest that outruns the copy, such as one
 * under plain KVM writing a large region in a tight loop. */
static void
test_live_timeout (Fixture       *fixture,
                   gconstpointer  data)
{
  guint64 bandwidth = GPOINTER_TO_UINT (data);
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_LIVE);
  hexz_capture_set_live_timeout (fixture->capture, 1);
  hexz_capture_set_live_bandwidth (fixture->capture, bandwidth);
  fixture->mock->converge_when_paused = TRUE;

  g_assert_true (fixture_run (fixture, &error));
  g_assert_no_error (error);
  g_assert_true (hexz_capture_get_paused_to_converge (fixture->capture));
  g_assert_cmpuint (mock_count (fixture->mock, "stop"), ==, 1);
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 1);
  g_assert_cmpstr (fixture->mock->run_state, ==, "running");
  g_assert_true (g_file_test (fixture->output_path, G_FILE_TEST_IS_REGULAR));

  /* The limit applies while the guest runs and is lifted once it is paused. */
  if (bandwidth != 0)
    {
      g_assert_cmpint (fixture->mock->max_bandwidth_at_migrate, ==, bandwidth);
      g_assert_cmpuint (mock_count_after (fixture->mock, "migrate", "migrate-set-parameters"), ==, 2);
      g_assert_cmpuint (mock_count_after (fixture->mock, "stop", "migrate-set-parameters"), ==, 1);
    }
  else
    {
      g_assert_cmpint (fixture->mock->max_bandwidth_at_migrate, ==, G_GINT64_CONSTANT (1) << 40);
      g_assert_cmpuint (mock_count_after (fixture->mock, "stop", "migrate-set-parameters"), ==, 1);
    }
  g_assert_cmpint (fixture->mock->max_bandwidth_at_completion, ==, G_GINT64_CONSTANT (1) << 40);
  g_assert_cmpint (fixture->mock->max_bandwidth, ==, ORIGINAL_BANDWIDTH);
}

static const char * const stalled_statuses[] = { "setup", "active", NULL };

static void
test_stall (Fixture       *fixture,
            gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  hexz_capture_set_stall_timeout (fixture->capture, 1);
  fixture->mock->statuses = stalled_statuses;
  fixture->mock->hold_stream = TRUE;

  g_assert_false (fixture_run (fixture, &error));
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_STALLED);
  g_assert_cmpuint (mock_count (fixture->mock, "migrate_cancel"), ==, 1);
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 1);
  assert_cleaned_up (fixture, "running");
}

static void
test_existing_output_kept (Fixture       *fixture,
                           gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;

  g_file_set_contents (fixture->output_path, "old snapshot", -1, &error);
  g_assert_no_error (error);
  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  fixture->mock->fail_command = g_strdup ("migrate");

  g_assert_false (fixture_run (fixture, &error));
  g_assert_nonnull (error);
  g_assert_true (g_file_get_contents (fixture->output_path, &contents, NULL, NULL));
  g_assert_cmpstr (contents, ==, "old snapshot");
  g_assert_cmpuint (mock_count (fixture->mock, "cont"), ==, 1);
}

static void
test_overlay_too_large (Fixture       *fixture,
                        gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  g_assert_cmpint (truncate (fixture->overlay_path, DISK_SIZE * 2), ==, 0);

  g_assert_false (fixture_run (fixture, &error));
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT);
  g_assert_cmpuint (fixture->mock->bytes_received, ==, 0);
}

/* The output may replace neither the overlay (@data 0), nor its .meta
 * (1), nor the base (2): each is refused before any command reaches the
 * machine, and the file stays as it was. */
static void
test_output_is_input (Fixture       *fixture,
                      gconstpointer  data)
{
  g_autofree char *meta_path = hexz_overlay_get_meta_path_for (fixture->overlay_path);
  const char *inputs[] = { fixture->overlay_path, meta_path, fixture->base_path };
  const char *input = inputs[GPOINTER_TO_UINT (data)];
  g_autoptr(GFile) output = g_file_new_for_path (input);
  g_autoptr(GError) error = NULL;
  g_autofree char *before = NULL;
  g_autofree char *after = NULL;
  gsize before_length, after_length;

  g_assert_true (g_file_get_contents (input, &before, &before_length, NULL));
  hexz_capture_set_output (fixture->capture, output);

  g_assert_false (fixture_run (fixture, &error));
  g_test_message ("%s", error->message);
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT);
  g_assert_nonnull (strstr (error->message, input));
  g_assert_true (g_file_get_contents (input, &after, &after_length, NULL));
  g_assert_cmpmem (before, before_length, after, after_length);
  g_assert_cmpuint (mock_count (fixture->mock, "stop"), ==, 0);
  g_assert_cmpuint (fixture->mock->bytes_received, ==, 0);
}

/* An overlay that records another base is refused before any command
 * reaches the machine. */
static void
test_wrong_base (Fixture       *fixture,
                 gconstpointer  data)
{
  const char *other_id = "00000000-0000-4000-8000-000000000000";
  g_autoptr(GError) error = NULL;

  if (setxattr (fixture->overlay_path, "user.hexz.base-id", other_id, strlen (other_id), 0) != 0)
    {
      g_test_skip ("The file system keeps no user extended attributes");
      return;
    }

  g_assert_false (fixture_run (fixture, &error));
  g_test_message ("%s", error->message);
  g_assert_error (error, HEXZ_OVERLAY_ERROR, HEXZ_OVERLAY_ERROR_WRONG_BASE);
  g_assert_nonnull (strstr (error->message, other_id));
  g_assert_cmpuint (mock_count (fixture->mock, "stop"), ==, 0);
  g_assert_false (g_file_test (fixture->output_path, G_FILE_TEST_EXISTS));
}

static void
test_connection_lost (Fixture       *fixture,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  hexz_capture_set_mode (fixture->capture, HEXZ_CAPTURE_MODE_PAUSED);
  fixture->mock->hold_stream = TRUE;
  fixture->mock->statuses = stalled_statuses;
  fixture->mock->cancel_on = g_strdup ("migrate");
  fixture->mock->cancel = g_object_ref (fixture->mock->stop);

  g_assert_false (fixture_run (fixture, &error));
  g_assert_nonnull (error);
  g_test_message ("error: %s", error->message);
  g_assert_error (error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_CONNECTION_LOST);
  g_assert_nonnull (strstr (error->message, ". The virtual machine may still be paused."));
  {
    g_autofree char *resume = g_strdup_printf ("hexz-snap resume --socket %s",
                                               fixture->mock->socket_path);

    g_assert_nonnull (strstr (error->message, resume));
  }
  g_assert_false (g_file_test (fixture->output_path, G_FILE_TEST_EXISTS));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, data, func) \
  g_test_add (path, Fixture, data, fixture_set_up, func, fixture_tear_down)

  ADD ("/capture/paused", NULL, test_paused_success);
  ADD ("/capture/live", NULL, test_live);
  ADD ("/capture/live/timeout", GUINT_TO_POINTER (0), test_live_timeout);
  ADD ("/capture/live/timeout/bandwidth", GUINT_TO_POINTER (1024 * 1024), test_live_timeout);
  ADD ("/capture/wrong-base", NULL, test_wrong_base);
  ADD ("/capture/postmigrate", NULL, test_postmigrate);
  ADD ("/capture/inmigrate", NULL, test_migrating_machine);
  ADD ("/capture/output-is-input/overlay", GUINT_TO_POINTER (0), test_output_is_input);
  ADD ("/capture/output-is-input/meta", GUINT_TO_POINTER (1), test_output_is_input);
  ADD ("/capture/output-is-input/base", GUINT_TO_POINTER (2), test_output_is_input);
  ADD ("/capture/background", NULL, test_background);
  ADD ("/capture/auto-fallback", NULL, test_auto_fallback);
  ADD ("/capture/background-rejected/user-paused", GINT_TO_POINTER (TRUE), test_background_rejected);
  ADD ("/capture/background-rejected/unsupported", GINT_TO_POINTER (FALSE), test_background_rejected);
  ADD ("/capture/status-sequence", NULL, test_status_sequence);
  ADD ("/capture/stale-copy-folder", NULL, test_stale_copy_folder);
  ADD ("/capture/leftover-migration/killed-run", GINT_TO_POINTER (TRUE), test_leftover_migration);
  ADD ("/capture/leftover-migration/no-marker", GINT_TO_POINTER (FALSE), test_leftover_migration);
  ADD ("/capture/recover/killed-running", GINT_TO_POINTER (RECOVER_KILLED_RUNNING), test_recover);
  ADD ("/capture/recover/killed-paused", GINT_TO_POINTER (RECOVER_KILLED_PAUSED), test_recover);
  ADD ("/capture/recover/killed-migrating", GINT_TO_POINTER (RECOVER_KILLED_MIGRATING), test_recover);
  ADD ("/capture/recover/live-marker", GINT_TO_POINTER (RECOVER_LIVE_MARKER), test_recover);
  ADD ("/capture/recover/no-marker", GINT_TO_POINTER (RECOVER_NO_MARKER), test_recover);
  ADD ("/capture/recover/no-marker-running", GINT_TO_POINTER (RECOVER_NO_MARKER_RUNNING), test_recover);
  ADD ("/capture/recover/inmigrate", GINT_TO_POINTER (RECOVER_INMIGRATE), test_recover);
  ADD ("/capture/recover/restore-fails", GINT_TO_POINTER (RECOVER_RESTORE_FAILS), test_recover);
  ADD ("/capture/finish-migrate", NULL, test_finish_migrate);
  ADD ("/capture/user-paused/success", GINT_TO_POINTER (FALSE), test_user_paused);
  ADD ("/capture/user-paused/failure", GINT_TO_POINTER (TRUE), test_user_paused);
  ADD ("/capture/failure/migrate-rejected", NULL, test_migrate_rejected);
  ADD ("/capture/failure/migration-failed", NULL, test_migration_failed);
  ADD ("/capture/failure/migration-cancelled", NULL, test_migration_cancelled);
  ADD ("/capture/failure/rejected/capabilities", "migrate-set-capabilities", test_command_rejected);
  ADD ("/capture/failure/rejected/parameters", "migrate-set-parameters", test_command_rejected);
  ADD ("/capture/failure/rejected/stop", "stop", test_command_rejected);
  ADD ("/capture/failure/rejected/getfd", "getfd", test_command_rejected);
  ADD ("/capture/failure/resume/cont-rejected", GINT_TO_POINTER (FALSE), test_resume_failed);
  ADD ("/capture/failure/resume/stops-again", GINT_TO_POINTER (TRUE), test_resume_failed);
  ADD ("/capture/failure/restore-setting", NULL, test_restore_setting_failed);
  ADD ("/capture/failure/no-space-preflight", NULL, test_no_space_preflight);
  ADD ("/capture/failure/output-folder-missing", NULL, test_output_folder_missing);
  ADD ("/capture/overlay-larger-allowed", NULL, test_overlay_larger_allowed);
  ADD ("/capture/completion/event", NULL, test_completion_event);
  ADD ("/capture/completion/poll", NULL, test_completion_poll);
  ADD ("/capture/failure/stall", NULL, test_stall);
  ADD ("/capture/failure/existing-output", NULL, test_existing_output_kept);
  ADD ("/capture/failure/overlay-too-large", NULL, test_overlay_too_large);
  ADD ("/capture/failure/no-greeting", NULL, test_no_greeting);
  ADD ("/capture/failure/connection-lost", NULL, test_connection_lost);
  ADD ("/capture/cancel/before", NULL, test_cancel);
  ADD ("/capture/cancel/prepare", "query-migrate-capabilities", test_cancel);
  ADD ("/capture/cancel/settings", "migrate-set-parameters", test_cancel);
  ADD ("/capture/cancel/pause", "stop", test_cancel);
  ADD ("/capture/cancel/getfd", "getfd", test_cancel);
  ADD ("/capture/cancel/memory", "migrate", test_cancel);
  ADD ("/capture/cancel/resume", "cont", test_cancel);

#undef ADD

  return g_test_run ();
}
