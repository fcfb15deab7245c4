/* hexz-qmp-client.c: an asynchronous client for QEMU's QMP monitor
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/**
 * HexzQmpClient:
 *
 * An asynchronous client for QEMU's machine protocol (QMP).
 *
 * The client connects to a QMP monitor, reads its greeting, leaves the
 * capabilities negotiation mode with `qmp_capabilities`, and then runs
 * commands and delivers events. Every command carries an `id`, so several
 * commands can be in flight; replies are matched to their command by that
 * `id`. Events are emitted through the detailed [signal@Hexz.QmpClient::event]
 * signal and can be awaited with [method@Hexz.QmpClient.wait_event_async].
 *
 * ```c
 * static void
 * on_status (GObject *source, GAsyncResult *result, gpointer user_data)
 * {
 *   g_autoptr(GError) error = NULL;
 *   gboolean running;
 *   HexzRunState state;
 *
 *   state = hexz_qmp_client_query_status_finish (HEXZ_QMP_CLIENT (source),
 *                                                result, &running, &error);
 *   if (error != NULL)
 *     g_printerr ("%s\n", error->message);
 *   else
 *     g_print ("%s\n", hexz_run_state_to_string (state));
 * }
 *
 * static void
 * on_connected (GObject *source, GAsyncResult *result, gpointer user_data)
 * {
 *   HexzQmpClient *client = HEXZ_QMP_CLIENT (source);
 *   g_autoptr(GError) error = NULL;
 *
 *   if (!hexz_qmp_client_connect_finish (client, result, &error))
 *     g_printerr ("%s\n", error->message);
 *   else
 *     hexz_qmp_client_query_status_async (client, NULL, on_status, NULL);
 * }
 *
 * client = hexz_qmp_client_new ();
 * hexz_qmp_client_connect_to_path_async (client, "/run/vm/qmp.sock", NULL,
 *                                        on_connected, NULL);
 * ```
 *
 * A QMP socket serves one client at a time: QEMU accepts a second
 * connection but sends it no greeting until the first client leaves. The
 * connect operation therefore fails with %HEXZ_QMP_ERROR_NO_GREETING after
 * [property@Hexz.QmpClient:connect-timeout].
 *
 * Messages are lines of JSON up to %HEXZ_QMP_MAX_MESSAGE_SIZE bytes. A longer
 * line, invalid JSON or a connection that ends in the middle of a line is a
 * protocol error: the client closes the connection, fails every pending
 * command and emits [signal@Hexz.QmpClient::disconnected].
 *
 * With `G_MESSAGES_DEBUG=Hexz` in the environment, the client logs every
 * message it sends (`QMP →`) and receives (`QMP ←`). A message longer than
 * 1024 bytes is logged as its first 1024 bytes and its size.
 *
 * QEMU reports JSON parse errors without an `id`. QEMU replies to commands
 * in the order it receives them, since this client never enables
 * out-of-band execution. Such an error therefore goes to the oldest command
 * that was sent and has no reply yet, and is logged. An id-less error that arrives
 * while no command is pending is only logged.
 *
 * All callbacks and signals run on the thread-default main context of the
 * thread that created the client; use the client from that thread only.
 * Each pending operation holds a reference on the client, as GIO's
 * asynchronous operations do on their source object, so the client is
 * disposed only after its last command has completed. Once disposed, the
 * client emits no more signals.
 *
 * Since: 1.0
 */

#include "config.h"

#include <string.h>

#include <gio/gunixfdmessage.h>

#include "hexz-qmp-client.h"
#include "hexz-qmp-client-private.h"
#include "hexz-enum-types.h"
#include "hexz-i18n-private.h"

/* Bytes requested from the stream per read. The input buffer grows by this
 * much for each read and shrinks again once whole lines are consumed. */
#define READ_CHUNK_SIZE (64 * 1024)

/* Consumed bytes after which an empty input buffer is reallocated. */
#define SHRINK_THRESHOLD (1024 * 1024)

#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_COMMAND_TIMEOUT_MS 30000

/* How much of each message the debug log shows. */
#define LOG_EXCERPT_SIZE 1024

/* QMP error class, kept with each error of the HEXZ_QMP_ERROR domain. */

typedef struct
{
  char *qmp_class;
} HexzQmpErrorPrivate;

static void
hexz_qmp_error_private_init (HexzQmpErrorPrivate *priv)
{
  priv->qmp_class = NULL;
}

static void
hexz_qmp_error_private_copy (const HexzQmpErrorPrivate *src,
                             HexzQmpErrorPrivate       *dest)
{
  dest->qmp_class = g_strdup (src->qmp_class);
}

static void
hexz_qmp_error_private_clear (HexzQmpErrorPrivate *priv)
{
  g_clear_pointer (&priv->qmp_class, g_free);
}

/**
 * hexz_qmp_error_quark:
 *
 * Gets the error domain of the QMP client.
 *
 * Returns: the quark of %HEXZ_QMP_ERROR
 *
 * Since: 1.0
 */
G_DEFINE_EXTENDED_ERROR (HexzQmpError, hexz_qmp_error)

static const struct
{
  const char   *name;
  HexzQmpError  code;
} qmp_error_classes[] = {
  { "GenericError", HEXZ_QMP_ERROR_GENERIC_ERROR },
  { "CommandNotFound", HEXZ_QMP_ERROR_COMMAND_NOT_FOUND },
  { "DeviceNotActive", HEXZ_QMP_ERROR_DEVICE_NOT_ACTIVE },
  { "DeviceNotFound", HEXZ_QMP_ERROR_DEVICE_NOT_FOUND },
  { "KVMMissingCap", HEXZ_QMP_ERROR_KVM_MISSING_CAP },
};

/**
 * hexz_qmp_error_get_class:
 * @error: an error
 *
 * Gets the QMP error class of an error reply, such as `GenericError` or
 * `CommandNotFound`. The class is kept even when it has no code of its own
 * in [error@Hexz.QmpError].
 *
 * Returns: (nullable): the class, or %NULL when @error is not in the
 *   %HEXZ_QMP_ERROR domain or did not come from an error reply
 *
 * Since: 1.0
 */
const char *
hexz_qmp_error_get_class (const GError *error)
{
  g_return_val_if_fail (error != NULL, NULL);

  if (error->domain != HEXZ_QMP_ERROR)
    return NULL;

  return hexz_qmp_error_get_private (error)->qmp_class;
}

/* Run states and migration statuses, in the order of their enumerations. */

static const char * const run_state_names[] = {
  [HEXZ_RUN_STATE_UNKNOWN] = "unknown",
  [HEXZ_RUN_STATE_DEBUG] = "debug",
  [HEXZ_RUN_STATE_INMIGRATE] = "inmigrate",
  [HEXZ_RUN_STATE_INTERNAL_ERROR] = "internal-error",
  [HEXZ_RUN_STATE_IO_ERROR] = "io-error",
  [HEXZ_RUN_STATE_PAUSED] = "paused",
  [HEXZ_RUN_STATE_POSTMIGRATE] = "postmigrate",
  [HEXZ_RUN_STATE_PRELAUNCH] = "prelaunch",
  [HEXZ_RUN_STATE_FINISH_MIGRATE] = "finish-migrate",
  [HEXZ_RUN_STATE_RESTORE_VM] = "restore-vm",
  [HEXZ_RUN_STATE_RUNNING] = "running",
  [HEXZ_RUN_STATE_SAVE_VM] = "save-vm",
  [HEXZ_RUN_STATE_SHUTDOWN] = "shutdown",
  [HEXZ_RUN_STATE_SUSPENDED] = "suspended",
  [HEXZ_RUN_STATE_WATCHDOG] = "watchdog",
  [HEXZ_RUN_STATE_GUEST_PANICKED] = "guest-panicked",
  [HEXZ_RUN_STATE_COLO] = "colo",
};

static const char * const migration_status_names[] = {
  [HEXZ_MIGRATION_STATUS_UNKNOWN] = "unknown",
  [HEXZ_MIGRATION_STATUS_NONE] = "none",
  [HEXZ_MIGRATION_STATUS_SETUP] = "setup",
  [HEXZ_MIGRATION_STATUS_CANCELLING] = "cancelling",
  [HEXZ_MIGRATION_STATUS_CANCELLED] = "cancelled",
  [HEXZ_MIGRATION_STATUS_ACTIVE] = "active",
  [HEXZ_MIGRATION_STATUS_POSTCOPY_ACTIVE] = "postcopy-active",
  [HEXZ_MIGRATION_STATUS_POSTCOPY_PAUSED] = "postcopy-paused",
  [HEXZ_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP] = "postcopy-recover-setup",
  [HEXZ_MIGRATION_STATUS_POSTCOPY_RECOVER] = "postcopy-recover",
  [HEXZ_MIGRATION_STATUS_COMPLETED] = "completed",
  [HEXZ_MIGRATION_STATUS_FAILED] = "failed",
  [HEXZ_MIGRATION_STATUS_COLO] = "colo",
  [HEXZ_MIGRATION_STATUS_PRE_SWITCHOVER] = "pre-switchover",
  [HEXZ_MIGRATION_STATUS_DEVICE] = "device",
  [HEXZ_MIGRATION_STATUS_WAIT_UNPLUG] = "wait-unplug",
};

/**
 * hexz_run_state_from_string:
 * @status: a run state as `query-status` returns it, such as `paused`
 *
 * Parses a QEMU run state name.
 *
 * Returns: the run state, or %HEXZ_RUN_STATE_UNKNOWN for a name this library
 *   does not know
 *
 * Since: 1.0
 */
HexzRunState
hexz_run_state_from_string (const char *status)
{
  g_return_val_if_fail (status != NULL, HEXZ_RUN_STATE_UNKNOWN);

  for (guint i = 1; i < G_N_ELEMENTS (run_state_names); i++)
    {
      if (g_str_equal (status, run_state_names[i]))
        return (HexzRunState) i;
    }

  return HEXZ_RUN_STATE_UNKNOWN;
}

/**
 * hexz_run_state_to_string:
 * @state: a run state
 *
 * Gets QEMU's name of a run state, such as `running`.
 *
 * Returns: the name, or `unknown` for %HEXZ_RUN_STATE_UNKNOWN and values
 *   outside the enumeration
 *
 * Since: 1.0
 */
const char *
hexz_run_state_to_string (HexzRunState state)
{
  if ((guint) state >= G_N_ELEMENTS (run_state_names))
    return run_state_names[HEXZ_RUN_STATE_UNKNOWN];

  return run_state_names[state];
}

/**
 * hexz_migration_status_from_string:
 * @status: a migration status as `query-migrate` returns it, such as
 *   `active`
 *
 * Parses a QEMU migration status name.
 *
 * Returns: the status, or %HEXZ_MIGRATION_STATUS_UNKNOWN for a name this
 *   library does not know
 *
 * Since: 1.0
 */
HexzMigrationStatus
hexz_migration_status_from_string (const char *status)
{
  g_return_val_if_fail (status != NULL, HEXZ_MIGRATION_STATUS_UNKNOWN);

  for (guint i = 1; i < G_N_ELEMENTS (migration_status_names); i++)
    {
      if (g_str_equal (status, migration_status_names[i]))
        return (HexzMigrationStatus) i;
    }

  return HEXZ_MIGRATION_STATUS_UNKNOWN;
}

/**
 * hexz_migration_status_to_string:
 * @status: a migration status
 *
 * Gets QEMU's name of a migration status, such as `completed`.
 *
 * Returns: the name, or `unknown` for %HEXZ_MIGRATION_STATUS_UNKNOWN and
 *   values outside the enumeration
 *
 * Since: 1.0
 */
const char *
hexz_migration_status_to_string (HexzMigrationStatus status)
{
  if ((guint) status >= G_N_ELEMENTS (migration_status_names))
    return migration_status_names[HEXZ_MIGRATION_STATUS_UNKNOWN];

  return migration_status_names[status];
}

/**
 * hexz_migration_status_is_running:
 * @status: a migration status
 *
 * Checks whether a migration in this status may still change status by
 * itself. Only `none`, `completed`, `failed` and `cancelled` are final.
 * A status this library does not know counts as running, so that a caller
 * polling for the end keeps waiting instead of taking it for a result.
 *
 * Returns: %TRUE unless @status is final
 *
 * Since: 1.0
 */
gboolean
hexz_migration_status_is_running (HexzMigrationStatus status)
{
  switch (status)
    {
    case HEXZ_MIGRATION_STATUS_NONE:
    case HEXZ_MIGRATION_STATUS_COMPLETED:
    case HEXZ_MIGRATION_STATUS_FAILED:
    case HEXZ_MIGRATION_STATUS_CANCELLED:
      return FALSE;
    default:
      return TRUE;
    }
}

