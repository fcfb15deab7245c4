/* fuzz-snapshot.c: open, read and verify a fuzzed snapshot and its parent
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Input layout:
 *
 *   u8 flags     bit 0: recompute the checksums the header and directories
 *                contain, and the block checksums in pages stored as raw
 *                zstd blocks (see fixup_checksums()), so that mutations
 *                reach the checks behind them; bit 1: the rest starts with a u32
 *                child length and the bytes after the child are the parent
 *   [u32 child_length]
 *   child bytes  written to child.hxz
 *   parent bytes written to parent.hxz (seeds name it as the parent path)
 *
 * The harness opens child.hxz, reads each stream block by block up to a
 * budget, reads through the input stream and is_zero(), and verifies the
 * file and its chain.
 */

#include "config.h"

#include <string.h>

#include "hexz.h"
#include "hexz-format-private.h"
#include "hexz-snapshot-private.h"

#include "fuzz-common.h"

#define FLAG_FIXUP_CHECKSUMS (1u << 0)
#define FLAG_HAS_PARENT      (1u << 1)

/* Bytes read per stream; a fuzzed stream may claim up to 2^62 bytes. */
#define READ_BUDGET (4 * 1024 * 1024)

static char *fuzz_dir;
static char *child_path;

static void
remove_fuzz_dir (void)
{
  fuzz_remove_dir (fuzz_dir);
}

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  g_autoptr(GError) error = NULL;

  fuzz_init_logging ();

  fuzz_dir = g_dir_make_tmp ("hexz-fuzz-snapshot-XXXXXX", &error);
  g_assert_no_error (error);
  child_path = g_build_filename (fuzz_dir, "child.hxz", NULL);
  atexit (remove_fuzz_dir);

  return 0;
}

static gboolean
range_in (guint64 offset,
          guint64 length,
          gsize   size)
{
  return offset <= size && length <= size - offset;
}

/* Rewrites the checksum of a section reference at @ref when the bytes it
 * names lie inside the file. */
static void
fixup_section (guint8 *data,
               gsize   size,
               guint8 *ref)
{
  guint64 offset = hexz_get_u64 (ref);
  guint64 length = hexz_get_u64 (ref + 8);

  if (length > 0 && range_in (offset, length, size))
    hexz_put_u64 (ref + 16, hexz_checksum (data + offset, length));
}

/* For a page stored as a zstd frame of one raw block (the raw-pages seeds
 * store pages so), recomputes each data entry's checksum from its decoded
 * stored bytes, so that mutated entries reach the reads behind the check. */
static void
fixup_block_checksums (guint8           *data,
                       gsize             size,
                       guint8           *page,
                       gsize             page_length,
                       const HexzDecodeDictionary *dictionary)
{
  static const guint8 frame_start[] = { 0x28, 0xb5, 0x2f, 0xfd, 0xa0 };
  const gsize header_length = sizeof frame_start + 4 + 3;
  guint32 block_header;
  gsize block_length;

  if (page_length < header_length || memcmp (page, frame_start, sizeof frame_start) != 0)
    return;

  block_header = page[9] | (page[10] << 8) | (page[11] << 16);
  block_length = block_header >> 3;
  if ((block_header & 1) == 0 || ((block_header >> 1) & 3) != 0 ||
      block_length > page_length - header_length)
    return;

  for (gsize i = 0; i + HEXZ_ENTRY_SIZE <= block_length; i += HEXZ_ENTRY_SIZE)
    {
      guint8 *entry = page + header_length + i;
      guint8 codec = entry[1];
      guint32 stored_length = hexz_get_u32 (entry + 4);
      guint64 stored_offset = hexz_get_u64 (entry + 8);
      guint32 logical_length = hexz_get_u32 (entry + 16);
      g_autofree guint8 *decoded = NULL;

      if (entry[0] != HEXZ_BLOCK_DATA || codec > HEXZ_STORED_LAST ||
          ((codec == HEXZ_STORED_ZSTD_DICT || codec == HEXZ_STORED_LZ4_DICT) &&
           dictionary == NULL) ||
          logical_length == 0 || logical_length > HEXZ_MAX_BLOCK_SIZE ||
          !range_in (stored_offset, stored_length, size))
        continue;

      decoded = g_malloc (logical_length);
      if (hexz_decompress_block (codec, dictionary, data + stored_offset, stored_length, decoded,
                                 logical_length))
        hexz_put_u64 (entry + 24, hexz_checksum (decoded, logical_length));
    }
}

