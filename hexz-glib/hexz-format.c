/* hexz-format.c: encoding, decoding and codecs of the snapshot file format
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Everything here works on byte buffers: no C structure is ever written to
 * or read from a file as memory, so the layout does not depend on the
 * compiler or the host's byte order.
 */

#include "config.h"

#include <string.h>
#include <sys/random.h>

#include <lz4.h>
#include <xxhash.h>
#include <zdict.h>
#include <zstd.h>

#include "hexz-format-private.h"
#include "hexz-i18n-private.h"

/* Byte offsets inside the header and its parts; see doc/format.md. */
#define HEADER_MAGIC             0
#define HEADER_MAJOR             8
#define HEADER_MINOR             10
#define HEADER_SIZE_FIELD        12
#define HEADER_BLOCK_SIZE        16
#define HEADER_ENTRIES_PER_PAGE  20
#define HEADER_ID                24
#define HEADER_FILE_SIZE         40
#define HEADER_DATA_END          48
#define HEADER_FLAGS             56
#define HEADER_STREAMS           64
#define HEADER_STREAM_DESC_SIZE  64
#define HEADER_DICTIONARY        192
#define HEADER_METADATA          216
#define HEADER_PARENT            240
#define HEADER_RESERVED          264

#define STREAM_LOGICAL_SIZE      0
#define STREAM_FLAGS             8
#define STREAM_PAGE_COUNT        12
#define STREAM_DIRECTORY         16
#define STREAM_DATA_OFFSET       40
#define STREAM_DATA_LENGTH       48
#define STREAM_DATA_CHECKSUM     56

/* Index pages are small and written once; a low level keeps close fast. */
#define PAGE_ZSTD_LEVEL          3

guint64
hexz_checksum (const void *data,
               gsize       length)
{
  return XXH3_64bits (data, length);
}

gboolean
hexz_is_all_zero (const guint8 *data,
                  gsize         length)
{
  static const guint8 zeros[256];
  gsize i;

  /* Compare against a zero buffer in chunks: memcmp is vectorised, and the
   * first chunk rejects most non-zero blocks at once. */
  for (i = 0; i + sizeof zeros <= length; i += sizeof zeros)
    {
      if (memcmp (data + i, zeros, sizeof zeros) != 0)
        return FALSE;
    }

  return memcmp (data + i, zeros, length - i) == 0;
}

void
hexz_random_id (guint8 id[16])
{
  gsize filled = 0;

  while (filled < 16)
    {
      gssize n = getrandom (id + filled, 16 - filled, 0);

      if (n > 0)
        filled += n;
      else if (n < 0 && errno != EINTR)
        {
          /* Without the kernel's generator, GLib's is still unique enough
           * for an id; it is no secret. */
          for (; filled < 16; filled++)
            id[filled] = g_random_int_range (0, 256);
        }
    }

  /* An RFC 4122 version 4 (random) UUID. */
  id[6] = (id[6] & 0x0f) | 0x40;
  id[8] = (id[8] & 0x3f) | 0x80;
}

char *
hexz_id_to_string (const guint8 id[16])
{
  return g_strdup_printf ("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                          "%02x%02x%02x%02x%02x%02x",
                          id[0], id[1], id[2], id[3], id[4], id[5], id[6],
                          id[7], id[8], id[9], id[10], id[11], id[12], id[13],
                          id[14], id[15]);
}

static void
section_encode (const HexzSectionRef *section,
                guint8               *p)
{
  hexz_put_u64 (p, section->offset);
  hexz_put_u64 (p + 8, section->length);
  hexz_put_u64 (p + 16, section->checksum);
}

static void
section_decode (const guint8   *p,
                HexzSectionRef *section)
{
  section->offset = hexz_get_u64 (p);
  section->length = hexz_get_u64 (p + 8);
  section->checksum = hexz_get_u64 (p + 16);
}

/* Fills @buffer with the header and stores the checksum it computes in
 * @header->checksum. */