/* Typed access to members of QMP objects; each returns NULL or FALSE when
 * the member is missing or of another type. */

static const char *
object_get_string (JsonObject *object,
                   const char *member)
{
  JsonNode *node = json_object_get_member (object, member);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;

  return json_node_get_string (node);
}

static JsonObject *
object_get_object (JsonObject *object,
                   const char *member)
{
  JsonNode *node = json_object_get_member (object, member);

  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    return NULL;

  return json_node_get_object (node);
}

static gboolean
object_get_int (JsonObject *object,
                const char *member,
                gint64     *value)
{
  JsonNode *node = json_object_get_member (object, member);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node))
    return FALSE;

  switch (json_node_get_value_type (node))
    {
    case G_TYPE_INT64:
      *value = json_node_get_int (node);
      return TRUE;

    case G_TYPE_DOUBLE:
      {
        double number = json_node_get_double (node);

        /* Converting a double outside the range of gint64 (or NaN) is
         * undefined behaviour, so such a member counts as missing. The
         * upper bound 2^63 is exact as a double. */
        if (!(number >= (double) G_MININT64 && number < -(double) G_MININT64))
          return FALSE;

        *value = (gint64) number;
        return TRUE;
      }

    default:
      return FALSE;
    }
}

static guint64
object_get_counter (JsonObject *object,
                    const char *member)
{
  gint64 value = 0;

  if (object == NULL || !object_get_int (object, member, &value) || value < 0)
    return 0;

  return (guint64) value;
}

/* HexzMigrationInfo */

struct _HexzMigrationInfo
{
  grefcount            ref_count;
  HexzMigrationStatus  status;
  char                *status_string;
  guint64              ram_transferred;
  guint64              ram_total;
  guint64              ram_remaining;
  char                *error_desc;
};

G_DEFINE_BOXED_TYPE (HexzMigrationInfo, hexz_migration_info,
                     hexz_migration_info_ref, hexz_migration_info_unref)

/* Builds the information from the `return` object of `query-migrate`. QEMU
 * returns an empty object before the first migration, which reads as
 * status `none`. */
HexzMigrationInfo *
hexz_migration_info_new_from_json (JsonObject *object)
{
  HexzMigrationInfo *info;
  const char *status;
  JsonObject *ram;

  g_return_val_if_fail (object != NULL, NULL);

  info = g_new0 (HexzMigrationInfo, 1);
  g_ref_count_init (&info->ref_count);

  status = object_get_string (object, "status");
  if (status == NULL)
    status = "none";
  info->status_string = g_strdup (status);
  info->status = hexz_migration_status_from_string (status);

  ram = object_get_object (object, "ram");
  info->ram_transferred = object_get_counter (ram, "transferred");
  info->ram_total = object_get_counter (ram, "total");
  info->ram_remaining = object_get_counter (ram, "remaining");

  info->error_desc = g_strdup (object_get_string (object, "error-desc"));

  return info;
}

/**
 * hexz_migration_info_ref:
 * @info: migration information
 *
 * Acquires a reference on @info.
 *
 * Returns: (transfer full): @info
 *
 * Since: 1.0
 */
HexzMigrationInfo *
hexz_migration_info_ref (HexzMigrationInfo *info)
{
  g_return_val_if_fail (info != NULL, NULL);

  g_ref_count_inc (&info->ref_count);

  return info;
}

/**
 * hexz_migration_info_unref:
 * @info: (transfer full): migration information
 *
 * Releases a reference on @info, and frees it when it was the last one.
 *
 * Since: 1.0
 */
void
hexz_migration_info_unref (HexzMigrationInfo *info)
{
  g_return_if_fail (info != NULL);

  if (!g_ref_count_dec (&info->ref_count))
    return;

  g_free (info->status_string);
  g_free (info->error_desc);
  g_free (info);
}

/**
 * hexz_migration_info_get_status:
 * @info: migration information
 *
 * Gets the status of the migration.
 *
 * Returns: the status; %HEXZ_MIGRATION_STATUS_UNKNOWN for a status this
 *   library does not know, whose name
 *   [method@Hexz.MigrationInfo.get_status_string] returns
 *
 * Since: 1.0
 */
HexzMigrationStatus
hexz_migration_info_get_status (HexzMigrationInfo *info)
{
  g_return_val_if_fail (info != NULL, HEXZ_MIGRATION_STATUS_UNKNOWN);

  return info->status;
}

/**
 * hexz_migration_info_get_status_string:
 * @info: migration information
 *
 * Gets the status exactly as QEMU sent it.
 *
 * Returns: the status name, such as `active`
 *
 * Since: 1.0
 */
const char *
hexz_migration_info_get_status_string (HexzMigrationInfo *info)
{
  g_return_val_if_fail (info != NULL, NULL);

  return info->status_string;
}

/**
 * hexz_migration_info_get_ram_transferred:
 * @info: migration information
 *
 * Gets the RAM bytes sent so far.
 *
 * Returns: the byte count, 0 when QEMU reported none
 *
 * Since: 1.0
 */
guint64
hexz_migration_info_get_ram_transferred (HexzMigrationInfo *info)
{
  g_return_val_if_fail (info != NULL, 0);

  return info->ram_transferred;
}

/**
 * hexz_migration_info_get_ram_total:
 * @info: migration information
 *
 * Gets the guest RAM size that the migration covers.
 *
 * Returns: the byte count, 0 when QEMU reported none
 *
 * Since: 1.0
 */
guint64
hexz_migration_info_get_ram_total (HexzMigrationInfo *info)
{
  g_return_val_if_fail (info != NULL, 0);

  return info->ram_total;
}

/**
 * hexz_migration_info_get_ram_remaining:
 * @info: migration information
 *
 * Gets the RAM bytes still to send.
 *
 * Returns: the byte count, 0 when QEMU reported none
 *
 * Since: 1.0
 */
guint64
hexz_migration_info_get_ram_remaining (HexzMigrationInfo *info)
{
  g_return_val_if_fail (info != NULL, 0);

  return info->ram_remaining;
}

/**
 * hexz_migration_info_get_error_desc:
 * @info: migration information
 *
 * Gets QEMU's description of why the migration failed.
 *
 * Returns: (nullable): the description, or %NULL when QEMU gave none
 *
 * Since: 1.0
 */
const char *
hexz_migration_info_get_error_desc (HexzMigrationInfo *info)
{
  g_return_val_if_fail (info != NULL, NULL);

  return info->error_desc;
}

/* The client */

typedef enum {
  STATE_NEW,
  STATE_CONNECTING,
  STATE_GREETING,
  STATE_NEGOTIATING,
  STATE_CONNECTED,
  STATE_CLOSED,
} ClientState;

typedef struct _QmpConnection QmpConnection;
typedef struct _PendingCommand PendingCommand;

/* One line queued for sending, with the file descriptors that travel on its
 * first byte. */
typedef struct
{
  GBytes         *bytes;
  gsize           offset;
  GUnixFDList    *fd_list;
  /* The command this line runs; NULL for a command that ended (timed out,
   * cancelled) while its line was being written. Not a reference. */
  PendingCommand *command;
  gboolean        writing;
} OutgoingMessage;

/* The I/O state of one connection. It is reference counted because the
 * asynchronous reads and writes own it: they can finish after the client
 * closed the connection or was finalized, and then find `closed` set. */
struct _QmpConnection
{
  HexzQmpClient   *client;    /* not a reference; NULL once closed */
  GIOStream       *stream;
  GSocket         *socket;    /* NULL unless the stream is a GSocketConnection */
  GInputStream    *input;
  GOutputStream   *output;
  GCancellable    *cancellable;
  GMainContext    *context;

  GByteArray      *buffer;
  gsize            scan_offset;  /* bytes of buffer known to hold no newline */
  gsize            read_offset;  /* where the pending read writes */
  gboolean         reading;

  GQueue           outgoing;     /* OutgoingMessage, oldest first */
  OutgoingMessage *writing;

  gboolean         closed;
  gboolean         stream_closing;
};

struct _PendingCommand
{
  HexzQmpClient   *client;
  char            *id;
  char            *command;
  GTask           *task;
  GSource         *timeout_source;
  GSource         *cancel_source;
  OutgoingMessage *message;  /* until its line is written */
  guint            timeout_ms;
};

typedef struct
{
  char       *name;
  JsonObject *data;
  gint64      timestamp_us;
} QmpEvent;

typedef struct
{
  HexzQmpClient         *client;
  char                  *name;
  HexzQmpEventPredicate  predicate;
  gpointer               predicate_data;
  GDestroyNotify         predicate_data_destroy;
  GTask                 *task;
  GSource               *timeout_source;
  GSource               *cancel_source;
} EventWaiter;

typedef struct
{
  GCancellable *cancellable;  /* cancels the socket connect on timeout */
  GSource      *timeout_source;
  GSource      *cancel_source;
} ConnectData;

struct _HexzQmpClient
{
  GObject         parent_instance;

  GMainContext   *context;
  ClientState     state;
  gboolean        disposed;
  char           *peer_name;
  QmpConnection  *connection;
  GTask          *connect_task;
  guint           events_before_greeting;

  GHashTable     *pending;         /* id → PendingCommand */
  GQueue          pending_order;   /* PendingCommand, oldest first */
  /* Ids of the commands sent and still without a reply, oldest first,
   * including commands that timed out or were cancelled meanwhile. */
  GQueue          unanswered_ids;
  guint64         last_id;

  GQueue          waiters;         /* EventWaiter, oldest first */
  GHashTable     *backlog;         /* name → GQueue of QmpEvent */

  char           *qemu_version;
  char           *qemu_package;
  guint           qemu_major;
  guint           qemu_minor;
  guint           qemu_micro;
  char          **capabilities;

  guint           connect_timeout_ms;
  guint           command_timeout_ms;
};

