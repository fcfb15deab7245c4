/* hexz-commit.h: merging a snapshot, an overlay and a memory image
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
#include "hexz-overlay.h"

G_BEGIN_DECLS

#define HEXZ_TYPE_COMMIT (hexz_commit_get_type ())

HEXZ_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (HexzCommit, hexz_commit, HEXZ, COMMIT, GObject)

HEXZ_AVAILABLE_IN_1_0
HexzCommit   *hexz_commit_new                  (HexzSnapshot        *base,
                                                GFile               *output);

HEXZ_AVAILABLE_IN_1_0
HexzSnapshot *hexz_commit_get_base             (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
GFile        *hexz_commit_get_output           (HexzCommit          *self);

HEXZ_AVAILABLE_IN_1_0
HexzOverlay  *hexz_commit_get_overlay          (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_overlay          (HexzCommit          *self,
                                                HexzOverlay         *overlay);
HEXZ_AVAILABLE_IN_1_0
GFile        *hexz_commit_get_memory_file      (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_memory_file      (HexzCommit          *self,
                                                GFile               *memory_file);
HEXZ_AVAILABLE_IN_1_0
GInputStream *hexz_commit_get_memory_stream    (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_memory_stream    (HexzCommit          *self,
                                                GInputStream        *memory_stream);
HEXZ_AVAILABLE_IN_1_0
guint64       hexz_commit_get_memory_size      (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_memory_size      (HexzCommit          *self,
                                                guint64              memory_size);

HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_commit_get_thin             (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_thin             (HexzCommit          *self,
                                                gboolean             thin);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_commit_get_allow_grow       (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_allow_grow       (HexzCommit          *self,
                                                gboolean             allow_grow);
HEXZ_AVAILABLE_IN_1_0
HexzCodec     hexz_commit_get_codec            (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_codec            (HexzCommit          *self,
                                                HexzCodec            codec);
HEXZ_AVAILABLE_IN_1_0
int           hexz_commit_get_level            (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_level            (HexzCommit          *self,
                                                int                  level);
HEXZ_AVAILABLE_IN_1_0
guint         hexz_commit_get_block_size       (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_block_size       (HexzCommit          *self,
                                                guint                block_size);
HEXZ_AVAILABLE_IN_1_0
guint         hexz_commit_get_threads          (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_threads          (HexzCommit          *self,
                                                guint                threads);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_commit_get_train_dictionary (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_train_dictionary (HexzCommit          *self,
                                                gboolean             train_dictionary);
HEXZ_AVAILABLE_IN_1_0
const char   *hexz_commit_get_message          (HexzCommit          *self);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_message          (HexzCommit          *self,
                                                const char          *message);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_set_metadata         (HexzCommit          *self,
                                                const char          *key,
                                                JsonNode            *value);

HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_commit_run                  (HexzCommit          *self,
                                                GCancellable        *cancellable,
                                                GError             **error);
HEXZ_AVAILABLE_IN_1_0
void          hexz_commit_run_async            (HexzCommit          *self,
                                                GCancellable        *cancellable,
                                                GAsyncReadyCallback  callback,
                                                gpointer             user_data);
HEXZ_AVAILABLE_IN_1_0
gboolean      hexz_commit_run_finish           (HexzCommit          *self,
                                                GAsyncResult        *result,
                                                GError             **error);

G_END_DECLS
