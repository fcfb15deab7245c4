/* hexz-qmp-client.h: an asynchronous client for QEMU's QMP monitor
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__HEXZ_INSIDE__) && !defined(HEXZ_COMPILATION)
# error "Only <hexz-glib/hexz.h> can be included directly."
#endif

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "hexz-types.h"

G_BEGIN_DECLS

/**
 * HEXZ_QMP_ERROR:
 *
 * Error domain for the QMP client. Errors in this domain are from the
 * [error@Hexz.QmpError] enumeration. An error reply from QEMU keeps its
 * QMP error class, which [func@Hexz.QmpError.get_class] returns.
 *
 * Since: 1.0
 */
#define HEXZ_QMP_ERROR (hexz_qmp_error_quark ())

/**
 * HexzQmpError:
 * @HEXZ_QMP_ERROR_FAILED: QEMU returned an error whose class has no more
 *   specific code here, or the error object of the reply is malformed
 * @HEXZ_QMP_ERROR_GENERIC_ERROR: QEMU returned an error of class
 *   `GenericError`
 * @HEXZ_QMP_ERROR_COMMAND_NOT_FOUND: QEMU returned `CommandNotFound`: the
 *   command does not exist in this QEMU
 * @HEXZ_QMP_ERROR_DEVICE_NOT_ACTIVE: QEMU returned `DeviceNotActive`
 * @HEXZ_QMP_ERROR_DEVICE_NOT_FOUND: QEMU returned `DeviceNotFound`
 * @HEXZ_QMP_ERROR_KVM_MISSING_CAP: QEMU returned `KVMMissingCap`
 * @HEXZ_QMP_ERROR_PROTOCOL: the peer sent something that is not valid QMP
 *   (malformed JSON, a message over the size limit, a truncated line); the
 *   connection is closed
 * @HEXZ_QMP_ERROR_DISCONNECTED: the connection is closed, or was closed
 *   while the command was pending
 * @HEXZ_QMP_ERROR_TIMED_OUT: the command or the wait for an event timed out
 * @HEXZ_QMP_ERROR_NO_GREETING: the server accepted the connection but sent
 *   no QMP greeting in time; the monitor may be serving another client
 * @HEXZ_QMP_ERROR_NOT_SUPPORTED: the operation needs something the
 *   connection does not offer, such as file descriptor passing on a stream
 *   that is not a socket
 *
 * Error codes of the %HEXZ_QMP_ERROR domain.
 *
 * Since: 1.0
 */
typedef enum {
  HEXZ_QMP_ERROR_FAILED,
  HEXZ_QMP_ERROR_GENERIC_ERROR,
  HEXZ_QMP_ERROR_COMMAND_NOT_FOUND,
  HEXZ_QMP_ERROR_DEVICE_NOT_ACTIVE,
  HEXZ_QMP_ERROR_DEVICE_NOT_FOUND,
  HEXZ_QMP_ERROR_KVM_MISSING_CAP,
  HEXZ_QMP_ERROR_PROTOCOL,
  HEXZ_QMP_ERROR_DISCONNECTED,
  HEXZ_QMP_ERROR_TIMED_OUT,
  HEXZ_QMP_ERROR_NO_GREETING,
  HEXZ_QMP_ERROR_NOT_SUPPORTED,
} HexzQmpError;

/**
 * HEXZ_QMP_MAX_MESSAGE_SIZE:
 *
 * The largest QMP message, in bytes without its line terminator, that
 * [class@Hexz.QmpClient] accepts. A longer line is a protocol error that
 * closes the connection.
 *
 * Since: 1.0
 */
#define HEXZ_QMP_MAX_MESSAGE_SIZE (16 * 1024 * 1024)

/**
 * HexzRunState:
 * @HEXZ_RUN_STATE_UNKNOWN: a state this library does not know
 * @HEXZ_RUN_STATE_DEBUG: stopped by a debugger
 * @HEXZ_RUN_STATE_INMIGRATE: waiting for an incoming migration
 * @HEXZ_RUN_STATE_INTERNAL_ERROR: stopped by an internal error
 * @HEXZ_RUN_STATE_IO_ERROR: stopped by a disk I/O error
 * @HEXZ_RUN_STATE_PAUSED: paused by a `stop` command
 * @HEXZ_RUN_STATE_POSTMIGRATE: stopped after an outgoing migration
 * @HEXZ_RUN_STATE_PRELAUNCH: started with `-S` and not run yet
 * @HEXZ_RUN_STATE_FINISH_MIGRATE: stopped while a migration completes
 * @HEXZ_RUN_STATE_RESTORE_VM: loading a saved state
 * @HEXZ_RUN_STATE_RUNNING: running
 * @HEXZ_RUN_STATE_SAVE_VM: saving its state with `savevm`
 * @HEXZ_RUN_STATE_SHUTDOWN: shut down, with `-no-shutdown`
 * @HEXZ_RUN_STATE_SUSPENDED: suspended by the guest (ACPI S3)
 * @HEXZ_RUN_STATE_WATCHDOG: stopped by a watchdog action
 * @HEXZ_RUN_STATE_GUEST_PANICKED: stopped after a guest panic
 * @HEXZ_RUN_STATE_COLO: synchronizing for COLO fault tolerance
 *
 * The run state of a virtual machine as `query-status` returns it.
 *
 * Since: 1.0
 */
