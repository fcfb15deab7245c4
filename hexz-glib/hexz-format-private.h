/* hexz-format-private.h: the on-disk layout of snapshot files
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * doc/format.md describes every field. This header and hexz-format.c
 * encode and decode them byte by byte, little-endian. They also contain the
 * codec helpers that the writer and the reader share.
 */

#pragma once

#include <errno.h>
#include <string.h>

#include <glib.h>
#include <lz4.h>
#include <zstd.h>

#include "hexz-types.h"

G_BEGIN_DECLS

#define HEXZ_FORMAT_MAGIC          "HEXZSNAP"
#define HEXZ_FORMAT_MAGIC_SIZE     8
#define HEXZ_FORMAT_MAJOR          1
/* The highest minor version this code reads and writes. A file carries
 * the lowest one it needs (see hexz_format_minor_for_codec()). */
#define HEXZ_FORMAT_MINOR          1

#define HEXZ_HEADER_SIZE           512
#define HEXZ_MAX_HEADER_SIZE       65536
#define HEXZ_ENTRY_SIZE            32
#define HEXZ_PAGE_DESC_SIZE        32
#define HEXZ_PARENT_FIXED_SIZE     32
#define HEXZ_N_STREAMS             2

#define HEXZ_ENTRIES_PER_PAGE      4096
#define HEXZ_MIN_ENTRIES_PER_PAGE  64
#define HEXZ_MAX_ENTRIES_PER_PAGE  65536

/* Limits a reader enforces before it allocates memory for a size read
 * from a file. */
#define HEXZ_MAX_METADATA_SIZE     (16 * 1024 * 1024)
#define HEXZ_MAX_DICTIONARY_SIZE   (1024 * 1024)
/* Codec 4 uses at most the last 64 KiB of the dictionary, LZ4's window. */
#define HEXZ_LZ4_PREFIX_SIZE       (64 * 1024)
#define HEXZ_MAX_PARENT_PATH       4096
#define HEXZ_MAX_DIRECTORY_SIZE    (64 * 1024 * 1024)
#define HEXZ_MAX_PAGE_SIZE         (1024 * 1024)
#define HEXZ_MAX_STREAM_SIZE       (G_GUINT64_CONSTANT (1) << 62)
#define HEXZ_MAX_CHAIN_DEPTH       64

#define HEXZ_STREAM_FLAG_PRESENT   (1u << 0)

typedef enum {
  HEXZ_BLOCK_ZERO = 0,
  HEXZ_BLOCK_DATA = 1,
  HEXZ_BLOCK_PARENT = 2,
} HexzBlockKind;

/* How a stored block is encoded; differs from HexzCodec because an LZ4
 * or zstd block may or may not use the file's dictionary. */
typedef enum {
  HEXZ_STORED_RAW = 0,
  HEXZ_STORED_LZ4 = 1,
  HEXZ_STORED_ZSTD = 2,
  HEXZ_STORED_ZSTD_DICT = 3,
  HEXZ_STORED_LZ4_DICT = 4,
} HexzStoredCodec;

#define HEXZ_STORED_LAST HEXZ_STORED_LZ4_DICT

/* The file's dictionary prepared for compression: zstd's CDict and an
 * LZ4 stream with the LZ4 prefix loaded. Both point into @bytes, which
 * must outlive them. Shared read-only by every worker thread. */
typedef struct {
  GBytes       *bytes;
  ZSTD_CDict   *cdict;
  LZ4_stream_t *lz4_base;
} HexzCompressDictionary;

/* The file's dictionary prepared for decoding. @lz4_prefix points into
 * @bytes. */
typedef struct {
  GBytes       *bytes;
  ZSTD_DDict   *ddict;
  const guint8 *lz4_prefix;
  gsize         lz4_prefix_length;
} HexzDecodeDictionary;

typedef struct {
  guint64 offset;
  guint64 length;
  guint64 checksum;
} HexzSectionRef;

typedef struct {
  guint64        logical_size;
  guint32        flags;
  guint32        page_count;
  HexzSectionRef directory;
  guint64        data_offset;
  guint64        data_length;
  guint64        data_checksum;
} HexzStreamDesc;

typedef struct {
  guint16        major;
  guint16        minor;
  guint32        header_size;
  guint32        block_size;
  guint32        entries_per_page;
  guint8         id[16];
  guint64        file_size;
  guint64        data_end;
  HexzStreamDesc streams[HEXZ_N_STREAMS];
  HexzSectionRef dictionary;
  HexzSectionRef metadata;
  HexzSectionRef parent;
  guint64        checksum;
} HexzHeader;

typedef struct {
  guint8  kind;
  guint8  codec;
  guint32 stored_length;
  guint64 stored_offset;
  guint32 logical_length;
  guint64 checksum;
} HexzBlockEntry;

