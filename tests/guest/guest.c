/* guest.c: a freestanding x86 guest whose memory and disk tests can check
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Booted by QEMU with -kernel (multiboot v1), the guest fills a region of
 * RAM with a pattern derived from each word's address and a seed, then runs
 * a counter forever. Every interval it writes a record (sequence, counter,
 * pattern checksum) to one disk sector through legacy IDE PIO, and keeps
 * the same record in a status area at a fixed physical address. The layout
 * is in hexz-test-guest-layout.h; README.md describes the options.
 *
 * Progress goes to the debug port 0xe9 (QEMU's -debugcon). Nothing else
 * reads it: without a debugcon device the writes are ignored.
 */

#include <stddef.h>
#include <stdint.h>

#include "hexz-test-guest-layout.h"

_Static_assert (sizeof (struct hexz_guest_record) == HEXZ_GUEST_RECORD_SIZE,
                "record layout");
_Static_assert (sizeof (struct hexz_guest_status) == HEXZ_GUEST_STATUS_SIZE,
                "status layout");
_Static_assert (offsetof (struct hexz_guest_status, slots) == HEXZ_GUEST_STATUS_SLOTS_OFFSET,
                "status slots offset");

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u
#define MULTIBOOT_INFO_MEMORY      (1u << 0)
#define MULTIBOOT_INFO_CMDLINE     (1u << 2)

struct multiboot_info {
  uint32_t flags;
  uint32_t mem_lower;   /* KiB below 1 MiB */
  uint32_t mem_upper;   /* KiB from 1 MiB up to the first hole */
  uint32_t boot_device;
  uint32_t cmdline;     /* physical address of a NUL-terminated string */
};

/* Legacy IDE, primary channel. */
#define ATA_DATA       0x1f0
#define ATA_ERROR      0x1f1
#define ATA_COUNT      0x1f2
#define ATA_LBA_LOW    0x1f3
#define ATA_LBA_MID    0x1f4
#define ATA_LBA_HIGH   0x1f5
#define ATA_DEVICE     0x1f6
#define ATA_STATUS     0x1f7
#define ATA_COMMAND    0x1f7
#define ATA_CONTROL    0x3f6

#define ATA_SR_ERR     0x01
#define ATA_SR_DRQ     0x08
#define ATA_SR_DF      0x20
#define ATA_SR_DRDY    0x40
#define ATA_SR_BSY     0x80

#define ATA_CMD_WRITE_SECTORS 0x30
#define ATA_CMD_FLUSH_CACHE   0xe7
#define ATA_CMD_IDENTIFY      0xec

#define DEBUG_PORT     0xe9

/* PIT channel 2 runs at 1193182 Hz; port 0x61 gates it and reads its
 * output in bit 5. */
#define PIT_HZ         1193182u
#define PIT_CHANNEL2   0x42
#define PIT_MODE       0x43
#define PIT_GATE_PORT  0x61

/* Counter steps between two looks at the clock and two dirty-page writes. */
#define LOOP_BATCH     1024u

/* Bound for busy-wait loops when the TSC is not calibrated. */
#define POLL_FALLBACK_LIMIT 10000000u

static volatile struct hexz_guest_status *const status =
  (volatile struct hexz_guest_status *) HEXZ_GUEST_STATUS_ADDR;

static uint32_t tsc_per_ms;
static uint64_t boot_tsc;
static int disk_present;

static uint32_t sector[HEXZ_GUEST_SECTOR_SIZE / 4];

/* Port I/O. */

static inline void
outb (uint16_t port,
      uint8_t  value)
{
  __asm__ volatile ("outb %0, %1" : : "a" (value), "Nd" (port));
}

static inline uint8_t
inb (uint16_t port)
{
  uint8_t value;

  __asm__ volatile ("inb %1, %0" : "=a" (value) : "Nd" (port));
  return value;
}