void
hexz_header_encode (HexzHeader *header,
                    guint8      buffer[HEXZ_HEADER_SIZE])
{
  memset (buffer, 0, HEXZ_HEADER_SIZE);
  memcpy (buffer + HEADER_MAGIC, HEXZ_FORMAT_MAGIC, HEXZ_FORMAT_MAGIC_SIZE);
  hexz_put_u16 (buffer + HEADER_MAJOR, header->major);
  hexz_put_u16 (buffer + HEADER_MINOR, header->minor);
  hexz_put_u32 (buffer + HEADER_SIZE_FIELD, HEXZ_HEADER_SIZE);
  hexz_put_u32 (buffer + HEADER_BLOCK_SIZE, header->block_size);
  hexz_put_u32 (buffer + HEADER_ENTRIES_PER_PAGE, header->entries_per_page);
  memcpy (buffer + HEADER_ID, header->id, 16);
  hexz_put_u64 (buffer + HEADER_FILE_SIZE, header->file_size);
  hexz_put_u64 (buffer + HEADER_DATA_END, header->data_end);

  for (guint i = 0; i < HEXZ_N_STREAMS; i++)
    {
      const HexzStreamDesc *s = &header->streams[i];
      guint8 *p = buffer + HEADER_STREAMS + i * HEADER_STREAM_DESC_SIZE;

      hexz_put_u64 (p + STREAM_LOGICAL_SIZE, s->logical_size);
      hexz_put_u32 (p + STREAM_FLAGS, s->flags);
      hexz_put_u32 (p + STREAM_PAGE_COUNT, s->page_count);
      section_encode (&s->directory, p + STREAM_DIRECTORY);
      hexz_put_u64 (p + STREAM_DATA_OFFSET, s->data_offset);
      hexz_put_u64 (p + STREAM_DATA_LENGTH, s->data_length);
      hexz_put_u64 (p + STREAM_DATA_CHECKSUM, s->data_checksum);
    }

  section_encode (&header->dictionary, buffer + HEADER_DICTIONARY);
  section_encode (&header->metadata, buffer + HEADER_METADATA);
  section_encode (&header->parent, buffer + HEADER_PARENT);

  header->header_size = HEXZ_HEADER_SIZE;
  header->checksum = hexz_checksum (buffer, HEXZ_HEADER_SIZE - 8);
  hexz_put_u64 (buffer + HEXZ_HEADER_SIZE - 8, header->checksum);
}

static gboolean
bytes_are_zero (const guint8 *p,
                gsize         length)
{
  return hexz_is_all_zero (p, length);
}

static gboolean
is_power_of_two (guint64 value)
{
  return value != 0 && (value & (value - 1)) == 0;
}

static gboolean
header_corrupt (GError     **error,
                const char  *name,
                const char  *detail)
{
  hexz_set_corrupt_error (error, HEXZ_SNAPSHOT_ERROR_CORRUPT, name, detail);
  return FALSE;
}

/* Decodes and checks the header at the start of @buffer, which contains
 * the first @length bytes of the file (all of it if shorter than
 * %HEXZ_MAX_HEADER_SIZE). Checks everything that needs only the header;
 * the layout against the real file is left to the reader. */
