/* hexz-snap-boot.c: the boot subcommand, which runs a virtual machine from
 * a snapshot until it stops
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <stdio.h>

#include "hexz-snap.h"

typedef struct
{
  HexzTool *tool;
  HexzBoot *boot;
  HexzBootStopMode stop_mode;
  gulong cancelled_id;
  gboolean json;
} BootCommand;

static void
boot_command_free (BootCommand *command)
{
  if (command->cancelled_id != 0)
    g_cancellable_disconnect (command->tool->cancellable, command->cancelled_id);
  g_clear_object (&command->boot);
  g_free (command);
}

/* Parses a RAM size: a whole number with an optional binary suffix K, M,
 * G or T; a bare number is in MiB, as for QEMU's -m. */
static gboolean
parse_ram (const char  *option_name,
           const char  *value,
           gpointer     data,
           GError     **error)
{
  guint64 *ram = data;
  guint64 number;
  guint64 unit = G_GUINT64_CONSTANT (1) << 20;
  char *end = NULL;

  errno = 0;
  number = g_ascii_strtoull (value, &end, 10);
  if (errno != 0 || end == value)
    goto invalid;

  if (g_ascii_strcasecmp (end, "k") == 0 || g_ascii_strcasecmp (end, "kib") == 0)
    unit = G_GUINT64_CONSTANT (1) << 10;
  else if (*end == '\0' || g_ascii_strcasecmp (end, "m") == 0 || g_ascii_strcasecmp (end, "mib") == 0)
    unit = G_GUINT64_CONSTANT (1) << 20;
  else if (g_ascii_strcasecmp (end, "g") == 0 || g_ascii_strcasecmp (end, "gib") == 0)
    unit = G_GUINT64_CONSTANT (1) << 30;
  else if (g_ascii_strcasecmp (end, "t") == 0 || g_ascii_strcasecmp (end, "tib") == 0)
    unit = G_GUINT64_CONSTANT (1) << 40;
  else
    goto invalid;

  if (number == 0 || number > G_MAXUINT64 / unit || (number * unit) % (1 << 20) != 0)
    goto invalid;

  *ram = number * unit;
  return TRUE;

invalid:
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
               /* Translators: %s is a value given on the command line. */
               _("Invalid RAM size “%s”: use a whole number of MiB, such as 512, 512M or 2G"),
               value);
  return FALSE;
}

static void
boot_report_started (BootCommand *command)
{
  HexzBoot *boot = command->boot;
  const char *overlay = hexz_boot_get_overlay (boot);

  if (command->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      json_builder_set_member_name (builder, "command");
      json_builder_add_string_value (builder, "boot");
      json_builder_set_member_name (builder, "snapshot");
      hexz_tool_add_path_value (builder, hexz_boot_get_snapshot_path (boot));
      json_builder_set_member_name (builder, "restored_memory");
      json_builder_add_boolean_value (builder, hexz_boot_get_restored_memory (boot));
      json_builder_set_member_name (builder, "paused");
      json_builder_add_boolean_value (builder, hexz_boot_get_start_paused (boot));
      json_builder_set_member_name (builder, "qmp_socket");
      hexz_tool_add_path_value (builder, hexz_boot_get_qmp_socket (boot));
      json_builder_set_member_name (builder, "overlay");
      hexz_tool_add_path_value (builder, overlay);
      json_builder_set_member_name (builder, "directory");
      hexz_tool_add_path_value (builder, hexz_boot_get_directory (boot));
      json_builder_set_member_name (builder, "qemu_pid");
      json_builder_add_int_value (builder, hexz_boot_get_qemu_pid (boot));
      json_builder_set_member_name (builder, "nbdkit_pid");
      json_builder_add_int_value (builder, hexz_boot_get_nbdkit_pid (boot));
      json_builder_set_member_name (builder, "seconds");
      json_builder_add_double_value (builder, hexz_tool_elapsed_seconds (command->tool));
      json_builder_end_object (builder);
      hexz_tool_print_json (command->tool, builder);
      return;
    }

  if (hexz_boot_get_start_paused (boot) && hexz_boot_get_restored_memory (boot))
    /* Translators: %s is a file name, %.1f a duration. */
    g_print (_("Loaded the machine saved in %s in %.1f s; it is paused\n"),
             hexz_boot_get_snapshot_path (boot), hexz_tool_elapsed_seconds (command->tool));
  else if (hexz_boot_get_start_paused (boot))
    /* Translators: %s is a file name. */
    g_print (_("Started a paused machine on the disk of %s\n"),
             hexz_boot_get_snapshot_path (boot));
  else if (hexz_boot_get_restored_memory (boot))
    /* Translators: %s is a file name, %.1f a duration. */
    g_print (_("Resumed the machine saved in %s in %.1f s\n"),
             hexz_boot_get_snapshot_path (boot), hexz_tool_elapsed_seconds (command->tool));
  else
    /* Translators: %s is a file name, %.1f a duration. */
    g_print (_("Booted the disk of %s in %.1f s\n"),
             hexz_boot_get_snapshot_path (boot), hexz_tool_elapsed_seconds (command->tool));

  /* Translators: %s is the path of a unix socket. */
  g_print (_("QMP socket: %s\n"), hexz_boot_get_qmp_socket (boot));

  if (overlay != NULL)
    /* Translators: %s is a file name. */
    g_print (_("Disk writes go to %s, which is kept\n"), overlay);
  else
    g_print ("%s\n", _("Disk writes go to a temporary overlay, removed at exit"));

  /* Translators: both %d are process ids. */
  g_print (_("QEMU pid %d, nbdkit pid %d; press Ctrl-C to shut the machine down\n"),
           (int) hexz_boot_get_qemu_pid (boot), (int) hexz_boot_get_nbdkit_pid (boot));
  fflush (stdout);
}