static inline uint16_t
inw (uint16_t port)
{
  uint16_t value;

  __asm__ volatile ("inw %1, %0" : "=a" (value) : "Nd" (port));
  return value;
}

static inline void
outw (uint16_t port,
      uint16_t value)
{
  __asm__ volatile ("outw %0, %1" : : "a" (value), "Nd" (port));
}

static inline uint64_t
rdtsc (void)
{
  uint32_t lo, hi;

  __asm__ volatile ("rdtsc" : "=a" (lo), "=d" (hi));
  return ((uint64_t) hi << 32) | lo;
}

/* Debug output on port 0xe9. */

static void
debug_puts (const char *text)
{
  while (*text != '\0')
    outb (DEBUG_PORT, (uint8_t) *text++);
}

static void
debug_put_hex (uint32_t value)
{
  static const char digits[] = "0123456789abcdef";

  debug_puts ("0x");
  for (int shift = 28; shift >= 0; shift -= 4)
    outb (DEBUG_PORT, (uint8_t) digits[(value >> shift) & 0xf]);
}

static void
debug_put_field (const char *name,
                 uint32_t    value)
{
  debug_puts (" ");
  debug_puts (name);
  debug_puts ("=");
  debug_put_hex (value);
}

/* Time. */

/* Measure the TSC rate against 10 ms of PIT channel 2 (mode 0, one-shot).
 * Returns 0 when the PIT output never rises. */
static uint32_t
calibrate_tsc (void)
{
  const uint32_t ticks = PIT_HZ / 100;
  uint64_t start, end;
  uint32_t spins = 0;
  uint8_t gate;

  gate = inb (PIT_GATE_PORT);
  outb (PIT_GATE_PORT, (uint8_t) ((gate & ~0x03u) | 0x00u));
  outb (PIT_MODE, 0xb0);   /* channel 2, low byte then high byte, mode 0 */
  outb (PIT_CHANNEL2, (uint8_t) (ticks & 0xff));
  outb (PIT_CHANNEL2, (uint8_t) (ticks >> 8));
  /* Raise the gate (bit 0) to start counting, with the speaker off. */
  outb (PIT_GATE_PORT, (uint8_t) ((gate & ~0x03u) | 0x01u));

  start = rdtsc ();
  while ((inb (PIT_GATE_PORT) & 0x20) == 0)
    {
      if (++spins > POLL_FALLBACK_LIMIT)
        return 0;
    }
  end = rdtsc ();

  outb (PIT_GATE_PORT, (uint8_t) (gate & ~0x03u));

  if (end <= start)
    return 0;
  return (uint32_t) ((end - start) / 10);
}

static uint32_t
uptime_ms (void)
{
  if (tsc_per_ms == 0)
    return 0;
  return (uint32_t) ((rdtsc () - boot_tsc) / tsc_per_ms);
}

/* Command line. */

static int
is_space (char c)
{
  return c == ' ' || c == '\t';
}

static int
starts_with (const char *text,
             const char *prefix)
{
  while (*prefix != '\0')
    {
      if (*text++ != *prefix++)
        return 0;
    }
  return 1;
}

/* Parse a number in decimal or, with 0x, hexadecimal, with an optional K,
 * M or G suffix (powers of 1024) when @allow_suffix is set. Stops at the
 * end of the word, and leaves *value unchanged when the word is not a number. */
