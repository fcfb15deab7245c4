/* hexz-snap.c: the command-line tool, its subcommand table and shared parts
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>

#include "hexz-snap.h"
#include "hexz-util-private.h"

/* How often the progress bar is redrawn, in milliseconds. */
#define PROGRESS_REDRAW_MS 100

static const HexzToolCommand commands[] = {
  {
    "pack", N_("IMAGE OUTPUT"),
    N_("Pack a raw disk image into a new snapshot"),
    N_("Reads the raw disk image IMAGE and writes it as the disk stream of the new "
       "snapshot file OUTPUT. Holes and zero blocks take no space."),
    hexz_tool_command_pack,
  },
  {
    "commit", "",
    N_("Merge a snapshot and an overlay into a new snapshot"),
    N_("Writes a new snapshot whose disk is the base snapshot’s disk with the pages of "
       "the overlay replaced, and whose memory is the given memory image. The base’s "
       "memory is not copied."),
    hexz_tool_command_commit,
  },
  {
    "info", N_("FILE"),
    N_("Show what a snapshot contains"),
    NULL,
    hexz_tool_command_info,
  },
  {
    "verify", N_("FILE"),
    N_("Check every checksum of a snapshot"),
    N_("Reads the whole file and its parents and checks every checksum. Exits with "
       "status 1 when the file is damaged."),
    hexz_tool_command_verify,
  },
  {
    "extract", N_("FILE"),
    N_("Write a snapshot’s disk or memory stream to a file"),
    N_("Writes the disk stream (--disk) or the memory stream (--memory) of FILE to a new "
       "file, readable by the owner only. The output appears only when complete."),
    hexz_tool_command_extract,
  },
  {
    "boot", N_("SNAPSHOT [-- QEMU-ARGUMENT…]"),
    N_("Run a virtual machine from a snapshot"),
    N_("Serves the disk of SNAPSHOT through nbdkit with a copy-on-write overlay and starts "
       "QEMU on it. When the snapshot contains memory, the machine resumes where the "
       "snapshot was taken. Give it the RAM size, CPUs, kernel and QEMU arguments of the "
       "machine the snapshot was taken from. Runs until QEMU exits, and Ctrl-C shuts the "
       "machine down. Arguments after “--” are passed to QEMU."),
    hexz_tool_command_boot,
  },
  {
    "snap", "",
    N_("Take a snapshot of a running virtual machine"),
    N_("Pauses the QEMU virtual machine behind the QMP socket as briefly as the mode "
       "allows, writes its memory and the disk of the base snapshot with the overlay’s "
       "pages into OUTPUT, and resumes it. On any failure or Ctrl-C the migration is "
       "cancelled, the machine is left in its previous run state, its migration settings "
       "are restored and no file is written."),
    hexz_tool_command_snap,
  },
  {
    "restore", N_("SNAPSHOT"),
    N_("Load a snapshot’s memory into a waiting QEMU"),
    N_("Feeds the memory stream of SNAPSHOT to a QEMU started with “-incoming defer” "
       "and the same machine configuration, then resumes it unless --paused is given. "
       "Give QEMU the snapshot’s disk (see “extract --disk”)."),
    hexz_tool_command_restore,
  },
  {
    "resume", "",
    N_("Resume a paused virtual machine"),
    N_("Undoes what a killed “snap” left changed, as recorded in the marker beside "
       "the QMP socket: waits for its migration to end, resumes the machine if it "
       "ran before and restores the migration settings. Without a marker, waits "
       "until QEMU has finished a migration, then sends “cont”. Use it after a "
       "killed “snap”, or when a snapshot lost its QMP connection while the "
       "machine was paused."),
    hexz_tool_command_resume,
  },
};

static void
print_usage (FILE *out)
{
  fprintf (out, "%s\n", _("Usage:"));
  fprintf (out, "  hexz-snap %s\n\n", _("COMMAND [OPTION…]"));
  fprintf (out, "%s\n", _("Create, inspect and convert snapshots of virtual machines."));
  fprintf (out, "\n%s\n", _("Commands:"));

  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (out, "  %-10s %s\n", commands[i].name, _(commands[i].summary));

  fprintf (out, "\n%s\n", _("Run “hexz-snap COMMAND --help” to see the options of a command."));
}