static void
boot_on_stopped (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!hexz_boot_stop_finish (HEXZ_BOOT (source), result, &error))
    g_debug ("Boot: stop failed: %s", error->message);
}

static void
boot_on_interrupted (GCancellable *cancellable,
                     gpointer      user_data)
{
  BootCommand *command = user_data;

  g_debug ("Interrupted: shutting the machine down");
  hexz_boot_stop_async (command->boot, command->stop_mode, NULL, boot_on_stopped, NULL);
}

static void
boot_on_exited (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  BootCommand *command = user_data;
  g_autoptr(GError) error = NULL;

  hexz_boot_wait_finish (command->boot, result, &error);
  hexz_tool_finish (command->tool, error);
  boot_command_free (command);
}

static void
boot_on_started (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  BootCommand *command = user_data;
  g_autoptr(GError) error = NULL;

  if (!hexz_boot_start_finish (command->boot, result, &error))
    {
      /* The tool's generic message states that no file changed, but a new
       * overlay may exist by now. */
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          g_clear_error (&error);
          g_set_error_literal (&error, HEXZ_BOOT_ERROR, HEXZ_BOOT_ERROR_FAILED,
                               _("Interrupted before the machine ran, so every process "
                                 "started for it was stopped"));
        }

      hexz_tool_finish (command->tool, error);
      boot_command_free (command);
      return;
    }

  boot_report_started (command);

  /* From now on SIGINT and SIGTERM shut the machine down cleanly. The
   * handler runs at once when the signal came during the start. */
  command->cancelled_id = g_cancellable_connect (command->tool->cancellable,
                                                 G_CALLBACK (boot_on_interrupted),
                                                 command, NULL);
  hexz_boot_wait_async (command->boot, NULL, boot_on_exited, command);
}