gboolean
hexz_header_decode (const guint8  *buffer,
                    gsize          length,
                    const char    *name,
                    HexzHeader    *header,
                    GError       **error)
{
  gboolean check_reserved;
  guint64 computed;

  memset (header, 0, sizeof *header);

  if (length < HEXZ_FORMAT_MAGIC_SIZE ||
      memcmp (buffer, HEXZ_FORMAT_MAGIC, HEXZ_FORMAT_MAGIC_SIZE) != 0)
    {
      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_NOT_A_SNAPSHOT,
                   /* Translators: %s is a file name. */
                   _("“%s” is not a hexz snapshot file."), name);
      return FALSE;
    }

  if (length < HEXZ_HEADER_SIZE)
    {
      hexz_set_corrupt_error (error, HEXZ_SNAPSHOT_ERROR_TRUNCATED, name,
                              _("the file ends inside its header"));
      return FALSE;
    }

  header->major = hexz_get_u16 (buffer + HEADER_MAJOR);
  header->minor = hexz_get_u16 (buffer + HEADER_MINOR);
  if (header->major != HEXZ_FORMAT_MAJOR)
    {
      guint32 size = hexz_get_u32 (buffer + HEADER_SIZE_FIELD);

      /* One damaged byte in the version must not read as a newer format:
       * only a header that passes its checksum, as version 1 places it,
       * is taken for a newer version. */
      if (size < HEXZ_HEADER_SIZE || size > HEXZ_MAX_HEADER_SIZE ||
          size % 8 != 0 || size > length ||
          hexz_checksum (buffer, size - 8) != hexz_get_u64 (buffer + size - 8))
        {
          g_autofree char *detail =
            g_strdup_printf (/* Translators: the two numbers form a
                              * version such as 2.0. */
                             _("its header reads format version %u.%u but "
                               "fails its checksum, so the header is "
                               "damaged or was written by a newer version "
                               "of hexz"),
                             header->major, header->minor);

          return header_corrupt (error, name, detail);
        }

      g_set_error (error, HEXZ_SNAPSHOT_ERROR,
                   HEXZ_SNAPSHOT_ERROR_UNSUPPORTED_VERSION,
                   /* Translators: the first %s is a file name, then come
                    * two version numbers such as 2.0 and 1. */
                   _("Snapshot “%s” uses format version %u.%u, but this "
                     "program reads only version %u files. Use a newer "
                     "version of hexz."),
                   name, header->major, header->minor, HEXZ_FORMAT_MAJOR);
      return FALSE;
    }

  header->header_size = hexz_get_u32 (buffer + HEADER_SIZE_FIELD);
  if (header->header_size < HEXZ_HEADER_SIZE ||
      header->header_size > HEXZ_MAX_HEADER_SIZE ||
      header->header_size % 8 != 0 ||
      (header->minor <= HEXZ_FORMAT_MINOR &&
       header->header_size != HEXZ_HEADER_SIZE))
    return header_corrupt (error, name, _("the header size is invalid"));

  if (header->header_size > length)
    {
      hexz_set_corrupt_error (error, HEXZ_SNAPSHOT_ERROR_TRUNCATED, name,
                              _("the file ends inside its header"));
      return FALSE;
    }

  header->checksum = hexz_get_u64 (buffer + header->header_size - 8);
  computed = hexz_checksum (buffer, header->header_size - 8);
  if (computed != header->checksum)
    return header_corrupt (error, name, _("the header fails its checksum"));

  header->block_size = hexz_get_u32 (buffer + HEADER_BLOCK_SIZE);
  header->entries_per_page = hexz_get_u32 (buffer + HEADER_ENTRIES_PER_PAGE);
  memcpy (header->id, buffer + HEADER_ID, 16);
  header->file_size = hexz_get_u64 (buffer + HEADER_FILE_SIZE);
  header->data_end = hexz_get_u64 (buffer + HEADER_DATA_END);

  for (guint i = 0; i < HEXZ_N_STREAMS; i++)
    {
      HexzStreamDesc *s = &header->streams[i];
      const guint8 *p = buffer + HEADER_STREAMS + i * HEADER_STREAM_DESC_SIZE;

      s->logical_size = hexz_get_u64 (p + STREAM_LOGICAL_SIZE);
      s->flags = hexz_get_u32 (p + STREAM_FLAGS);
      s->page_count = hexz_get_u32 (p + STREAM_PAGE_COUNT);
      section_decode (p + STREAM_DIRECTORY, &s->directory);
      s->data_offset = hexz_get_u64 (p + STREAM_DATA_OFFSET);
      s->data_length = hexz_get_u64 (p + STREAM_DATA_LENGTH);
      s->data_checksum = hexz_get_u64 (p + STREAM_DATA_CHECKSUM);
    }

  section_decode (buffer + HEADER_DICTIONARY, &header->dictionary);
  section_decode (buffer + HEADER_METADATA, &header->metadata);
  section_decode (buffer + HEADER_PARENT, &header->parent);

  /* A later minor version may give reserved fields a meaning that this
   * reader can skip. */
  check_reserved = header->minor <= HEXZ_FORMAT_MINOR;
  if (check_reserved)
    {
      gboolean reserved_ok = bytes_are_zero (buffer + HEADER_FLAGS, 8) &&
        bytes_are_zero (buffer + HEADER_RESERVED,
                        HEXZ_HEADER_SIZE - 8 - HEADER_RESERVED);

      for (guint i = 0; i < HEXZ_N_STREAMS; i++)
        reserved_ok = reserved_ok &&
          (header->streams[i].flags & ~HEXZ_STREAM_FLAG_PRESENT) == 0;

      if (!reserved_ok)
        return header_corrupt (error, name,
                               _("reserved header fields are not zero"));
    }

  if (!is_power_of_two (header->block_size) ||
      header->block_size < 4096 || header->block_size > 4 * 1024 * 1024)
    return header_corrupt (error, name, _("the block size is invalid"));

  if (!is_power_of_two (header->entries_per_page) ||
      header->entries_per_page < HEXZ_MIN_ENTRIES_PER_PAGE ||
      header->entries_per_page > HEXZ_MAX_ENTRIES_PER_PAGE)
    return header_corrupt (error, name,
                           _("the number of entries per index page is invalid"));

  return TRUE;
}

