/* hexz-snap-vm.c: the subcommands that talk to a running QEMU: snap,
 * restore and resume
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <inttypes.h>
#include <stdio.h>

#include "hexz-snap.h"
#include "hexz-util-private.h"

/* snap */

typedef struct
{
  HexzTool *tool;
  HexzCapture *capture;
  char *output_path;
  gboolean json;
} SnapCommand;

static void
snap_command_free (SnapCommand *snap)
{
  g_clear_object (&snap->capture);
  g_free (snap->output_path);
  g_free (snap);
}

static void
snap_on_progress (HexzCapture      *capture,
                  HexzCapturePhase  phase,
                  guint64           done,
                  guint64           expected,
                  gpointer          user_data)
{
  SnapCommand *snap = user_data;

  /* A phase starts with both counters 0. */
  if (done == 0 && expected == 0)
    hexz_tool_progress_begin (snap->tool, hexz_capture_phase_to_string (phase), 0);
  else
    hexz_tool_progress_update (snap->tool, done, expected);
}

static void
snap_report (SnapCommand *snap)
{
  HexzCapture *capture = snap->capture;
  gint64 pause_us = hexz_capture_get_pause_time (capture);
  gint64 downtime_ms = hexz_capture_get_downtime (capture);
  const char *mode = hexz_capture_mode_to_string (hexz_capture_get_chosen_mode (capture));

  /* The finalize phase's progress line is still on the terminal. */
  hexz_tool_progress_end (snap->tool);

  if (snap->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();
      g_autoptr(HexzSnapshot) snapshot = NULL;
      g_autoptr(GError) error = NULL;

      snapshot = hexz_snapshot_open_path (snap->output_path, NULL, &error);
      if (snapshot == NULL)
        {
          hexz_tool_finish (snap->tool, error);
          return;
        }

      json_builder_begin_object (builder);
      json_builder_set_member_name (builder, "command");
      json_builder_add_string_value (builder, "snap");
      json_builder_set_member_name (builder, "mode");
      json_builder_add_string_value (builder, mode);
      json_builder_set_member_name (builder, "pause_time_ms");
      json_builder_add_double_value (builder, pause_us / 1000.0);
      json_builder_set_member_name (builder, "qemu_downtime_ms");
      if (downtime_ms >= 0)
        json_builder_add_int_value (builder, downtime_ms);
      else
        json_builder_add_null_value (builder);
      json_builder_set_member_name (builder, "paused_to_converge");
      json_builder_add_boolean_value (builder, hexz_capture_get_paused_to_converge (capture));
      json_builder_set_member_name (builder, "fallback_reason");
      if (hexz_capture_get_fallback_reason (capture) != NULL)
        json_builder_add_string_value (builder, hexz_capture_get_fallback_reason (capture));
      else
        json_builder_add_null_value (builder);
      hexz_tool_add_snapshot_summary (builder, snapshot);
      json_builder_set_member_name (builder, "seconds");
      json_builder_add_double_value (builder, hexz_tool_elapsed_seconds (snap->tool));
      json_builder_end_object (builder);
      hexz_tool_print_json (snap->tool, builder);
    }
  else
    {
      /* A pause time of 0 means the machine was paused before and stays
       * paused. */
      if (pause_us == 0)
        /* Translators: the first %s is a file name, the second a capture mode
         * (paused, background, live), then a duration. */
        g_print (_("Wrote %s (%s mode) in %.1f s; the virtual machine was already paused "
                   "and stays paused"),
                 snap->output_path, mode, hexz_tool_elapsed_seconds (snap->tool));
      else
        /* Translators: the first %s is a file name, the second a capture mode
         * (paused, background, live), then durations. */
        g_print (_("Wrote %s (%s mode) in %.1f s; the virtual machine was paused for %.1f ms"),
                 snap->output_path, mode, hexz_tool_elapsed_seconds (snap->tool),
                 pause_us / 1000.0);
      /* In paused mode QEMU counts no downtime of its own: the machine
       * was stopped before the migration started. */
      if (downtime_ms >= 0 && hexz_capture_get_chosen_mode (capture) != HEXZ_CAPTURE_MODE_PAUSED)
        /* Translators: %d is a duration in milliseconds. */
        g_print (_(" (QEMU reports %d ms of downtime)"), (int) downtime_ms);
      g_print ("\n");
      if (hexz_capture_get_paused_to_converge (capture))
        /* Translators: %u is a number of seconds. */
        g_print (_("The guest wrote memory faster than it could be copied, so it was "
                   "paused after %u s to finish; --mode background keeps a guest "
                   "running for the whole copy\n"),
                 hexz_capture_get_live_timeout (capture));
    }

  hexz_tool_finish (snap->tool, NULL);
}

