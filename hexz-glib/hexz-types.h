/* hexz-types.h: enumerations and error domains shared by the whole library
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__HEXZ_INSIDE__) && !defined(HEXZ_COMPILATION)
# error "Only <hexz-glib/hexz.h> can be included directly."
#endif

#include <glib-object.h>

#include "hexz-version-macros.h"

G_BEGIN_DECLS

/**
 * HexzStream:
 * @HEXZ_STREAM_DISK: the virtual machine's disk image
 * @HEXZ_STREAM_MEMORY: the virtual machine's memory, as QEMU's migration
 *   stream
 *
 * The two byte streams a snapshot file can hold.
 *
 * Since: 1.0
 */
typedef enum {
  HEXZ_STREAM_DISK = 0,
  HEXZ_STREAM_MEMORY = 1,
} HexzStream;

/**
 * HexzCodec:
 * @HEXZ_CODEC_RAW: blocks are stored uncompressed
 * @HEXZ_CODEC_LZ4: LZ4 block compression, fast to write and read
 * @HEXZ_CODEC_ZSTD: Zstandard compression, smaller files, optionally with a
 *   trained dictionary
 *
 * How a block's bytes are compressed in a snapshot file. A block that does
 * not shrink is always stored raw, whatever codec was asked for.
 *
 * Since: 1.0
 */
typedef enum {
  HEXZ_CODEC_RAW = 0,
  HEXZ_CODEC_LZ4 = 1,
  HEXZ_CODEC_ZSTD = 2,
} HexzCodec;

/**
 * HEXZ_SNAPSHOT_ERROR:
 *
 * Error domain for snapshot files: reading, writing, verifying and
 * committing. Errors in this domain are from the [error@Hexz.SnapshotError]
 * enumeration.
 *
 * Since: 1.0
 */
#define HEXZ_SNAPSHOT_ERROR (hexz_snapshot_error_quark ())

/**
 * HexzSnapshotError:
 * @HEXZ_SNAPSHOT_ERROR_FAILED: a failure with no more specific code
 * @HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT: an option or argument is out of its
 *   valid range (block size, codec level, offset past a stream's end)
 * @HEXZ_SNAPSHOT_ERROR_NOT_A_SNAPSHOT: the file is not a hexz snapshot file
 * @HEXZ_SNAPSHOT_ERROR_UNSUPPORTED_VERSION: the file uses a format version
 *   this library cannot read
 * @HEXZ_SNAPSHOT_ERROR_CORRUPT: a checksum, offset or length in the file is
 *   wrong: the file is damaged
 * @HEXZ_SNAPSHOT_ERROR_TRUNCATED: the file is shorter than its header says
 * @HEXZ_SNAPSHOT_ERROR_PARENT_MISSING: the parent of a thin snapshot cannot
 *   be opened
 * @HEXZ_SNAPSHOT_ERROR_PARENT_MISMATCH: the file at the parent's path is not
 *   the snapshot this thin snapshot was written against
 * @HEXZ_SNAPSHOT_ERROR_TOO_LARGE: a size in the file exceeds what this
 *   library accepts
 * @HEXZ_SNAPSHOT_ERROR_NO_STREAM: the requested stream is empty or absent
 * @HEXZ_SNAPSHOT_ERROR_BUSY: the file to replace is in use, such as a
 *   snapshot that an NBD server serves to a running machine
 *
 * Error codes of the %HEXZ_SNAPSHOT_ERROR domain.
 *
 * Since: 1.0
 */
typedef enum {
  HEXZ_SNAPSHOT_ERROR_FAILED,
  HEXZ_SNAPSHOT_ERROR_INVALID_ARGUMENT,
  HEXZ_SNAPSHOT_ERROR_NOT_A_SNAPSHOT,
  HEXZ_SNAPSHOT_ERROR_UNSUPPORTED_VERSION,
  HEXZ_SNAPSHOT_ERROR_CORRUPT,
  HEXZ_SNAPSHOT_ERROR_TRUNCATED,
  HEXZ_SNAPSHOT_ERROR_PARENT_MISSING,
  HEXZ_SNAPSHOT_ERROR_PARENT_MISMATCH,
  HEXZ_SNAPSHOT_ERROR_TOO_LARGE,
  HEXZ_SNAPSHOT_ERROR_NO_STREAM,
  HEXZ_SNAPSHOT_ERROR_BUSY,
} HexzSnapshotError;

HEXZ_AVAILABLE_IN_1_0
GQuark       hexz_snapshot_error_quark (void);

HEXZ_AVAILABLE_IN_1_0
const char  *hexz_stream_to_string     (HexzStream stream);

HEXZ_AVAILABLE_IN_1_0
const char  *hexz_codec_to_string      (HexzCodec codec);

HEXZ_AVAILABLE_IN_1_0
gboolean     hexz_codec_from_string    (const char *name,
                                        HexzCodec  *codec);

G_END_DECLS