void
hexz_block_entry_encode (const HexzBlockEntry *entry,
                         guint8               *buffer)
{
  memset (buffer, 0, HEXZ_ENTRY_SIZE);
  buffer[0] = entry->kind;
  buffer[1] = entry->codec;
  hexz_put_u32 (buffer + 4, entry->stored_length);
  hexz_put_u64 (buffer + 8, entry->stored_offset);
  hexz_put_u32 (buffer + 16, entry->logical_length);
  hexz_put_u64 (buffer + 24, entry->checksum);
}

void
hexz_block_entry_decode (const guint8   *buffer,
                         HexzBlockEntry *entry,
                         gboolean       *reserved_ok)
{
  entry->kind = buffer[0];
  entry->codec = buffer[1];
  entry->stored_length = hexz_get_u32 (buffer + 4);
  entry->stored_offset = hexz_get_u64 (buffer + 8);
  entry->logical_length = hexz_get_u32 (buffer + 16);
  entry->checksum = hexz_get_u64 (buffer + 24);
  *reserved_ok = hexz_get_u16 (buffer + 2) == 0 &&
                 hexz_get_u32 (buffer + 20) == 0;
}

void
hexz_page_desc_encode (const HexzPageDesc *desc,
                       guint8             *buffer)
{
  memset (buffer, 0, HEXZ_PAGE_DESC_SIZE);
  hexz_put_u64 (buffer, desc->offset);
  hexz_put_u32 (buffer + 8, desc->length);
  hexz_put_u32 (buffer + 12, desc->entry_count);
  hexz_put_u64 (buffer + 16, desc->checksum);
}

void
hexz_page_desc_decode (const guint8 *buffer,
                       HexzPageDesc *desc,
                       gboolean     *reserved_ok)
{
  desc->offset = hexz_get_u64 (buffer);
  desc->length = hexz_get_u32 (buffer + 8);
  desc->entry_count = hexz_get_u32 (buffer + 12);
  desc->checksum = hexz_get_u64 (buffer + 16);
  *reserved_ok = hexz_get_u64 (buffer + 24) == 0;
}

guint64
hexz_block_count (guint64 logical_size,
                  guint32 block_size)
{
  return logical_size / block_size + (logical_size % block_size != 0);
}

guint32
hexz_block_logical_length (guint64 logical_size,
                           guint32 block_size,
                           guint64 index)
{
  guint64 start = index * block_size;

  g_assert (start < logical_size);

  return MIN (block_size, logical_size - start);
}

/* Codecs. Compression and decompression contexts are per thread: zstd's
 * are costly to create, and a snapshot is read and written from several
 * threads at once. */

static void
free_cctx (gpointer data)
{
  ZSTD_freeCCtx (data);
}

static void
free_dctx (gpointer data)
{
  ZSTD_freeDCtx (data);
}

static void
free_lz4_stream (gpointer data)
{
  LZ4_freeStream (data);
}

