/* hexz-snap-inspect.c: the info and verify subcommands
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "hexz-snap.h"
#include "hexz-snapshot-private.h"

typedef struct {
  HexzTool *tool;
  char *path;
  gboolean json;
  gboolean blocks;
  HexzBlockStats stats[HEXZ_STREAM_MEMORY + 1];   /* by HexzStream */
  /* info: why the chain of parents could not be opened, NULL if it was. */
  GError *chain_error;
} InspectJob;

static void
inspect_job_free (InspectJob *job)
{
  g_free (job->path);
  g_clear_error (&job->chain_error);
  g_free (job);
}

/* Parses the options of info (@info TRUE, which adds --blocks) or
 * verify. */
static InspectJob *
inspect_job_parse (HexzTool  *tool,
                   int        argc,
                   char     **argv,
                   gboolean   info)
{
  g_autoptr(GOptionContext) context = NULL;
  InspectJob *job = g_new0 (InspectJob, 1);
  const GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &job->json,
      N_("Print the result as JSON"), NULL },
    { "blocks", 0, 0, G_OPTION_ARG_NONE, &job->blocks,
      N_("Count the blocks of each stream by how they are stored (reads the whole index)"),
      NULL },
    { NULL }
  };
  GOptionEntry verify_entries[] = { entries[0], { NULL } };

  job->tool = tool;

  context = hexz_tool_option_context_new (tool);
  g_option_context_add_main_entries (context, info ? entries : verify_entries, GETTEXT_PACKAGE);

  if (!hexz_tool_parse_options (tool, context, &argc, &argv, 1, 1))
    {
      inspect_job_free (job);
      return NULL;
    }

  job->path = g_strdup (argv[1]);

  return job;
}

/* info */

static void
print_size_line (const char *label,
                 guint64     size)
{
  g_autofree char *text = g_format_size_full (size, G_FORMAT_SIZE_IEC_UNITS);

  /* g_format_size_full() already gives small sizes in bytes. */
  if (size < 1024)
    g_print ("%-14s %s\n", label, text);
  else
    /* Translators: a size, as “1.0 GiB (1073741824 bytes)”; the plural
     * form follows that number of bytes. */
    g_print ("%-14s %s (%" G_GUINT64_FORMAT " %s)\n", label, text, size,
             ngettext ("byte", "bytes", size));
}

static void
print_block_stats (const HexzBlockStats *stats,
                   guint64               size)
{
  g_autofree char *stored = g_format_size_full (stats->stored_bytes, G_FORMAT_SIZE_IEC_UNITS);

  /* Translators: counts of blocks, by how they are stored; the plural form
   * follows the first count, the number of blocks in all. */
  g_print (ngettext ("  %" PRIu64 " block: %" PRIu64 " zero, %" PRIu64 " from the parent, %"
                     PRIu64 " LZ4, %" PRIu64 " zstd, %" PRIu64 " raw, %" PRIu64 " shared\n",
                     "  %" PRIu64 " blocks: %" PRIu64 " zero, %" PRIu64 " from the parent, %"
                     PRIu64 " LZ4, %" PRIu64 " zstd, %" PRIu64 " raw, %" PRIu64 " shared\n",
                     stats->blocks),
           stats->blocks, stats->zero_blocks, stats->parent_blocks, stats->lz4_blocks,
           stats->zstd_blocks, stats->raw_blocks, stats->shared_blocks);
  if (stats->dictionary_blocks > 0)
    /* Translators: a count of blocks. */
    g_print (ngettext ("  %" PRIu64 " block uses the file’s dictionary\n",
                       "  %" PRIu64 " blocks use the file’s dictionary\n",
                       stats->dictionary_blocks),
             stats->dictionary_blocks);
  /* Translators: a size, then a percentage. */
  g_print (_("  %s stored, %.1f %% of the stream\n"), stored,
           size > 0 ? 100.0 * stats->stored_bytes / size : 0.0);
}