static void
parse_number (const char *text,
              int         allow_suffix,
              uint32_t   *value)
{
  uint64_t result = 0;
  uint32_t base = 10;
  int digits = 0;

  if (text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))
    {
      base = 16;
      text += 2;
    }

  for (; *text != '\0' && !is_space (*text); text++)
    {
      char c = *text;
      uint32_t digit;

      if (c >= '0' && c <= '9')
        digit = (uint32_t) (c - '0');
      else if (base == 16 && c >= 'a' && c <= 'f')
        digit = (uint32_t) (c - 'a' + 10);
      else if (base == 16 && c >= 'A' && c <= 'F')
        digit = (uint32_t) (c - 'A' + 10);
      else
        break;

      result = result * base + digit;
      if (result > 0xffffffffu)
        return;
      digits++;
    }

  if (digits == 0)
    return;

  if (allow_suffix)
    {
      switch (*text)
        {
        case 'k': case 'K': result <<= 10; text++; break;
        case 'm': case 'M': result <<= 20; text++; break;
        case 'g': case 'G': result <<= 30; text++; break;
        default: break;
        }
    }

  if (*text != '\0' && !is_space (*text))
    return;
  if (result > 0xffffffffu)
    result = 0xffffffffu;

  *value = (uint32_t) result;
}

struct options {
  uint32_t fill;
  uint32_t seed;
  uint32_t dirty;
  uint32_t interval_ms;
};

/* QEMU passes "KERNEL-PATH APPEND-STRING". Words that are not a known
 * key=value are skipped. */
static void
parse_cmdline (const char     *cmdline,
               struct options *options)
{
  const char *p = cmdline;

  while (*p != '\0')
    {
      while (is_space (*p))
        p++;

      if (starts_with (p, "fill="))
        parse_number (p + 5, 1, &options->fill);
      else if (starts_with (p, "seed="))
        parse_number (p + 5, 0, &options->seed);
      else if (starts_with (p, "dirty="))
        parse_number (p + 6, 1, &options->dirty);
      else if (starts_with (p, "interval="))
        parse_number (p + 9, 0, &options->interval_ms);

      while (*p != '\0' && !is_space (*p))
        p++;
    }
}

/* IDE. */

/* Wait until BSY clears. Returns the last status, or -1 on timeout. */
static int
ata_wait_not_busy (void)
{
  uint64_t deadline = tsc_per_ms != 0 ? rdtsc () + (uint64_t) tsc_per_ms * 5000 : 0;
  uint32_t spins = 0;

  for (;;)
    {
      uint8_t value = inb (ATA_STATUS);

      if ((value & ATA_SR_BSY) == 0)
        return value;

      if (tsc_per_ms != 0)
        {
          if (rdtsc () > deadline)
            break;
        }
      else if (++spins > POLL_FALLBACK_LIMIT)
        break;
    }

  return -1;
}

static void
ata_delay_400ns (void)
{
  /* ATA requires a 400 ns delay after selecting a device, and each read of
   * the alternate status register takes about 100 ns on real hardware. */
  for (int i = 0; i < 4; i++)
    (void) inb (ATA_CONTROL);
}

static void
ata_select_lba28 (uint32_t lba,
                  uint8_t  count)
{
  outb (ATA_DEVICE, (uint8_t) (0xe0 | ((lba >> 24) & 0x0f)));
  ata_delay_400ns ();
  outb (ATA_ERROR, 0);
  outb (ATA_COUNT, count);
  outb (ATA_LBA_LOW, (uint8_t) lba);
  outb (ATA_LBA_MID, (uint8_t) (lba >> 8));
  outb (ATA_LBA_HIGH, (uint8_t) (lba >> 16));
}