static void
snap_on_done (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  SnapCommand *snap = user_data;
  g_autoptr(GError) error = NULL;

  if (!hexz_capture_run_finish (snap->capture, result, &error))
    {
      /* The tool's generic cancel message would hide that the machine was
       * resumed and its settings restored. */
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          g_clear_error (&error);
          g_set_error_literal (&error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_FAILED,
                               _("Interrupted: the snapshot was cancelled, the virtual "
                                 "machine is back in its previous run state and no file "
                                 "was written"));
        }
      hexz_tool_finish (snap->tool, error);
    }
  else
    {
      snap_report (snap);
    }

  snap_command_free (snap);
}

gboolean
hexz_tool_command_snap (HexzTool  *tool,
                        int        argc,
                        char     **argv)
{
  g_autofree char *socket_path = NULL;
  g_autofree char *overlay = NULL;
  g_autofree char *base = NULL;
  g_autofree char *output = NULL;
  g_autofree char *mode_name = NULL;
  g_autofree char *message = NULL;
  gboolean live = FALSE;
  gboolean thin = FALSE;
  gboolean json = FALSE;
  gboolean allow_larger = FALSE;
  int stall_timeout = -1;
  int live_timeout = -1;
  gint64 live_bandwidth = 0;
  HexzToolWriterOptions writer_options;
  HexzCaptureMode mode = HEXZ_CAPTURE_MODE_AUTO;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GFile) output_file = NULL;
  SnapCommand *snap;
  const GOptionEntry entries[] = {
    { "socket", 's', 0, G_OPTION_ARG_FILENAME, &socket_path,
      N_("The QMP unix socket of the running QEMU"), N_("PATH") },
    { "overlay", 'O', 0, G_OPTION_ARG_FILENAME, &overlay,
      N_("The overlay the machine writes its disk changes to"), N_("PATH") },
    { "base", 'B', 0, G_OPTION_ARG_FILENAME, &base,
      N_("The snapshot the machine booted from"), N_("PATH") },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output,
      N_("The snapshot file to write"), N_("PATH") },
    { "mode", 'm', 0, G_OPTION_ARG_STRING, &mode_name,
      N_("How to capture memory: auto (default), background, paused or live"), N_("MODE") },
    { "live", 0, 0, G_OPTION_ARG_NONE, &live,
      N_("Same as --mode live: copy memory while the guest runs"), NULL },
    { "thin", 0, 0, G_OPTION_ARG_NONE, &thin,
      N_("Refer to the base for unmodified disk blocks instead of copying them"), NULL },
    { "message", 0, 0, G_OPTION_ARG_STRING, &message,
      N_("A message to record in the snapshot"), N_("TEXT") },
    { "stall-timeout", 0, 0, G_OPTION_ARG_INT, &stall_timeout,
      N_("Cancel when the memory dump makes no progress for this many seconds "
         "(default 30, 0 waits forever)"), N_("SECONDS") },
    { "live-timeout", 0, 0, G_OPTION_ARG_INT, &live_timeout,
      N_("In live mode, pause the guest to finish when the memory copy has not "
         "converged after this many seconds (default 60, 0 waits forever)"), N_("SECONDS") },
    { "live-bandwidth", 0, 0, G_OPTION_ARG_INT64, &live_bandwidth,
      N_("In live mode, copy at most this many MiB of memory per second while the "
         "guest runs, to bound the host I/O (default 0, no limit)"), N_("MIB") },
    { "allow-larger-overlay", 0, 0, G_OPTION_ARG_NONE, &allow_larger,
      N_("Accept an overlay larger than the base's disk"), NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json,
      N_("Print the result as JSON"), NULL },
    { NULL }
  };

  hexz_tool_writer_options_init (&writer_options, FALSE);
  context = hexz_tool_option_context_new (tool);
  g_option_context_set_main_group (context, hexz_tool_writer_option_group (&writer_options, entries));

  if (!hexz_tool_parse_options (tool, context, &argc, &argv, 0, 0))
    return FALSE;

  /* Training needs samples before the first block, and the memory is
   * written as it arrives. */
  if (writer_options.dictionary_requested)
    {
      hexz_tool_usage_error (tool, "%s", _("snap does not support --dictionary"));
      return FALSE;
    }

  if (!hexz_tool_require_options (tool, "--socket", socket_path, "--overlay", overlay,
                                  "--base", base, "--output", output, NULL))
    return FALSE;

  if (!hexz_tool_check_output (tool, NULL, output, TRUE, writer_options.force))
    return TRUE;

  /* The nbdkit plugin and QEMU lock the overlay they write. An unlocked
   * overlay is most likely a copy or another machine's, whose pages would
   * not match this machine's memory.
   * FIXME: rejecting it would be safer, but needs a way to find the
   * overlay of the machine behind the socket, e.g. from query-block. */
  if (g_file_test (overlay, G_FILE_TEST_IS_REGULAR) && !hexz_path_is_locked (overlay))
    /* Translators: the first %s is a file name, the second a socket path. */
    g_printerr (_("hexz-snap: Warning: overlay “%s” is not in use by any running machine; "
                  "check that it is the disk of the machine behind “%s”, or the snapshot "
                  "will pair its memory with another disk\n"),
                overlay, socket_path);

  if (mode_name != NULL && !hexz_capture_mode_from_string (mode_name, &mode))
    {
      /* Translators: %s is a value given on the command line. */
      hexz_tool_usage_error (tool, _("Unknown mode “%s”: use auto, background, paused or live"),
                             mode_name);
      return FALSE;
    }
  if (live)
    {
      if (mode_name != NULL && mode != HEXZ_CAPTURE_MODE_LIVE)
        {
          hexz_tool_usage_error (tool, "%s", _("--live contradicts --mode"));
          return FALSE;
        }
      mode = HEXZ_CAPTURE_MODE_LIVE;
    }

  if (live_bandwidth < 0 || live_bandwidth > G_MAXINT64 / (1024 * 1024))
    {
      /* Translators: the number is a value given on the command line. */
      hexz_tool_usage_error (tool, _("Invalid --live-bandwidth %" PRId64
                                     ": give a number of MiB per second, or 0 for no limit"),
                             live_bandwidth);
      return FALSE;
    }

  output_file = g_file_new_for_commandline_arg (output);

  snap = g_new0 (SnapCommand, 1);
  snap->tool = tool;
  snap->json = json;
  snap->output_path = g_file_get_path (output_file);
  snap->capture = hexz_capture_new ();
  hexz_capture_set_socket_path (snap->capture, socket_path);
  hexz_capture_set_overlay (snap->capture, overlay);
  hexz_capture_set_base_path (snap->capture, base);
  hexz_capture_set_output (snap->capture, output_file);
  hexz_capture_set_mode (snap->capture, mode);
  hexz_capture_set_thin (snap->capture, thin);
  hexz_capture_set_codec (snap->capture, writer_options.codec);
  hexz_capture_set_level (snap->capture, writer_options.level);
  hexz_capture_set_block_size (snap->capture, writer_options.block_size);
  hexz_capture_set_threads (snap->capture, writer_options.threads);
  hexz_capture_set_message (snap->capture, message);
  hexz_capture_set_allow_larger_overlay (snap->capture, allow_larger);
  if (stall_timeout >= 0)
    hexz_capture_set_stall_timeout (snap->capture, stall_timeout);
  if (live_timeout >= 0)
    hexz_capture_set_live_timeout (snap->capture, live_timeout);
  hexz_capture_set_live_bandwidth (snap->capture, (guint64) live_bandwidth * 1024 * 1024);

  g_signal_connect (snap->capture, "progress", G_CALLBACK (snap_on_progress), snap);
  hexz_capture_run_async (snap->capture, tool->cancellable, snap_on_done, snap);

  return TRUE;
}