/* Recomputes, inside the file, every checksum that needs no decoding: the
 * page checksums in the directories, the directory, section and stream
 * data checksums in the header, and the header checksum. When @parent is
 * given, the child's parent section also gets the parent's id and seal.
 * Block checksums live inside compressed pages and stay as they are. */
static void
fixup_checksums (guint8       *data,
                 gsize         size,
                 const guint8 *parent,
                 gsize         parent_size)
{
  g_autoptr(HexzDecodeDictionary) dictionary = NULL;
  guint32 header_size;

  if (size < HEXZ_HEADER_SIZE)
    return;

  {
    guint64 offset = hexz_get_u64 (data + 192);
    guint64 length = hexz_get_u64 (data + 200);

    if (length > 0 && length <= HEXZ_MAX_DICTIONARY_SIZE && range_in (offset, length, size))
      {
        g_autoptr(GBytes) bytes = g_bytes_new (data + offset, length);

        dictionary = hexz_decode_dictionary_new (bytes);
      }
  }

  header_size = hexz_get_u32 (data + 12);
  if (header_size < HEXZ_HEADER_SIZE || header_size > size || header_size % 8 != 0)
    header_size = HEXZ_HEADER_SIZE;

  for (guint s = 0; s < HEXZ_N_STREAMS; s++)
    {
      guint8 *desc = data + 64 + 64 * s;
      guint8 *directory = desc + 16;
      guint64 dir_offset = hexz_get_u64 (directory);
      guint64 dir_length = hexz_get_u64 (directory + 8);
      guint64 data_offset = hexz_get_u64 (desc + 40);
      guint64 data_length = hexz_get_u64 (desc + 48);

      if (range_in (dir_offset, dir_length, size) && dir_offset >= header_size)
        {
          for (guint64 p = 0; p + HEXZ_PAGE_DESC_SIZE <= dir_length; p += HEXZ_PAGE_DESC_SIZE)
            {
              guint8 *page_desc = data + dir_offset + p;
              guint64 page_offset = hexz_get_u64 (page_desc);
              guint32 page_length = hexz_get_u32 (page_desc + 8);

              if (!range_in (page_offset, page_length, size))
                continue;

              fixup_block_checksums (data, size, data + page_offset, page_length,
                                     dictionary);
              hexz_put_u64 (page_desc + 16, hexz_checksum (data + page_offset, page_length));
            }
          fixup_section (data, size, directory);
        }

      if (data_length > 0 && range_in (data_offset, data_length, size))
        hexz_put_u64 (desc + 56, hexz_checksum (data + data_offset, data_length));
    }

  fixup_section (data, size, data + 192);
  fixup_section (data, size, data + 216);

  if (parent != NULL && parent_size >= HEXZ_HEADER_SIZE)
    {
      guint64 offset = hexz_get_u64 (data + 240);
      guint64 length = hexz_get_u64 (data + 248);

      if (length >= HEXZ_PARENT_FIXED_SIZE && range_in (offset, length, size) &&
          offset >= header_size)
        {
          guint32 parent_header_size = hexz_get_u32 (parent + 12);

          if (parent_header_size < HEXZ_HEADER_SIZE || parent_header_size > parent_size ||
              parent_header_size % 8 != 0)
            parent_header_size = HEXZ_HEADER_SIZE;

          memcpy (data + offset, parent + 24, 16);
          memcpy (data + offset + 16, parent + parent_header_size - 8, 8);
        }
    }
  fixup_section (data, size, data + 240);

  hexz_put_u64 (data + header_size - 8, hexz_checksum (data, header_size - 8));
}