static void
print_info_text (InspectJob   *job,
                 HexzSnapshot *snapshot,
                 const char   *path)
{
  JsonObject *metadata = hexz_snapshot_get_metadata (snapshot);
  g_autofree char *block_size = g_format_size_full (hexz_snapshot_get_block_size (snapshot),
                                                    G_FORMAT_SIZE_IEC_UNITS);

  g_print ("%-14s %s\n", _("File:"), path);
  g_print ("%-14s %s\n", _("Snapshot id:"), hexz_snapshot_get_id (snapshot));
  print_size_line (_("File size:"), hexz_snapshot_get_file_size (snapshot));
  g_print ("%-14s %s\n", _("Block size:"), block_size);
  print_size_line (_("Disk:"), hexz_snapshot_get_disk_size (snapshot));
  if (job->blocks)
    print_block_stats (&job->stats[HEXZ_STREAM_DISK], hexz_snapshot_get_disk_size (snapshot));

  if (hexz_snapshot_has_memory (snapshot))
    {
      print_size_line (_("Memory:"), hexz_snapshot_get_memory_size (snapshot));
      if (job->blocks)
        print_block_stats (&job->stats[HEXZ_STREAM_MEMORY],
                           hexz_snapshot_get_memory_size (snapshot));
    }
  else
    g_print ("%-14s %s\n", _("Memory:"), _("none"));

  if (hexz_snapshot_get_parent_path (snapshot) != NULL)
    g_print ("%-14s %s (%s)\n", _("Parent:"),
             hexz_snapshot_get_parent_path (snapshot),
             hexz_snapshot_get_parent_id (snapshot));
  else
    g_print ("%-14s %s\n", _("Parent:"), _("none (thick snapshot)"));

  if (metadata == NULL || json_object_get_size (metadata) == 0)
    return;

  g_print ("%s\n", _("Metadata:"));

  /* In key order, so that two files list their metadata alike. */
  {
    g_autoptr(GList) keys = g_list_sort (json_object_get_members (metadata),
                                         (GCompareFunc) g_strcmp0);
    int width = 0;

    for (GList *l = keys; l != NULL; l = l->next)
      width = MAX (width, (int) strlen (l->data));

    for (GList *l = keys; l != NULL; l = l->next)
      {
        const char *key = l->data;
        JsonNode *value = json_object_get_member (metadata, key);

        if (JSON_NODE_HOLDS_VALUE (value) && json_node_get_value_type (value) == G_TYPE_STRING)
          {
            g_print ("  %-*s %s\n", width, key, json_node_get_string (value));
          }
        else
          {
            g_autofree char *text = json_to_string (value, FALSE);

            g_print ("  %-*s %s\n", width, key, text);
          }
      }
  }
}

static void
add_block_stats (JsonBuilder          *builder,
                 const char           *member,
                 const HexzBlockStats *stats)
{
  const struct {
    const char *name;
    guint64 value;
  } counts[] = {
    { "blocks", stats->blocks },
    { "zero", stats->zero_blocks },
    { "parent", stats->parent_blocks },
    { "lz4", stats->lz4_blocks },
    { "zstd", stats->zstd_blocks },
    { "raw", stats->raw_blocks },
    { "shared", stats->shared_blocks },
    { "dictionary", stats->dictionary_blocks },
    { "stored_bytes", stats->stored_bytes },
  };

  json_builder_set_member_name (builder, member);
  json_builder_begin_object (builder);
  for (guint i = 0; i < G_N_ELEMENTS (counts); i++)
    {
      json_builder_set_member_name (builder, counts[i].name);
      json_builder_add_int_value (builder, counts[i].value);
    }
  json_builder_end_object (builder);
}

static void
print_info_json (InspectJob   *job,
                 HexzSnapshot *snapshot)
{
  g_autoptr(JsonBuilder) builder = json_builder_new ();
  JsonObject *metadata = hexz_snapshot_get_metadata (snapshot);

  json_builder_begin_object (builder);
  hexz_tool_add_snapshot_summary (builder, snapshot);
  if (job->blocks)
    {
      add_block_stats (builder, "disk_blocks", &job->stats[HEXZ_STREAM_DISK]);
      add_block_stats (builder, "memory_blocks", &job->stats[HEXZ_STREAM_MEMORY]);
    }
  json_builder_set_member_name (builder, "metadata");
  if (metadata != NULL)
    {
      g_autoptr(JsonNode) node = json_node_new (JSON_NODE_OBJECT);

      json_node_set_object (node, metadata);
      json_builder_add_value (builder, g_steal_pointer (&node));
    }
  else
    {
      json_builder_add_null_value (builder);
    }
  json_builder_end_object (builder);

  hexz_tool_print_json (job->tool, builder);
}

static void
print_info (InspectJob   *job,
            HexzSnapshot *snapshot)
{
  if (job->json)
    print_info_json (job, snapshot);
  else
    print_info_text (job, snapshot, job->path);

  /* The file's own fields are shown, and the broken chain fails the
   * command. */
  hexz_tool_finish (job->tool, job->chain_error);
  inspect_job_free (job);
}

/* Reading the whole index may take a while: it runs in a worker thread,
 * so that Ctrl-C still cancels it. */
static void
count_blocks_thread (GTask        *task,
                     gpointer      source_object,
                     gpointer      task_data,
                     GCancellable *cancellable)
{
  InspectJob *job = task_data;
  HexzSnapshot *snapshot = source_object;
  GError *error = NULL;

  for (guint s = 0; s < G_N_ELEMENTS (job->stats); s++)
    {
      if (!hexz_snapshot_get_block_stats (snapshot, s, &job->stats[s], cancellable, &error))
        {
          g_task_return_error (task, error);
          return;
        }
    }

  g_task_return_boolean (task, TRUE);
}

static void
on_blocks_counted (GObject      *source_object,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  InspectJob *job = user_data;
  g_autoptr(GError) error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      hexz_tool_finish (job->tool, error);
      inspect_job_free (job);
      return;
    }

  print_info (job, HEXZ_SNAPSHOT (source_object));
}