static GPrivate cctx_key = G_PRIVATE_INIT (free_cctx);
static GPrivate dctx_key = G_PRIVATE_INIT (free_dctx);
static GPrivate lz4_stream_key = G_PRIVATE_INIT (free_lz4_stream);

static ZSTD_CCtx *
thread_cctx (void)
{
  ZSTD_CCtx *cctx = g_private_get (&cctx_key);

  if (cctx == NULL)
    {
      cctx = ZSTD_createCCtx ();
      g_assert (cctx != NULL);
      g_private_set (&cctx_key, cctx);
    }

  return cctx;
}

static ZSTD_DCtx *
thread_dctx (void)
{
  ZSTD_DCtx *dctx = g_private_get (&dctx_key);

  if (dctx == NULL)
    {
      dctx = ZSTD_createDCtx ();
      g_assert (dctx != NULL);
      g_private_set (&dctx_key, dctx);
    }

  return dctx;
}

/* The LZ4 stream a thread compresses into after copying the base stream
 * of a dictionary over it. */
static LZ4_stream_t *
thread_lz4_stream (void)
{
  LZ4_stream_t *stream = g_private_get (&lz4_stream_key);

  if (stream == NULL)
    {
      stream = LZ4_createStream ();
      g_assert (stream != NULL);
      g_private_set (&lz4_stream_key, stream);
    }

  return stream;
}

/* Returns the lowest minor format version whose readers know @codec. */
guint16
hexz_format_minor_for_codec (HexzStoredCodec codec)
{
  return codec == HEXZ_STORED_LZ4_DICT ? 1 : 0;
}

static void
lz4_prefix (GBytes        *bytes,
            const guint8 **prefix,
            gsize         *prefix_length)
{
  gsize size;
  const guint8 *data = g_bytes_get_data (bytes, &size);

  *prefix_length = MIN (size, HEXZ_LZ4_PREFIX_SIZE);
  *prefix = data + size - *prefix_length;
}

/* Prepares the dictionary @bytes for compressing blocks with @codec at
 * @level (the zstd level, 0 meaning zstd's default). Returns %NULL when
 * zstd rejects the dictionary or @codec uses none. */
HexzCompressDictionary *
hexz_compress_dictionary_new (GBytes    *bytes,
                              HexzCodec  codec,
                              int        level)
{
  g_autoptr(HexzCompressDictionary) dictionary = g_new0 (HexzCompressDictionary, 1);
  const guint8 *prefix;
  gsize prefix_length;

  dictionary->bytes = g_bytes_ref (bytes);

  switch (codec)
    {
    case HEXZ_CODEC_ZSTD:
      dictionary->cdict = ZSTD_createCDict (g_bytes_get_data (bytes, NULL),
                                            g_bytes_get_size (bytes),
                                            level != 0 ? level : ZSTD_CLEVEL_DEFAULT);
      if (dictionary->cdict == NULL)
        return NULL;
      break;

    case HEXZ_CODEC_LZ4:
      /* LZ4_loadDict() keeps pointers into the prefix, so the stream is
       * valid while @bytes lives. Copying this loaded stream before each
       * block costs far less than loading the prefix again. */
      lz4_prefix (bytes, &prefix, &prefix_length);
      dictionary->lz4_base = LZ4_createStream ();
      g_assert (dictionary->lz4_base != NULL);
      LZ4_loadDict (dictionary->lz4_base, (const char *) prefix, prefix_length);
      break;

    case HEXZ_CODEC_RAW:
    default:
      return NULL;
    }

  return g_steal_pointer (&dictionary);
}

void
hexz_compress_dictionary_free (HexzCompressDictionary *dictionary)
{
  if (dictionary == NULL)
    return;

  g_clear_pointer (&dictionary->cdict, ZSTD_freeCDict);
  g_clear_pointer (&dictionary->lz4_base, LZ4_freeStream);
  g_clear_pointer (&dictionary->bytes, g_bytes_unref);
  g_free (dictionary);
}

/* Prepares the dictionary @bytes for decoding blocks of codecs 3 and 4.
 * Returns %NULL when zstd rejects the bytes as a dictionary. */
