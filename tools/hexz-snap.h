/* hexz-snap.h: shared parts of the hexz-snap command-line tool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Each subcommand is a HexzToolCommand in the table of hexz-snap.c. Its
 * start function parses the subcommand's options with
 * hexz_tool_parse_options(), starts the operation and returns; the
 * operation ends by calling hexz_tool_finish() from the main loop. To add
 * a subcommand, write its start function in a tools/hexz-snap-NAME.c file,
 * declare it below and add a row to the table.
 */

#pragma once

#include "config.h"

#include <glib/gi18n.h>
#include <json-glib/json-glib.h>

#include <hexz.h>

G_BEGIN_DECLS

/* Exit statuses. */
#define HEXZ_TOOL_EXIT_SUCCESS 0
#define HEXZ_TOOL_EXIT_FAILURE 1
#define HEXZ_TOOL_EXIT_USAGE 2

typedef struct _HexzTool HexzTool;

/* Parses the subcommand's arguments (argv[0] is the subcommand's name) and
 * starts it. Returns FALSE after a usage error, which it reported, and
 * TRUE otherwise, also when it already called hexz_tool_finish(). */
typedef gboolean (*HexzToolStartFunc) (HexzTool  *tool,
                                       int        argc,
                                       char     **argv);

typedef struct {
  const char *name;
  /* Positional parameters for the usage line, in N_(). */
  const char *parameters;
  /* One line for "hexz-snap --help", in N_(). */
  const char *summary;
  /* A paragraph for "hexz-snap NAME --help", in N_(), or NULL. */
  const char *description;
  HexzToolStartFunc start;
} HexzToolCommand;

struct _HexzTool {
  GMainLoop *loop;
  GCancellable *cancellable;
  const HexzToolCommand *command;
  int exit_status;
  gboolean finished;
  gint64 start_time;

  /* Progress, updated from any thread, drawn from the main loop. */
  gboolean progress_enabled;
  GMutex progress_lock;
  char *progress_label;
  guint64 progress_done;
  guint64 progress_total;
  gint64 progress_start_time;
  guint progress_source_id;
  gboolean progress_drawn;
};

/* Options shared by every subcommand that writes a snapshot. */
typedef struct {
  HexzCodec codec;
  int level;
  guint block_size;
  guint threads;
  gboolean train_dictionary;      /* the command's default, then the result */
  gboolean dictionary_requested;  /* --dictionary */
  gboolean no_dictionary;         /* --no-dictionary */
  gboolean force;
} HexzToolWriterOptions;

/* Inputs smaller than this get no dictionary unless --dictionary requests
 * one, because the dictionary (up to 112 KiB in the file) would cost more
 * than it saves. */
#define HEXZ_TOOL_DICTIONARY_MIN_INPUT (4 * 1024 * 1024)

GOptionContext *hexz_tool_option_context_new        (HexzTool               *tool);
gboolean        hexz_tool_parse_options             (HexzTool               *tool,
                                                     GOptionContext         *context,
                                                     int                    *argc,
                                                     char                 ***argv,
                                                     int                     min_parameters,
                                                     int                     max_parameters);
void            hexz_tool_usage_error               (HexzTool               *tool,
                                                     const char             *format,
                                                     ...) G_GNUC_PRINTF (2, 3);
gboolean        hexz_tool_parse_thread_count        (const char             *value,
                                                     guint                  *threads,
                                                     GError                **error);
gboolean        hexz_tool_require_options           (HexzTool               *tool,
                                                     const char             *first_option,
                                                     ...) G_GNUC_NULL_TERMINATED;

void            hexz_tool_writer_options_init       (HexzToolWriterOptions  *options,
                                                     gboolean                train_dictionary);
void            hexz_tool_writer_options_fit_input  (HexzToolWriterOptions  *options,
                                                     guint64                 input_size);
GOptionGroup   *hexz_tool_writer_option_group       (HexzToolWriterOptions  *options,
                                                     const GOptionEntry     *command_entries);
void            hexz_tool_writer_options_apply      (HexzToolWriterOptions  *options,
                                                     HexzSnapshotWriter     *writer);

void            hexz_tool_progress_begin            (HexzTool               *tool,
                                                     const char             *label,
                                                     guint64                 total);
void            hexz_tool_progress_update           (HexzTool               *tool,
                                                     guint64                 done,
                                                     guint64                 total);
void            hexz_tool_progress_end              (HexzTool               *tool);

void            hexz_tool_print_json                (HexzTool               *tool,
                                                     JsonBuilder            *builder);
void            hexz_tool_add_path_value            (JsonBuilder            *builder,
                                                     const char             *path);
double          hexz_tool_elapsed_seconds           (HexzTool               *tool);
gint64          hexz_tool_elapsed_milliseconds      (HexzTool               *tool);

void            hexz_tool_finish                    (HexzTool               *tool,
                                                     const GError           *error);

gboolean        hexz_tool_same_file                 (const char             *path_a,
                                                     const char             *path_b);
gboolean        hexz_tool_check_output              (HexzTool               *tool,
                                                     const char             *input,
                                                     const char             *output,
                                                     gboolean                snapshot_output,
                                                     gboolean                force);
gboolean        hexz_tool_replace_file_atomically   (const char             *path,
                                                     const char             *temp_path,
                                                     GError                **error);
int             hexz_tool_create_temp_beside        (const char             *path,
                                                     char                  **temp_path,
                                                     GError                **error);

/* Subcommands. */
gboolean hexz_tool_command_pack    (HexzTool *tool, int argc, char **argv);
gboolean hexz_tool_command_extract (HexzTool *tool, int argc, char **argv);
gboolean hexz_tool_command_commit  (HexzTool *tool, int argc, char **argv);
gboolean hexz_tool_command_info    (HexzTool *tool, int argc, char **argv);
gboolean hexz_tool_command_verify  (HexzTool *tool, int argc, char **argv);
gboolean hexz_tool_command_boot    (HexzTool *tool, int argc, char **argv);
gboolean hexz_tool_command_snap    (HexzTool *tool, int argc, char **argv);
gboolean hexz_tool_command_restore (HexzTool *tool, int argc, char **argv);
gboolean hexz_tool_command_resume  (HexzTool *tool, int argc, char **argv);

/* Helpers shared by subcommands. */
void     hexz_tool_report_written_snapshot (HexzTool   *tool,
                                            const char *command,
                                            const char *output_path,
                                            gboolean    json);
void     hexz_tool_add_snapshot_summary (JsonBuilder  *builder,
                                         HexzSnapshot *snapshot);
gboolean hexz_tool_copy_stream_to_writer (HexzTool            *tool,
                                          HexzSnapshotWriter  *writer,
                                          HexzStream           stream,
                                          GInputStream        *input,
                                          guint64              size,
                                          GCancellable        *cancellable,
                                          GError             **error);

G_END_DECLS