/* restore and resume: both start with a QMP connection. */

typedef struct
{
  HexzTool *tool;
  HexzQmpClient *client;
  HexzSnapshot *snapshot;
  char *socket_path;
  gboolean keep_paused;
  gboolean json;
  /* resume: the recovery after a killed snap, and what it did. */
  HexzCapture *capture;
  HexzCaptureRecovery recovery;
} VmCommand;

static void
vm_command_free (VmCommand *command)
{
  if (command->client != NULL)
    hexz_qmp_client_close (command->client);
  g_clear_object (&command->client);
  g_clear_object (&command->snapshot);
  g_clear_object (&command->capture);
  g_free (command->socket_path);
  g_free (command);
}

/* Says in one line what `resume` did. */
static void
print_recovery (HexzCaptureRecovery recovery,
                HexzRunState        state)
{
  const char *state_name = hexz_run_state_to_string (state);

  if ((recovery & HEXZ_CAPTURE_RECOVERY_SETTINGS_RESTORED) &&
      (recovery & HEXZ_CAPTURE_RECOVERY_RESUMED))
    /* Translators: %s is a QEMU run state such as running. */
    g_print (_("Restored the migration settings a killed snapshot had changed and resumed "
               "the virtual machine; it is %s\n"), state_name);
  else if (recovery & HEXZ_CAPTURE_RECOVERY_SETTINGS_RESTORED)
    /* Translators: %s is a QEMU run state such as running or paused. The
     * machine is left as the killed snapshot found it. */
    g_print (_("Restored the migration settings a killed snapshot had changed; the "
               "virtual machine is %s, as that snapshot found it\n"), state_name);
  else if (recovery & HEXZ_CAPTURE_RECOVERY_RESUMED)
    /* Translators: %s is a QEMU run state such as running. */
    g_print (_("Resumed the virtual machine; it is %s\n"), state_name);
  else
    /* Translators: %s is a QEMU run state such as running. */
    g_print (_("Nothing to undo; the virtual machine is %s\n"), state_name);
}