HexzDecodeDictionary *
hexz_decode_dictionary_new (GBytes *bytes)
{
  g_autoptr(HexzDecodeDictionary) dictionary = g_new0 (HexzDecodeDictionary, 1);

  dictionary->bytes = g_bytes_ref (bytes);
  dictionary->ddict = ZSTD_createDDict (g_bytes_get_data (bytes, NULL),
                                        g_bytes_get_size (bytes));
  if (dictionary->ddict == NULL)
    return NULL;

  lz4_prefix (bytes, &dictionary->lz4_prefix, &dictionary->lz4_prefix_length);

  return g_steal_pointer (&dictionary);
}

void
hexz_decode_dictionary_free (HexzDecodeDictionary *dictionary)
{
  if (dictionary == NULL)
    return;

  g_clear_pointer (&dictionary->ddict, ZSTD_freeDDict);
  g_clear_pointer (&dictionary->bytes, g_bytes_unref);
  g_free (dictionary);
}

/* The output capacity a block of @length bytes needs with any codec. */
gsize
hexz_compress_bound (gsize length)
{
  return MAX ((gsize) LZ4_compressBound (length), ZSTD_compressBound (length));
}

/* Compresses one block with @codec into @destination. Returns the stored
 * length, or 0 when the block does not shrink and must be stored raw.
 * For LZ4 a negative @level is the acceleration factor (faster, larger);
 * for zstd @level is the zstd level, 0 meaning zstd's default. With a
 * @dictionary prepared for @codec, the block uses it (codec 3 or 4); a
 * zstd dictionary fixed its level when it was made. */
gsize
hexz_compress_block (HexzCodec                     codec,
                     int                           level,
                     const HexzCompressDictionary *dictionary,
                     const guint8     *source,
                     gsize             length,
                     guint8           *destination,
                     gsize             capacity,
                     HexzStoredCodec  *stored_codec)
{
  gsize n;

  switch (codec)
    {
    case HEXZ_CODEC_LZ4:
      {
        int acceleration = level < 0 ? -level : 1;
        int written;

        if (dictionary != NULL && dictionary->lz4_base != NULL)
          {
            LZ4_stream_t *stream = thread_lz4_stream ();

            /* Every block starts from the same loaded prefix, so blocks
             * stay independent of each other. */
            memcpy (stream, dictionary->lz4_base, sizeof *stream);
            written = LZ4_compress_fast_continue (stream, (const char *) source,
                                                  (char *) destination, length,
                                                  MIN (capacity, G_MAXINT),
                                                  acceleration);
            *stored_codec = HEXZ_STORED_LZ4_DICT;
          }
        else
          {
            written = LZ4_compress_fast ((const char *) source, (char *) destination,
                                         length, MIN (capacity, G_MAXINT),
                                         acceleration);
            *stored_codec = HEXZ_STORED_LZ4;
          }
        n = written > 0 ? (gsize) written : 0;
      }
      break;

    case HEXZ_CODEC_ZSTD:
      if (dictionary != NULL && dictionary->cdict != NULL)
        {
          n = ZSTD_compress_usingCDict (thread_cctx (), destination, capacity,
                                        source, length, dictionary->cdict);
          *stored_codec = HEXZ_STORED_ZSTD_DICT;
        }
      else
        {
          n = ZSTD_compressCCtx (thread_cctx (), destination, capacity,
                                 source, length, level);
          *stored_codec = HEXZ_STORED_ZSTD;
        }
      if (ZSTD_isError (n))
        n = 0;
      break;

    case HEXZ_CODEC_RAW:
    default:
      n = 0;
      break;
    }

  if (n == 0 || n >= length)
    {
      *stored_codec = HEXZ_STORED_RAW;
      return 0;
    }

  return n;
}

/* Decodes one stored block. Codecs 3 and 4 need the file's @dictionary.
 * Returns %TRUE only when the block decodes without error to exactly
 * @logical_length bytes. */