typedef enum {
  HEXZ_RUN_STATE_UNKNOWN,
  HEXZ_RUN_STATE_DEBUG,
  HEXZ_RUN_STATE_INMIGRATE,
  HEXZ_RUN_STATE_INTERNAL_ERROR,
  HEXZ_RUN_STATE_IO_ERROR,
  HEXZ_RUN_STATE_PAUSED,
  HEXZ_RUN_STATE_POSTMIGRATE,
  HEXZ_RUN_STATE_PRELAUNCH,
  HEXZ_RUN_STATE_FINISH_MIGRATE,
  HEXZ_RUN_STATE_RESTORE_VM,
  HEXZ_RUN_STATE_RUNNING,
  HEXZ_RUN_STATE_SAVE_VM,
  HEXZ_RUN_STATE_SHUTDOWN,
  HEXZ_RUN_STATE_SUSPENDED,
  HEXZ_RUN_STATE_WATCHDOG,
  HEXZ_RUN_STATE_GUEST_PANICKED,
  HEXZ_RUN_STATE_COLO,
} HexzRunState;

/**
 * HexzMigrationStatus:
 * @HEXZ_MIGRATION_STATUS_UNKNOWN: a status this library does not know;
 *   it counts as still running
 * @HEXZ_MIGRATION_STATUS_NONE: no migration has started
 * @HEXZ_MIGRATION_STATUS_SETUP: the migration is being set up
 * @HEXZ_MIGRATION_STATUS_CANCELLING: a cancel was requested and is in
 *   progress
 * @HEXZ_MIGRATION_STATUS_CANCELLED: the migration was cancelled
 * @HEXZ_MIGRATION_STATUS_ACTIVE: memory is being sent
 * @HEXZ_MIGRATION_STATUS_POSTCOPY_ACTIVE: post-copy is under way
 * @HEXZ_MIGRATION_STATUS_POSTCOPY_PAUSED: post-copy is paused by a
 *   network failure
 * @HEXZ_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP: post-copy recovery is
 *   being set up
 * @HEXZ_MIGRATION_STATUS_POSTCOPY_RECOVER: post-copy is recovering
 * @HEXZ_MIGRATION_STATUS_COMPLETED: the migration finished successfully
 * @HEXZ_MIGRATION_STATUS_FAILED: the migration failed; see
 *   [method@Hexz.MigrationInfo.get_error_desc]
 * @HEXZ_MIGRATION_STATUS_COLO: COLO fault tolerance is running
 * @HEXZ_MIGRATION_STATUS_PRE_SWITCHOVER: paused before switching over,
 *   with the `pause-before-switchover` capability
 * @HEXZ_MIGRATION_STATUS_DEVICE: device state is being sent after
 *   `migrate-continue`
 * @HEXZ_MIGRATION_STATUS_WAIT_UNPLUG: waiting for guest devices to be
 *   unplugged before the migration starts
 *
 * The status of the outgoing migration, as `query-migrate` and the
 * `MIGRATION` event report it.
 *
 * Since: 1.0
 */
typedef enum {
  HEXZ_MIGRATION_STATUS_UNKNOWN,
  HEXZ_MIGRATION_STATUS_NONE,
  HEXZ_MIGRATION_STATUS_SETUP,
  HEXZ_MIGRATION_STATUS_CANCELLING,
  HEXZ_MIGRATION_STATUS_CANCELLED,
  HEXZ_MIGRATION_STATUS_ACTIVE,
  HEXZ_MIGRATION_STATUS_POSTCOPY_ACTIVE,
  HEXZ_MIGRATION_STATUS_POSTCOPY_PAUSED,
  HEXZ_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP,
  HEXZ_MIGRATION_STATUS_POSTCOPY_RECOVER,
  HEXZ_MIGRATION_STATUS_COMPLETED,
  HEXZ_MIGRATION_STATUS_FAILED,
  HEXZ_MIGRATION_STATUS_COLO,
  HEXZ_MIGRATION_STATUS_PRE_SWITCHOVER,
  HEXZ_MIGRATION_STATUS_DEVICE,
  HEXZ_MIGRATION_STATUS_WAIT_UNPLUG,
} HexzMigrationStatus;