static const HexzToolCommand *
find_command (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      if (g_strcmp0 (commands[i].name, name) == 0)
        return &commands[i];
    }

  return NULL;
}

/* Option parsing */

GOptionContext *
hexz_tool_option_context_new (HexzTool *tool)
{
  GOptionContext *context;

  context = g_option_context_new (_(tool->command->parameters));
  g_option_context_set_summary (context, _(tool->command->summary));
  if (tool->command->description != NULL)
    g_option_context_set_description (context, _(tool->command->description));
  g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);

  return context;
}

void
hexz_tool_usage_error (HexzTool   *tool,
                       const char *format,
                       ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);

  /* Translators: the first %s is an error message, the second a command name. */
  g_printerr (_("hexz-snap: %s (see “hexz-snap %s --help”)\n"), message, tool->command->name);

  tool->exit_status = HEXZ_TOOL_EXIT_USAGE;
}

/* Takes pairs of an option name and its parsed value (a string or %NULL),
 * ending with %NULL. Names every option whose value is %NULL in one usage
 * error and returns %FALSE, or returns %TRUE when all were given. */
gboolean
hexz_tool_require_options (HexzTool   *tool,
                           const char *first_option,
                           ...)
{
  g_autoptr(GString) missing = g_string_new (NULL);
  guint n_missing = 0;
  const char *option = first_option;
  va_list args;

  va_start (args, first_option);
  while (option != NULL)
    {
      const char *value = va_arg (args, const char *);

      if (value == NULL)
        {
          if (missing->len > 0)
            g_string_append (missing, ", ");
          g_string_append (missing, option);
          n_missing++;
        }
      option = va_arg (args, const char *);
    }
  va_end (args);

  if (n_missing == 0)
    return TRUE;

  /* Translators: %s lists command-line options, as “--base, --output”. */
  hexz_tool_usage_error (tool, ngettext ("Missing required option %s",
                                         "Missing required options %s",
                                         n_missing),
                         missing->str);

  return FALSE;
}

gboolean
hexz_tool_parse_options (HexzTool         *tool,
                         GOptionContext   *context,
                         int              *argc,
                         char           ***argv,
                         int               min_parameters,
                         int               max_parameters)
{
  g_autoptr(GError) error = NULL;
  int n_parameters;

  if (!g_option_context_parse (context, argc, argv, &error))
    {
      hexz_tool_usage_error (tool, "%s", error->message);
      return FALSE;
    }

  n_parameters = *argc - 1;
  if (n_parameters < min_parameters)
    {
      /* Translators: %s lists the missing parameters, as “IMAGE OUTPUT”. */
      hexz_tool_usage_error (tool, _("Missing parameters: expected %s"),
                             _(tool->command->parameters));
      return FALSE;
    }

  if (n_parameters > max_parameters)
    {
      /* Translators: %s is a command-line parameter. */
      hexz_tool_usage_error (tool, _("Unexpected parameter “%s”"), (*argv)[1 + max_parameters]);
      return FALSE;
    }

  return TRUE;
}

/* Options for writing snapshots */

/* Sets the defaults. @train_dictionary is the command's default for
 * training a dictionary, which --dictionary and --no-dictionary change. */
void
hexz_tool_writer_options_init (HexzToolWriterOptions *options,
                               gboolean               train_dictionary)
{
  options->codec = HEXZ_CODEC_LZ4;
  options->level = 0;
  options->block_size = HEXZ_DEFAULT_BLOCK_SIZE;
  options->threads = 0;
  options->train_dictionary = train_dictionary;
  options->dictionary_requested = FALSE;
  options->no_dictionary = FALSE;
  options->force = FALSE;
}

/* Turns the default dictionary off for an input of @input_size bytes that
 * is too small to gain from one. An explicit --dictionary stays. */
void
hexz_tool_writer_options_fit_input (HexzToolWriterOptions *options,
                                    guint64                input_size)
{
  if (!options->dictionary_requested && input_size < HEXZ_TOOL_DICTIONARY_MIN_INPUT)
    options->train_dictionary = FALSE;
}

static gboolean
parse_compression (const char  *option_name,
                   const char  *value,
                   gpointer     data,
                   GError     **error)
{
  HexzToolWriterOptions *options = data;

  if (hexz_codec_from_string (value, &options->codec))
    return TRUE;

  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
               /* Translators: %s is a value given on the command line. */
               _("Unknown compression “%s”: use lz4, zstd or raw"), value);
  return FALSE;
}