static void
on_info_opened (GObject      *source_object,
                GAsyncResult *result,
                gpointer      user_data)
{
  InspectJob *job = user_data;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;

  snapshot = hexz_snapshot_open_finish (result, &error);

  /* A missing or replaced parent leaves the file itself readable: show
   * its fields, with the parent's expected path and id, then fail. */
  if (snapshot == NULL && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_autoptr(GFile) file = g_file_new_for_path (job->path);
      g_autoptr(GError) own_error = NULL;

      snapshot = hexz_snapshot_open_without_parents (file, job->tool->cancellable, &own_error);
      if (snapshot != NULL && hexz_snapshot_get_parent_path (snapshot) != NULL)
        job->chain_error = g_steal_pointer (&error);
      else
        g_clear_object (&snapshot);

      /* Without the parent its blocks read as invalid index entries. */
      job->blocks = FALSE;
    }

  if (snapshot == NULL)
    {
      hexz_tool_finish (job->tool, error);
      inspect_job_free (job);
      return;
    }

  if (job->blocks)
    {
      g_autoptr(GTask) task = g_task_new (snapshot, job->tool->cancellable, on_blocks_counted,
                                          job);

      g_task_set_source_tag (task, on_info_opened);
      g_task_set_task_data (task, job, NULL);
      g_task_run_in_thread (task, count_blocks_thread);
      return;
    }

  print_info (job, snapshot);
}

gboolean
hexz_tool_command_info (HexzTool  *tool,
                        int        argc,
                        char     **argv)
{
  g_autoptr(GFile) file = NULL;
  InspectJob *job;

  job = inspect_job_parse (tool, argc, argv, TRUE);
  if (job == NULL)
    return FALSE;

  file = g_file_new_for_path (job->path);
  hexz_snapshot_open_async (file, G_PRIORITY_DEFAULT, tool->cancellable, on_info_opened, job);

  return TRUE;
}

/* verify */

static void
on_verify_progress (HexzSnapshot *snapshot,
                    guint64       done,
                    guint64       total,
                    gpointer      user_data)
{
  InspectJob *job = user_data;

  hexz_tool_progress_update (job->tool, done, total);
}

/* Prints the outcome of verify and ends the command. A file that cannot
 * be opened is invalid too: its header or layout is damaged. */
static void
verify_finish (InspectJob   *job,
               const GError *error)
{
  hexz_tool_progress_end (job->tool);

  if (job->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      json_builder_set_member_name (builder, "command");
      json_builder_add_string_value (builder, "verify");
      json_builder_set_member_name (builder, "file");
      hexz_tool_add_path_value (builder, job->path);
      json_builder_set_member_name (builder, "valid");
      json_builder_add_boolean_value (builder, error == NULL);
      json_builder_set_member_name (builder, "error");
      if (error != NULL)
        json_builder_add_string_value (builder, error->message);
      else
        json_builder_add_null_value (builder);
      json_builder_set_member_name (builder, "milliseconds");
      json_builder_add_int_value (builder, hexz_tool_elapsed_milliseconds (job->tool));
      json_builder_end_object (builder);
      hexz_tool_print_json (job->tool, builder);
    }
  else if (error == NULL)
    {
      /* Translators: %s is a file name. */
      g_print (_("%s: valid, every checksum matches\n"), job->path);
    }

  hexz_tool_finish (job->tool, error);
  inspect_job_free (job);
}

static void
on_verified (GObject      *source_object,
             GAsyncResult *result,
             gpointer      user_data)
{
  InspectJob *job = user_data;
  HexzSnapshot *snapshot = HEXZ_SNAPSHOT (source_object);
  g_autoptr(GError) error = NULL;

  hexz_snapshot_verify_finish (snapshot, result, &error);
  g_signal_handlers_disconnect_by_data (snapshot, job);

  verify_finish (job, error);
}

static void
on_verify_opened (GObject      *source_object,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  InspectJob *job = user_data;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;

  snapshot = hexz_snapshot_open_finish (result, &error);
  if (snapshot == NULL)
    {
      verify_finish (job, error);
      return;
    }

  /* Translators: the label of the progress bar while a file is checked. */
  hexz_tool_progress_begin (job->tool, _("verify"), 0);
  g_signal_connect (snapshot, "progress", G_CALLBACK (on_verify_progress), job);
  hexz_snapshot_verify_async (snapshot, job->tool->cancellable, on_verified, job);
}

gboolean
hexz_tool_command_verify (HexzTool  *tool,
                          int        argc,
                          char     **argv)
{
  g_autoptr(GFile) file = NULL;
  InspectJob *job;

  job = inspect_job_parse (tool, argc, argv, FALSE);
  if (job == NULL)
    return FALSE;

  file = g_file_new_for_path (job->path);
  hexz_snapshot_open_async (file, G_PRIORITY_DEFAULT, tool->cancellable, on_verify_opened, job);

  return TRUE;
}
