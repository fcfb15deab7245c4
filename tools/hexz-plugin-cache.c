/* hexz-plugin-cache.c: snapshot disk reads with a small block cache
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * NBD clients often read less than a snapshot block (a guest reading 4 KiB,
 * the plugin's read-modify-write of one page), and decoding a whole block
 * for each of them would decompress the same block again and again. The
 * cache keeps the last few decoded blocks that a request covered only in
 * part. A request that covers whole blocks reads them straight into the
 * caller's buffer, so a sequential scan does not evict the cached blocks.
 *
 * One mutex serializes every call into the HexzSnapshot, which documents no
 * thread safety.
 */

#include "config.h"

#include <string.h>

#include "hexz-plugin-cache.h"

/* Memory budget for cached blocks, and bounds on their count. */
#define CACHE_BYTES (4 * 1024 * 1024)
#define MIN_SLOTS 4
#define MAX_SLOTS 64

typedef struct {
  guint64 index;      /* block number, or G_MAXUINT64 when empty */
  guint64 last_use;
  guint8 *data;
} CacheSlot;

struct _HexzPluginCache
{
  GMutex lock;
  HexzSnapshot *snapshot;
  guint64 size;
  guint64 block_size;

  CacheSlot *slots;
  guint n_slots;
  guint64 clock;

  guint64 n_hits;
  guint64 n_misses;
};

HexzPluginCache *
hexz_plugin_cache_new (HexzSnapshot *snapshot)
{
  HexzPluginCache *cache = g_new0 (HexzPluginCache, 1);

  g_mutex_init (&cache->lock);
  cache->snapshot = g_object_ref (snapshot);
  cache->size = hexz_snapshot_get_disk_size (snapshot);
  cache->block_size = MAX (hexz_snapshot_get_block_size (snapshot), 1);

  cache->n_slots = CLAMP (CACHE_BYTES / cache->block_size, MIN_SLOTS, MAX_SLOTS);
  cache->slots = g_new0 (CacheSlot, cache->n_slots);
  for (guint i = 0; i < cache->n_slots; i++)
    cache->slots[i].index = G_MAXUINT64;

  return cache;
}

void
hexz_plugin_cache_free (HexzPluginCache *cache)
{
  if (cache == NULL)
    return;

  g_debug ("Block cache of %u blocks: %" G_GUINT64_FORMAT " hits, %" G_GUINT64_FORMAT " misses",
           cache->n_slots, cache->n_hits, cache->n_misses);

  for (guint i = 0; i < cache->n_slots; i++)
    g_free (cache->slots[i].data);
  g_free (cache->slots);
  g_clear_object (&cache->snapshot);
  g_mutex_clear (&cache->lock);
  g_free (cache);
}

static CacheSlot *
find_slot (HexzPluginCache *cache,
           guint64          index)
{
  for (guint i = 0; i < cache->n_slots; i++)
    if (cache->slots[i].index == index)
      return &cache->slots[i];

  return NULL;
}

/* Returns the slot holding block index, decoding the block into the least
 * recently used slot when it is not cached. */
static CacheSlot *
load_block (HexzPluginCache  *cache,
            guint64           index,
            GError          **error)
{
  CacheSlot *slot = find_slot (cache, index);
  guint64 offset = index * cache->block_size;
  gsize length = MIN (cache->block_size, cache->size - offset);

  if (slot != NULL)
    {
      cache->n_hits++;
      slot->last_use = ++cache->clock;
      return slot;
    }

  cache->n_misses++;
  slot = &cache->slots[0];
  for (guint i = 1; i < cache->n_slots; i++)
    if (cache->slots[i].last_use < slot->last_use)
      slot = &cache->slots[i];

  if (slot->data == NULL)
    slot->data = g_malloc (cache->block_size);

  /* Empty the slot first, so that a failed read leaves no stale block. */
  slot->index = G_MAXUINT64;
  if (!hexz_snapshot_read (cache->snapshot, HEXZ_STREAM_DISK, offset, slot->data,
                           length, NULL, error))
    return NULL;

  slot->index = index;
  slot->last_use = ++cache->clock;
  return slot;
}

/**
 * hexz_plugin_cache_read:
 * @cache: a cache
 * @buffer: (out caller-allocates) (array length=count): the bytes read
 * @count: number of bytes
 * @offset: offset in the snapshot's disk stream
 * @error: return location for a #GError
 *
 * Reads bytes of the snapshot's disk stream. Safe to call from several
 * threads.
 *
 * Returns: %TRUE on success
 */
gboolean
hexz_plugin_cache_read (HexzPluginCache  *cache,
                        guint8           *buffer,
                        gsize             count,
                        guint64           offset,
                        GError          **error)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&cache->lock);
  guint64 end = offset + count;
  guint64 position = offset;

  g_return_val_if_fail (offset <= cache->size && count <= cache->size - offset, FALSE);

  while (position < end)
    {
      guint64 index = position / cache->block_size;
      guint64 block_offset = index * cache->block_size;
      guint64 block_end = MIN (block_offset + cache->block_size, cache->size);
      guint8 *destination = buffer + (position - offset);
      CacheSlot *slot;

      if (position == block_offset && end >= block_end && find_slot (cache, index) == NULL)
        {
          /* Whole blocks that are not cached: read them in one call. */
          guint64 run_end = block_end;

          while (run_end < end)
            {
              guint64 next_end = MIN (run_end + cache->block_size, cache->size);

              if (next_end > end || find_slot (cache, run_end / cache->block_size) != NULL)
                break;
              run_end = next_end;
            }

          if (!hexz_snapshot_read (cache->snapshot, HEXZ_STREAM_DISK, position, destination,
                                   run_end - position, NULL, error))
            return FALSE;

          position = run_end;
          continue;
        }

      slot = load_block (cache, index, error);
      if (slot == NULL)
        return FALSE;

      memcpy (destination, slot->data + (position - block_offset),
              MIN (block_end, end) - position);
      position = MIN (block_end, end);
    }

  return TRUE;
}

/**
 * hexz_plugin_cache_is_zero:
 * @cache: a cache
 * @offset: offset in the snapshot's disk stream
 * @count: number of bytes
 * @is_zero: (out): whether the snapshot's index records the bytes as zero
 * @error: return location for a #GError
 *
 * Checks whether the snapshot stores disk bytes as zero blocks. Safe to call
 * from several threads.
 *
 * Returns: %TRUE on success
 */
gboolean
hexz_plugin_cache_is_zero (HexzPluginCache  *cache,
                           guint64           offset,
                           guint64           count,
                           gboolean         *is_zero,
                           GError          **error)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&cache->lock);
  GError *local_error = NULL;

  *is_zero = hexz_snapshot_is_zero (cache->snapshot, HEXZ_STREAM_DISK, offset, count,
                                    &local_error);
  if (local_error != NULL)
    {
      g_propagate_error (error, local_error);
      return FALSE;
    }

  return TRUE;
}