gboolean
hexz_tool_command_boot (HexzTool  *tool,
                        int        argc,
                        char     **argv)
{
  g_autofree char *overlay = NULL;
  g_autofree char *qmp_socket = NULL;
  g_autofree char *accel = NULL;
  g_autofree char *kernel = NULL;
  g_autofree char *append = NULL;
  g_autofree char *display = NULL;
  g_autofree char *disk_interface = NULL;
  g_autofree char *qemu_binary = NULL;
  g_autoptr(GStrvBuilder) extra_builder = g_strv_builder_new ();
  g_auto(GStrv) extra_args = NULL;
  guint64 ram = 0;
  int cpus = 0;
  int stop_timeout = -1;
  gboolean powerdown = FALSE;
  gboolean paused = FALSE;
  gboolean json = FALSE;
  g_autoptr(GOptionContext) context = NULL;
  BootCommand *command;
  int n_options = argc;
  const GOptionEntry entries[] = {
    { "overlay", 'O', 0, G_OPTION_ARG_FILENAME, &overlay,
      N_("Write the disk changes to FILE, created if missing and kept (default: a temporary "
         "overlay removed at exit)"), N_("FILE") },
    { "qmp", 'q', 0, G_OPTION_ARG_FILENAME, &qmp_socket,
      N_("Create QEMU’s QMP socket at PATH, for “hexz-snap snap --socket” (default: in a "
         "private temporary folder)"), N_("PATH") },
    { "ram", 'm', 0, G_OPTION_ARG_CALLBACK, parse_ram,
      N_("RAM size, in MiB or with a suffix K, M, G (default: the size recorded in the "
         "snapshot, else 128M)"), N_("SIZE") },
    { "cpus", 0, 0, G_OPTION_ARG_INT, &cpus, N_("Number of virtual CPUs (default: the number the snapshot records, else 1)"), N_("N") },
    { "accel", 0, 0, G_OPTION_ARG_STRING, &accel,
      N_("QEMU accelerator, kvm or tcg (default: kvm when /dev/kvm is usable, else tcg)"),
      N_("NAME") },
    { "kernel", 0, 0, G_OPTION_ARG_FILENAME, &kernel,
      N_("Boot this kernel instead of the disk"), N_("FILE") },
    { "append", 0, 0, G_OPTION_ARG_STRING, &append,
      N_("Kernel command line"), N_("TEXT") },
    { "display", 0, 0, G_OPTION_ARG_STRING, &display,
      N_("QEMU display, such as gtk (default: none)"), N_("TYPE") },
    { "disk-if", 0, 0, G_OPTION_ARG_STRING, &disk_interface,
      N_("Disk interface, ide or virtio (default: ide)"), N_("TYPE") },
    { "qemu", 0, 0, G_OPTION_ARG_FILENAME, &qemu_binary,
      N_("QEMU program (default: qemu-system-x86_64)"), N_("PROGRAM") },
    { "paused", 0, 0, G_OPTION_ARG_NONE, &paused,
      N_("Leave the machine paused once it is loaded, for inspection; "
         "“hexz-snap resume --socket PATH” starts it"), NULL },
    { "powerdown", 0, 0, G_OPTION_ARG_NONE, &powerdown,
      N_("On Ctrl-C, press the guest’s ACPI power button before quitting QEMU"), NULL },
    { "stop-timeout", 0, 0, G_OPTION_ARG_INT, &stop_timeout,
      N_("Seconds to wait at each step of a shutdown before forcing it (default: 10)"),
      N_("SECONDS") },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json,
      N_("Print the machine’s socket and process ids as JSON once it runs"), NULL },
    { NULL }
  };
  GOptionGroup *group;

  /* Everything after "--" goes to QEMU unparsed. */
  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--"))
        {
          for (int j = i + 1; j < argc; j++)
            g_strv_builder_add (extra_builder, argv[j]);
          n_options = i;
          break;
        }
    }
  extra_args = g_strv_builder_end (extra_builder);

  context = hexz_tool_option_context_new (tool);
  group = g_option_group_new (NULL, NULL, NULL, &ram, NULL);
  g_option_group_add_entries (group, entries);
  g_option_group_set_translation_domain (group, GETTEXT_PACKAGE);
  g_option_context_set_main_group (context, group);

  if (!hexz_tool_parse_options (tool, context, &n_options, &argv, 1, 1))
    return FALSE;

  if (cpus < 0 || cpus > 1024)
    {
      /* Translators: %d is a number given on the command line. */
      hexz_tool_usage_error (tool, _("Invalid number of CPUs %d: use 1 to 1024, or 0 for the "
                                     "snapshot's"), cpus);
      return FALSE;
    }

  if (stop_timeout == 0 || stop_timeout < -1 || stop_timeout > 3600)
    {
      /* Translators: %d is a number given on the command line. */
      hexz_tool_usage_error (tool, _("Invalid stop timeout %d: use 1 to 3600 seconds"),
                             stop_timeout);
      return FALSE;
    }

  if (accel != NULL && !g_str_equal (accel, "kvm") && !g_str_equal (accel, "tcg"))
    {
      /* Translators: %s is a value given on the command line. */
      hexz_tool_usage_error (tool, _("Unknown accelerator “%s”: use kvm or tcg"), accel);
      return FALSE;
    }

  if (disk_interface != NULL && !g_str_equal (disk_interface, "ide") &&
      !g_str_equal (disk_interface, "virtio"))
    {
      /* Translators: %s is a value given on the command line. */
      hexz_tool_usage_error (tool, _("Unknown disk interface “%s”: use ide or virtio"),
                             disk_interface);
      return FALSE;
    }

  command = g_new0 (BootCommand, 1);
  command->tool = tool;
  command->json = json;
  command->stop_mode = powerdown ? HEXZ_BOOT_STOP_POWERDOWN : HEXZ_BOOT_STOP_QUIT;
  command->boot = hexz_boot_new (argv[1]);

  hexz_boot_set_overlay (command->boot, overlay);
  hexz_boot_set_qmp_socket (command->boot, qmp_socket);
  hexz_boot_set_ram (command->boot, ram);
  hexz_boot_set_cpus (command->boot, cpus);
  hexz_boot_set_accel (command->boot, accel);
  hexz_boot_set_kernel (command->boot, kernel);
  hexz_boot_set_append (command->boot, append);
  hexz_boot_set_start_paused (command->boot, paused);
  if (extra_args[0] != NULL)
    hexz_boot_set_extra_args (command->boot, (const char * const *) extra_args);
  if (display != NULL)
    hexz_boot_set_display (command->boot, display);
  if (disk_interface != NULL)
    hexz_boot_set_disk_interface (command->boot, disk_interface);
  if (qemu_binary != NULL)
    hexz_boot_set_qemu_binary (command->boot, qemu_binary);
  if (stop_timeout > 0)
    hexz_boot_set_stop_timeout (command->boot, (guint) stop_timeout * 1000);

  hexz_boot_start_async (command->boot, tool->cancellable, boot_on_started, command);
  return TRUE;
}