static gboolean
parse_block_size (const char  *option_name,
                  const char  *value,
                  gpointer     data,
                  GError     **error)
{
  HexzToolWriterOptions *options = data;
  guint64 number;
  char *end = NULL;

  errno = 0;
  number = g_ascii_strtoull (value, &end, 10);
  if (errno != 0 || end == value)
    goto invalid;

  if (g_ascii_strcasecmp (end, "k") == 0 || g_ascii_strcasecmp (end, "kib") == 0)
    number *= 1024;
  else if (g_ascii_strcasecmp (end, "m") == 0 || g_ascii_strcasecmp (end, "mib") == 0)
    number *= 1024 * 1024;
  else if (*end != '\0')
    goto invalid;

  if (number < HEXZ_MIN_BLOCK_SIZE || number > HEXZ_MAX_BLOCK_SIZE || (number & (number - 1)) != 0)
    goto invalid;

  options->block_size = number;
  return TRUE;

invalid:
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
               /* Translators: %s is a value given on the command line. */
               _("Invalid block size “%s”: use a power of two from 4K to 4M, such as 64K or 1M"),
               value);
  return FALSE;
}

static gboolean
parse_level (const char  *option_name,
             const char  *value,
             gpointer     data,
             GError     **error)
{
  HexzToolWriterOptions *options = data;
  gint64 number;

  if (!g_ascii_string_to_signed (value, 10, -100, 100, &number, NULL))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   /* Translators: %s is a value given on the command line. */
                   _("Invalid compression level “%s”: use a whole number, such as 3"), value);
      return FALSE;
    }

  options->level = number;
  return TRUE;
}

/* Parses the value of a --threads option: 0 (one per processor) to 1024. */
gboolean
hexz_tool_parse_thread_count (const char  *value,
                              guint       *threads,
                              GError     **error)
{
  guint64 number;

  if (!g_ascii_string_to_unsigned (value, 10, 0, 1024, &number, NULL))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   /* Translators: %s is a value given on the command line. */
                   _("Invalid thread count “%s”: use a number from 0 (automatic) to 1024"),
                   value);
      return FALSE;
    }

  *threads = number;
  return TRUE;
}

static gboolean
parse_threads (const char  *option_name,
               const char  *value,
               gpointer     data,
               GError     **error)
{
  HexzToolWriterOptions *options = data;

  return hexz_tool_parse_thread_count (value, &options->threads, error);
}

/* Checks the level against the codec once both options are known. */
static gboolean
check_writer_options (GOptionContext  *context,
                      GOptionGroup    *group,
                      gpointer         data,
                      GError         **error)
{
  HexzToolWriterOptions *options = data;

  if (options->codec == HEXZ_CODEC_LZ4 && options->level > 0)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   /* Translators: %d is a compression level. */
                   _("Invalid level %d for lz4: lz4 takes 0 (default) or a negative level for "
                     "faster compression; use --compression zstd for levels 1 to 22"),
                   options->level);
      return FALSE;
    }

  if (options->codec == HEXZ_CODEC_ZSTD && options->level > 22)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   /* Translators: %d is a compression level. */
                   _("Invalid level %d for zstd: the highest level is 22"), options->level);
      return FALSE;
    }

  if (options->dictionary_requested && options->no_dictionary)
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           /* Translators: --dictionary and --no-dictionary
                            * are options; do not translate them. */
                           _("--dictionary and --no-dictionary exclude each other; give one"));
      return FALSE;
    }

  if (options->dictionary_requested && options->codec == HEXZ_CODEC_RAW)
    {
      g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           /* Translators: --dictionary and --compression
                            * are options; do not translate them. */
                           _("--dictionary needs --compression lz4 or zstd"));
      return FALSE;
    }

  options->train_dictionary = (options->train_dictionary || options->dictionary_requested) &&
                              !options->no_dictionary && options->codec != HEXZ_CODEC_RAW;

  return TRUE;
}

/* Makes the main option group of a command that writes a snapshot: the
 * command's own @command_entries, then the compression options. */