typedef struct {
  guint64 offset;
  guint32 length;
  guint32 entry_count;
  guint64 checksum;
} HexzPageDesc;

/* Little-endian integers in byte buffers. */
static inline void
hexz_put_u16 (guint8 *p, guint16 v)
{
  v = GUINT16_TO_LE (v);
  memcpy (p, &v, sizeof v);
}

static inline void
hexz_put_u32 (guint8 *p, guint32 v)
{
  v = GUINT32_TO_LE (v);
  memcpy (p, &v, sizeof v);
}

static inline void
hexz_put_u64 (guint8 *p, guint64 v)
{
  v = GUINT64_TO_LE (v);
  memcpy (p, &v, sizeof v);
}

static inline guint16
hexz_get_u16 (const guint8 *p)
{
  guint16 v;

  memcpy (&v, p, sizeof v);
  return GUINT16_FROM_LE (v);
}

static inline guint32
hexz_get_u32 (const guint8 *p)
{
  guint32 v;

  memcpy (&v, p, sizeof v);
  return GUINT32_FROM_LE (v);
}

static inline guint64
hexz_get_u64 (const guint8 *p)
{
  guint64 v;

  memcpy (&v, p, sizeof v);
  return GUINT64_FROM_LE (v);
}

guint64   hexz_checksum                (const void           *data,
                                        gsize                 length);
gboolean  hexz_is_all_zero             (const guint8         *data,
                                        gsize                 length);
void      hexz_random_id               (guint8                id[16]);
char     *hexz_id_to_string            (const guint8          id[16]);

void      hexz_header_encode           (HexzHeader           *header,
                                        guint8                buffer[HEXZ_HEADER_SIZE]);
gboolean  hexz_header_decode           (const guint8         *buffer,
                                        gsize                 length,
                                        const char           *name,
                                        HexzHeader           *header,
                                        GError              **error);

void      hexz_block_entry_encode      (const HexzBlockEntry *entry,
                                        guint8               *buffer);
void      hexz_block_entry_decode      (const guint8         *buffer,
                                        HexzBlockEntry       *entry,
                                        gboolean             *reserved_ok);
void      hexz_page_desc_encode        (const HexzPageDesc   *desc,
                                        guint8               *buffer);
void      hexz_page_desc_decode        (const guint8         *buffer,
                                        HexzPageDesc         *desc,
                                        gboolean             *reserved_ok);

guint64   hexz_block_count             (guint64               logical_size,
                                        guint32               block_size);
guint32   hexz_block_logical_length    (guint64               logical_size,
                                        guint32               block_size,
                                        guint64               index);

/* Codecs */
guint16   hexz_format_minor_for_codec  (HexzStoredCodec       codec);
gsize     hexz_compress_bound          (gsize                 length);
HexzCompressDictionary *
          hexz_compress_dictionary_new (GBytes               *bytes,
                                        HexzCodec             codec,
                                        int                   level);
void      hexz_compress_dictionary_free (HexzCompressDictionary *dictionary);
HexzDecodeDictionary *
          hexz_decode_dictionary_new   (GBytes               *bytes);
void      hexz_decode_dictionary_free  (HexzDecodeDictionary *dictionary);
gsize     hexz_compress_block          (HexzCodec             codec,
                                        int                   level,
                                        const HexzCompressDictionary *dictionary,
                                        const guint8         *source,
                                        gsize                 length,
                                        guint8               *destination,
                                        gsize                 capacity,
                                        HexzStoredCodec      *stored_codec);
gboolean  hexz_decompress_block        (HexzStoredCodec       codec,
                                        const HexzDecodeDictionary *dictionary,
                                        const guint8         *source,
                                        gsize                 source_length,
                                        guint8               *destination,
                                        gsize                 logical_length);
GBytes   *hexz_compress_page           (const guint8         *entries,
                                        gsize                 length);
gboolean  hexz_decompress_page         (const guint8         *source,
                                        gsize                 source_length,
                                        guint8               *destination,
                                        gsize                 length);
GBytes   *hexz_train_dictionary        (const guint8         *samples,
                                        gsize                 length);
#define HEXZ_LZ4_DICTIONARY_PIECES (HEXZ_LZ4_PREFIX_SIZE / 4096)
GBytes   *hexz_sample_lz4_dictionary   (const guint8         *buffer,
                                        gsize                 length,
                                        gsize                 block_size,
                                        gsize                 piece_offsets[HEXZ_LZ4_DICTIONARY_PIECES],
                                        guint                *n_pieces);

/* Messages */
void      hexz_set_corrupt_error       (GError              **error,
                                        int                   code,
                                        const char           *name,
                                        const char           *detail);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HexzCompressDictionary, hexz_compress_dictionary_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HexzDecodeDictionary, hexz_decode_dictionary_free)

G_END_DECLS