/* Find an ATA disk as primary master and read its LBA28 capacity. */
static void
ata_probe (void)
{
  uint16_t identify[256];
  int value;

  /* Interrupts stay off in this guest, so tell the device not to raise them. */
  outb (ATA_CONTROL, 0x02);

  outb (ATA_DEVICE, 0xa0);
  ata_delay_400ns ();

  /* QEMU returns 0 for a missing device, and a missing controller floats
   * to 0xff. */
  value = inb (ATA_STATUS);
  if (value == 0 || value == 0xff)
    goto no_disk;

  if (ata_wait_not_busy () < 0)
    goto no_disk;

  ata_select_lba28 (0, 0);
  outb (ATA_DEVICE, 0xa0);
  outb (ATA_COMMAND, ATA_CMD_IDENTIFY);
  ata_delay_400ns ();

  value = ata_wait_not_busy ();
  /* An ATAPI device (a CD-ROM) aborts IDENTIFY with ERR set. */
  if (value < 0 || (value & ATA_SR_ERR) != 0 || (value & ATA_SR_DRQ) == 0)
    goto no_disk;

  for (int i = 0; i < 256; i++)
    identify[i] = inw (ATA_DATA);

  if ((identify[0] & 0x8000) != 0)
    goto no_disk;

  status->disk_sectors = (uint32_t) identify[60] | ((uint32_t) identify[61] << 16);
  if (status->disk_sectors <= HEXZ_GUEST_RECORD_LBA)
    {
      status->flags |= HEXZ_GUEST_FLAG_DISK_TOO_SMALL;
      debug_puts ("hexz-guest: disk too small for the record sector\n");
      return;
    }

  disk_present = 1;
  debug_puts ("hexz-guest: disk");
  debug_put_field ("sectors", status->disk_sectors);
  debug_puts ("\n");
  return;

no_disk:
  status->flags |= HEXZ_GUEST_FLAG_NO_DISK;
  debug_puts ("hexz-guest: no IDE disk as primary master\n");
}

/* Write @sector to HEXZ_GUEST_RECORD_LBA and flush the disk cache.
 * Returns 0 on success, or -1 with the ATA status stored in the status
 * area. */
static int
ata_write_record_sector (void)
{
  int value;

  if (ata_wait_not_busy () < 0)
    goto failed;

  ata_select_lba28 (HEXZ_GUEST_RECORD_LBA, 1);
  outb (ATA_COMMAND, ATA_CMD_WRITE_SECTORS);
  ata_delay_400ns ();

  value = ata_wait_not_busy ();
  if (value < 0 || (value & (ATA_SR_ERR | ATA_SR_DF)) != 0 || (value & ATA_SR_DRQ) == 0)
    goto failed;

  for (uint32_t i = 0; i < HEXZ_GUEST_SECTOR_SIZE / 4; i++)
    {
      outw (ATA_DATA, (uint16_t) sector[i]);
      outw (ATA_DATA, (uint16_t) (sector[i] >> 16));
    }

  value = ata_wait_not_busy ();
  if (value < 0 || (value & (ATA_SR_ERR | ATA_SR_DF)) != 0)
    goto failed;

  outb (ATA_COMMAND, ATA_CMD_FLUSH_CACHE);
  ata_delay_400ns ();

  value = ata_wait_not_busy ();
  if (value < 0 || (value & (ATA_SR_ERR | ATA_SR_DF)) != 0)
    goto failed;

  return 0;

failed:
  status->ata_status = inb (ATA_STATUS) | ((uint32_t) inb (ATA_ERROR) << 8);
  return -1;
}

/* Pattern. */

static void
fill_pattern (uint32_t base,
              uint32_t size,
              uint32_t seed)
{
  volatile uint32_t *words = (volatile uint32_t *) base;
  uint32_t checksum = HEXZ_GUEST_CHECKSUM_INIT;

  status->fill_done = 0;
  for (uint32_t offset = 0; offset < size; offset += 4)
    {
      words[offset / 4] = hexz_guest_pattern_word (base + offset, seed);
      if ((offset & 0xffff) == 0xfffc)
        status->fill_done = offset + 4;
    }
  status->fill_done = size;

  /* The checksum reads the region back, so it covers what RAM contains
   * rather than what the guest meant to write. */
  for (uint32_t offset = 0; offset < size; offset += 4)
    checksum = hexz_guest_checksum_add (checksum, words[offset / 4]);

  status->pattern_checksum = checksum;
}

/* Records. */