static void
vm_command_finish (VmCommand    *command,
                   const GError *error,
                   const char   *what,
                   HexzRunState  state)
{
  if (error == NULL)
    {
      if (command->json)
        {
          g_autoptr(JsonBuilder) builder = json_builder_new ();

          json_builder_begin_object (builder);
          json_builder_set_member_name (builder, "command");
          json_builder_add_string_value (builder, what);
          json_builder_set_member_name (builder, "status");
          json_builder_add_string_value (builder, hexz_run_state_to_string (state));
          if (command->capture != NULL)
            {
              json_builder_set_member_name (builder, "killed_snapshot_found");
              json_builder_add_boolean_value (builder,
                                              command->recovery & HEXZ_CAPTURE_RECOVERY_FOUND_MARKER);
              json_builder_set_member_name (builder, "settings_restored");
              json_builder_add_boolean_value (builder,
                                              command->recovery & HEXZ_CAPTURE_RECOVERY_SETTINGS_RESTORED);
              json_builder_set_member_name (builder, "resumed");
              json_builder_add_boolean_value (builder,
                                              command->recovery & HEXZ_CAPTURE_RECOVERY_RESUMED);
            }
          json_builder_set_member_name (builder, "seconds");
          json_builder_add_double_value (builder, hexz_tool_elapsed_seconds (command->tool));
          json_builder_end_object (builder);
          hexz_tool_print_json (command->tool, builder);
        }
      else if (command->capture != NULL)
        {
          print_recovery (command->recovery, state);
        }
      else
        {
          /* Translators: %s is a QEMU run state such as running or paused. */
          g_print (_("The virtual machine is %s\n"), hexz_run_state_to_string (state));
        }
    }

  hexz_tool_finish (command->tool, error);
  vm_command_free (command);
}

static void
vm_on_final_status (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  VmCommand *command = user_data;
  g_autoptr(GError) error = NULL;
  HexzRunState state;
  gboolean running = FALSE;

  state = hexz_qmp_client_query_status_finish (command->client, result, &running, &error);

  /* QEMU 7.2 sets the run state to running before it replies to cont, so a
   * machine that is not running now was stopped again at once. A resume
   * leaves the machine paused only when a killed snapshot had found it so. */
  if (error == NULL && command->snapshot == NULL && !running &&
      (command->recovery & HEXZ_CAPTURE_RECOVERY_FOUND_MARKER) == 0)
    g_set_error (&error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_RESUME_FAILED,
                 /* Translators: %s is a QEMU run state such as paused or io-error. */
                 _("QEMU accepted “cont”, but the virtual machine is %s instead of running; "
                   "check QEMU’s log"),
                 hexz_run_state_to_string (state));

  vm_command_finish (command, error,
                     command->snapshot != NULL ? "restore" : "resume", state);
}

static void
vm_query_final_status (VmCommand *command)
{
  hexz_qmp_client_query_status_async (command->client, command->tool->cancellable,
                                      vm_on_final_status, command);
}

static void
restore_on_done (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  VmCommand *command = user_data;
  g_autoptr(GError) error = NULL;

  if (!hexz_restore_memory_finish (result, &error))
    {
      vm_command_finish (command, error, "restore", HEXZ_RUN_STATE_UNKNOWN);
      return;
    }

  vm_query_final_status (command);
}

static void
resume_on_recovered (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  VmCommand *command = user_data;
  g_autoptr(GError) error = NULL;

  if (!hexz_capture_recover_finish (command->capture, result, &command->recovery, &error))
    {
      vm_command_finish (command, error, "resume", HEXZ_RUN_STATE_UNKNOWN);
      return;
    }

  vm_query_final_status (command);
}

