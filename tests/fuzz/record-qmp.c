/* record-qmp.c: record a real QEMU's QMP session and replay it through
 * fuzz-qmp
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Starts QEMU with the test helper, sends the commands fuzz-qmp.c sends, in
 * its order and with its ids, over a plain socket, and records every byte
 * QEMU sends back. The recording must hold a reply to each command and the
 * STOP and RESUME events, and then runs through the harness. With
 * HEXZ_FUZZ_RECORD_TO=PATH set, the recording is also saved there in the
 * harness's input layout; tests/fuzz/seeds/qmp/qemu-7.2-session was made
 * this way.
 */

#include "config.h"

#include <string.h>

#include "hexz-test-qemu.h"

#include "fuzz-common.h"

#define RECORD_TIMEOUT_MS 20000

/* The harness's control byte for one line per piece. */
#define CONTROL_LINES 0x07

static const char * const qemu_args[] = {
  "-nodefaults", "-machine", "pc", "-m", "64", "-display", "none", NULL
};

static const char * const commands[] = {
  "{\"execute\": \"qmp_capabilities\", \"id\": \"hexz-1\"}\n",
  "{\"execute\": \"query-status\", \"id\": \"hexz-2\"}\n",
  "{\"execute\": \"stop\", \"id\": \"hexz-3\"}\n",
  "{\"execute\": \"cont\", \"id\": \"hexz-4\"}\n",
  "{\"execute\": \"query-migrate\", \"id\": \"hexz-5\"}\n",
  "{\"execute\": \"query-name\", \"id\": \"hexz-6\"}\n",
  /* Without a descriptor, so QEMU replies with an error. */
  "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"fuzz\"}, \"id\": \"hexz-7\"}\n",
};

static gboolean
transcript_complete (GString *transcript)
{
  for (guint i = 1; i <= G_N_ELEMENTS (commands); i++)
    {
      g_autofree char *id = g_strdup_printf ("\"id\": \"hexz-%u\"", i);

      if (strstr (transcript->str, id) == NULL)
        return FALSE;
    }

  return strstr (transcript->str, "\"event\": \"STOP\"") != NULL &&
         strstr (transcript->str, "\"event\": \"RESUME\"") != NULL;
}

static void
receive_until (GSocket    *socket,
               GString    *transcript,
               const char *expected,
               gint64      deadline)
{
  while (expected != NULL ? strstr (transcript->str, expected) == NULL
                          : !transcript_complete (transcript))
    {
      g_autoptr(GError) error = NULL;
      char buffer[4096];
      gssize n;

      if (g_get_monotonic_time () > deadline)
        g_error ("Timed out waiting for QEMU's QMP output; received so far:\n%s", transcript->str);

      if (!g_socket_condition_timed_wait (socket, G_IO_IN, 100 * 1000, NULL, NULL))
        continue;

      n = g_socket_receive (socket, buffer, sizeof buffer, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpint (n, >, 0);
      g_string_append_len (transcript, buffer, n);
    }
}

static void
test_record_qemu (void)
{
  g_autoptr(HexzTestQemu) qemu = hexz_test_qemu_start (qemu_args);
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GSocketAddress) address = NULL;
  g_autoptr(GString) transcript = g_string_new (NULL);
  g_autoptr(GByteArray) seed = g_byte_array_new ();
  g_autoptr(GError) error = NULL;
  const char *record_to = g_getenv ("HEXZ_FUZZ_RECORD_TO");
  gint64 deadline = g_get_monotonic_time () + RECORD_TIMEOUT_MS * 1000;
  guint8 control = CONTROL_LINES;

  if (qemu == NULL)
    return;

  socket = g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, 0, &error);
  g_assert_no_error (error);
  address = g_unix_socket_address_new (hexz_test_qemu_get_qmp_path (qemu));
  g_socket_connect (socket, address, NULL, &error);
  g_assert_no_error (error);

  receive_until (socket, transcript, "\"QMP\"", deadline);
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      gsize length = strlen (commands[i]);

      g_assert_cmpint (g_socket_send (socket, commands[i], length, NULL, &error), ==, length);
      g_assert_no_error (error);
    }
  receive_until (socket, transcript, NULL, deadline);

  g_socket_close (socket, NULL);
  g_assert_true (hexz_test_qemu_stop (qemu));

  g_test_message ("Recorded %" G_GSIZE_FORMAT " bytes of QMP output", transcript->len);

  g_byte_array_append (seed, &control, 1);
  g_byte_array_append (seed, (const guint8 *) transcript->str, transcript->len);

  if (record_to != NULL)
    {
      g_file_set_contents (record_to, (const char *) seed->data, seed->len, &error);
      g_assert_no_error (error);
    }

  /* The harness aborts on any failure, so returning is the check. */
  LLVMFuzzerTestOneInput (seed->data, seed->len);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  LLVMFuzzerInitialize (&argc, &argv);

  g_test_add_func ("/fuzz/qmp/record-qemu", test_record_qemu);

  return g_test_run ();
}