GOptionGroup *
hexz_tool_writer_option_group (HexzToolWriterOptions *options,
                               const GOptionEntry    *command_entries)
{
  /* A command that trains no dictionary by default (snap) cannot train
   * one at all, so its help does not list the dictionary options. */
  const int dictionary_flags = options->train_dictionary ? 0 : G_OPTION_FLAG_HIDDEN;
  const GOptionEntry entries[] = {
    { "compression", 'c', 0, G_OPTION_ARG_CALLBACK, parse_compression,
      N_("Compress blocks with CODEC: lz4 (default), zstd or raw"), N_("CODEC") },
    { "level", 'l', 0, G_OPTION_ARG_CALLBACK, parse_level,
      N_("Compression level: 0 for the codec’s default, up to 22 for zstd, negative "
         "for faster LZ4"), N_("N") },
    { "block-size", 'b', 0, G_OPTION_ARG_CALLBACK, parse_block_size,
      N_("Block size in bytes, a power of two from 4K to 4M (default 64K)"), N_("SIZE") },
    { "threads", 't', 0, G_OPTION_ARG_CALLBACK, parse_threads,
      N_("Compression threads; 0 (default) uses one per processor"), N_("N") },
    { "dictionary", 'd', dictionary_flags, G_OPTION_ARG_NONE, &options->dictionary_requested,
      N_("Train a dictionary on the first 8 MiB and compress every block with it "
         "(default for pack and commit from 4 MiB of input)"), NULL },
    { "no-dictionary", 0, dictionary_flags, G_OPTION_ARG_NONE, &options->no_dictionary,
      N_("Compress every block on its own, without a dictionary"), NULL },
    { "force", 'f', 0, G_OPTION_ARG_NONE, &options->force,
      N_("Replace an existing output file that is not a snapshot"), NULL },
    { NULL }
  };
  GOptionGroup *group;

  group = g_option_group_new ("main", _("Options:"), _("Show the options"), options, NULL);
  g_option_group_add_entries (group, command_entries);
  g_option_group_add_entries (group, entries);
  g_option_group_set_parse_hooks (group, NULL, check_writer_options);
  g_option_group_set_translation_domain (group, GETTEXT_PACKAGE);

  return group;
}

void
hexz_tool_writer_options_apply (HexzToolWriterOptions *options,
                                HexzSnapshotWriter    *writer)
{
  hexz_snapshot_writer_set_codec (writer, options->codec);
  hexz_snapshot_writer_set_level (writer, options->level);
  hexz_snapshot_writer_set_block_size (writer, options->block_size);
  if (options->threads > 0)
    hexz_snapshot_writer_set_threads (writer, options->threads);
  hexz_snapshot_writer_set_train_dictionary (writer, options->train_dictionary);
}

/* Progress */

static void
format_duration (GString *out,
                 guint64  seconds)
{
  if (seconds >= 3600)
    g_string_append_printf (out, "%" G_GUINT64_FORMAT ":%02u:%02u",
                            seconds / 3600, (guint) (seconds / 60 % 60), (guint) (seconds % 60));
  else
    g_string_append_printf (out, "%u:%02u", (guint) (seconds / 60), (guint) (seconds % 60));
}

static void
progress_draw (HexzTool *tool)
{
  g_autoptr(GString) line = g_string_new ("\r\033[K");
  g_autofree char *done_text = NULL;
  g_autofree char *rate_text = NULL;
  guint64 done;
  guint64 total;
  double seconds;
  double rate;

  g_mutex_lock (&tool->progress_lock);
  if (tool->progress_label[0] == '\0')
    {
      g_mutex_unlock (&tool->progress_lock);
      return;
    }
  done = tool->progress_done;
  total = tool->progress_total;
  seconds = (g_get_monotonic_time () - tool->progress_start_time) / (double) G_USEC_PER_SEC;
  g_string_append_printf (line, "%-7s ", tool->progress_label);
  g_mutex_unlock (&tool->progress_lock);

  rate = seconds > 0.2 ? done / seconds : 0;
  done_text = g_format_size_full (done, G_FORMAT_SIZE_IEC_UNITS);

  if (total > 0)
    {
      g_autofree char *total_text = g_format_size_full (total, G_FORMAT_SIZE_IEC_UNITS);
      guint width = 24;
      guint filled = MIN (width, (guint) ((double) done / total * width));

      g_string_append_c (line, '[');
      for (guint i = 0; i < width; i++)
        g_string_append_c (line, i < filled ? '#' : '-');
      g_string_append_printf (line, "] %3u%%  ", (guint) MIN (100, done * 100 / total));
      /* Translators: progress, as “1.2 GiB of 4.0 GiB”. */
      g_string_append_printf (line, _("%s of %s"), done_text, total_text);
    }
  else
    {
      g_string_append (line, done_text);
    }

  if (rate > 0)
    {
      rate_text = g_format_size_full ((guint64) rate, G_FORMAT_SIZE_IEC_UNITS);
      /* Translators: a transfer rate, as “350.0 MiB/s”. */
      g_string_append_printf (line, _("  %s/s"), rate_text);

      if (total > done)
        {
          /* Translators: “estimated time left”, followed by a duration like 1:05. */
          g_string_append (line, _("  ETA "));
          format_duration (line, (guint64) ((total - done) / rate));
        }
    }

  fputs (line->str, stderr);
  fflush (stderr);
  tool->progress_drawn = TRUE;
}

