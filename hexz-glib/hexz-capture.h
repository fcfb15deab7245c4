/* hexz-capture.h: live snapshots of a running QEMU virtual machine
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__HEXZ_INSIDE__) && !defined(HEXZ_COMPILATION)
# error "Only <hexz-glib/hexz.h> can be included directly."
#endif

#include <gio/gio.h>

#include "hexz-types.h"
#include "hexz-snapshot.h"
#include "hexz-qmp-client.h"

G_BEGIN_DECLS

/**
 * HexzCaptureMode:
 * @HEXZ_CAPTURE_MODE_AUTO: background when QEMU offers the
 *   `background-snapshot` migration capability and the machine is running,
 *   paused otherwise
 * @HEXZ_CAPTURE_MODE_BACKGROUND: pause, capture the disk, then let QEMU save
 *   the device state, resume the guest and stream its memory as it was at
 *   the pause (QEMU's `background-snapshot` capability)
 * @HEXZ_CAPTURE_MODE_PAUSED: keep the machine paused until its whole memory
 *   is written
 * @HEXZ_CAPTURE_MODE_LIVE: pre-copy migration while the guest runs; QEMU
 *   pauses it when the copy converges
 *
 * How a [class@Hexz.Capture] gets the machine's memory.
 *
 * Since: 1.0
 */
typedef enum {
  HEXZ_CAPTURE_MODE_AUTO,
  HEXZ_CAPTURE_MODE_BACKGROUND,
  HEXZ_CAPTURE_MODE_PAUSED,
  HEXZ_CAPTURE_MODE_LIVE,
} HexzCaptureMode;

/**
 * HexzCapturePhase:
 * @HEXZ_CAPTURE_PHASE_IDLE: not started
 * @HEXZ_CAPTURE_PHASE_PREFLIGHT: checking the base, overlay, output folder
 *   and free space before touching the machine
 * @HEXZ_CAPTURE_PHASE_PREPARE: saving the run state and migration settings,
 *   and raising the migration bandwidth
 * @HEXZ_CAPTURE_PHASE_PAUSE: pausing the machine
 * @HEXZ_CAPTURE_PHASE_DISK: copying the overlay's modified pages
 * @HEXZ_CAPTURE_PHASE_MEMORY: streaming the machine's memory into the
 *   snapshot
 * @HEXZ_CAPTURE_PHASE_RESUME: resuming the machine
 * @HEXZ_CAPTURE_PHASE_MERGE: writing the disk stream from the base and the
 *   copied pages, with the machine running
 * @HEXZ_CAPTURE_PHASE_FINALIZE: closing the snapshot file
 * @HEXZ_CAPTURE_PHASE_CLEANUP: undoing what was done after a failure
 * @HEXZ_CAPTURE_PHASE_DONE: the snapshot file is complete
 * @HEXZ_CAPTURE_PHASE_FAILED: the capture failed and was cleaned up
 *
 * The step a [class@Hexz.Capture] is in.
 *
 * Since: 1.0
 */
typedef enum {
  HEXZ_CAPTURE_PHASE_IDLE,
  HEXZ_CAPTURE_PHASE_PREFLIGHT,
  HEXZ_CAPTURE_PHASE_PREPARE,
  HEXZ_CAPTURE_PHASE_PAUSE,
  HEXZ_CAPTURE_PHASE_DISK,
  HEXZ_CAPTURE_PHASE_MEMORY,
  HEXZ_CAPTURE_PHASE_RESUME,
  HEXZ_CAPTURE_PHASE_MERGE,
  HEXZ_CAPTURE_PHASE_FINALIZE,
  HEXZ_CAPTURE_PHASE_CLEANUP,
  HEXZ_CAPTURE_PHASE_DONE,
  HEXZ_CAPTURE_PHASE_FAILED,
} HexzCapturePhase;