gboolean
hexz_decompress_block (HexzStoredCodec             codec,
                       const HexzDecodeDictionary *dictionary,
                       const guint8               *source,
                       gsize                       source_length,
                       guint8                     *destination,
                       gsize                       logical_length)
{
  switch (codec)
    {
    case HEXZ_STORED_RAW:
      if (source_length != logical_length)
        return FALSE;
      if (destination != source)
        memcpy (destination, source, logical_length);
      return TRUE;

    case HEXZ_STORED_LZ4:
      {
        int n;

        if (source_length > G_MAXINT || logical_length > G_MAXINT)
          return FALSE;
        n = LZ4_decompress_safe ((const char *) source, (char *) destination,
                                 source_length, logical_length);
        return n >= 0 && (gsize) n == logical_length;
      }

    case HEXZ_STORED_LZ4_DICT:
      {
        int n;

        if (dictionary == NULL || source_length > G_MAXINT ||
            logical_length > G_MAXINT)
          return FALSE;
        n = LZ4_decompress_safe_usingDict ((const char *) source,
                                           (char *) destination,
                                           source_length, logical_length,
                                           (const char *) dictionary->lz4_prefix,
                                           dictionary->lz4_prefix_length);
        return n >= 0 && (gsize) n == logical_length;
      }

    case HEXZ_STORED_ZSTD:
    case HEXZ_STORED_ZSTD_DICT:
      {
        gsize n;

        if (codec == HEXZ_STORED_ZSTD_DICT)
          {
            if (dictionary == NULL)
              return FALSE;
            n = ZSTD_decompress_usingDDict (thread_dctx (), destination,
                                            logical_length, source,
                                            source_length, dictionary->ddict);
          }
        else
          {
            /* Clear any dictionary a former call on this thread left. */
            ZSTD_DCtx_reset (thread_dctx (), ZSTD_reset_session_and_parameters);
            n = ZSTD_decompressDCtx (thread_dctx (), destination,
                                     logical_length, source, source_length);
          }
        return !ZSTD_isError (n) && n == logical_length;
      }

    default:
      return FALSE;
    }
}

GBytes *
hexz_compress_page (const guint8 *entries,
                    gsize         length)
{
  gsize capacity = ZSTD_compressBound (length);
  guint8 *buffer = g_malloc (capacity);
  gsize n;

  n = ZSTD_compressCCtx (thread_cctx (), buffer, capacity, entries, length,
                         PAGE_ZSTD_LEVEL);
  g_assert (!ZSTD_isError (n));

  return g_bytes_new_take (g_realloc (buffer, n), n);
}

gboolean
hexz_decompress_page (const guint8 *source,
                      gsize         source_length,
                      guint8       *destination,
                      gsize         length)
{
  gsize n;

  ZSTD_DCtx_reset (thread_dctx (), ZSTD_reset_session_and_parameters);
  n = ZSTD_decompressDCtx (thread_dctx (), destination, length, source,
                           source_length);

  return !ZSTD_isError (n) && n == length;
}

/* Trains a zstd dictionary on @samples, cut into 4 KiB pieces so that
 * ZDICT gets enough samples whatever the block size. Returns %NULL when
 * training fails, for instance on too little or too uniform data; the
 * writer then compresses without a dictionary. */
GBytes *
hexz_train_dictionary (const guint8 *samples,
                       gsize         length)
{
  const gsize piece = 4096;
  const gsize capacity = 112 * 1024;
  g_autofree size_t *sizes = NULL;
  g_autofree guint8 *dictionary = NULL;
  guint n_samples;
  gsize n;

  n_samples = length / piece;
  if (n_samples < 8)
    return NULL;

  sizes = g_new (size_t, n_samples);
  for (guint i = 0; i < n_samples; i++)
    sizes[i] = piece;

  dictionary = g_malloc (capacity);
  n = ZDICT_trainFromBuffer (dictionary, capacity, samples, sizes, n_samples);
  if (ZDICT_isError (n))
    {
      g_debug ("No zstd dictionary trained from %" G_GSIZE_FORMAT " bytes: %s",
               length, ZDICT_getErrorName (n));
      return NULL;
    }

  g_debug ("Trained a zstd dictionary of %" G_GSIZE_FORMAT " bytes", n);

  return g_bytes_new (dictionary, n);
}

