/* hexz-boot.h: booting a virtual machine from a snapshot
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__HEXZ_INSIDE__) && !defined(HEXZ_COMPILATION)
# error "Only <hexz-glib/hexz.h> can be included directly."
#endif

#include <gio/gio.h>

#include "hexz-types.h"

G_BEGIN_DECLS

/**
 * HEXZ_BOOT_ERROR:
 *
 * Error domain for booting from snapshots. Errors in this domain are from
 * the [error@Hexz.BootError] enumeration.
 *
 * Since: 1.0
 */
#define HEXZ_BOOT_ERROR (hexz_boot_error_quark ())

/**
 * HexzBootError:
 * @HEXZ_BOOT_ERROR_FAILED: a failure with no more specific code
 * @HEXZ_BOOT_ERROR_INVALID_INPUT: the snapshot, the overlay or an option is
 *   invalid; nothing was started
 * @HEXZ_BOOT_ERROR_RAM_MISMATCH: the snapshot contains the memory of a machine
 *   with another RAM size than the one requested; nothing was started
 * @HEXZ_BOOT_ERROR_CHILD_FAILED: nbdkit or QEMU could not be started, or
 *   exited with an error
 * @HEXZ_BOOT_ERROR_TIMED_OUT: nbdkit or QEMU did not become ready in time
 * @HEXZ_BOOT_ERROR_BUSY: the machine was already started, or is not running
 * @HEXZ_BOOT_ERROR_MACHINE_MISMATCH: the snapshot's machine had another
 *   CPU count than the requested one, or booted a kernel while none is
 *   set. Nothing was started.
 *
 * Error codes of the %HEXZ_BOOT_ERROR domain.
 *
 * Since: 1.0
 */
typedef enum {
  HEXZ_BOOT_ERROR_FAILED,
  HEXZ_BOOT_ERROR_INVALID_INPUT,
  HEXZ_BOOT_ERROR_RAM_MISMATCH,
  HEXZ_BOOT_ERROR_CHILD_FAILED,
  HEXZ_BOOT_ERROR_TIMED_OUT,
  HEXZ_BOOT_ERROR_BUSY,
  HEXZ_BOOT_ERROR_MACHINE_MISMATCH,
} HexzBootError;

/**
 * HexzBootStopMode:
 * @HEXZ_BOOT_STOP_QUIT: send QMP `quit`: QEMU flushes the disk and exits at
 *   once, without asking the guest
 * @HEXZ_BOOT_STOP_POWERDOWN: send QMP `system_powerdown` (the ACPI power
 *   button) and give the guest the stop timeout to shut down, then `quit`
 *
 * How [method@Hexz.Boot.stop_async] requests QEMU to stop.
 *
 * Since: 1.0
 */
typedef enum {
  HEXZ_BOOT_STOP_QUIT,
  HEXZ_BOOT_STOP_POWERDOWN,
} HexzBootStopMode;

/**
 * HEXZ_BOOT_DEFAULT_RAM:
 *
 * The RAM size, in bytes, of a machine booted from a snapshot without
 * memory when no RAM size is set: 128 MiB, QEMU's own default.
 *
 * Since: 1.0
 */
#define HEXZ_BOOT_DEFAULT_RAM (G_GUINT64_CONSTANT (128) << 20)

#define HEXZ_TYPE_BOOT (hexz_boot_get_type ())

HEXZ_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (HexzBoot, hexz_boot, HEXZ, BOOT, GObject)

HEXZ_AVAILABLE_IN_1_0
GQuark              hexz_boot_error_quark        (void);

HEXZ_AVAILABLE_IN_1_0
HexzBoot           *hexz_boot_new                (const char          *snapshot_path);