/**
 * HexzCaptureRecovery:
 * @HEXZ_CAPTURE_RECOVERY_NONE: no killed capture had left anything to undo
 * @HEXZ_CAPTURE_RECOVERY_FOUND_MARKER: the marker of a killed capture was
 *   found, and removed once its changes were undone
 * @HEXZ_CAPTURE_RECOVERY_WAITED_FOR_MIGRATION: the killed capture's
 *   migration was still under way, and the recovery waited for its end
 * @HEXZ_CAPTURE_RECOVERY_SETTINGS_RESTORED: the migration capabilities and
 *   the bandwidth the killed capture had changed were restored
 * @HEXZ_CAPTURE_RECOVERY_RESUMED: the machine was paused and was resumed
 *
 * What [method@Hexz.Capture.recover_async] did.
 *
 * Since: 1.0
 */
typedef enum /*< flags >*/ {
  HEXZ_CAPTURE_RECOVERY_NONE = 0,
  HEXZ_CAPTURE_RECOVERY_FOUND_MARKER = 1 << 0,
  HEXZ_CAPTURE_RECOVERY_WAITED_FOR_MIGRATION = 1 << 1,
  HEXZ_CAPTURE_RECOVERY_SETTINGS_RESTORED = 1 << 2,
  HEXZ_CAPTURE_RECOVERY_RESUMED = 1 << 3,
} HexzCaptureRecovery;

/**
 * HEXZ_CAPTURE_ERROR:
 *
 * Error domain for live snapshots. Errors in this domain are from the
 * [error@Hexz.CaptureError] enumeration.
 *
 * Since: 1.0
 */
#define HEXZ_CAPTURE_ERROR (hexz_capture_error_quark ())

/**
 * HexzCaptureError:
 * @HEXZ_CAPTURE_ERROR_FAILED: a failure with no more specific code
 * @HEXZ_CAPTURE_ERROR_INVALID_INPUT: the base, the overlay or an option is
 *   invalid; the machine was not touched
 * @HEXZ_CAPTURE_ERROR_NO_SPACE: the output folder lacks the free space the
 *   snapshot needs; the machine was not touched
 * @HEXZ_CAPTURE_ERROR_MIGRATION_FAILED: QEMU reported the migration as
 *   failed or cancelled
 * @HEXZ_CAPTURE_ERROR_STALLED: the migration made no progress for the
 *   stall timeout and was cancelled
 * @HEXZ_CAPTURE_ERROR_CONNECTION_LOST: the QMP connection was lost; the
 *   machine may still be paused
 * @HEXZ_CAPTURE_ERROR_UNSUPPORTED: QEMU does not support what the chosen
 *   mode needs
 * @HEXZ_CAPTURE_ERROR_RESUME_FAILED: the machine could not be resumed
 *
 * Error codes of the %HEXZ_CAPTURE_ERROR domain.
 *
 * Since: 1.0
 */
typedef enum {
  HEXZ_CAPTURE_ERROR_FAILED,
  HEXZ_CAPTURE_ERROR_INVALID_INPUT,
  HEXZ_CAPTURE_ERROR_NO_SPACE,
  HEXZ_CAPTURE_ERROR_MIGRATION_FAILED,
  HEXZ_CAPTURE_ERROR_STALLED,
  HEXZ_CAPTURE_ERROR_CONNECTION_LOST,
  HEXZ_CAPTURE_ERROR_UNSUPPORTED,
  HEXZ_CAPTURE_ERROR_RESUME_FAILED,
} HexzCaptureError;

HEXZ_AVAILABLE_IN_1_0
GQuark hexz_capture_error_quark (void);

HEXZ_AVAILABLE_IN_1_0
const char *hexz_capture_mode_to_string   (HexzCaptureMode  mode);
HEXZ_AVAILABLE_IN_1_0
gboolean    hexz_capture_mode_from_string (const char      *name,
                                           HexzCaptureMode *mode);
HEXZ_AVAILABLE_IN_1_0
const char *hexz_capture_phase_to_string  (HexzCapturePhase phase);

#define HEXZ_TYPE_CAPTURE (hexz_capture_get_type ())

HEXZ_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (HexzCapture, hexz_capture, HEXZ, CAPTURE, GObject)

HEXZ_AVAILABLE_IN_1_0
HexzCapture      *hexz_capture_new                  (void);