static uint32_t
record_checksum (const volatile struct hexz_guest_record *record)
{
  const volatile uint32_t *words = (const volatile uint32_t *) record;
  uint32_t checksum = HEXZ_GUEST_CHECKSUM_INIT;

  for (uint32_t i = 0; i < HEXZ_GUEST_RECORD_SIZE / 4 - 1; i++)
    checksum = hexz_guest_checksum_add (checksum, words[i]);

  return checksum;
}

/* Write record @sequence to its slot, then to the disk, in the order
 * that struct hexz_guest_status documents. */
static void
write_record (uint32_t sequence,
              uint64_t counter)
{
  volatile struct hexz_guest_record *slot = &status->slots[sequence % 2];
  const volatile uint32_t *slot_words = (const volatile uint32_t *) slot;

  slot->magic = 0;
  slot->version = HEXZ_GUEST_LAYOUT_VERSION;
  slot->sequence = sequence;
  slot->counter_lo = (uint32_t) counter;
  slot->counter_hi = (uint32_t) (counter >> 32);
  slot->uptime_ms = uptime_ms ();
  slot->seed = status->seed;
  slot->fill_base = status->fill_base;
  slot->fill_size = status->fill_size;
  slot->pattern_checksum = status->pattern_checksum;
  slot->reserved = 0;
  slot->magic = HEXZ_GUEST_RECORD_MAGIC;
  slot->checksum = record_checksum (slot);

  status->in_flight_sequence = sequence;

  for (uint32_t i = 0; i < HEXZ_GUEST_SECTOR_SIZE / 4; i++)
    sector[i] = i < HEXZ_GUEST_RECORD_SIZE / 4 ? slot_words[i] : 0;

  if (ata_write_record_sector () < 0)
    {
      /* Leave in_flight_sequence set: the sector may hold either record. */
      status->disk_errors++;
      status->flags |= HEXZ_GUEST_FLAG_DISK_ERROR;
      disk_present = 0;
      debug_puts ("hexz-guest: record write failed");
      debug_put_field ("sequence", sequence);
      debug_put_field ("ata", status->ata_status);
      debug_puts ("\n");
      return;
    }

  status->last_done_sequence = sequence;
  status->in_flight_sequence = 0;
  status->disk_writes++;
}

/* Main loop. */

static void __attribute__ ((noreturn))
run (void)
{
  uint32_t dirty_pages = status->dirty_size / 4096;
  uint32_t dirty_page = 0;
  uint64_t interval_ticks = (uint64_t) tsc_per_ms * status->interval_ms;
  uint64_t next_record = rdtsc () + interval_ticks;
  uint64_t counter = 0;
  uint32_t since_record = 0;
  uint32_t sequence = 0;

  status->state = HEXZ_GUEST_STATE_RUNNING;
  debug_puts ("hexz-guest: running");
  debug_put_field ("pattern_checksum", status->pattern_checksum);
  debug_puts ("\n");

  for (;;)
    {
      for (uint32_t i = 0; i < LOOP_BATCH; i++)
        {
          counter++;
          status->counter_lo = (uint32_t) counter;
          status->counter_hi = (uint32_t) (counter >> 32);
        }

      /* One word per page keeps every page of the dirty region changing
       * while the guest runs. */
      if (dirty_pages != 0)
        {
          volatile uint32_t *word =
            (volatile uint32_t *) (status->dirty_base + dirty_page * 4096);

          *word = (uint32_t) counter;
          dirty_page = (dirty_page + 1) % dirty_pages;
        }

      if (!disk_present)
        continue;

      if (tsc_per_ms != 0)
        {
          uint64_t now = rdtsc ();

          /* A VM restored from a snapshot or migrated may see the TSC jump
           * backwards. Without this, it would write no record until the TSC
           * caught up with the old deadline. */
          if (next_record > now + interval_ticks)
            next_record = now + interval_ticks;

          if (now < next_record)
            continue;
          /* Count from now rather than from the missed deadline, so a VM
           * that was paused does not write a burst of records on resume. */
          next_record = now + interval_ticks;
        }
      else
        {
          since_record += LOOP_BATCH;
          if (since_record < HEXZ_GUEST_FALLBACK_ITERATIONS)
            continue;
          since_record = 0;
        }

      sequence++;
      write_record (sequence, counter);
    }
}