G_DEFINE_FINAL_TYPE (HexzQmpClient, hexz_qmp_client, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_CONNECTED,
  PROP_QEMU_VERSION,
  PROP_QEMU_PACKAGE,
  PROP_CAPABILITIES,
  PROP_CONNECT_TIMEOUT,
  PROP_COMMAND_TIMEOUT,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_EVENT,
  SIGNAL_DISCONNECTED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void client_close_with_error (HexzQmpClient *self,
                                     GError        *reason);
static void connection_read (QmpConnection *conn);
static void connection_flush (QmpConnection *conn);
static void event_waiter_complete (EventWaiter *waiter,
                                   QmpEvent    *event,
                                   GError      *error);

static void
clear_source (GSource **source)
{
  if (*source == NULL)
    return;

  g_source_destroy (*source);
  g_clear_pointer (source, g_source_unref);
}

static GSource *
attach_timeout (GMainContext *context,
                guint         timeout_ms,
                GSourceFunc   func,
                gpointer      data)
{
  GSource *source = g_timeout_source_new (timeout_ms);

  g_source_set_callback (source, func, data, NULL);
  g_source_attach (source, context);

  return source;
}

/* Watches @cancellable from @context, unlike g_cancellable_connect(), whose
 * handler runs in whichever thread cancels. */
static GSource *
attach_cancellable (GMainContext          *context,
                    GCancellable          *cancellable,
                    GCancellableSourceFunc func,
                    gpointer               data)
{
  GSource *source;

  if (cancellable == NULL)
    return NULL;

  source = g_cancellable_source_new (cancellable);
  g_source_set_callback (source, G_SOURCE_FUNC (func), data, NULL);
  g_source_attach (source, context);

  return source;
}

static void
log_traffic (const char *direction,
             const char *data,
             gsize       size)
{
  if (g_log_writer_default_would_drop (G_LOG_LEVEL_DEBUG, G_LOG_DOMAIN))
    return;

  if (size > LOG_EXCERPT_SIZE)
    g_debug ("QMP %s %.*s… (%" G_GSIZE_FORMAT " bytes)",
             direction, LOG_EXCERPT_SIZE, data, size);
  else
    g_debug ("QMP %s %.*s", direction, (int) size, data);
}

static GError *
qmp_error_new_with_class (HexzQmpError  code,
                          const char   *qmp_class,
                          const char   *message)
{
  GError *error = g_error_new_literal (HEXZ_QMP_ERROR, code, message);

  hexz_qmp_error_get_private (error)->qmp_class = g_strdup (qmp_class);

  return error;
}

/* Turns the `error` member of a reply into a GError. A malformed member is
 * still an error, with code HEXZ_QMP_ERROR_FAILED. */
static GError *
qmp_error_new_from_reply (const char *command,
                          JsonNode   *error_node)
{
  JsonObject *object = NULL;
  const char *qmp_class = NULL;
  const char *desc = NULL;
  HexzQmpError code = HEXZ_QMP_ERROR_FAILED;
  g_autofree char *message = NULL;

  if (JSON_NODE_HOLDS_OBJECT (error_node))
    {
      object = json_node_get_object (error_node);
      qmp_class = object_get_string (object, "class");
      desc = object_get_string (object, "desc");
    }

  if (qmp_class == NULL || desc == NULL)
    {
      g_autofree char *text = json_to_string (error_node, FALSE);

      /* Translators: the first placeholder is a QMP command name, the
       * second the raw JSON of the error QEMU sent. */
      message = g_strdup_printf (_("QMP command “%s” failed with a malformed error: %s"),
                                 command, text);
      return qmp_error_new_with_class (HEXZ_QMP_ERROR_FAILED, qmp_class, message);
    }

  for (guint i = 0; i < G_N_ELEMENTS (qmp_error_classes); i++)
    {
      if (g_str_equal (qmp_class, qmp_error_classes[i].name))
        {
          code = qmp_error_classes[i].code;
          break;
        }
    }

  /* Translators: the first placeholder is a QMP command name, the second
   * QEMU's own description of the error. */
  message = g_strdup_printf (_("QMP command “%s” failed: %s"), command, desc);

  return qmp_error_new_with_class (code, qmp_class, message);
}

static QmpEvent *
qmp_event_new (const char *name,
               JsonObject *data,
               gint64      timestamp_us)
{
  QmpEvent *event = g_new0 (QmpEvent, 1);

  event->name = g_strdup (name);
  event->data = json_object_ref (data);
  event->timestamp_us = timestamp_us;

  return event;
}

static void
qmp_event_free (QmpEvent *event)
{
  g_free (event->name);
  json_object_unref (event->data);
  g_free (event);
}

static QmpEvent *
qmp_event_copy (QmpEvent *event)
{
  return qmp_event_new (event->name, event->data, event->timestamp_us);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (QmpEvent, qmp_event_free)

static void
backlog_queue_free (GQueue *queue)
{
  g_queue_free_full (queue, (GDestroyNotify) qmp_event_free);
}

/* Connection */

static QmpConnection *
qmp_connection_new (HexzQmpClient *client,
                    GIOStream     *stream)
{
  QmpConnection *conn = g_rc_box_new0 (QmpConnection);

  conn->client = client;
  conn->stream = g_object_ref (stream);
  conn->input = g_io_stream_get_input_stream (stream);
  conn->output = g_io_stream_get_output_stream (stream);
  conn->cancellable = g_cancellable_new ();
  conn->context = g_main_context_ref (client->context);
  conn->buffer = g_byte_array_new ();
  g_queue_init (&conn->outgoing);

  if (G_IS_SOCKET_CONNECTION (stream))
    conn->socket = g_socket_connection_get_socket (G_SOCKET_CONNECTION (stream));

  return conn;
}

static void
outgoing_message_free (OutgoingMessage *message)
{
  g_bytes_unref (message->bytes);
  g_clear_object (&message->fd_list);
  g_free (message);
}

static void
qmp_connection_clear (QmpConnection *conn)
{
  g_assert (conn->writing == NULL);
  g_assert (g_queue_is_empty (&conn->outgoing));

  g_object_unref (conn->stream);
  g_object_unref (conn->cancellable);
  g_main_context_unref (conn->context);
  g_byte_array_unref (conn->buffer);
}

static QmpConnection *
qmp_connection_ref (QmpConnection *conn)
{
  return g_rc_box_acquire (conn);
}

static void
qmp_connection_unref (QmpConnection *conn)
{
  g_rc_box_release_full (conn, (GDestroyNotify) qmp_connection_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (QmpConnection, qmp_connection_unref)

static void
on_stream_closed (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(QmpConnection) conn = user_data;
  g_autoptr(GError) error = NULL;

  if (!g_io_stream_close_finish (G_IO_STREAM (source), result, &error))
    g_debug ("Closing the QMP stream failed: %s", error->message);
}

/* Closes the stream once no read or write uses it any more: a stream
 * rejects close while an operation is pending on it. */
static void
qmp_connection_maybe_close_stream (QmpConnection *conn)
{
  if (!conn->closed || conn->stream_closing || conn->reading || conn->writing != NULL)
    return;

  conn->stream_closing = TRUE;
  g_io_stream_close_async (conn->stream, G_PRIORITY_DEFAULT, NULL,
                           on_stream_closed, qmp_connection_ref (conn));
}

/* Stops all I/O. Pending reads and writes end with G_IO_ERROR_CANCELLED
 * later and then find the connection closed. */
static void
qmp_connection_shut_down (QmpConnection *conn)
{
  OutgoingMessage *message;

  if (conn->closed)
    return;

  conn->closed = TRUE;
  conn->client = NULL;
  g_cancellable_cancel (conn->cancellable);

  while ((message = g_queue_pop_head (&conn->outgoing)) != NULL)
    {
      if (message->command != NULL)
        message->command->message = NULL;
      outgoing_message_free (message);
    }

  /* The peer reads the end of the stream now, even while a pending read
   * keeps the stream itself open for a moment. */
  if (conn->socket != NULL)
    g_socket_shutdown (conn->socket, TRUE, TRUE, NULL);

  qmp_connection_maybe_close_stream (conn);
}

/* Pending commands */

static void
pending_command_free (PendingCommand *pc)
{
  g_assert (pc->task == NULL);
  g_assert (pc->message == NULL);
  g_assert (pc->timeout_source == NULL);
  g_assert (pc->cancel_source == NULL);

  g_free (pc->id);
  g_free (pc->command);
  g_free (pc);
}

/* Removes @pc from the client and from the write queue. The id of a
 * command already sent stays in unanswered_ids until QEMU replies, so that
 * a late reply is recognized and dropped quietly. */
static void
pending_command_detach (PendingCommand *pc)
{
  HexzQmpClient *self = pc->client;
  QmpConnection *conn = self->connection;

  g_hash_table_remove (self->pending, pc->id);
  g_queue_remove (&self->pending_order, pc);
  clear_source (&pc->timeout_source);
  clear_source (&pc->cancel_source);

  if (pc->message != NULL)
    {
      if (pc->message->writing)
        {
          /* The write under way owns the message and frees it. */
          pc->message->command = NULL;
        }
      else
        {
          g_assert (conn != NULL);
          g_queue_remove (&conn->outgoing, pc->message);
          outgoing_message_free (pc->message);
        }
      pc->message = NULL;
    }
}

/* Ends @pc with @result or @error (one of them, owned). The task's
 * callback may run at once and drop the last reference on the client. */
static void
pending_command_complete (PendingCommand *pc,
                          JsonNode       *result,
                          GError         *error)
{
  g_autoptr(GTask) task = g_steal_pointer (&pc->task);

  pending_command_detach (pc);
  pending_command_free (pc);

  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, result, (GDestroyNotify) json_node_unref);
}

static gboolean
on_command_timeout (gpointer user_data)
{
  PendingCommand *pc = user_data;
  HexzQmpClient *self = pc->client;

  g_clear_pointer (&pc->timeout_source, g_source_unref);

  g_debug ("QMP command “%s” (id %s) timed out after %u ms",
           pc->command, pc->id, pc->timeout_ms);

  pending_command_complete (pc, NULL,
                            g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_TIMED_OUT,
                                         /* Translators: the first placeholder is a
                                          * QMP command name, the second the QMP
                                          * socket or address, the third a duration
                                          * in milliseconds. */
                                         _("QMP command “%s” timed out: %s sent no reply within %u ms"),
                                         pc->command, self->peer_name, pc->timeout_ms));

  return G_SOURCE_REMOVE;
}

static gboolean
on_command_cancelled (GCancellable *cancellable,
                      gpointer      user_data)
{
  PendingCommand *pc = user_data;

  g_clear_pointer (&pc->cancel_source, g_source_unref);

  g_debug ("QMP command “%s” (id %s) was cancelled", pc->command, pc->id);

  pending_command_complete (pc, NULL,
                            g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                 _("Operation was cancelled")));

  return G_SOURCE_REMOVE;
}

static GBytes *
command_serialize (const char *command,
                   JsonObject *arguments,
                   const char *id)
{
  g_autoptr(JsonObject) object = json_object_new ();
  g_autoptr(JsonNode) root = json_node_new (JSON_NODE_OBJECT);
  g_autofree char *text = NULL;
  GString *line;

  json_object_set_string_member (object, "execute", command);
  if (arguments != NULL)
    json_object_set_object_member (object, "arguments", json_object_ref (arguments));
  json_object_set_string_member (object, "id", id);
  json_node_set_object (root, object);

  /* The compact form escapes newlines inside strings, so the whole command
   * is one line. */
  text = json_to_string (root, FALSE);
  line = g_string_new (text);
  g_string_append_c (line, '\n');

  return g_string_free_to_bytes (line);
}

/* Queues @command on the connection; @task (owned) returns the `return`
 * node. Commands other than the negotiation are accepted only once the
 * client is connected. */
static void
command_send (HexzQmpClient *self,
              GTask         *task,
              const char    *command,
              JsonObject    *arguments,
              GUnixFDList   *fd_list,
              guint          timeout_ms,
              gboolean       negotiation)
{
  QmpConnection *conn = self->connection;
  GCancellable *cancellable = g_task_get_cancellable (task);
  OutgoingMessage *message;
  PendingCommand *pc;

  if (g_task_return_error_if_cancelled (task))
    {
      g_object_unref (task);
      return;
    }

  if (conn == NULL || conn->closed ||
      (self->state != STATE_CONNECTED && !negotiation))
    {
      g_task_return_new_error (task, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED,
                               /* Translators: the placeholder is a QMP command name. */
                               _("Cannot run QMP command “%s”: the client is not connected to a QMP server"),
                               command);
      g_object_unref (task);
      return;
    }

  if (fd_list != NULL && g_unix_fd_list_get_length (fd_list) == 0)
    fd_list = NULL;

  /* Over TCP the kernel sends the bytes and drops the descriptors. */
  if (fd_list != NULL &&
      (conn->socket == NULL || g_socket_get_family (conn->socket) != G_SOCKET_FAMILY_UNIX))
    {
      g_task_return_new_error (task, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_NOT_SUPPORTED,
                               /* Translators: the placeholder is a QMP command name. */
                               _("Cannot pass file descriptors with QMP command “%s”: the connection is not a unix socket; connect to a unix socket instead"),
                               command);
      g_object_unref (task);
      return;
    }

  pc = g_new0 (PendingCommand, 1);
  pc->client = self;
  pc->id = g_strdup_printf ("hexz-%" G_GUINT64_FORMAT, ++self->last_id);
  pc->command = g_strdup (command);
  pc->task = task;
  pc->timeout_ms = timeout_ms;

  message = g_new0 (OutgoingMessage, 1);
  message->bytes = command_serialize (command, arguments, pc->id);
  message->fd_list = fd_list != NULL ? g_object_ref (fd_list) : NULL;
  message->command = pc;
  pc->message = message;

  g_hash_table_insert (self->pending, pc->id, pc);
  g_queue_push_tail (&self->pending_order, pc);

  if (timeout_ms > 0)
    pc->timeout_source = attach_timeout (self->context, timeout_ms, on_command_timeout, pc);
  pc->cancel_source = attach_cancellable (self->context, cancellable, on_command_cancelled, pc);

  g_queue_push_tail (&conn->outgoing, message);
  connection_flush (conn);
}

/* Writing */

static void connection_send_with_fds (QmpConnection *conn);

static void
connection_write_done (QmpConnection *conn,
                       GError        *error)
{
  OutgoingMessage *message = g_steal_pointer (&conn->writing);
  HexzQmpClient *self = conn->client;

  if (message->command != NULL)
    message->command->message = NULL;
  outgoing_message_free (message);

  if (conn->closed)
    {
      g_clear_error (&error);
      qmp_connection_maybe_close_stream (conn);
      return;
    }

  if (error != NULL)
    {
      GError *reason;

      reason = g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED,
                            /* Translators: the first placeholder is the QMP
                             * socket or address, the second the system's
                             * error message. */
                            _("Failed to send to QMP server %s: %s"),
                            self->peer_name, error->message);
      g_error_free (error);
      client_close_with_error (self, reason);
      return;
    }

  connection_flush (conn);
}

static void
on_write_all_done (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(QmpConnection) conn = user_data;
  g_autoptr(HexzQmpClient) self = NULL;
  GError *error = NULL;

  g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, &error);

  if (conn->client != NULL)
    self = g_object_ref (conn->client);
  connection_write_done (conn, error);
}

static void
connection_write_rest (QmpConnection *conn)
{
  OutgoingMessage *message = conn->writing;
  gsize size;
  const guint8 *data = g_bytes_get_data (message->bytes, &size);

  g_output_stream_write_all_async (conn->output, data + message->offset,
                                   size - message->offset, G_PRIORITY_DEFAULT,
                                   conn->cancellable, on_write_all_done,
                                   qmp_connection_ref (conn));
}

