/* hexz-snapshot-private.h: reader internals shared with the writer and tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "hexz-format-private.h"
#include "hexz-snapshot.h"
#include "hexz-snapshot-writer.h"

G_BEGIN_DECLS

/* Metadata keys that a capture records and that booting and restoring
 * the snapshot read back. */
#define HEXZ_METADATA_RAM_SIZE     "ram-size"
#define HEXZ_METADATA_CPUS         "cpus"
#define HEXZ_METADATA_MACHINE_TYPE "machine-type"
#define HEXZ_METADATA_KERNEL       "kernel"
#define HEXZ_METADATA_APPEND       "append"
#define HEXZ_METADATA_INITRD       "initrd"

/* Exported for hexz-snap, which links the shared library; not public. */
_HEXZ_EXTERN
HexzSnapshot *hexz_snapshot_open_without_parents (GFile        *file,
                                                  GCancellable *cancellable,
                                                  GError      **error);
const guint8 *hexz_snapshot_get_id_bytes      (HexzSnapshot   *self);
guint64       hexz_snapshot_get_seal          (HexzSnapshot   *self);
const char   *hexz_snapshot_get_display_name  (HexzSnapshot   *self);
gint64        hexz_snapshot_get_metadata_int  (HexzSnapshot   *snapshot,
                                               const char     *key);
const char   *hexz_snapshot_get_metadata_string (HexzSnapshot *snapshot,
                                                 const char   *key);
gboolean      hexz_snapshot_has_stream        (HexzSnapshot   *self,
                                               HexzStream      stream);
guint         hexz_snapshot_get_n_blocks_decoded (HexzSnapshot *self);
gboolean      hexz_snapshot_get_block_entry   (HexzSnapshot   *self,
                                               HexzStream      stream,
                                               guint64         index,
                                               HexzBlockEntry *entry,
                                               GError        **error);
gboolean      hexz_snapshot_lock_shared       (HexzSnapshot   *self,
                                               GError        **error);

void          hexz_snapshot_writer_set_weak_hash_for_testing
                                              (HexzSnapshotWriter *self,
                                               gboolean            weak);
void          hexz_snapshot_writer_set_keep_dictionary_for_testing
                                              (HexzSnapshotWriter *self,
                                               gboolean            keep);

G_END_DECLS
