/* hexz-commit-private.h: the disk merge behind HexzCommit, for reuse
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "hexz-commit.h"
#include "hexz-overlay.h"
#include "hexz-snapshot.h"
#include "hexz-snapshot-writer.h"

G_BEGIN_DECLS

/**
 * HexzPageReadFunc:
 * @user_data: the page source's user data
 * @page: a page number that the page source lists
 * @buffer: (array fixed-size=4096): where to store the page's 4 KiB
 * @error: return location for an error
 *
 * Reads the current bytes of one modified page. A short last page is
 * padded with zeros. May be called from a worker thread.
 *
 * Returns: %TRUE on success
 */
typedef gboolean (*HexzPageReadFunc) (gpointer   user_data,
                                      guint64    page,
                                      guint8    *buffer,
                                      GError   **error);

/**
 * HexzPageSource:
 * @pages: modified page numbers, sorted in increasing order, no duplicates
 * @n_pages: the number of entries in @pages
 * @disk_size: the size in bytes of the modified disk; every page lies
 *   inside it
 * @read_page: reads a page's bytes
 * @user_data: data for @read_page
 * @pages_destroy: frees @pages, or %NULL
 * @user_data_destroy: frees @user_data, or %NULL
 *
 * The modified 4 KiB pages of a disk and a way to read them: a
 * [class@Hexz.Overlay] through hexz_page_source_new_for_overlay(), or pages
 * captured another way (in memory, in a temporary file).
 */
typedef struct {
  const guint64 *pages;
  gsize n_pages;
  guint64 disk_size;
  HexzPageReadFunc read_page;
  gpointer user_data;
  GDestroyNotify pages_destroy;
  GDestroyNotify user_data_destroy;
} HexzPageSource;

HexzPageSource *hexz_page_source_new              (const guint64     *pages,
                                                   gsize              n_pages,
                                                   guint64            disk_size,
                                                   HexzPageReadFunc   read_page,
                                                   gpointer           user_data,
                                                   GDestroyNotify     pages_destroy,
                                                   GDestroyNotify     user_data_destroy);
HexzPageSource *hexz_page_source_new_for_overlay  (HexzOverlay       *overlay);
void            hexz_page_source_free             (HexzPageSource    *source);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HexzPageSource, hexz_page_source_free)

/* Called with the bytes of the disk stream processed so far. */
typedef void (*HexzMergeProgressFunc) (guint64   done,
                                       guint64   total,
                                       gpointer  user_data);

gboolean hexz_commit_merge_disk (HexzSnapshotWriter     *writer,
                                 HexzSnapshot           *base,
                                 const HexzPageSource   *source,
                                 guint64                 disk_size,
                                 gboolean                thin,
                                 HexzMergeProgressFunc   progress,
                                 gpointer                progress_data,
                                 GCancellable           *cancellable,
                                 GError                **error);

void     hexz_commit_set_page_source (HexzCommit     *self,
                                      HexzPageSource *source);
void     hexz_commit_set_keep_dictionary_for_testing (HexzCommit *self,
                                                      gboolean    keep);

G_END_DECLS