static gboolean
on_progress_redraw (gpointer user_data)
{
  progress_draw (user_data);

  return G_SOURCE_CONTINUE;
}

/* Starts showing progress for one stream; may be called from any thread. */
void
hexz_tool_progress_begin (HexzTool   *tool,
                          const char *label,
                          guint64     total)
{
  g_mutex_lock (&tool->progress_lock);
  g_free (tool->progress_label);
  tool->progress_label = g_strdup (label);
  tool->progress_done = 0;
  tool->progress_total = total;
  tool->progress_start_time = g_get_monotonic_time ();
  g_mutex_unlock (&tool->progress_lock);
}

/* Records progress; may be called from any thread. */
void
hexz_tool_progress_update (HexzTool *tool,
                           guint64   done,
                           guint64   total)
{
  g_mutex_lock (&tool->progress_lock);
  tool->progress_done = done;
  tool->progress_total = total;
  g_mutex_unlock (&tool->progress_lock);
}

/* Erases the progress bar until the next hexz_tool_progress_begin();
 * called from the main loop. */
void
hexz_tool_progress_end (HexzTool *tool)
{
  g_mutex_lock (&tool->progress_lock);
  g_free (tool->progress_label);
  tool->progress_label = g_strdup ("");
  g_mutex_unlock (&tool->progress_lock);

  if (!tool->progress_drawn)
    return;

  fputs ("\r\033[K", stderr);
  fflush (stderr);
  tool->progress_drawn = FALSE;
}

/* Output */

void
hexz_tool_print_json (HexzTool    *tool,
                      JsonBuilder *builder)
{
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (builder);
  g_autofree char *text = NULL;

  json_generator_set_root (generator, root);
  json_generator_set_pretty (generator, TRUE);
  text = json_generator_to_data (generator, NULL);

  /* JSON is UTF-8 whatever the locale; g_print() would convert it. */
  fputs (text, stdout);
  fputc ('\n', stdout);
  fflush (stdout);
}

/* Adds a file name as a JSON string: JSON holds UTF-8, file names are
 * bytes, so names that are not UTF-8 get replacement characters. */
void
hexz_tool_add_path_value (JsonBuilder *builder,
                          const char  *path)
{
  g_autofree char *display_name = NULL;

  if (path == NULL)
    {
      json_builder_add_null_value (builder);
      return;
    }

  display_name = g_filename_display_name (path);
  json_builder_add_string_value (builder, display_name);
}

double
hexz_tool_elapsed_seconds (HexzTool *tool)
{
  return (g_get_monotonic_time () - tool->start_time) / (double) G_USEC_PER_SEC;
}

gint64
hexz_tool_elapsed_milliseconds (HexzTool *tool)
{
  return (g_get_monotonic_time () - tool->start_time) / 1000;
}