static uint32_t
clamp_fill (uint32_t requested,
            uint32_t ram_top)
{
  uint32_t available = ram_top > HEXZ_GUEST_FILL_BASE ? ram_top - HEXZ_GUEST_FILL_BASE : 0;
  uint32_t size = requested & ~3u;

  if (size > available)
    {
      status->flags |= HEXZ_GUEST_FLAG_FILL_CLAMPED;
      size = available;
    }

  return size;
}

void guest_main (uint32_t magic, const struct multiboot_info *info);

void
guest_main (uint32_t                     magic,
            const struct multiboot_info *info)
{
  struct options options = {
    .fill = HEXZ_GUEST_FILL_DEFAULT,
    .seed = HEXZ_GUEST_SEED_DEFAULT,
    .dirty = 0,
    .interval_ms = HEXZ_GUEST_INTERVAL_DEFAULT,
  };
  volatile uint32_t *status_words = (volatile uint32_t *) status;
  uint32_t ram_top = 0;

  boot_tsc = rdtsc ();

  for (uint32_t i = 0; i < HEXZ_GUEST_STATUS_SIZE / 4; i++)
    status_words[i] = 0;
  status->version = HEXZ_GUEST_LAYOUT_VERSION;
  status->state = HEXZ_GUEST_STATE_BOOTING;
  status->magic = HEXZ_GUEST_STATUS_MAGIC;

  debug_puts ("hexz-guest: booting\n");

  if (magic == MULTIBOOT_BOOTLOADER_MAGIC)
    {
      if ((info->flags & MULTIBOOT_INFO_CMDLINE) != 0 && info->cmdline != 0)
        parse_cmdline ((const char *) info->cmdline, &options);
      if ((info->flags & MULTIBOOT_INFO_MEMORY) != 0)
        {
          uint64_t top = ((uint64_t) info->mem_upper + 1024) * 1024;

          ram_top = top > 0xffffffffu ? 0xfffff000u : (uint32_t) top;
        }
    }

  tsc_per_ms = calibrate_tsc ();
  if (tsc_per_ms == 0)
    status->flags |= HEXZ_GUEST_FLAG_NO_TIMER;

  if (options.interval_ms == 0)
    options.interval_ms = 1;
  if (options.dirty > HEXZ_GUEST_DIRTY_MAX)
    options.dirty = HEXZ_GUEST_DIRTY_MAX;
  if (ram_top < HEXZ_GUEST_DIRTY_BASE + options.dirty)
    options.dirty = ram_top > HEXZ_GUEST_DIRTY_BASE ? ram_top - HEXZ_GUEST_DIRTY_BASE : 0;

  status->ram_top = ram_top;
  status->tsc_khz = tsc_per_ms;
  status->seed = options.seed;
  status->fill_base = HEXZ_GUEST_FILL_BASE;
  status->fill_size = clamp_fill (options.fill, ram_top);
  status->dirty_base = HEXZ_GUEST_DIRTY_BASE;
  status->dirty_size = options.dirty & ~4095u;
  status->interval_ms = options.interval_ms;

  debug_puts ("hexz-guest:");
  debug_put_field ("ram_top", ram_top);
  debug_put_field ("fill", status->fill_size);
  debug_put_field ("seed", status->seed);
  debug_put_field ("dirty", status->dirty_size);
  debug_put_field ("tsc_khz", tsc_per_ms);
  debug_puts ("\n");

  ata_probe ();

  status->state = HEXZ_GUEST_STATE_FILLING;
  fill_pattern (status->fill_base, status->fill_size, status->seed);

  run ();
}