static void
resume_on_status (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  VmCommand *command = user_data;
  g_autoptr(GError) error = NULL;
  HexzRunState state;

  state = hexz_qmp_client_query_status_finish (command->client, result, NULL, &error);
  if (error != NULL)
    {
      vm_command_finish (command, error, "resume", HEXZ_RUN_STATE_UNKNOWN);
      return;
    }

  /* In this state cont would only make QEMU start the machine once a
   * later restore loads it, even a restore asked to leave it paused. */
  if (state == HEXZ_RUN_STATE_INMIGRATE)
    {
      g_set_error (&error, HEXZ_CAPTURE_ERROR, HEXZ_CAPTURE_ERROR_INVALID_INPUT,
                   /* Translators: %s is a QMP socket path. */
                   _("QEMU waits for an incoming migration and has no machine to resume "
                     "yet: load a snapshot into it with “hexz-snap restore --socket %s "
                     "SNAPSHOT”"),
                   command->socket_path);
      vm_command_finish (command, error, "resume", HEXZ_RUN_STATE_UNKNOWN);
      return;
    }

  /* The recovery undoes what a killed snap left changed, as recorded in
   * its marker beside the socket, and otherwise resumes a paused machine,
   * waiting out a finishing migration first. */
  command->capture = hexz_capture_new ();
  hexz_capture_set_socket_path (command->capture, command->socket_path);
  hexz_capture_set_qmp_client (command->capture, command->client);
  hexz_capture_recover_async (command->capture, command->tool->cancellable,
                              resume_on_recovered, command);
}

static void
vm_on_connected (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  VmCommand *command = user_data;
  g_autoptr(GError) error = NULL;

  if (!hexz_qmp_client_connect_finish (command->client, result, &error))
    {
      /* The client's error names the socket already. */
      vm_command_finish (command, error, "", HEXZ_RUN_STATE_UNKNOWN);
      return;
    }

  if (command->snapshot != NULL)
    hexz_restore_memory_async (command->client, command->snapshot,
                               command->keep_paused ? HEXZ_RESTORE_FLAGS_KEEP_PAUSED
                                                    : HEXZ_RESTORE_FLAGS_NONE,
                               command->tool->cancellable, restore_on_done, command);
  else
    hexz_qmp_client_query_status_async (command->client, command->tool->cancellable,
                                        resume_on_status, command);
}

static gboolean
vm_command_start (HexzTool  *tool,
                  int        argc,
                  char     **argv,
                  gboolean   restore)
{
  g_autofree char *socket_path = NULL;
  gboolean keep_paused = FALSE;
  gboolean json = FALSE;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  VmCommand *command;
  const GOptionEntry restore_entries[] = {
    { "socket", 's', 0, G_OPTION_ARG_FILENAME, &socket_path,
      N_("The QMP unix socket of a QEMU started with “-incoming defer”"), N_("PATH") },
    { "paused", 0, 0, G_OPTION_ARG_NONE, &keep_paused,
      N_("Leave the machine paused once its memory is loaded"), NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, N_("Print the result as JSON"), NULL },
    { NULL }
  };
  const GOptionEntry resume_entries[] = {
    { "socket", 's', 0, G_OPTION_ARG_FILENAME, &socket_path,
      N_("The QMP unix socket of the QEMU to resume"), N_("PATH") },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, N_("Print the result as JSON"), NULL },
    { NULL }
  };

  context = hexz_tool_option_context_new (tool);
  g_option_context_add_main_entries (context, restore ? restore_entries : resume_entries,
                                     GETTEXT_PACKAGE);

  if (!hexz_tool_parse_options (tool, context, &argc, &argv, restore ? 1 : 0, restore ? 1 : 0))
    return FALSE;

  if (!hexz_tool_require_options (tool, "--socket", socket_path, NULL))
    return FALSE;

  if (restore)
    {
      snapshot = hexz_snapshot_open_path (argv[1], tool->cancellable, &error);
      if (snapshot == NULL)
        {
          hexz_tool_finish (tool, error);
          return TRUE;
        }
    }

  command = g_new0 (VmCommand, 1);
  command->tool = tool;
  command->client = hexz_qmp_client_new ();
  command->snapshot = g_steal_pointer (&snapshot);
  command->socket_path = g_strdup (socket_path);
  command->keep_paused = keep_paused;
  command->json = json;

  hexz_qmp_client_connect_to_path_async (command->client, socket_path, tool->cancellable,
                                         vm_on_connected, command);
  return TRUE;
}

gboolean
hexz_tool_command_restore (HexzTool  *tool,
                           int        argc,
                           char     **argv)
{
  return vm_command_start (tool, argc, argv, TRUE);
}

gboolean
hexz_tool_command_resume (HexzTool  *tool,
                          int        argc,
                          char     **argv)
{
  return vm_command_start (tool, argc, argv, FALSE);
}