void
hexz_tool_add_snapshot_summary (JsonBuilder  *builder,
                                HexzSnapshot *snapshot)
{
  g_autofree char *path = g_file_get_path (hexz_snapshot_get_file (snapshot));

  json_builder_set_member_name (builder, "file");
  hexz_tool_add_path_value (builder, path);
  json_builder_set_member_name (builder, "id");
  json_builder_add_string_value (builder, hexz_snapshot_get_id (snapshot));
  json_builder_set_member_name (builder, "file_size");
  json_builder_add_int_value (builder, hexz_snapshot_get_file_size (snapshot));
  json_builder_set_member_name (builder, "block_size");
  json_builder_add_int_value (builder, hexz_snapshot_get_block_size (snapshot));
  json_builder_set_member_name (builder, "disk_size");
  json_builder_add_int_value (builder, hexz_snapshot_get_disk_size (snapshot));
  json_builder_set_member_name (builder, "memory_size");
  json_builder_add_int_value (builder, hexz_snapshot_get_memory_size (snapshot));
  json_builder_set_member_name (builder, "has_memory");
  json_builder_add_boolean_value (builder, hexz_snapshot_has_memory (snapshot));

  json_builder_set_member_name (builder, "parent");
  if (hexz_snapshot_get_parent_path (snapshot) != NULL)
    {
      json_builder_begin_object (builder);
      json_builder_set_member_name (builder, "path");
      hexz_tool_add_path_value (builder, hexz_snapshot_get_parent_path (snapshot));
      json_builder_set_member_name (builder, "id");
      json_builder_add_string_value (builder, hexz_snapshot_get_parent_id (snapshot));
      json_builder_end_object (builder);
    }
  else
    {
      json_builder_add_null_value (builder);
    }
}

/* Prints what a pack or commit wrote, as text or JSON, then finishes. */
void
hexz_tool_report_written_snapshot (HexzTool   *tool,
                                   const char *command,
                                   const char *output_path,
                                   gboolean    json)
{
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;

  hexz_tool_progress_end (tool);

  snapshot = hexz_snapshot_open_path (output_path, tool->cancellable, &error);
  if (snapshot == NULL)
    {
      hexz_tool_finish (tool, error);
      return;
    }

  if (json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      json_builder_set_member_name (builder, "command");
      json_builder_add_string_value (builder, command);
      hexz_tool_add_snapshot_summary (builder, snapshot);
      json_builder_set_member_name (builder, "milliseconds");
      json_builder_add_int_value (builder, hexz_tool_elapsed_milliseconds (tool));
      json_builder_end_object (builder);
      hexz_tool_print_json (tool, builder);
    }
  else
    {
      g_autofree char *disk = g_format_size_full (hexz_snapshot_get_disk_size (snapshot),
                                                  G_FORMAT_SIZE_IEC_UNITS);
      g_autofree char *file = g_format_size_full (hexz_snapshot_get_file_size (snapshot),
                                                  G_FORMAT_SIZE_IEC_UNITS);

      /* Translators: the first %s is a file name, then sizes and a duration. */
      g_print (_("Wrote %s: %s disk, file size %s, in %.1f s\n"),
               output_path, disk, file, hexz_tool_elapsed_seconds (tool));
    }

  hexz_tool_finish (tool, NULL);
}

/* Copies @input into @stream of @writer; runs on a worker thread. */
gboolean
hexz_tool_copy_stream_to_writer (HexzTool            *tool,
                                 HexzSnapshotWriter  *writer,
                                 HexzStream           stream,
                                 GInputStream        *input,
                                 guint64              size,
                                 GCancellable        *cancellable,
                                 GError             **error)
{
  const gsize chunk_size = 1024 * 1024;
  g_autofree guint8 *buffer = g_malloc (chunk_size);
  guint64 done = 0;

  if (!hexz_snapshot_writer_begin_stream (writer, stream, size, error))
    return FALSE;

  hexz_tool_progress_begin (tool, hexz_stream_to_string (stream), size);

  for (;;)
    {
      gsize n_read = 0;

      if (!g_input_stream_read_all (input, buffer, chunk_size, &n_read, cancellable, error))
        return FALSE;

      if (n_read == 0)
        break;

      if (!hexz_snapshot_writer_write (writer, buffer, n_read, cancellable, error))
        return FALSE;

      done += n_read;
      hexz_tool_progress_update (tool, done, MAX (size, done));
    }

  return hexz_snapshot_writer_end_stream (writer, cancellable, error);
}

/* Files */

/* Checks whether two paths name one existing file, links included. */
gboolean
hexz_tool_same_file (const char *path_a,
                     const char *path_b)
{
  GStatBuf st_a;
  GStatBuf st_b;

  if (g_stat (path_a, &st_a) != 0 || g_stat (path_b, &st_b) != 0)
    return FALSE;

  return st_a.st_dev == st_b.st_dev && st_a.st_ino == st_b.st_ino;
}

