/* hexz-snap-commit.c: the commit subcommand
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "hexz-snap.h"

typedef struct {
  HexzTool *tool;
  char *base_path;
  char *overlay_path;
  char *memory_path;
  char *output_path;
  char *message;
  gboolean thin;
  gboolean allow_grow;
  gboolean json;
  HexzToolWriterOptions options;

  HexzCommit *commit;
  int progress_stream;
} CommitJob;

static void
commit_job_free (CommitJob *job)
{
  g_free (job->base_path);
  g_free (job->overlay_path);
  g_free (job->memory_path);
  g_free (job->output_path);
  g_free (job->message);
  if (job->commit != NULL)
    g_signal_handlers_disconnect_by_data (job->commit, job);
  g_clear_object (&job->commit);
  g_free (job);
}

static void
on_commit_progress (HexzCommit *commit,
                    HexzStream  stream,
                    guint64     done,
                    guint64     total,
                    gpointer    user_data)
{
  CommitJob *job = user_data;

  if (job->progress_stream != (int) stream)
    {
      job->progress_stream = stream;
      hexz_tool_progress_begin (job->tool, hexz_stream_to_string (stream), total);
    }

  hexz_tool_progress_update (job->tool, done, total);
}

static void
on_commit_done (GObject      *source_object,
                GAsyncResult *result,
                gpointer      user_data)
{
  CommitJob *job = user_data;
  g_autoptr(GError) error = NULL;

  if (!hexz_commit_run_finish (HEXZ_COMMIT (source_object), result, &error))
    hexz_tool_finish (job->tool, error);
  else
    hexz_tool_report_written_snapshot (job->tool, "commit", job->output_path, job->json);

  commit_job_free (job);
}

static void
on_base_opened (GObject      *source_object,
                GAsyncResult *result,
                gpointer      user_data)
{
  CommitJob *job = user_data;
  g_autoptr(HexzSnapshot) base = NULL;
  g_autoptr(HexzOverlay) overlay = NULL;
  g_autoptr(GFile) output = NULL;
  g_autoptr(GError) error = NULL;

  base = hexz_snapshot_open_finish (result, &error);
  if (base == NULL)
    goto failed;

  /* The overlay's own size is its disk size; HexzCommit compares it with
   * the base's. */
  if (job->overlay_path != NULL)
    {
      overlay = hexz_overlay_open_path (job->overlay_path, 0, job->tool->cancellable, &error);
      if (overlay == NULL)
        goto failed;
    }

  output = g_file_new_for_path (job->output_path);
  job->commit = hexz_commit_new (base, output);
  hexz_commit_set_overlay (job->commit, overlay);
  hexz_commit_set_thin (job->commit, job->thin);
  hexz_commit_set_allow_grow (job->commit, job->allow_grow);
  hexz_commit_set_message (job->commit, job->message);
  hexz_commit_set_codec (job->commit, job->options.codec);
  hexz_commit_set_level (job->commit, job->options.level);
  hexz_commit_set_block_size (job->commit, job->options.block_size);
  hexz_commit_set_threads (job->commit, job->options.threads);
  /* The disk stream, written first, trains the dictionary. It has at
   * least the base's disk size. */
  hexz_tool_writer_options_fit_input (&job->options, hexz_snapshot_get_disk_size (base));
  hexz_commit_set_train_dictionary (job->commit, job->options.train_dictionary);

  if (job->memory_path != NULL)
    {
      g_autoptr(GFile) memory = g_file_new_for_path (job->memory_path);

      hexz_commit_set_memory_file (job->commit, memory);
    }

  g_signal_connect (job->commit, "progress", G_CALLBACK (on_commit_progress), job);
  hexz_commit_run_async (job->commit, job->tool->cancellable, on_commit_done, job);
  return;

failed:
  hexz_tool_finish (job->tool, error);
  commit_job_free (job);
}

gboolean
hexz_tool_command_commit (HexzTool  *tool,
                          int        argc,
                          char     **argv)
{
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GFile) base = NULL;
  GOptionGroup *group;
  CommitJob *job = g_new0 (CommitJob, 1);
  const GOptionEntry entries[] = {
    { "base", 0, 0, G_OPTION_ARG_FILENAME, &job->base_path,
      N_("The snapshot the overlay was made on (required)"), N_("FILE") },
    { "overlay", 0, 0, G_OPTION_ARG_FILENAME, &job->overlay_path,
      N_("The overlay with the changed disk pages; its .meta file must lie beside it"),
      N_("FILE") },
    { "memory", 'm', 0, G_OPTION_ARG_FILENAME, &job->memory_path,
      N_("Store the memory image FILE as the memory stream"), N_("FILE") },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &job->output_path,
      N_("The snapshot file to write (required)"), N_("FILE") },
    { "thin", 0, 0, G_OPTION_ARG_NONE, &job->thin,
      N_("Refer to the base for unchanged blocks instead of copying them"), NULL },
    { "allow-grow", 0, 0, G_OPTION_ARG_NONE, &job->allow_grow,
      N_("Accept an overlay larger than the base’s disk"), NULL },
    { "message", 0, 0, G_OPTION_ARG_STRING, &job->message,
      N_("Store TEXT as the snapshot’s message"), N_("TEXT") },
    { "json", 0, 0, G_OPTION_ARG_NONE, &job->json,
      N_("Print a JSON summary on success"), NULL },
    { NULL }
  };

  job->tool = tool;
  job->progress_stream = -1;
  hexz_tool_writer_options_init (&job->options, TRUE);

  context = hexz_tool_option_context_new (tool);
  group = hexz_tool_writer_option_group (&job->options, entries);
  g_option_context_set_main_group (context, group);

  if (!hexz_tool_parse_options (tool, context, &argc, &argv, 0, 0))
    goto usage;

  if (!hexz_tool_require_options (tool, "--base", job->base_path,
                                  "--output", job->output_path, NULL))
    goto usage;

  if (!hexz_tool_check_output (tool, NULL, job->output_path, TRUE, job->options.force))
    {
      commit_job_free (job);
      return TRUE;
    }

  base = g_file_new_for_path (job->base_path);
  hexz_snapshot_open_async (base, G_PRIORITY_DEFAULT, tool->cancellable, on_base_opened, job);

  return TRUE;

usage:
  commit_job_free (job);
  return FALSE;
}