static gboolean
on_socket_writable (GSocket      *socket,
                    GIOCondition  condition,
                    gpointer      user_data)
{
  QmpConnection *conn = user_data;
  g_autoptr(HexzQmpClient) self = NULL;

  if (conn->closed)
    {
      connection_write_done (conn, NULL);
      return G_SOURCE_REMOVE;
    }

  self = g_object_ref (conn->client);
  connection_send_with_fds (conn);

  return G_SOURCE_REMOVE;
}

/* Sends the head of the line with the file descriptors attached, so that
 * they arrive with the bytes of the command that uses them. QEMU 7.2
 * rejects descriptors sent with a lone byte before the command as a
 * stray message, with an error that has no id. */
static void
connection_send_with_fds (QmpConnection *conn)
{
  OutgoingMessage *message = conn->writing;
  g_autoptr(GSocketControlMessage) control = NULL;
  GOutputVector vector;
  GPollableReturn ret;
  gsize size;
  gsize written = 0;
  const guint8 *data = g_bytes_get_data (message->bytes, &size);
  GError *error = NULL;

  vector.buffer = data + message->offset;
  vector.size = size - message->offset;
  control = g_unix_fd_message_new_with_fd_list (message->fd_list);

  ret = g_socket_send_message_with_timeout (conn->socket, NULL, &vector, 1,
                                            &control, 1, G_SOCKET_MSG_NONE, 0,
                                            &written, conn->cancellable, &error);
  switch (ret)
    {
    case G_POLLABLE_RETURN_WOULD_BLOCK:
      {
        g_autoptr(GSource) source = g_socket_create_source (conn->socket, G_IO_OUT,
                                                            conn->cancellable);

        g_source_set_callback (source, G_SOURCE_FUNC (on_socket_writable),
                               qmp_connection_ref (conn),
                               (GDestroyNotify) qmp_connection_unref);
        g_source_attach (source, conn->context);
      }
      return;

    case G_POLLABLE_RETURN_FAILED:
      connection_write_done (conn, error);
      return;

    case G_POLLABLE_RETURN_OK:
    default:
      break;
    }

  g_debug ("Passed %d file descriptors to QMP server %s",
           g_unix_fd_list_get_length (message->fd_list),
           conn->client->peer_name);
  g_clear_object (&message->fd_list);
  message->offset += written;

  if (message->offset < size)
    connection_write_rest (conn);
  else
    connection_write_done (conn, NULL);
}

/* Starts writing the oldest queued line unless a write is under way, so
 * that lines leave in the order they were queued. */
static void
connection_flush (QmpConnection *conn)
{
  OutgoingMessage *message;
  gsize size;
  const char *data;

  if (conn->closed || conn->writing != NULL)
    return;

  message = g_queue_pop_head (&conn->outgoing);
  if (message == NULL)
    return;

  conn->writing = message;
  message->writing = TRUE;
  if (message->command != NULL)
    g_queue_push_tail (&conn->client->unanswered_ids, g_strdup (message->command->id));

  data = g_bytes_get_data (message->bytes, &size);
  log_traffic ("→", data, size - 1);

  if (message->fd_list != NULL)
    connection_send_with_fds (conn);
  else
    connection_write_rest (conn);
}

/* Reading */

static void
client_handle_event (HexzQmpClient *self,
                     JsonObject    *object)
{
  const char *name = object_get_string (object, "event");
  JsonObject *data = object_get_object (object, "data");
  JsonObject *timestamp = object_get_object (object, "timestamp");
  g_autoptr(JsonObject) empty = NULL;
  g_autoptr(QmpEvent) event = NULL;
  g_autoptr(GList) candidates = NULL;
  gint64 seconds;
  gint64 microseconds;
  gint64 timestamp_us;
  gboolean taken = FALSE;
  GQueue *backlog;

  if (name == NULL)
    {
      g_message ("Dropping a QMP event without a name from %s", self->peer_name);
      return;
    }

  if (data == NULL)
    data = empty = json_object_new ();

  /* A timestamp out of range, which would overflow in microseconds, is
   * replaced by the time of arrival like a missing one. */
  if (timestamp != NULL &&
      object_get_int (timestamp, "seconds", &seconds) &&
      object_get_int (timestamp, "microseconds", &microseconds) &&
      seconds >= 0 && seconds < G_MAXINT64 / G_USEC_PER_SEC &&
      microseconds >= 0 && microseconds < G_USEC_PER_SEC)
    timestamp_us = seconds * G_USEC_PER_SEC + microseconds;
  else
    timestamp_us = g_get_real_time ();

  event = qmp_event_new (name, data, timestamp_us);

  g_signal_emit (self, signals[SIGNAL_EVENT], g_quark_from_string (name),
                 name, data, timestamp_us);

  if (self->state == STATE_CLOSED)
    return;

  /* A predicate may complete or cancel other waiters, so walk a copy and
   * skip waiters that left the queue meanwhile. */
  candidates = g_list_copy (self->waiters.head);
  for (GList *l = candidates; l != NULL; l = l->next)
    {
      EventWaiter *waiter = l->data;

      if (g_queue_find (&self->waiters, waiter) == NULL ||
          !g_str_equal (waiter->name, name))
        continue;

      if (waiter->predicate != NULL &&
          !waiter->predicate (name, data, waiter->predicate_data))
        continue;

      if (g_queue_find (&self->waiters, waiter) == NULL)
        continue;

      taken = TRUE;
      event_waiter_complete (waiter, qmp_event_copy (event), NULL);
    }

  if (taken || self->state == STATE_CLOSED)
    return;

  backlog = g_hash_table_lookup (self->backlog, name);
  if (backlog == NULL)
    {
      backlog = g_queue_new ();
      g_hash_table_insert (self->backlog, g_strdup (name), backlog);
    }

  g_queue_push_tail (backlog, g_steal_pointer (&event));
  if (g_queue_get_length (backlog) > HEXZ_QMP_EVENT_BACKLOG_PER_NAME)
    {
      g_debug ("Dropping the oldest unclaimed QMP event %s from the backlog", name);
      qmp_event_free (g_queue_pop_head (backlog));
    }
}

/* Removes @id from the unanswered ids; returns FALSE when it is not there. */
static gboolean
client_forget_id (HexzQmpClient *self,
                  const char    *id)
{
  GList *link = g_queue_find_custom (&self->unanswered_ids, id, (GCompareFunc) strcmp);

  if (link == NULL)
    return FALSE;

  g_free (link->data);
  g_queue_delete_link (&self->unanswered_ids, link);
  return TRUE;
}

/* Finds the command of an error reply without an id. QEMU sends parse
 * errors without an id. It replies to commands in order, so the error
 * belongs to the oldest command that it received and has not replied to. */
static PendingCommand *
client_take_idless_error_owner (HexzQmpClient *self,
                                JsonNode      *error_node)
{
  g_autofree char *text = json_to_string (error_node, FALSE);
  g_autofree char *id = g_queue_pop_head (&self->unanswered_ids);
  PendingCommand *pc;

  if (id == NULL)
    {
      g_message ("Dropping a QMP error without an id from %s while no command is pending: %s",
                 self->peer_name, text);
      return NULL;
    }

  pc = g_hash_table_lookup (self->pending, id);
  if (pc == NULL)
    {
      g_message ("Dropping a QMP error without an id from %s: it belongs to the cancelled or timed-out command with id %s: %s",
                 self->peer_name, id, text);
      return NULL;
    }

  g_message ("QMP server %s sent an error without an id; giving it to the oldest unanswered command “%s” (id %s)",
             self->peer_name, pc->command, pc->id);
  return pc;
}

static void
client_handle_reply (HexzQmpClient *self,
                     JsonObject    *object)
{
  JsonNode *id_node = json_object_get_member (object, "id");
  JsonNode *error_node = json_object_get_member (object, "error");
  PendingCommand *pc = NULL;

  if (id_node == NULL && error_node == NULL)
    {
      g_message ("Dropping a QMP reply without an id from %s", self->peer_name);
      return;
    }

  if (id_node == NULL)
    {
      pc = client_take_idless_error_owner (self, error_node);
      if (pc == NULL)
        return;
    }
  else
    {
      const char *id = NULL;
      gboolean unanswered = FALSE;

      if (JSON_NODE_HOLDS_VALUE (id_node) && json_node_get_value_type (id_node) == G_TYPE_STRING)
        id = json_node_get_string (id_node);

      if (id != NULL)
        {
          unanswered = client_forget_id (self, id);
          pc = g_hash_table_lookup (self->pending, id);
        }

      if (pc == NULL)
        {
          g_autofree char *text = json_to_string (id_node, FALSE);

          if (unanswered)
            g_debug ("Discarding the late QMP reply to cancelled or timed-out id %s", id);
          else
            g_message ("Dropping a QMP reply with unknown id %s from %s", text, self->peer_name);
          return;
        }
    }

  if (error_node != NULL)
    {
      GError *error = qmp_error_new_from_reply (pc->command, error_node);

      g_debug ("Error reply to id %s: %s", pc->id, error->message);
      pending_command_complete (pc, NULL, error);
    }
  else
    {
      pending_command_complete (pc, json_object_dup_member (object, "return"), NULL);
    }
}

static void on_capabilities_negotiated (GObject      *source,
                                        GAsyncResult *result,
                                        gpointer      user_data);

static void
client_handle_greeting (HexzQmpClient *self,
                        JsonObject    *object)
{
  JsonObject *qmp = object_get_object (object, "QMP");
  JsonObject *version = qmp != NULL ? object_get_object (qmp, "version") : NULL;
  JsonObject *qemu = version != NULL ? object_get_object (version, "qemu") : NULL;
  JsonNode *capabilities = qmp != NULL ? json_object_get_member (qmp, "capabilities") : NULL;
  GTask *task;

  if (qemu != NULL)
    {
      gint64 major = 0, minor = 0, micro = 0;

      object_get_int (qemu, "major", &major);
      object_get_int (qemu, "minor", &minor);
      object_get_int (qemu, "micro", &micro);
      self->qemu_major = (guint) CLAMP (major, 0, G_MAXUINT);
      self->qemu_minor = (guint) CLAMP (minor, 0, G_MAXUINT);
      self->qemu_micro = (guint) CLAMP (micro, 0, G_MAXUINT);
      self->qemu_version = g_strdup_printf ("%u.%u.%u", self->qemu_major,
                                            self->qemu_minor, self->qemu_micro);
      self->qemu_package = g_strdup (object_get_string (version, "package"));
    }

  if (capabilities != NULL && JSON_NODE_HOLDS_ARRAY (capabilities))
    {
      JsonArray *array = json_node_get_array (capabilities);
      g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

      for (guint i = 0; i < json_array_get_length (array); i++)
        {
          JsonNode *element = json_array_get_element (array, i);

          if (JSON_NODE_HOLDS_VALUE (element) && json_node_get_value_type (element) == G_TYPE_STRING)
            g_strv_builder_add (builder, json_node_get_string (element));
        }
      self->capabilities = g_strv_builder_end (builder);
    }
  else
    {
      self->capabilities = g_new0 (char *, 1);
    }

  g_debug ("QMP server %s is QEMU %s", self->peer_name,
           self->qemu_version != NULL ? self->qemu_version : "of unknown version");

  /* This client uses no optional capability such as out-of-band
   * execution, so it leaves negotiation mode with none enabled. The
   * connect timeout covers this step. */
  self->state = STATE_NEGOTIATING;
  task = g_task_new (self, NULL, on_capabilities_negotiated, NULL);
  g_task_set_source_tag (task, client_handle_greeting);
  command_send (self, task, "qmp_capabilities", NULL, NULL, 0, TRUE);
}

static void
client_protocol_error (HexzQmpClient *self,
                       GError        *reason)
{
  g_message ("%s", reason->message);
  client_close_with_error (self, reason);
}