/* The first bytes of every snapshot file, as doc/format.md specifies. */
#define SNAPSHOT_MAGIC "HEXZSNAP"

/* Whether @path starts with the snapshot format's magic. */
static gboolean
is_snapshot_file (const char *path)
{
  char magic[sizeof SNAPSHOT_MAGIC - 1];
  gboolean found = FALSE;
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

  if (fd < 0)
    return FALSE;
  if (read (fd, magic, sizeof magic) == sizeof magic)
    found = memcmp (magic, SNAPSHOT_MAGIC, sizeof magic) == 0;
  close (fd);

  return found;
}

/* Checks, before anything is written, that the command may write
 * @output. It must not be @input (%NULL for none). A path that exists and
 * is not a regular file is never replaced. An existing regular file is
 * replaced with --force (@force), or without it when it is a snapshot and
 * the command writes one (@snapshot_output). Ends the command with an
 * error otherwise. */
gboolean
hexz_tool_check_output (HexzTool   *tool,
                        const char *input,
                        const char *output,
                        gboolean    snapshot_output,
                        gboolean    force)
{
  g_autoptr(GError) error = NULL;
  GStatBuf st;

  if (input != NULL && hexz_tool_same_file (input, output))
    g_set_error (&error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 /* Translators: both %s are file names. */
                 _("Output “%s” is the input file “%s”: give another output file"),
                 output, input);
  else if (g_lstat (output, &st) != 0)
    return TRUE;
  else if (!S_ISREG (st.st_mode))
    g_set_error (&error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                 /* Translators: %s is a file name. */
                 _("Output “%s” exists and is not a regular file, which this command never "
                   "replaces: give another output file"),
                 output);
  else if (hexz_path_is_locked (output))
    g_set_error (&error, G_IO_ERROR, G_IO_ERROR_BUSY,
                 /* Translators: %s is a file name. */
                 _("Output “%s” is in use by a running machine (an NBD server or QEMU holds "
                   "a lock on it), so it is never replaced, even with --force: give another "
                   "output file"),
                 output);
  else if (!force && !(snapshot_output && is_snapshot_file (output)))
    g_set_error (&error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                 /* Translators: %s is a file name. */
                 _("Output “%s” already exists: give another output file, or --force to "
                   "replace it"),
                 output);
  else
    return TRUE;

  hexz_tool_finish (tool, error);
  return FALSE;
}

/* Creates an empty file, mode 0600, in the folder of @path, under a hidden
 * name that hexz_tool_replace_file_atomically() later renames to @path. */
int
hexz_tool_create_temp_beside (const char  *path,
                              char       **temp_path,
                              GError     **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *name = g_strdup_printf (".%s.XXXXXX", base);
  g_autofree char *template = g_build_filename (dir, name, NULL);
  int fd;

  fd = g_mkstemp_full (template, O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   /* Translators: the first %s is a folder, the second an error message. */
                   _("Cannot create a temporary file in “%s”: %s"),
                   dir, g_strerror (saved_errno));
      return -1;
    }

  *temp_path = g_steal_pointer (&template);

  return fd;
}

gboolean
hexz_tool_replace_file_atomically (const char  *path,
                                   const char  *temp_path,
                                   GError     **error)
{
  if (g_rename (temp_path, path) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   /* Translators: the first %s is a file name, the second an error message. */
                   _("Cannot move the finished file to “%s”: %s"),
                   path, g_strerror (saved_errno));
      g_unlink (temp_path);
      return FALSE;
    }

  return TRUE;
}

/* Ending */

/* Ends the running subcommand: reports @error, if any, as one line and
 * stops the main loop. */
void
hexz_tool_finish (HexzTool     *tool,
                  const GError *error)
{
  if (tool->finished)
    return;

  tool->finished = TRUE;

  if (tool->progress_source_id != 0)
    {
      g_source_remove (tool->progress_source_id);
      tool->progress_source_id = 0;
    }
  hexz_tool_progress_end (tool);

  if (error != NULL)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_printerr ("hexz-snap: %s\n", _("Interrupted; no file was written or changed"));
      else
        g_printerr ("hexz-snap: %s\n", error->message);

      tool->exit_status = HEXZ_TOOL_EXIT_FAILURE;
    }

  if (g_main_loop_is_running (tool->loop))
    g_main_loop_quit (tool->loop);
}

