/* hexz-snapshot-writer.h: writing snapshot files
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
#include "hexz-snapshot.h"

G_BEGIN_DECLS

/**
 * HEXZ_DEFAULT_BLOCK_SIZE:
 *
 * The block size a writer uses unless another is set: 64 KiB.
 *
 * Since: 1.0
 */
#define HEXZ_DEFAULT_BLOCK_SIZE (64 * 1024)

/**
 * HEXZ_MIN_BLOCK_SIZE:
 *
 * The smallest block size a snapshot file may use: 4 KiB.
 *
 * Since: 1.0
 */
#define HEXZ_MIN_BLOCK_SIZE (4 * 1024)

/**
 * HEXZ_MAX_BLOCK_SIZE:
 *
 * The largest block size a snapshot file may use: 4 MiB.
 *
 * Since: 1.0
 */
#define HEXZ_MAX_BLOCK_SIZE (4 * 1024 * 1024)

#define HEXZ_TYPE_SNAPSHOT_WRITER (hexz_snapshot_writer_get_type ())

HEXZ_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (HexzSnapshotWriter, hexz_snapshot_writer, HEXZ, SNAPSHOT_WRITER, GObject)

HEXZ_AVAILABLE_IN_1_0
HexzSnapshotWriter *hexz_snapshot_writer_new           (GFile               *file);
HEXZ_AVAILABLE_IN_1_0
HexzSnapshotWriter *hexz_snapshot_writer_new_for_path  (const char          *path);

HEXZ_AVAILABLE_IN_1_0
GFile        *hexz_snapshot_writer_get_file            (HexzSnapshotWriter  *self);
HEXZ_AVAILABLE_IN_1_0
HexzCodec     hexz_snapshot_writer_get_codec           (HexzSnapshotWriter  *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_writer_set_codec           (HexzSnapshotWriter  *self,
                                                        HexzCodec            codec);
HEXZ_AVAILABLE_IN_1_0
int           hexz_snapshot_writer_get_level           (HexzSnapshotWriter  *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_writer_set_level           (HexzSnapshotWriter  *self,
                                                        int                  level);
HEXZ_AVAILABLE_IN_1_0
guint         hexz_snapshot_writer_get_block_size      (HexzSnapshotWriter  *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_writer_set_block_size      (HexzSnapshotWriter  *self,
                                                        guint                block_size);
HEXZ_AVAILABLE_IN_1_0
guint         hexz_snapshot_writer_get_threads         (HexzSnapshotWriter  *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_writer_set_threads         (HexzSnapshotWriter  *self,
                                                        guint                threads);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_writer_get_train_dictionary (HexzSnapshotWriter *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_writer_set_train_dictionary (HexzSnapshotWriter *self,
                                                         gboolean            train_dictionary);

HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_writer_set_parent          (HexzSnapshotWriter  *self,
                                                        HexzSnapshot        *parent);
HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_writer_set_metadata        (HexzSnapshotWriter  *self,
                                                        const char          *key,
                                                        JsonNode            *value);
HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_writer_set_message         (HexzSnapshotWriter  *self,
                                                        const char          *message);

HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_writer_begin_stream        (HexzSnapshotWriter  *self,
                                                        HexzStream           stream,
                                                        guint64              expected_size,
                                                        GError             **error);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_writer_write               (HexzSnapshotWriter  *self,
                                                        const guint8        *data,
                                                        gsize                count,
                                                        GCancellable        *cancellable,
                                                        GError             **error);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_writer_write_bytes         (HexzSnapshotWriter  *self,
                                                        GBytes              *bytes,
                                                        GCancellable        *cancellable,
                                                        GError             **error);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_writer_write_zeros         (HexzSnapshotWriter  *self,
                                                        guint64              count,
                                                        GCancellable        *cancellable,
                                                        GError             **error);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_writer_write_parent        (HexzSnapshotWriter  *self,
                                                        guint64              count,
                                                        GCancellable        *cancellable,
                                                        GError             **error);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_writer_end_stream          (HexzSnapshotWriter  *self,
                                                        GCancellable        *cancellable,
                                                        GError             **error);

HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_writer_splice_async        (HexzSnapshotWriter  *self,
                                                        GInputStream        *input,
                                                        GCancellable        *cancellable,
                                                        GAsyncReadyCallback  callback,
                                                        gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
guint64       hexz_snapshot_writer_splice_finish       (HexzSnapshotWriter  *self,
                                                        GAsyncResult        *result,
                                                        GError             **error);

HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_writer_close               (HexzSnapshotWriter  *self,
                                                        GCancellable        *cancellable,
                                                        GError             **error);
HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_writer_close_async         (HexzSnapshotWriter  *self,
                                                        GCancellable        *cancellable,
                                                        GAsyncReadyCallback  callback,
                                                        gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_snapshot_writer_close_finish        (HexzSnapshotWriter  *self,
                                                        GAsyncResult        *result,
                                                        GError             **error);
HEXZ_AVAILABLE_IN_1_0
void          hexz_snapshot_writer_abort               (HexzSnapshotWriter  *self);

G_END_DECLS