static void
client_handle_line (HexzQmpClient *self,
                    const char    *line,
                    gsize          size)
{
  g_autoptr(JsonParser) parser = NULL;
  g_autoptr(GError) error = NULL;
  JsonNode *root;
  JsonObject *object;
  gsize i;

  for (i = 0; i < size && g_ascii_isspace (line[i]); i++)
    ;
  if (i == size)
    return;

  log_traffic ("←", line, size);

  parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, line, (gssize) size, &error))
    {
      client_protocol_error (self, g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_PROTOCOL,
                                                /* Translators: the first placeholder is the
                                                 * QMP socket or address, the second the JSON
                                                 * parser's message. */
                                                _("Invalid JSON from QMP server %s: %s"),
                                                self->peer_name, error->message));
      return;
    }

  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      client_protocol_error (self, g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_PROTOCOL,
                                                /* Translators: the placeholder is the QMP
                                                 * socket or address. */
                                                _("Invalid message from QMP server %s: a JSON object was expected"),
                                                self->peer_name));
      return;
    }

  object = json_node_get_object (root);

  if (self->state == STATE_GREETING)
    {
      if (json_object_has_member (object, "QMP"))
        {
          client_handle_greeting (self, object);
        }
      else if (json_object_has_member (object, "event") &&
               ++self->events_before_greeting <= HEXZ_QMP_MAX_EVENTS_BEFORE_GREETING)
        {
          client_handle_event (self, object);
        }
      else
        {
          client_protocol_error (self, g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_PROTOCOL,
                                                    /* Translators: the placeholder is the
                                                     * QMP socket or address. */
                                                    _("%s sent no QMP greeting: it is probably not a QMP monitor"),
                                                    self->peer_name));
        }
      return;
    }

  if (json_object_has_member (object, "event"))
    client_handle_event (self, object);
  else if (json_object_has_member (object, "return") || json_object_has_member (object, "error"))
    client_handle_reply (self, object);
  else if (json_object_has_member (object, "QMP"))
    g_message ("Ignoring a second QMP greeting from %s", self->peer_name);
  else
    g_message ("Ignoring a QMP message that is neither a reply nor an event from %s",
               self->peer_name);
}

/* Hands each complete line in the buffer to client_handle_line(), then
 * drops the consumed bytes. The search for newlines starts where the
 * previous one stopped, so a long line split over many reads is scanned
 * once. */
static void
connection_process_input (QmpConnection *conn)
{
  HexzQmpClient *self = conn->client;
  GByteArray *buffer = conn->buffer;
  gsize line_start = 0;

  while (!conn->closed)
    {
      const guint8 *newline;
      gsize line_end;
      gsize line_size;

      newline = memchr (buffer->data + conn->scan_offset, '\n',
                        buffer->len - conn->scan_offset);
      if (newline == NULL)
        {
          conn->scan_offset = buffer->len;
          break;
        }

      line_end = (gsize) (newline - buffer->data);
      line_size = line_end - line_start;
      if (line_size > 0 && buffer->data[line_end - 1] == '\r')
        line_size--;

      if (line_size > HEXZ_QMP_MAX_MESSAGE_SIZE)
        goto too_large;

      conn->scan_offset = line_end + 1;
      client_handle_line (self, (const char *) buffer->data + line_start, line_size);
      line_start = line_end + 1;
    }

  if (conn->closed)
    return;

  g_byte_array_remove_range (buffer, 0, (guint) line_start);
  conn->scan_offset -= line_start;

  /* GByteArray keeps its allocation; after a large message such as the
   * QMP schema, start over with a small one. */
  if (buffer->len == 0 && line_start > SHRINK_THRESHOLD)
    {
      g_byte_array_unref (conn->buffer);
      conn->buffer = buffer = g_byte_array_new ();
    }

  /* One byte more than the limit is allowed for a '\r' before the '\n'. */
  if (buffer->len > (gsize) HEXZ_QMP_MAX_MESSAGE_SIZE + 1)
    goto too_large;

  return;

too_large:
  client_protocol_error (self, g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_PROTOCOL,
                                            /* Translators: the first placeholder is the QMP
                                             * socket or address, the second a byte count. */
                                            _("QMP server %s sent a message larger than %u bytes"),
                                            self->peer_name, (guint) HEXZ_QMP_MAX_MESSAGE_SIZE));
}

static gboolean
buffer_is_blank (GByteArray *buffer)
{
  for (guint i = 0; i < buffer->len; i++)
    {
      if (!g_ascii_isspace (buffer->data[i]))
        return FALSE;
    }

  return TRUE;
}

static void
on_read_done (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(QmpConnection) conn = user_data;
  g_autoptr(HexzQmpClient) self = NULL;
  g_autoptr(GError) error = NULL;
  gssize n_read;

  n_read = g_input_stream_read_finish (G_INPUT_STREAM (source), result, &error);
  conn->reading = FALSE;
  g_byte_array_set_size (conn->buffer, (guint) (conn->read_offset + MAX (n_read, 0)));

  if (conn->closed)
    {
      qmp_connection_maybe_close_stream (conn);
      return;
    }

  self = g_object_ref (conn->client);

  if (n_read < 0)
    {
      client_close_with_error (self, g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED,
                                                  /* Translators: the first placeholder is the
                                                   * QMP socket or address, the second the
                                                   * system's error message. */
                                                  _("Failed to read from QMP server %s: %s"),
                                                  self->peer_name, error->message));
      return;
    }

  if (n_read == 0)
    {
      if (buffer_is_blank (conn->buffer))
        client_close_with_error (self, g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED,
                                                    /* Translators: the placeholder is the QMP
                                                     * socket or address. */
                                                    _("QMP server %s closed the connection"),
                                                    self->peer_name));
      else
        client_protocol_error (self, g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_PROTOCOL,
                                                  /* Translators: the first placeholder is the
                                                   * QMP socket or address, the second a byte
                                                   * count. */
                                                  _("QMP server %s closed the connection in the middle of a message, after %u bytes of it"),
                                                  self->peer_name, conn->buffer->len));
      return;
    }

  connection_process_input (conn);

  if (!conn->closed)
    connection_read (conn);
}

/* Reads into the free end of the buffer, which grows by one chunk. */
static void
connection_read (QmpConnection *conn)
{
  conn->read_offset = conn->buffer->len;
  g_byte_array_set_size (conn->buffer, (guint) (conn->read_offset + READ_CHUNK_SIZE));
  conn->reading = TRUE;

  g_input_stream_read_async (conn->input, conn->buffer->data + conn->read_offset,
                             READ_CHUNK_SIZE, G_PRIORITY_DEFAULT, conn->cancellable,
                             on_read_done, qmp_connection_ref (conn));
}

/* Connecting */

static void
connect_data_free (ConnectData *data)
{
  g_clear_object (&data->cancellable);
  clear_source (&data->timeout_source);
  clear_source (&data->cancel_source);
  g_free (data);
}

/* Ends the connect operation, if one is under way, with @error (owned) or
 * success. */
static void
client_complete_connect (HexzQmpClient *self,
                         GError        *error)
{
  g_autoptr(GTask) task = g_steal_pointer (&self->connect_task);
  ConnectData *data;

  if (task == NULL)
    {
      g_clear_error (&error);
      return;
    }

  data = g_task_get_task_data (task);
  clear_source (&data->timeout_source);
  clear_source (&data->cancel_source);

  if (error != NULL)
    {
      g_cancellable_cancel (data->cancellable);
      g_task_return_error (task, error);
    }
  else
    {
      g_task_return_boolean (task, TRUE);
    }
}

static void
on_capabilities_negotiated (GObject      *source,
                            GAsyncResult *result,
                            gpointer      user_data)
{
  HexzQmpClient *self = HEXZ_QMP_CLIENT (source);
  g_autoptr(JsonNode) reply = NULL;
  GError *error = NULL;

  reply = g_task_propagate_pointer (G_TASK (result), &error);

  if (self->state != STATE_NEGOTIATING)
    {
      /* The connection closed, which already failed the connect task. */
      g_clear_error (&error);
      return;
    }

  if (error != NULL)
    {
      client_close_with_error (self, error);
      return;
    }

  self->state = STATE_CONNECTED;
  g_debug ("Connected to QMP server %s", self->peer_name);

  g_object_freeze_notify (G_OBJECT (self));
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CONNECTED]);
  if (self->qemu_version != NULL)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_QEMU_VERSION]);
  if (self->qemu_package != NULL)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_QEMU_PACKAGE]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CAPABILITIES]);
  g_object_thaw_notify (G_OBJECT (self));

  client_complete_connect (self, NULL);
}

static void
client_start_session (HexzQmpClient *self,
                      GIOStream     *stream)
{
  self->connection = qmp_connection_new (self, stream);
  self->state = STATE_GREETING;
  connection_read (self->connection);
}

static gboolean
on_connect_timeout (gpointer user_data)
{
  HexzQmpClient *self = user_data;
  ConnectData *data = g_task_get_task_data (self->connect_task);
  GError *error;

  g_clear_pointer (&data->timeout_source, g_source_unref);

  if (self->state == STATE_GREETING)
    error = g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_NO_GREETING,
                         /* Translators: the first placeholder is the QMP socket
                          * or address, the second a duration in milliseconds. */
                         _("QMP server %s sent no greeting within %u ms: the monitor may be busy with another client, since a QMP socket serves one client at a time"),
                         self->peer_name, self->connect_timeout_ms);
  else
    error = g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_TIMED_OUT,
                         /* Translators: the first placeholder is the QMP socket
                          * or address, the second a duration in milliseconds. */
                         _("Connecting to QMP server %s timed out after %u ms"),
                         self->peer_name, self->connect_timeout_ms);

  client_close_with_error (self, error);

  return G_SOURCE_REMOVE;
}

static gboolean
on_connect_cancelled (GCancellable *cancellable,
                      gpointer      user_data)
{
  HexzQmpClient *self = user_data;
  ConnectData *data = g_task_get_task_data (self->connect_task);

  g_clear_pointer (&data->cancel_source, g_source_unref);

  client_close_with_error (self, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                      _("Operation was cancelled")));

  return G_SOURCE_REMOVE;
}

/* Creates the connect task and its timeout; returns FALSE when the task
 * already completed because @cancellable was cancelled. */
static gboolean
client_begin_connect (HexzQmpClient       *self,
                      const char          *peer_name,
                      GCancellable        *cancellable,
                      GAsyncReadyCallback  callback,
                      gpointer             user_data,
                      gpointer             source_tag)
{
  g_autoptr(GTask) task = NULL;
  ConnectData *data;

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, source_tag);

  if (g_task_return_error_if_cancelled (task))
    return FALSE;

  data = g_new0 (ConnectData, 1);
  data->cancellable = g_cancellable_new ();
  g_task_set_task_data (task, data, (GDestroyNotify) connect_data_free);

  self->peer_name = g_strdup (peer_name);
  self->state = STATE_CONNECTING;
  self->connect_task = g_steal_pointer (&task);

  if (self->connect_timeout_ms > 0)
    data->timeout_source = attach_timeout (self->context, self->connect_timeout_ms,
                                           on_connect_timeout, self);
  data->cancel_source = attach_cancellable (self->context, cancellable,
                                            on_connect_cancelled, self);

  return TRUE;
}

static void
on_socket_connected (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  HexzQmpClient *self = g_task_get_source_object (task);
  g_autoptr(GSocketConnection) connection = NULL;
  g_autoptr(GError) error = NULL;

  connection = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), result, &error);

  if (self->connect_task != task || self->state != STATE_CONNECTING)
    {
      /* The connect operation already ended by timeout or cancellation. */
      if (connection != NULL)
        g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
      return;
    }

  if (connection == NULL)
    {
      client_close_with_error (self, g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED,
                                                  /* Translators: the first placeholder is the
                                                   * QMP socket or address, the second the
                                                   * system's error message. */
                                                  _("Cannot connect to the QMP monitor at %s: "
                                                    "%s. Check that QEMU runs and was started "
                                                    "with -qmp on that socket."),
                                                  self->peer_name, error->message));
      return;
    }

  client_start_session (self, G_IO_STREAM (connection));
}

static void
client_connect (HexzQmpClient       *self,
                GSocketConnectable  *connectable,
                const char          *peer_name,
                GCancellable        *cancellable,
                GAsyncReadyCallback  callback,
                gpointer             user_data,
                gpointer             source_tag)
{
  g_autoptr(GSocketClient) socket_client = NULL;
  ConnectData *data;

  if (!client_begin_connect (self, peer_name, cancellable, callback, user_data, source_tag))
    return;

  data = g_task_get_task_data (self->connect_task);
  socket_client = g_socket_client_new ();
  g_socket_client_connect_async (socket_client, connectable, data->cancellable,
                                 on_socket_connected, g_object_ref (self->connect_task));
}