static gboolean
on_terminate_signal (gpointer user_data)
{
  HexzTool *tool = user_data;

  g_debug ("Interrupted: cancelling the running operation");
  g_cancellable_cancel (tool->cancellable);

  return G_SOURCE_CONTINUE;
}

/* Prints the library's notices (messages and warnings of the Hexz domain,
 * such as an earlier snapshot's machine being resumed) as the tool's own
 * lines, on a line of their own below any progress line. Everything else,
 * debug output included, goes to GLib's default writer. */
static GLogWriterOutput
write_log (GLogLevelFlags   log_level,
           const GLogField *fields,
           gsize            n_fields,
           gpointer         user_data)
{
  const char *domain = NULL;
  const char *message = NULL;

  if ((log_level & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_WARNING)) == 0)
    return g_log_writer_default (log_level, fields, n_fields, user_data);

  for (gsize i = 0; i < n_fields; i++)
    {
      if (g_str_equal (fields[i].key, "GLIB_DOMAIN"))
        domain = fields[i].value;
      else if (g_str_equal (fields[i].key, "MESSAGE"))
        message = fields[i].value;
    }

  if (g_strcmp0 (domain, G_LOG_DOMAIN) != 0 || message == NULL)
    return g_log_writer_default (log_level, fields, n_fields, user_data);

  if (isatty (STDERR_FILENO))
    fputs ("\r\033[K", stderr);
  g_printerr ("hexz-snap: %s\n", message);

  return G_LOG_WRITER_HANDLED;
}

int
main (int   argc,
      char *argv[])
{
  const HexzToolCommand *command;
  HexzTool tool = { 0 };
  guint sigint_id;
  guint sigterm_id;
  gboolean started;

  g_log_set_writer_func (write_log, NULL, NULL);
  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  if (argc < 2)
    {
      print_usage (stderr);
      return HEXZ_TOOL_EXIT_USAGE;
    }

  if (g_str_equal (argv[1], "--help") || g_str_equal (argv[1], "-h") ||
      g_str_equal (argv[1], "help"))
    {
      print_usage (stdout);
      return HEXZ_TOOL_EXIT_SUCCESS;
    }

  if (g_str_equal (argv[1], "--version"))
    {
      g_print ("hexz-snap %s\n", PACKAGE_VERSION);
      return HEXZ_TOOL_EXIT_SUCCESS;
    }

  command = find_command (argv[1]);
  if (command == NULL)
    {
      /* Translators: %s is what the user typed as a command. */
      g_printerr (_("hexz-snap: Unknown command “%s” (see “hexz-snap --help”)\n"), argv[1]);
      return HEXZ_TOOL_EXIT_USAGE;
    }

  {
    g_autofree char *prgname = g_strdup_printf ("hexz-snap %s", command->name);
    g_set_prgname (prgname);
  }

  tool.loop = g_main_loop_new (NULL, FALSE);
  tool.cancellable = g_cancellable_new ();
  tool.command = command;
  tool.exit_status = HEXZ_TOOL_EXIT_SUCCESS;
  tool.start_time = g_get_monotonic_time ();
  tool.progress_enabled = isatty (STDERR_FILENO) && g_strcmp0 (g_getenv ("TERM"), "dumb") != 0;
  tool.progress_label = g_strdup ("");
  g_mutex_init (&tool.progress_lock);

  sigint_id = g_unix_signal_add (SIGINT, on_terminate_signal, &tool);
  sigterm_id = g_unix_signal_add (SIGTERM, on_terminate_signal, &tool);

  if (tool.progress_enabled)
    tool.progress_source_id = g_timeout_add (PROGRESS_REDRAW_MS, on_progress_redraw, &tool);

  started = command->start (&tool, argc - 1, argv + 1);

  if (started && !tool.finished)
    g_main_loop_run (tool.loop);

  if (!started)
    hexz_tool_finish (&tool, NULL);

  g_source_remove (sigint_id);
  g_source_remove (sigterm_id);
  g_clear_object (&tool.cancellable);
  g_clear_pointer (&tool.loop, g_main_loop_unref);
  g_clear_pointer (&tool.progress_label, g_free);
  g_mutex_clear (&tool.progress_lock);

  return tool.exit_status;
}