static void
read_stream (HexzSnapshot *snapshot,
             HexzStream    stream)
{
  guint64 size = hexz_snapshot_get_stream_size (snapshot, stream);
  guint block_size = hexz_snapshot_get_block_size (snapshot);
  g_autofree guint8 *buffer = g_malloc (block_size);
  guint64 offset = 0;
  guint64 budget = READ_BUDGET;

  /* Block by block from the start, then the last block and one read that
   * straddles a block boundary, so a huge stream's end is reached too. */
  while (offset < size && budget > 0)
    {
      g_autoptr(GError) error = NULL;
      gsize count = (gsize) MIN (block_size, size - offset);

      if (!hexz_snapshot_read (snapshot, stream, offset, buffer, count, NULL, &error))
        return;
      offset += count;
      budget -= MIN (budget, count);
    }

  if (size > block_size)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GBytes) bytes = NULL;
      guint64 last = (size - 1) / block_size * block_size;

      bytes = hexz_snapshot_read_bytes (snapshot, stream, last, (gsize) (size - last), NULL,
                                        &error);
      g_clear_error (&error);
      g_clear_pointer (&bytes, g_bytes_unref);

      bytes = hexz_snapshot_read_bytes (snapshot, stream, block_size - 1, 2, NULL, &error);
      g_clear_error (&error);
      hexz_snapshot_is_zero (snapshot, stream, 0, MIN (size, READ_BUDGET), &error);
    }

  /* Past the end must fail cleanly. */
  {
    g_autoptr(GError) error = NULL;

    if (hexz_snapshot_read (snapshot, stream, size, buffer, 1, NULL, &error))
      abort ();
  }
}

/* Whatever the index contains, the counts cover every block exactly once. */
static void
check_block_stats (HexzSnapshot *snapshot,
                   HexzStream    stream)
{
  g_autoptr(GError) error = NULL;
  guint64 size = hexz_snapshot_get_stream_size (snapshot, stream);
  guint64 block_size = hexz_snapshot_get_block_size (snapshot);
  HexzBlockStats stats;

  if (!hexz_snapshot_get_block_stats (snapshot, stream, &stats, NULL, &error))
    return;

  if (stats.blocks != size / block_size + (size % block_size != 0) ||
      stats.blocks != stats.zero_blocks + stats.parent_blocks + stats.raw_blocks +
                      stats.lz4_blocks + stats.zstd_blocks + stats.shared_blocks)
    abort ();
}

static void
read_through_stream (HexzSnapshot *snapshot,
                     HexzStream    stream)
{
  g_autoptr(GInputStream) input = hexz_snapshot_open_stream (snapshot, stream);
  g_autoptr(GError) error = NULL;
  guint8 buffer[8192];
  gsize total = 0;

  if (input == NULL)
    return;

  while (total < 64 * 1024)
    {
      gssize n = g_input_stream_read (input, buffer, sizeof buffer, NULL, &error);

      if (n <= 0)
        break;
      total += n;
    }

  g_clear_error (&error);
  if (G_IS_SEEKABLE (input))
    g_seekable_seek (G_SEEKABLE (input), -1, G_SEEK_END, NULL, &error);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  FuzzInput input = { data, size };
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *child = NULL;
  g_autofree guint8 *parent = NULL;
  gsize child_size;
  gsize parent_size = 0;
  guint8 flags;

  flags = fuzz_input_take_u8 (&input);
  child_size = input.size;
  if (flags & FLAG_HAS_PARENT)
    {
      guint32 length = fuzz_input_take_u32 (&input);

      child_size = MIN (length, input.size);
      parent_size = input.size - child_size;
    }

  child = g_memdup2 (input.data, child_size);
  parent = g_memdup2 (input.data + child_size, parent_size);

  if (flags & FLAG_FIXUP_CHECKSUMS)
    {
      fixup_checksums (parent, parent_size, NULL, 0);
      fixup_checksums (child, child_size, (flags & FLAG_HAS_PARENT) ? parent : NULL,
                       parent_size);
    }

  fuzz_write_file (fuzz_dir, "child.hxz", child, child_size);
  if (flags & FLAG_HAS_PARENT)
    {
      fuzz_write_file (fuzz_dir, "parent.hxz", parent, parent_size);
    }
  else
    {
      g_autofree char *parent_path = g_build_filename (fuzz_dir, "parent.hxz", NULL);

      g_remove (parent_path);
    }

  snapshot = hexz_snapshot_open_path (child_path, NULL, &error);
  if (snapshot == NULL)
    {
      g_message ("Open: %s", error->message);
      return 0;
    }

  hexz_snapshot_get_metadata (snapshot);
  hexz_snapshot_get_parent_path (snapshot);

  for (HexzStream s = HEXZ_STREAM_DISK; s <= HEXZ_STREAM_MEMORY; s++)
    {
      read_stream (snapshot, s);
      read_through_stream (snapshot, s);
      check_block_stats (snapshot, s);
    }

  if (!hexz_snapshot_verify (snapshot, NULL, &error))
    g_message ("Verify: %s", error->message);
  else
    g_message ("Verified");

  return 0;
}