/**
 * hexz_qmp_client_connect_to_path_async:
 * @self: a QMP client
 * @path: the path of QEMU's QMP unix socket, as given to `-qmp unix:PATH`
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the client is connected or failed
 * @user_data: data for @callback
 *
 * Connects to a QMP monitor on a unix socket, reads its greeting and
 * negotiates capabilities. The whole operation fails after
 * [property@Hexz.QmpClient:connect-timeout].
 *
 * A client connects once; create another client to reconnect.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_connect_to_path_async (HexzQmpClient       *self,
                                       const char          *path,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data)
{
  g_autoptr(GSocketAddress) address = NULL;

  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));
  g_return_if_fail (path != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));
  g_return_if_fail (self->state == STATE_NEW);

  address = g_unix_socket_address_new (path);
  client_connect (self, G_SOCKET_CONNECTABLE (address), path, cancellable,
                  callback, user_data, hexz_qmp_client_connect_to_path_async);
}

/**
 * hexz_qmp_client_connect_async:
 * @self: a QMP client
 * @connectable: the address of the QMP monitor
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the client is connected or failed
 * @user_data: data for @callback
 *
 * Connects to a QMP monitor at any address, reads its greeting and
 * negotiates capabilities. The whole operation fails after
 * [property@Hexz.QmpClient:connect-timeout]. File descriptors can be passed
 * only over a unix socket.
 *
 * A client connects once; create another client to reconnect.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_connect_async (HexzQmpClient       *self,
                               GSocketConnectable  *connectable,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  g_autofree char *peer_name = NULL;

  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));
  g_return_if_fail (G_IS_SOCKET_CONNECTABLE (connectable));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));
  g_return_if_fail (self->state == STATE_NEW);

  peer_name = g_socket_connectable_to_string (connectable);
  client_connect (self, connectable, peer_name, cancellable, callback, user_data,
                  hexz_qmp_client_connect_async);
}

/**
 * hexz_qmp_client_connect_to_stream_async:
 * @self: a QMP client
 * @stream: a stream already connected to a QMP monitor
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when the client is connected or failed
 * @user_data: data for @callback
 *
 * Reads the greeting of a QMP monitor on an open stream and negotiates
 * capabilities. The client takes a reference on @stream and closes it when
 * the connection ends. File descriptors can be passed only when @stream is
 * a [class@Gio.SocketConnection] on a unix socket.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_connect_to_stream_async (HexzQmpClient       *self,
                                         GIOStream           *stream,
                                         GCancellable        *cancellable,
                                         GAsyncReadyCallback  callback,
                                         gpointer             user_data)
{
  g_autofree char *peer_name = NULL;

  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));
  g_return_if_fail (G_IS_IO_STREAM (stream));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));
  g_return_if_fail (self->state == STATE_NEW);

  peer_name = g_strdup_printf ("%s %p", G_OBJECT_TYPE_NAME (stream), stream);
  if (!client_begin_connect (self, peer_name, cancellable, callback, user_data,
                             hexz_qmp_client_connect_to_stream_async))
    return;

  client_start_session (self, stream);
}

/**
 * hexz_qmp_client_connect_finish:
 * @self: a QMP client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a connect operation started with
 * [method@Hexz.QmpClient.connect_to_path_async],
 * [method@Hexz.QmpClient.connect_async] or
 * [method@Hexz.QmpClient.connect_to_stream_async].
 *
 * Returns: %TRUE when the client is connected and ready for commands
 *
 * Since: 1.0
 */
gboolean
hexz_qmp_client_connect_finish (HexzQmpClient  *self,
                                GAsyncResult   *result,
                                GError        **error)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Closing */

static void
event_waiter_free (EventWaiter *waiter)
{
  g_assert (waiter->task == NULL);

  clear_source (&waiter->timeout_source);
  clear_source (&waiter->cancel_source);
  if (waiter->predicate_data_destroy != NULL)
    waiter->predicate_data_destroy (waiter->predicate_data);
  g_free (waiter->name);
  g_free (waiter);
}

/* Ends @waiter with @event or @error (one of them, owned). */
static void
event_waiter_complete (EventWaiter *waiter,
                       QmpEvent    *event,
                       GError      *error)
{
  g_autoptr(GTask) task = g_steal_pointer (&waiter->task);

  g_queue_remove (&waiter->client->waiters, waiter);
  event_waiter_free (waiter);

  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, event, (GDestroyNotify) qmp_event_free);
}

/* Closes the connection because of @reason (owned): fails the connect
 * operation with @reason, and every pending command and event waiter with
 * HEXZ_QMP_ERROR_DISCONNECTED. Emits ::disconnected when the client had
 * been connected, unless it is being disposed. */
static void
client_close_with_error (HexzQmpClient *self,
                         GError        *reason)
{
  g_autoptr(HexzQmpClient) hold = NULL;
  g_autoptr(GError) owned_reason = reason;
  gboolean was_connected;
  PendingCommand *pc;
  EventWaiter *waiter;

  if (self->state == STATE_CLOSED || self->state == STATE_NEW)
    return;

  if (!self->disposed)
    hold = g_object_ref (self);

  was_connected = self->state == STATE_CONNECTED;
  self->state = STATE_CLOSED;
  g_debug ("Closing the connection to QMP server %s: %s", self->peer_name, reason->message);

  if (self->connection != NULL)
    {
      qmp_connection_shut_down (self->connection);
      g_clear_pointer (&self->connection, qmp_connection_unref);
    }
  g_queue_clear_full (&self->unanswered_ids, g_free);

  client_complete_connect (self, g_error_copy (reason));

  while ((pc = g_queue_peek_head (&self->pending_order)) != NULL)
    {
      pending_command_complete (pc, NULL,
                                g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED,
                                             /* Translators: the first placeholder is a
                                              * QMP command name, the second the reason
                                              * the connection was closed. */
                                             _("No reply to QMP command “%s”: %s"),
                                             pc->command, reason->message));
    }

  while ((waiter = g_queue_peek_head (&self->waiters)) != NULL)
    {
      event_waiter_complete (waiter, NULL,
                             g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED,
                                          /* Translators: the first placeholder is a QMP
                                           * event name, the second the reason the
                                           * connection was closed. */
                                          _("Stopped waiting for QMP event %s: %s"),
                                          waiter->name, reason->message));
    }

  if (was_connected && !self->disposed)
    {
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CONNECTED]);
      g_signal_emit (self, signals[SIGNAL_DISCONNECTED], 0, reason);
    }
}

/**
 * hexz_qmp_client_close:
 * @self: a QMP client
 *
 * Closes the connection. A connect operation under way, every pending
 * command and every event waiter fail with %HEXZ_QMP_ERROR_DISCONNECTED,
 * and [signal@Hexz.QmpClient::disconnected] is emitted if the client was
 * connected. Closing a closed client does nothing.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_close (HexzQmpClient *self)
{
  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));

  if (self->state == STATE_NEW || self->state == STATE_CLOSED)
    return;

  client_close_with_error (self, g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED,
                                              /* Translators: the placeholder is the QMP
                                               * socket or address. */
                                              _("The connection to QMP server %s was closed by the client"),
                                              self->peer_name));
}

/* Executing commands */

/**
 * hexz_qmp_client_execute_async:
 * @self: a QMP client
 * @command: the QMP command, such as `query-status`
 * @arguments: (nullable): the command's `arguments` object
 * @fd_list: (nullable): file descriptors to pass with the command, for
 *   `getfd` and `add-fd`
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called with the reply
 * @user_data: data for @callback
 *
 * Sends a command and waits for its reply. Commands are written in the
 * order of the calls, and any number may be in flight.
 *
 * The descriptors of @fd_list travel in the same socket message as the
 * first bytes of the command, which is where QEMU looks for them. This
 * works only over a unix socket, and fails with
 * %HEXZ_QMP_ERROR_NOT_SUPPORTED on other streams.
 *
 * The command fails with %HEXZ_QMP_ERROR_TIMED_OUT after
 * [property@Hexz.QmpClient:command-timeout], and with
 * %G_IO_ERROR_CANCELLED when @cancellable is cancelled; a reply that
 * arrives later is discarded. QEMU may still carry out a command whose
 * wait was cancelled.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_execute_async (HexzQmpClient       *self,
                               const char          *command,
                               JsonObject          *arguments,
                               GUnixFDList         *fd_list,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  GTask *task;

  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));
  g_return_if_fail (command != NULL);
  g_return_if_fail (fd_list == NULL || G_IS_UNIX_FD_LIST (fd_list));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_qmp_client_execute_async);

  command_send (self, task, command, arguments, fd_list, self->command_timeout_ms, FALSE);
}

/**
 * hexz_qmp_client_execute_finish:
 * @self: a QMP client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a command started with [method@Hexz.QmpClient.execute_async].
 * An error reply from QEMU becomes an error in the %HEXZ_QMP_ERROR domain
 * whose message contains QEMU's description; its QMP class is available
 * from [func@Hexz.QmpError.get_class].
 *
 * Returns: (transfer full): the `return` member of the reply, often an
 *   empty object, or %NULL on error
 *
 * Since: 1.0
 */
JsonNode *
hexz_qmp_client_execute_finish (HexzQmpClient  *self,
                                GAsyncResult   *result,
                                GError        **error)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, hexz_qmp_client_execute_async), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
on_execute_json_reply (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(JsonNode) reply = NULL;
  GError *error = NULL;

  reply = hexz_qmp_client_execute_finish (HEXZ_QMP_CLIENT (source), result, &error);
  if (reply == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, json_to_string (reply, FALSE), g_free);
}

/**
 * hexz_qmp_client_execute_json_async:
 * @self: a QMP client
 * @command: the QMP command, such as `query-status`
 * @arguments_json: (nullable): the command's `arguments` as a JSON object
 *   in text form, such as `{"fdname": "snapshot"}`
 * @fd_list: (nullable): file descriptors to pass with the command
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called with the reply
 * @user_data: data for @callback
 *
 * Sends a command like [method@Hexz.QmpClient.execute_async], with its
 * arguments and its reply as JSON text, which is handier from languages
 * that have their own JSON support. Invalid @arguments_json fails with
 * %G_IO_ERROR_INVALID_ARGUMENT.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_execute_json_async (HexzQmpClient       *self,
                                    const char          *command,
                                    const char          *arguments_json,
                                    GUnixFDList         *fd_list,
                                    GCancellable        *cancellable,
                                    GAsyncReadyCallback  callback,
                                    gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(JsonNode) arguments = NULL;
  g_autoptr(GError) error = NULL;

  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));
  g_return_if_fail (command != NULL);
  g_return_if_fail (fd_list == NULL || G_IS_UNIX_FD_LIST (fd_list));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_qmp_client_execute_json_async);

  if (arguments_json != NULL && arguments_json[0] != '\0')
    {
      arguments = json_from_string (arguments_json, &error);
      if (arguments == NULL || !JSON_NODE_HOLDS_OBJECT (arguments))
        {
          g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                   /* Translators: the first placeholder is a QMP command
                                    * name, the second the JSON parser's message. */
                                   _("Invalid arguments for QMP command “%s”: %s"),
                                   command,
                                   error != NULL ? error->message : _("a JSON object was expected"));
          return;
        }
    }

  hexz_qmp_client_execute_async (self, command,
                                 arguments != NULL ? json_node_get_object (arguments) : NULL,
                                 fd_list, cancellable, on_execute_json_reply,
                                 g_steal_pointer (&task));
}

/**
 * hexz_qmp_client_execute_json_finish:
 * @self: a QMP client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes a command started with
 * [method@Hexz.QmpClient.execute_json_async].
 *
 * Returns: (transfer full): the `return` member of the reply as compact
 *   JSON text, or %NULL on error
 *
 * Since: 1.0
 */
char *
hexz_qmp_client_execute_json_finish (HexzQmpClient  *self,
                                     GAsyncResult   *result,
                                     GError        **error)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, hexz_qmp_client_execute_json_async), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* Waiting for events */

static gboolean
on_wait_event_timeout (gpointer user_data)
{
  EventWaiter *waiter = user_data;

  g_clear_pointer (&waiter->timeout_source, g_source_unref);

  event_waiter_complete (waiter, NULL,
                         g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_TIMED_OUT,
                                      /* Translators: the first placeholder is a QMP event
                                       * name, the second the QMP socket or address. */
                                      _("Timed out waiting for QMP event %s from %s"),
                                      waiter->name, waiter->client->peer_name));

  return G_SOURCE_REMOVE;
}

static gboolean
on_wait_event_cancelled (GCancellable *cancellable,
                         gpointer      user_data)
{
  EventWaiter *waiter = user_data;

  g_clear_pointer (&waiter->cancel_source, g_source_unref);

  event_waiter_complete (waiter, NULL,
                         g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                              _("Operation was cancelled")));

  return G_SOURCE_REMOVE;
}

/* Takes the oldest event of @name in the backlog that the predicate
 * accepts, or returns NULL. */
static QmpEvent *
client_take_from_backlog (HexzQmpClient         *self,
                          const char            *name,
                          HexzQmpEventPredicate  predicate,
                          gpointer               predicate_data)
{
  GQueue *backlog = g_hash_table_lookup (self->backlog, name);

  if (backlog == NULL)
    return NULL;

  for (GList *l = backlog->head; l != NULL; l = l->next)
    {
      QmpEvent *event = l->data;

      if (predicate == NULL || predicate (event->name, event->data, predicate_data))
        {
          g_queue_delete_link (backlog, l);
          return event;
        }
    }

  return NULL;
}