/* Makes the dictionary of LZ4 blocks from @buffer: 16 pieces of 4 KiB
 * spread evenly over it, leaving out zero pieces, which fill the 64 KiB
 * that LZ4 uses. zstd takes these bytes as a raw content dictionary.
 *
 * On text and on a tar of /usr/bin, this compressed as well as the last
 * 64 KiB of a ZDICT_trainFromBuffer() dictionary trained on 256 such
 * pieces. Sampling takes no time, whereas training took 65 ms (on the
 * 2-core test machine) before any block could be compressed.
 *
 * The pieces come from the odd-numbered blocks of @block_size bytes when
 * these have any non-zero piece, so that the even ones can show what the
 * dictionary gains. Stores where the pieces were taken in @piece_offsets
 * and their number in @n_pieces. Returns %NULL when @buffer has no
 * non-zero piece, or in the rare case that zstd rejects the bytes because
 * they start with its dictionary magic number. */
GBytes *
hexz_sample_lz4_dictionary (const guint8 *buffer,
                            gsize         length,
                            gsize         block_size,
                            gsize         piece_offsets[HEXZ_LZ4_DICTIONARY_PIECES],
                            guint        *n_pieces)
{
  const gsize piece = 4096;
  const guint max_pieces = HEXZ_LZ4_DICTIONARY_PIECES;
  g_autofree guint32 *nonzero = NULL;
  g_autofree guint8 *samples = NULL;
  g_autoptr(GBytes) dictionary = NULL;
  g_autoptr(HexzDecodeDictionary) check = NULL;
  guint n_nonzero = 0;
  guint n_taken;

  nonzero = g_new (guint32, length / piece + 1);
  for (guint pass = 0; pass < 2 && n_nonzero == 0; pass++)
    {
      for (gsize i = 0; i < length / piece; i++)
        {
          gboolean odd_block = (i * piece / block_size) % 2 == 1;

          if ((odd_block || pass == 1) && !hexz_is_all_zero (buffer + i * piece, piece))
            nonzero[n_nonzero++] = i;
        }
    }

  n_taken = MIN (n_nonzero, max_pieces);
  samples = g_malloc ((gsize) n_taken * piece + 1);
  for (guint i = 0; i < n_taken; i++)
    {
      guint32 index = nonzero[(guint64) i * n_nonzero / n_taken];

      memcpy (samples + (gsize) i * piece, buffer + (gsize) index * piece, piece);
      piece_offsets[i] = (gsize) index * piece;
    }
  *n_pieces = n_taken;

  if (n_taken == 0)
    return NULL;

  /* Readers reject a file whose dictionary zstd does not load. */
  dictionary = g_bytes_new_take (g_steal_pointer (&samples), (gsize) n_taken * piece);
  check = hexz_decode_dictionary_new (dictionary);
  if (check == NULL)
    {
      g_debug ("The sampled LZ4 dictionary starts like a zstd dictionary that zstd "
               "rejects; compressing without a dictionary");
      return NULL;
    }

  g_debug ("Sampled an LZ4 dictionary of %u pieces of 4 KiB", n_taken);

  return g_steal_pointer (&dictionary);
}

/* Sets an error of the form “Snapshot “NAME” is corrupt: DETAIL. The file
 * is damaged; restore it from a copy.” with @code (usually CORRUPT or
 * TRUNCATED). */
void
hexz_set_corrupt_error (GError     **error,
                        int          code,
                        const char  *name,
                        const char  *detail)
{
  if (code == HEXZ_SNAPSHOT_ERROR_TRUNCATED)
    g_set_error (error, HEXZ_SNAPSHOT_ERROR, code,
                 /* Translators: the first %s is a file name, the second
                  * describes where the damage is. */
                 _("Snapshot “%s” is truncated: %s. The file is incomplete; "
                   "restore it from a copy."),
                 name, detail);
  else
    g_set_error (error, HEXZ_SNAPSHOT_ERROR, code,
                 /* Translators: the first %s is a file name, the second
                  * describes where the damage is. */
                 _("Snapshot “%s” is corrupt: %s. The file is damaged; "
                   "restore it from a copy."),
                 name, detail);
}