HEXZ_AVAILABLE_IN_1_0
const char         *hexz_boot_get_snapshot_path  (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_snapshot_path  (HexzBoot            *self,
                                                  const char          *snapshot_path);
HEXZ_AVAILABLE_IN_1_0
const char         *hexz_boot_get_overlay        (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_overlay        (HexzBoot            *self,
                                                  const char          *overlay);
HEXZ_AVAILABLE_IN_1_0
const char         *hexz_boot_get_qmp_socket     (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_qmp_socket     (HexzBoot            *self,
                                                  const char          *qmp_socket);
HEXZ_AVAILABLE_IN_1_0
guint64             hexz_boot_get_ram            (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_ram            (HexzBoot            *self,
                                                  guint64              ram);
HEXZ_AVAILABLE_IN_1_0
guint               hexz_boot_get_cpus           (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_cpus           (HexzBoot            *self,
                                                  guint                cpus);
HEXZ_AVAILABLE_IN_1_0
const char         *hexz_boot_get_accel          (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_accel          (HexzBoot            *self,
                                                  const char          *accel);
HEXZ_AVAILABLE_IN_1_0
const char         *hexz_boot_get_kernel         (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_kernel         (HexzBoot            *self,
                                                  const char          *kernel);
HEXZ_AVAILABLE_IN_1_0
const char         *hexz_boot_get_append         (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_append         (HexzBoot            *self,
                                                  const char          *append);
HEXZ_AVAILABLE_IN_1_0
const char * const *hexz_boot_get_extra_args     (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_extra_args     (HexzBoot            *self,
                                                  const char * const  *extra_args);
HEXZ_AVAILABLE_IN_1_0
const char         *hexz_boot_get_display        (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_display        (HexzBoot            *self,
                                                  const char          *display);
HEXZ_AVAILABLE_IN_1_0
const char         *hexz_boot_get_disk_interface (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_disk_interface (HexzBoot            *self,
                                                  const char          *disk_interface);
HEXZ_AVAILABLE_IN_1_0
const char         *hexz_boot_get_qemu_binary    (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_qemu_binary    (HexzBoot            *self,
                                                  const char          *qemu_binary);
HEXZ_AVAILABLE_IN_1_0
const char         *hexz_boot_get_plugin_path    (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_plugin_path    (HexzBoot            *self,
                                                  const char          *plugin_path);
HEXZ_AVAILABLE_IN_1_0
guint               hexz_boot_get_stop_timeout   (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_stop_timeout   (HexzBoot            *self,
                                                  guint                timeout_ms);
HEXZ_AVAILABLE_IN_1_0
gboolean            hexz_boot_get_start_paused   (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_set_start_paused   (HexzBoot            *self,
                                                  gboolean             start_paused);

HEXZ_AVAILABLE_IN_1_0
gboolean            hexz_boot_get_running        (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
gboolean            hexz_boot_get_restored_memory (HexzBoot           *self);
HEXZ_AVAILABLE_IN_1_0
const char         *hexz_boot_get_directory      (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
GPid                hexz_boot_get_qemu_pid       (HexzBoot            *self);
HEXZ_AVAILABLE_IN_1_0
GPid                hexz_boot_get_nbdkit_pid     (HexzBoot            *self);

HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_start_async        (HexzBoot            *self,
                                                  GCancellable        *cancellable,
                                                  GAsyncReadyCallback  callback,
                                                  gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
gboolean            hexz_boot_start_finish       (HexzBoot            *self,
                                                  GAsyncResult        *result,
                                                  GError             **error);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_wait_async         (HexzBoot            *self,
                                                  GCancellable        *cancellable,
                                                  GAsyncReadyCallback  callback,
                                                  gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
gboolean            hexz_boot_wait_finish        (HexzBoot            *self,
                                                  GAsyncResult        *result,
                                                  GError             **error);
HEXZ_AVAILABLE_IN_1_0
void                hexz_boot_stop_async         (HexzBoot            *self,
                                                  HexzBootStopMode     mode,
                                                  GCancellable        *cancellable,
                                                  GAsyncReadyCallback  callback,
                                                  gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
gboolean            hexz_boot_stop_finish        (HexzBoot            *self,
                                                  GAsyncResult        *result,
                                                  GError             **error);

G_END_DECLS