/**
 * hexz_qmp_client_wait_event_async:
 * @self: a QMP client
 * @name: the event name, such as `MIGRATION` or `STOP`
 * @predicate: (nullable) (scope notified) (closure predicate_data) (destroy predicate_data_destroy):
 *   a function that accepts or rejects each event of that name, or %NULL
 *   to take the first one
 * @predicate_data: data for @predicate
 * @predicate_data_destroy: (nullable): frees @predicate_data once the wait
 *   ends
 * @timeout_ms: how long to wait, in milliseconds; 0 waits without limit
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called with the event
 * @user_data: data for @callback
 *
 * Waits for an event named @name that @predicate accepts.
 *
 * The client keeps the last 16 events of each name that no waiter took.
 * The wait first takes the oldest matching event of that backlog, so that
 * an event that arrived between a command's reply and this call is not
 * lost. Without one, it takes the next matching event. Each event in the
 * backlog goes to one waiter only, while a live event goes to every waiter
 * that accepts it.
 *
 * The wait starts within this call. To wait for an event caused by a
 * command without taking an older event of the same name, call
 * [method@Hexz.QmpClient.discard_events] and this function before sending
 * the command. For example, discard `MIGRATION` events, wait for a
 * `MIGRATION` event whose `status` is `completed`, then send `migrate`.
 * QEMU emits `MIGRATION` events only once the `events` migration
 * capability is on (`migrate-set-capabilities`).
 *
 * The wait fails with %HEXZ_QMP_ERROR_TIMED_OUT, %G_IO_ERROR_CANCELLED, or
 * %HEXZ_QMP_ERROR_DISCONNECTED when the connection closes first.
 *
 * From Python, pass @predicate_data as a tuple, possibly empty: PyGObject
 * passes its members to @predicate as extra arguments.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_wait_event_async (HexzQmpClient         *self,
                                  const char            *name,
                                  HexzQmpEventPredicate  predicate,
                                  gpointer               predicate_data,
                                  GDestroyNotify         predicate_data_destroy,
                                  guint                  timeout_ms,
                                  GCancellable          *cancellable,
                                  GAsyncReadyCallback    callback,
                                  gpointer               user_data)
{
  g_autoptr(GTask) task = NULL;
  EventWaiter *waiter;
  QmpEvent *event;

  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));
  g_return_if_fail (name != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_qmp_client_wait_event_async);

  if (g_task_return_error_if_cancelled (task))
    goto out;

  if (self->state == STATE_CLOSED)
    {
      g_task_return_new_error (task, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED,
                               /* Translators: the placeholder is a QMP event name. */
                               _("Cannot wait for QMP event %s: the client is not connected to a QMP server"),
                               name);
      goto out;
    }

  event = client_take_from_backlog (self, name, predicate, predicate_data);
  if (event != NULL)
    {
      g_task_return_pointer (task, event, (GDestroyNotify) qmp_event_free);
      goto out;
    }

  waiter = g_new0 (EventWaiter, 1);
  waiter->client = self;
  waiter->name = g_strdup (name);
  waiter->predicate = predicate;
  waiter->predicate_data = predicate_data;
  waiter->predicate_data_destroy = predicate_data_destroy;
  waiter->task = g_steal_pointer (&task);

  if (timeout_ms > 0)
    waiter->timeout_source = attach_timeout (self->context, timeout_ms,
                                             on_wait_event_timeout, waiter);
  waiter->cancel_source = attach_cancellable (self->context, cancellable,
                                              on_wait_event_cancelled, waiter);
  g_queue_push_tail (&self->waiters, waiter);
  return;

out:
  if (predicate_data_destroy != NULL)
    predicate_data_destroy (predicate_data);
}

/**
 * hexz_qmp_client_wait_event_finish:
 * @self: a QMP client
 * @result: the result passed to the callback
 * @timestamp_us: (out) (optional): QEMU's timestamp of the event, in
 *   microseconds since the Unix epoch
 * @error: return location for an error
 *
 * Finishes a wait started with [method@Hexz.QmpClient.wait_event_async].
 *
 * Returns: (transfer full): the event's `data` member, an empty object
 *   when the event has none, or %NULL on error
 *
 * Since: 1.0
 */
JsonObject *
hexz_qmp_client_wait_event_finish (HexzQmpClient  *self,
                                   GAsyncResult   *result,
                                   gint64         *timestamp_us,
                                   GError        **error)
{
  QmpEvent *event;
  JsonObject *data;

  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, hexz_qmp_client_wait_event_async), NULL);

  event = g_task_propagate_pointer (G_TASK (result), error);
  if (event == NULL)
    return NULL;

  if (timestamp_us != NULL)
    *timestamp_us = event->timestamp_us;
  data = json_object_ref (event->data);
  qmp_event_free (event);

  return data;
}

/**
 * hexz_qmp_client_discard_events:
 * @self: a QMP client
 * @name: (nullable): the event name, or %NULL for all events
 *
 * Drops the events of @name that no waiter took, so that the next
 * [method@Hexz.QmpClient.wait_event_async] takes only an event that
 * arrives after this call.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_discard_events (HexzQmpClient *self,
                                const char    *name)
{
  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));

  if (name == NULL)
    g_hash_table_remove_all (self->backlog);
  else
    g_hash_table_remove (self->backlog, name);
}

/* Typed helpers */

typedef struct
{
  HexzRunState state;
  gboolean     running;
} StatusResult;

static void
on_query_status_reply (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(JsonNode) reply = NULL;
  StatusResult *status_result;
  JsonObject *object;
  JsonNode *running;
  const char *status;
  GError *error = NULL;

  reply = hexz_qmp_client_execute_finish (HEXZ_QMP_CLIENT (source), result, &error);
  if (reply == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  object = JSON_NODE_HOLDS_OBJECT (reply) ? json_node_get_object (reply) : NULL;
  status = object != NULL ? object_get_string (object, "status") : NULL;
  running = object != NULL ? json_object_get_member (object, "running") : NULL;
  if (status == NULL || running == NULL || !JSON_NODE_HOLDS_VALUE (running) ||
      json_node_get_value_type (running) != G_TYPE_BOOLEAN)
    {
      g_autofree char *text = json_to_string (reply, FALSE);

      g_task_return_new_error (task, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_PROTOCOL,
                               /* Translators: the placeholder is the raw JSON QEMU sent. */
                               _("Invalid reply to QMP command “query-status”: %s"), text);
      return;
    }

  status_result = g_new0 (StatusResult, 1);
  status_result->state = hexz_run_state_from_string (status);
  status_result->running = json_node_get_boolean (running);
  if (status_result->state == HEXZ_RUN_STATE_UNKNOWN)
    g_debug ("QEMU reported run state “%s”, unknown to this library", status);

  g_task_return_pointer (task, status_result, g_free);
}

/**
 * hexz_qmp_client_query_status_async:
 * @self: a QMP client
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called with the run state
 * @user_data: data for @callback
 *
 * Asks QEMU for the virtual machine's run state with `query-status`.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_query_status_async (HexzQmpClient       *self,
                                    GCancellable        *cancellable,
                                    GAsyncReadyCallback  callback,
                                    gpointer             user_data)
{
  GTask *task;

  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_qmp_client_query_status_async);

  hexz_qmp_client_execute_async (self, "query-status", NULL, NULL, cancellable,
                                 on_query_status_reply, task);
}

/**
 * hexz_qmp_client_query_status_finish:
 * @self: a QMP client
 * @result: the result passed to the callback
 * @running: (out) (optional): whether the virtual CPUs run
 * @error: return location for an error
 *
 * Finishes [method@Hexz.QmpClient.query_status_async].
 *
 * Returns: the run state, %HEXZ_RUN_STATE_UNKNOWN for a state this library
 *   does not know or on error
 *
 * Since: 1.0
 */
HexzRunState
hexz_qmp_client_query_status_finish (HexzQmpClient  *self,
                                     GAsyncResult   *result,
                                     gboolean       *running,
                                     GError        **error)
{
  g_autofree StatusResult *status_result = NULL;

  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), HEXZ_RUN_STATE_UNKNOWN);
  g_return_val_if_fail (g_task_is_valid (result, self), HEXZ_RUN_STATE_UNKNOWN);
  g_return_val_if_fail (g_async_result_is_tagged (result, hexz_qmp_client_query_status_async),
                        HEXZ_RUN_STATE_UNKNOWN);

  if (running != NULL)
    *running = FALSE;

  status_result = g_task_propagate_pointer (G_TASK (result), error);
  if (status_result == NULL)
    return HEXZ_RUN_STATE_UNKNOWN;

  if (running != NULL)
    *running = status_result->running;

  return status_result->state;
}

static void
on_simple_command_reply (GObject      *source,
                         GAsyncResult *result,
                         gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(JsonNode) reply = NULL;
  GError *error = NULL;

  reply = hexz_qmp_client_execute_finish (HEXZ_QMP_CLIENT (source), result, &error);
  if (reply == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

/**
 * hexz_qmp_client_stop_async:
 * @self: a QMP client
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when QEMU replied
 * @user_data: data for @callback
 *
 * Pauses the virtual machine with `stop`. QEMU emits a `STOP` event when the
 * virtual CPUs have stopped; a VM that is already paused stays paused and
 * emits none.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_stop_async (HexzQmpClient       *self,
                            GCancellable        *cancellable,
                            GAsyncReadyCallback  callback,
                            gpointer             user_data)
{
  GTask *task;

  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_qmp_client_stop_async);

  hexz_qmp_client_execute_async (self, "stop", NULL, NULL, cancellable,
                                 on_simple_command_reply, task);
}

/**
 * hexz_qmp_client_stop_finish:
 * @self: a QMP client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Hexz.QmpClient.stop_async].
 *
 * Returns: %TRUE when QEMU accepted the command
 *
 * Since: 1.0
 */
gboolean
hexz_qmp_client_stop_finish (HexzQmpClient  *self,
                             GAsyncResult   *result,
                             GError        **error)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_async_result_is_tagged (result, hexz_qmp_client_stop_async), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * hexz_qmp_client_cont_async:
 * @self: a QMP client
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called when QEMU replied
 * @user_data: data for @callback
 *
 * Resumes the virtual machine with `cont`. QEMU emits a `RESUME` event.
 * QEMU rejects `cont` while a migration is finishing (run state
 * `finish-migrate`).
 *
 * Since: 1.0
 */
void
hexz_qmp_client_cont_async (HexzQmpClient       *self,
                            GCancellable        *cancellable,
                            GAsyncReadyCallback  callback,
                            gpointer             user_data)
{
  GTask *task;

  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_qmp_client_cont_async);

  hexz_qmp_client_execute_async (self, "cont", NULL, NULL, cancellable,
                                 on_simple_command_reply, task);
}

/**
 * hexz_qmp_client_cont_finish:
 * @self: a QMP client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Hexz.QmpClient.cont_async].
 *
 * Returns: %TRUE when QEMU accepted the command
 *
 * Since: 1.0
 */
gboolean
hexz_qmp_client_cont_finish (HexzQmpClient  *self,
                             GAsyncResult   *result,
                             GError        **error)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_async_result_is_tagged (result, hexz_qmp_client_cont_async), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
on_query_migrate_reply (GObject      *source,
                        GAsyncResult *result,
                        gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(JsonNode) reply = NULL;
  GError *error = NULL;

  reply = hexz_qmp_client_execute_finish (HEXZ_QMP_CLIENT (source), result, &error);
  if (reply == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  if (!JSON_NODE_HOLDS_OBJECT (reply))
    {
      g_autofree char *text = json_to_string (reply, FALSE);

      g_task_return_new_error (task, HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_PROTOCOL,
                               /* Translators: the placeholder is the raw JSON QEMU sent. */
                               _("Invalid reply to QMP command “query-migrate”: %s"), text);
      return;
    }

  g_task_return_pointer (task, hexz_migration_info_new_from_json (json_node_get_object (reply)),
                         (GDestroyNotify) hexz_migration_info_unref);
}

/**
 * hexz_qmp_client_query_migrate_async:
 * @self: a QMP client
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async): called with the migration information
 * @user_data: data for @callback
 *
 * Asks QEMU for the state of the outgoing migration with `query-migrate`.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_query_migrate_async (HexzQmpClient       *self,
                                     GCancellable        *cancellable,
                                     GAsyncReadyCallback  callback,
                                     gpointer             user_data)
{
  GTask *task;

  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, hexz_qmp_client_query_migrate_async);

  hexz_qmp_client_execute_async (self, "query-migrate", NULL, NULL, cancellable,
                                 on_query_migrate_reply, task);
}

/**
 * hexz_qmp_client_query_migrate_finish:
 * @self: a QMP client
 * @result: the result passed to the callback
 * @error: return location for an error
 *
 * Finishes [method@Hexz.QmpClient.query_migrate_async].
 *
 * Returns: (transfer full): the migration information, or %NULL on error
 *
 * Since: 1.0
 */
HexzMigrationInfo *
hexz_qmp_client_query_migrate_finish (HexzQmpClient  *self,
                                      GAsyncResult   *result,
                                      GError        **error)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, hexz_qmp_client_query_migrate_async), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* Properties */

/**
 * hexz_qmp_client_new:
 *
 * Creates a QMP client. Connect it with
 * [method@Hexz.QmpClient.connect_to_path_async] or one of the other
 * connect functions. The client uses the thread-default main context of
 * the calling thread for all its callbacks.
 *
 * Returns: (transfer full): a new client
 *
 * Since: 1.0
 */
HexzQmpClient *
hexz_qmp_client_new (void)
{
  return g_object_new (HEXZ_TYPE_QMP_CLIENT, NULL);
}

/**
 * hexz_qmp_client_get_connected:
 * @self: a QMP client
 *
 * Checks whether the client has negotiated capabilities and its connection
 * is still open.
 *
 * Returns: %TRUE when commands can be sent
 *
 * Since: 1.0
 */
gboolean
hexz_qmp_client_get_connected (HexzQmpClient *self)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), FALSE);

  return self->state == STATE_CONNECTED;
}