/**
 * HexzQmpEventPredicate:
 * @name: the event name, such as `MIGRATION`
 * @data: the event's `data` member; an empty object when the event has none
 * @user_data: the data passed with the predicate
 *
 * Decides whether an event is the one a waiter is looking for.
 *
 * Returns: %TRUE to take this event
 *
 * Since: 1.0
 */
typedef gboolean (*HexzQmpEventPredicate) (const char *name,
                                           JsonObject *data,
                                           gpointer    user_data);

#define HEXZ_TYPE_MIGRATION_INFO (hexz_migration_info_get_type ())

/**
 * HexzMigrationInfo:
 *
 * What `query-migrate` returns: the status, RAM byte counters and the error
 * of a failed migration. An immutable, reference-counted boxed type.
 *
 * Since: 1.0
 */
typedef struct _HexzMigrationInfo HexzMigrationInfo;

HEXZ_AVAILABLE_IN_1_0
GType                hexz_migration_info_get_type          (void) G_GNUC_CONST;
HEXZ_AVAILABLE_IN_1_0
HexzMigrationInfo   *hexz_migration_info_ref               (HexzMigrationInfo *info);
HEXZ_AVAILABLE_IN_1_0
void                 hexz_migration_info_unref             (HexzMigrationInfo *info);
HEXZ_AVAILABLE_IN_1_0
HexzMigrationStatus  hexz_migration_info_get_status        (HexzMigrationInfo *info);
HEXZ_AVAILABLE_IN_1_0
const char          *hexz_migration_info_get_status_string (HexzMigrationInfo *info);
HEXZ_AVAILABLE_IN_1_0
guint64              hexz_migration_info_get_ram_transferred (HexzMigrationInfo *info);
HEXZ_AVAILABLE_IN_1_0
guint64              hexz_migration_info_get_ram_total     (HexzMigrationInfo *info);
HEXZ_AVAILABLE_IN_1_0
guint64              hexz_migration_info_get_ram_remaining (HexzMigrationInfo *info);
HEXZ_AVAILABLE_IN_1_0
const char          *hexz_migration_info_get_error_desc    (HexzMigrationInfo *info);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HexzMigrationInfo, hexz_migration_info_unref)

HEXZ_AVAILABLE_IN_1_0
GQuark               hexz_qmp_error_quark                  (void);
HEXZ_AVAILABLE_IN_1_0
const char          *hexz_qmp_error_get_class              (const GError *error);

HEXZ_AVAILABLE_IN_1_0
HexzRunState         hexz_run_state_from_string            (const char *status);
HEXZ_AVAILABLE_IN_1_0
const char          *hexz_run_state_to_string              (HexzRunState state);
HEXZ_AVAILABLE_IN_1_0
HexzMigrationStatus  hexz_migration_status_from_string     (const char *status);
HEXZ_AVAILABLE_IN_1_0
const char          *hexz_migration_status_to_string       (HexzMigrationStatus status);
HEXZ_AVAILABLE_IN_1_0
gboolean             hexz_migration_status_is_running      (HexzMigrationStatus status);

#define HEXZ_TYPE_QMP_CLIENT (hexz_qmp_client_get_type ())

HEXZ_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (HexzQmpClient, hexz_qmp_client, HEXZ, QMP_CLIENT, GObject)

HEXZ_AVAILABLE_IN_1_0
HexzQmpClient       *hexz_qmp_client_new                   (void);

HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_connect_to_path_async (HexzQmpClient       *self,
                                                            const char          *path,
                                                            GCancellable        *cancellable,
                                                            GAsyncReadyCallback  callback,
                                                            gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_connect_async         (HexzQmpClient       *self,
                                                            GSocketConnectable  *connectable,
                                                            GCancellable        *cancellable,
                                                            GAsyncReadyCallback  callback,
                                                            gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_connect_to_stream_async (HexzQmpClient     *self,
                                                            GIOStream           *stream,
                                                            GCancellable        *cancellable,
                                                            GAsyncReadyCallback  callback,
                                                            gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
gboolean             hexz_qmp_client_connect_finish        (HexzQmpClient       *self,
                                                            GAsyncResult        *result,
                                                            GError             **error);
HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_close                 (HexzQmpClient       *self);

HEXZ_AVAILABLE_IN_1_0
gboolean             hexz_qmp_client_get_connected         (HexzQmpClient       *self);
HEXZ_AVAILABLE_IN_1_0
const char          *hexz_qmp_client_get_qemu_version      (HexzQmpClient       *self);
HEXZ_AVAILABLE_IN_1_0
gboolean             hexz_qmp_client_get_qemu_version_numbers (HexzQmpClient    *self,
                                                            guint               *major,
                                                            guint               *minor,
                                                            guint               *micro);
HEXZ_AVAILABLE_IN_1_0
const char          *hexz_qmp_client_get_qemu_package      (HexzQmpClient       *self);
HEXZ_AVAILABLE_IN_1_0
const char * const  *hexz_qmp_client_get_capabilities      (HexzQmpClient       *self);
HEXZ_AVAILABLE_IN_1_0
guint                hexz_qmp_client_get_connect_timeout   (HexzQmpClient       *self);
HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_set_connect_timeout   (HexzQmpClient       *self,
                                                            guint                timeout_ms);
HEXZ_AVAILABLE_IN_1_0
guint                hexz_qmp_client_get_command_timeout   (HexzQmpClient       *self);
HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_set_command_timeout   (HexzQmpClient       *self,
                                                            guint                timeout_ms);

HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_execute_async         (HexzQmpClient       *self,
                                                            const char          *command,
                                                            JsonObject          *arguments,
                                                            GUnixFDList         *fd_list,
                                                            GCancellable        *cancellable,
                                                            GAsyncReadyCallback  callback,
                                                            gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
JsonNode            *hexz_qmp_client_execute_finish        (HexzQmpClient       *self,
                                                            GAsyncResult        *result,
                                                            GError             **error);
HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_execute_json_async    (HexzQmpClient       *self,
                                                            const char          *command,
                                                            const char          *arguments_json,
                                                            GUnixFDList         *fd_list,
                                                            GCancellable        *cancellable,
                                                            GAsyncReadyCallback  callback,
                                                            gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
char                *hexz_qmp_client_execute_json_finish   (HexzQmpClient       *self,
                                                            GAsyncResult        *result,
                                                            GError             **error);

HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_wait_event_async      (HexzQmpClient        *self,
                                                            const char           *name,
                                                            HexzQmpEventPredicate predicate,
                                                            gpointer              predicate_data,
                                                            GDestroyNotify        predicate_data_destroy,
                                                            guint                 timeout_ms,
                                                            GCancellable         *cancellable,
                                                            GAsyncReadyCallback   callback,
                                                            gpointer              user_data);
HEXZ_AVAILABLE_IN_1_0
JsonObject          *hexz_qmp_client_wait_event_finish     (HexzQmpClient       *self,
                                                            GAsyncResult        *result,
                                                            gint64              *timestamp_us,
                                                            GError             **error);
HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_discard_events        (HexzQmpClient       *self,
                                                            const char          *name);

HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_query_status_async    (HexzQmpClient       *self,
                                                            GCancellable        *cancellable,
                                                            GAsyncReadyCallback  callback,
                                                            gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
HexzRunState         hexz_qmp_client_query_status_finish   (HexzQmpClient       *self,
                                                            GAsyncResult        *result,
                                                            gboolean            *running,
                                                            GError             **error);
HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_stop_async            (HexzQmpClient       *self,
                                                            GCancellable        *cancellable,
                                                            GAsyncReadyCallback  callback,
                                                            gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
gboolean             hexz_qmp_client_stop_finish           (HexzQmpClient       *self,
                                                            GAsyncResult        *result,
                                                            GError             **error);
HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_cont_async            (HexzQmpClient       *self,
                                                            GCancellable        *cancellable,
                                                            GAsyncReadyCallback  callback,
                                                            gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
gboolean             hexz_qmp_client_cont_finish           (HexzQmpClient       *self,
                                                            GAsyncResult        *result,
                                                            GError             **error);
HEXZ_AVAILABLE_IN_1_0
void                 hexz_qmp_client_query_migrate_async   (HexzQmpClient       *self,
                                                            GCancellable        *cancellable,
                                                            GAsyncReadyCallback  callback,
                                                            gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
HexzMigrationInfo   *hexz_qmp_client_query_migrate_finish  (HexzQmpClient       *self,
                                                            GAsyncResult        *result,
                                                            GError             **error);

G_END_DECLS