HEXZ_AVAILABLE_IN_1_0
const char       *hexz_capture_get_socket_path      (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_socket_path      (HexzCapture     *self,
                                                     const char      *socket_path);
HEXZ_AVAILABLE_IN_1_0
HexzQmpClient    *hexz_capture_get_qmp_client       (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_qmp_client       (HexzCapture     *self,
                                                     HexzQmpClient   *client);
HEXZ_AVAILABLE_IN_1_0
const char       *hexz_capture_get_overlay          (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_overlay          (HexzCapture     *self,
                                                     const char      *overlay);
HEXZ_AVAILABLE_IN_1_0
const char       *hexz_capture_get_base_path        (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_base_path        (HexzCapture     *self,
                                                     const char      *base_path);
HEXZ_AVAILABLE_IN_1_0
HexzSnapshot     *hexz_capture_get_base             (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_base             (HexzCapture     *self,
                                                     HexzSnapshot    *base);
HEXZ_AVAILABLE_IN_1_0
GFile            *hexz_capture_get_output           (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_output           (HexzCapture     *self,
                                                     GFile           *output);
HEXZ_AVAILABLE_IN_1_0
HexzCaptureMode   hexz_capture_get_mode             (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_mode             (HexzCapture     *self,
                                                     HexzCaptureMode  mode);
HEXZ_AVAILABLE_IN_1_0
gboolean          hexz_capture_get_thin             (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_thin             (HexzCapture     *self,
                                                     gboolean         thin);
HEXZ_AVAILABLE_IN_1_0
HexzCodec         hexz_capture_get_codec            (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_codec            (HexzCapture     *self,
                                                     HexzCodec        codec);
HEXZ_AVAILABLE_IN_1_0
int               hexz_capture_get_level            (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_level            (HexzCapture     *self,
                                                     int              level);
HEXZ_AVAILABLE_IN_1_0
guint             hexz_capture_get_block_size       (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_block_size       (HexzCapture     *self,
                                                     guint            block_size);
HEXZ_AVAILABLE_IN_1_0
guint             hexz_capture_get_threads          (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_threads          (HexzCapture     *self,
                                                     guint            threads);
HEXZ_AVAILABLE_IN_1_0
const char       *hexz_capture_get_message          (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_message          (HexzCapture     *self,
                                                     const char      *message);
HEXZ_AVAILABLE_IN_1_0
guint             hexz_capture_get_stall_timeout    (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_stall_timeout    (HexzCapture     *self,
                                                     guint            seconds);
HEXZ_AVAILABLE_IN_1_0
guint64           hexz_capture_get_live_bandwidth   (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_live_bandwidth   (HexzCapture     *self,
                                                     guint64          bytes_per_second);
HEXZ_AVAILABLE_IN_1_0
guint             hexz_capture_get_live_timeout     (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_live_timeout     (HexzCapture     *self,
                                                     guint            seconds);
HEXZ_AVAILABLE_IN_1_0
gboolean          hexz_capture_get_allow_larger_overlay (HexzCapture *self);
HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_set_allow_larger_overlay (HexzCapture *self,
                                                         gboolean     allow);

HEXZ_AVAILABLE_IN_1_0
HexzCapturePhase  hexz_capture_get_phase            (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
HexzCaptureMode   hexz_capture_get_chosen_mode      (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
const char       *hexz_capture_get_fallback_reason  (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
gint64            hexz_capture_get_pause_time       (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
gint64            hexz_capture_get_downtime         (HexzCapture     *self);
HEXZ_AVAILABLE_IN_1_0
gboolean          hexz_capture_get_paused_to_converge (HexzCapture   *self);

HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_run_async            (HexzCapture         *self,
                                                     GCancellable        *cancellable,
                                                     GAsyncReadyCallback  callback,
                                                     gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
gboolean          hexz_capture_run_finish           (HexzCapture         *self,
                                                     GAsyncResult        *result,
                                                     GError             **error);

HEXZ_AVAILABLE_IN_1_0
void              hexz_capture_recover_async        (HexzCapture         *self,
                                                     GCancellable        *cancellable,
                                                     GAsyncReadyCallback  callback,
                                                     gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
gboolean          hexz_capture_recover_finish       (HexzCapture         *self,
                                                     GAsyncResult        *result,
                                                     HexzCaptureRecovery *recovery,
                                                     GError             **error);

G_END_DECLS