/**
 * hexz_qmp_client_get_qemu_version:
 * @self: a QMP client
 *
 * Gets QEMU's version from the greeting, as `MAJOR.MINOR.MICRO`.
 *
 * Returns: (nullable): the version, or %NULL before the greeting or when
 *   the greeting had none
 *
 * Since: 1.0
 */
const char *
hexz_qmp_client_get_qemu_version (HexzQmpClient *self)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), NULL);

  return self->qemu_version;
}

/**
 * hexz_qmp_client_get_qemu_version_numbers:
 * @self: a QMP client
 * @major: (out) (optional): the major version
 * @minor: (out) (optional): the minor version
 * @micro: (out) (optional): the micro version
 *
 * Gets QEMU's version from the greeting as numbers.
 *
 * Returns: %TRUE when the greeting carried a version; otherwise the
 *   numbers are set to 0
 *
 * Since: 1.0
 */
gboolean
hexz_qmp_client_get_qemu_version_numbers (HexzQmpClient *self,
                                          guint         *major,
                                          guint         *minor,
                                          guint         *micro)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), FALSE);

  if (major != NULL)
    *major = self->qemu_major;
  if (minor != NULL)
    *minor = self->qemu_minor;
  if (micro != NULL)
    *micro = self->qemu_micro;

  return self->qemu_version != NULL;
}

/**
 * hexz_qmp_client_get_qemu_package:
 * @self: a QMP client
 *
 * Gets the package string from the greeting, which distributions set to
 * their package version, such as `Debian 1:7.2+dfsg-7`.
 *
 * Returns: (nullable): the package string, or %NULL when unknown
 *
 * Since: 1.0
 */
const char *
hexz_qmp_client_get_qemu_package (HexzQmpClient *self)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), NULL);

  return self->qemu_package;
}

/**
 * hexz_qmp_client_get_capabilities:
 * @self: a QMP client
 *
 * Gets the capabilities the server offered in its greeting, such as `oob`.
 * The client enables none of them.
 *
 * Returns: (nullable) (array zero-terminated=1) (transfer none): the
 *   capabilities, or %NULL before the greeting
 *
 * Since: 1.0
 */
const char * const *
hexz_qmp_client_get_capabilities (HexzQmpClient *self)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), NULL);

  return (const char * const *) self->capabilities;
}

/**
 * hexz_qmp_client_get_connect_timeout:
 * @self: a QMP client
 *
 * Gets [property@Hexz.QmpClient:connect-timeout].
 *
 * Returns: the timeout in milliseconds; 0 means none
 *
 * Since: 1.0
 */
guint
hexz_qmp_client_get_connect_timeout (HexzQmpClient *self)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), 0);

  return self->connect_timeout_ms;
}

/**
 * hexz_qmp_client_set_connect_timeout:
 * @self: a QMP client
 * @timeout_ms: the timeout in milliseconds; 0 means none
 *
 * Sets [property@Hexz.QmpClient:connect-timeout]. It applies to connect
 * operations started afterwards.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_set_connect_timeout (HexzQmpClient *self,
                                     guint          timeout_ms)
{
  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));

  if (self->connect_timeout_ms == timeout_ms)
    return;

  self->connect_timeout_ms = timeout_ms;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CONNECT_TIMEOUT]);
}

/**
 * hexz_qmp_client_get_command_timeout:
 * @self: a QMP client
 *
 * Gets [property@Hexz.QmpClient:command-timeout].
 *
 * Returns: the timeout in milliseconds; 0 means none
 *
 * Since: 1.0
 */
guint
hexz_qmp_client_get_command_timeout (HexzQmpClient *self)
{
  g_return_val_if_fail (HEXZ_IS_QMP_CLIENT (self), 0);

  return self->command_timeout_ms;
}

/**
 * hexz_qmp_client_set_command_timeout:
 * @self: a QMP client
 * @timeout_ms: the timeout in milliseconds; 0 means none
 *
 * Sets [property@Hexz.QmpClient:command-timeout]. It applies to commands
 * sent afterwards.
 *
 * Since: 1.0
 */
void
hexz_qmp_client_set_command_timeout (HexzQmpClient *self,
                                     guint          timeout_ms)
{
  g_return_if_fail (HEXZ_IS_QMP_CLIENT (self));

  if (self->command_timeout_ms == timeout_ms)
    return;

  self->command_timeout_ms = timeout_ms;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_COMMAND_TIMEOUT]);
}

static void
hexz_qmp_client_get_property (GObject    *object,
                              guint       prop_id,
                              GValue     *value,
                              GParamSpec *pspec)
{
  HexzQmpClient *self = HEXZ_QMP_CLIENT (object);

  switch (prop_id)
    {
    case PROP_CONNECTED:
      g_value_set_boolean (value, hexz_qmp_client_get_connected (self));
      break;

    case PROP_QEMU_VERSION:
      g_value_set_string (value, self->qemu_version);
      break;

    case PROP_QEMU_PACKAGE:
      g_value_set_string (value, self->qemu_package);
      break;

    case PROP_CAPABILITIES:
      g_value_set_boxed (value, self->capabilities);
      break;

    case PROP_CONNECT_TIMEOUT:
      g_value_set_uint (value, self->connect_timeout_ms);
      break;

    case PROP_COMMAND_TIMEOUT:
      g_value_set_uint (value, self->command_timeout_ms);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_qmp_client_set_property (GObject      *object,
                              guint         prop_id,
                              const GValue *value,
                              GParamSpec   *pspec)
{
  HexzQmpClient *self = HEXZ_QMP_CLIENT (object);

  switch (prop_id)
    {
    case PROP_CONNECT_TIMEOUT:
      hexz_qmp_client_set_connect_timeout (self, g_value_get_uint (value));
      break;

    case PROP_COMMAND_TIMEOUT:
      hexz_qmp_client_set_command_timeout (self, g_value_get_uint (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
hexz_qmp_client_dispose (GObject *object)
{
  HexzQmpClient *self = HEXZ_QMP_CLIENT (object);

  self->disposed = TRUE;
  if (self->state != STATE_NEW && self->state != STATE_CLOSED)
    client_close_with_error (self, g_error_new (HEXZ_QMP_ERROR, HEXZ_QMP_ERROR_DISCONNECTED,
                                                /* Translators: the placeholder is the QMP
                                                 * socket or address. */
                                                _("The QMP client for %s was disposed"),
                                                self->peer_name));
  g_hash_table_remove_all (self->backlog);

  G_OBJECT_CLASS (hexz_qmp_client_parent_class)->dispose (object);
}

static void
hexz_qmp_client_finalize (GObject *object)
{
  HexzQmpClient *self = HEXZ_QMP_CLIENT (object);

  g_assert (self->connection == NULL);
  g_assert (self->connect_task == NULL);
  g_assert (g_queue_is_empty (&self->pending_order));
  g_assert (g_queue_is_empty (&self->waiters));

  g_hash_table_unref (self->pending);
  g_queue_clear_full (&self->unanswered_ids, g_free);
  g_hash_table_unref (self->backlog);
  g_free (self->peer_name);
  g_free (self->qemu_version);
  g_free (self->qemu_package);
  g_strfreev (self->capabilities);
  g_main_context_unref (self->context);

  G_OBJECT_CLASS (hexz_qmp_client_parent_class)->finalize (object);
}

static void
hexz_qmp_client_class_init (HexzQmpClientClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->get_property = hexz_qmp_client_get_property;
  object_class->set_property = hexz_qmp_client_set_property;
  object_class->dispose = hexz_qmp_client_dispose;
  object_class->finalize = hexz_qmp_client_finalize;

  /**
   * HexzQmpClient:connected:
   *
   * Whether the client has negotiated capabilities and its connection is
   * still open.
   *
   * Since: 1.0
   */
  properties[PROP_CONNECTED] =
    g_param_spec_boolean ("connected", NULL, NULL,
                          FALSE,
                          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzQmpClient:qemu-version:
   *
   * QEMU's version from the greeting, as `MAJOR.MINOR.MICRO`, or %NULL.
   *
   * Since: 1.0
   */
  properties[PROP_QEMU_VERSION] =
    g_param_spec_string ("qemu-version", NULL, NULL,
                         NULL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzQmpClient:qemu-package:
   *
   * The package string from the greeting, or %NULL.
   *
   * Since: 1.0
   */
  properties[PROP_QEMU_PACKAGE] =
    g_param_spec_string ("qemu-package", NULL, NULL,
                         NULL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzQmpClient:capabilities:
   *
   * The capabilities offered in the greeting, or %NULL before it.
   *
   * Since: 1.0
   */
  properties[PROP_CAPABILITIES] =
    g_param_spec_boxed ("capabilities", NULL, NULL,
                        G_TYPE_STRV,
                        G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzQmpClient:connect-timeout:
   *
   * The time allowed to connect, receive the greeting and negotiate
   * capabilities, in milliseconds; 0 means no limit.
   *
   * Since: 1.0
   */
  properties[PROP_CONNECT_TIMEOUT] =
    g_param_spec_uint ("connect-timeout", NULL, NULL,
                       0, G_MAXUINT, DEFAULT_CONNECT_TIMEOUT_MS,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * HexzQmpClient:command-timeout:
   *
   * The time a command may wait for its reply, in milliseconds; 0 means no
   * limit. Changing it affects commands sent afterwards.
   *
   * Since: 1.0
   */
  properties[PROP_COMMAND_TIMEOUT] =
    g_param_spec_uint ("command-timeout", NULL, NULL,
                       0, G_MAXUINT, DEFAULT_COMMAND_TIMEOUT_MS,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * HexzQmpClient::event:
   * @self: the client
   * @name: the event name, such as `STOP`
   * @data: the event's `data` member; an empty object when the event has
   *   none
   * @timestamp_us: QEMU's timestamp of the event, in microseconds since the
   *   Unix epoch; the time of arrival when the event has no valid timestamp
   *
   * Emitted for every QMP event, with the event name as detail, so that
   * `event::MIGRATION` connects to `MIGRATION` events only.
   *
   * Since: 1.0
   */
  signals[SIGNAL_EVENT] =
    g_signal_new ("event",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST | G_SIGNAL_DETAILED,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 3,
                  G_TYPE_STRING,
                  JSON_TYPE_OBJECT,
                  G_TYPE_INT64);

  /**
   * HexzQmpClient::disconnected:
   * @self: the client
   * @error: why the connection ended
   *
   * Emitted once when the connection of a connected client ends: the
   * server closed it, an I/O or protocol error occurred, or
   * [method@Hexz.QmpClient.close] was called. Pending commands have
   * already failed when it is emitted. It is not emitted while the
   * client is disposed.
   *
   * Since: 1.0
   */
  signals[SIGNAL_DISCONNECTED] =
    g_signal_new ("disconnected",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1,
                  G_TYPE_ERROR);
}

static void
hexz_qmp_client_init (HexzQmpClient *self)
{
  self->context = g_main_context_ref_thread_default ();
  self->state = STATE_NEW;
  self->pending = g_hash_table_new (g_str_hash, g_str_equal);
  g_queue_init (&self->pending_order);
  g_queue_init (&self->unanswered_ids);
  g_queue_init (&self->waiters);
  self->backlog = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         (GDestroyNotify) backlog_queue_free);
  self->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
  self->command_timeout_ms = DEFAULT_COMMAND_TIMEOUT_MS;
}
