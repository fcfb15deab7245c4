/* hexz-snapshot.h: reading and verifying snapshot files
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
 * HexzBlockStats:
 * @blocks: the stream's blocks, the sum of the zero, parent, raw, LZ4,
 *   zstd and shared counts
 * @zero_blocks: blocks stored as a zero flag only
 * @parent_blocks: blocks read from the parent snapshot
 * @raw_blocks: distinct stored blocks kept uncompressed
 * @lz4_blocks: distinct stored blocks compressed with LZ4, with or
 *   without the file's dictionary
 * @zstd_blocks: distinct stored blocks compressed with zstd, with or
 *   without the file's dictionary
 * @shared_blocks: blocks that name bytes stored for an earlier block, of
 *   this stream or the other one (deduplicated blocks)
 * @stored_bytes: the bytes of the distinct stored blocks of this stream
 * @dictionary_blocks: those of the LZ4 and zstd blocks counted above that
 *   were compressed with the file's dictionary
 *
 * How the blocks of one stream are stored, as
 * [method@Hexz.Snapshot.get_block_stats] counts them.
 *
 * Since: 1.0
 */
typedef struct {
  guint64 blocks;
  guint64 zero_blocks;
  guint64 parent_blocks;
  guint64 raw_blocks;
  guint64 lz4_blocks;
  guint64 zstd_blocks;
  guint64 shared_blocks;
  guint64 stored_bytes;
  guint64 dictionary_blocks;
} HexzBlockStats;

#define HEXZ_TYPE_BLOCK_STATS (hexz_block_stats_get_type ())

HEXZ_AVAILABLE_IN_1_0
GType           hexz_block_stats_get_type (void) G_GNUC_CONST;
HEXZ_AVAILABLE_IN_1_0
HexzBlockStats *hexz_block_stats_copy     (const HexzBlockStats *stats);
HEXZ_AVAILABLE_IN_1_0
void            hexz_block_stats_free     (HexzBlockStats       *stats);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HexzBlockStats, hexz_block_stats_free)

#define HEXZ_TYPE_SNAPSHOT (hexz_snapshot_get_type ())

HEXZ_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (HexzSnapshot, hexz_snapshot, HEXZ, SNAPSHOT, GObject)

HEXZ_AVAILABLE_IN_1_0
HexzSnapshot *hexz_snapshot_open             (GFile                *file,
                                              GCancellable         *cancellable,
                                              GError              **error);
HEXZ_AVAILABLE_IN_1_0
HexzSnapshot *hexz_snapshot_open_path        (const char           *path,
                                              GCancellable         *cancellable,
                                              GError              **error);
HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_open_async       (GFile                *file,
                                              int                   io_priority,
                                              GCancellable         *cancellable,
                                              GAsyncReadyCallback   callback,
                                              gpointer              user_data);
HEXZ_AVAILABLE_IN_1_0
HexzSnapshot *hexz_snapshot_open_finish      (GAsyncResult         *result,
                                              GError              **error);

HEXZ_AVAILABLE_IN_1_0
GFile        *hexz_snapshot_get_file         (HexzSnapshot         *self);
HEXZ_AVAILABLE_IN_1_0
const char   *hexz_snapshot_get_id           (HexzSnapshot         *self);
HEXZ_AVAILABLE_IN_1_0
guint         hexz_snapshot_get_block_size   (HexzSnapshot         *self);
HEXZ_AVAILABLE_IN_1_0
guint64       hexz_snapshot_get_stream_size  (HexzSnapshot         *self,
                                              HexzStream            stream);
HEXZ_AVAILABLE_IN_1_0
guint64       hexz_snapshot_get_disk_size    (HexzSnapshot         *self);
HEXZ_AVAILABLE_IN_1_0
guint64       hexz_snapshot_get_memory_size  (HexzSnapshot         *self);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_has_memory       (HexzSnapshot         *self);
HEXZ_AVAILABLE_IN_1_0
HexzSnapshot *hexz_snapshot_get_parent       (HexzSnapshot         *self);
HEXZ_AVAILABLE_IN_1_0
const char   *hexz_snapshot_get_parent_path  (HexzSnapshot         *self);
HEXZ_AVAILABLE_IN_1_0
const char   *hexz_snapshot_get_parent_id    (HexzSnapshot         *self);
HEXZ_AVAILABLE_IN_1_0
JsonObject   *hexz_snapshot_get_metadata     (HexzSnapshot         *self);
HEXZ_AVAILABLE_IN_1_0
guint64       hexz_snapshot_get_file_size    (HexzSnapshot         *self);

HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_read             (HexzSnapshot         *self,
                                              HexzStream            stream,
                                              guint64               offset,
                                              guint8               *buffer,
                                              gsize                 count,
                                              GCancellable         *cancellable,
                                              GError              **error);
HEXZ_AVAILABLE_IN_1_0
GBytes       *hexz_snapshot_read_bytes       (HexzSnapshot         *self,
                                              HexzStream            stream,
                                              guint64               offset,
                                              gsize                 count,
                                              GCancellable         *cancellable,
                                              GError              **error);
HEXZ_AVAILABLE_IN_1_0
GInputStream *hexz_snapshot_open_stream      (HexzSnapshot         *self,
                                              HexzStream            stream);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_get_block_stats  (HexzSnapshot         *self,
                                              HexzStream            stream,
                                              HexzBlockStats       *stats,
                                              GCancellable         *cancellable,
                                              GError              **error);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_is_zero          (HexzSnapshot         *self,
                                              HexzStream            stream,
                                              guint64               offset,
                                              guint64               count,
                                              GError              **error);

HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_verify           (HexzSnapshot         *self,
                                              GCancellable         *cancellable,
                                              GError              **error);
HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_verify_async     (HexzSnapshot         *self,
                                              GCancellable         *cancellable,
                                              GAsyncReadyCallback   callback,
                                              gpointer              user_data);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_verify_finish    (HexzSnapshot         *self,
                                              GAsyncResult         *result,
                                              GError              **error);

G_END_DECLS
