/* helgrind-glib.c: a preload that describes GLib's locks to helgrind
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * GLib 2.74 implements GMutex and GCond with futexes on Linux, which
 * helgrind and DRD do not understand. Without help they report every access
 * to data that a GMutex protects, or that a GAsyncQueue hands to another
 * thread, as a data race. Preloaded into a test program, this library wraps
 * the GMutex, GCond and GAsyncQueue calls that the program makes and
 * describes each one to helgrind through its client requests.
 *
 * Only calls from outside libglib go through these wrappers, because
 * libglib binds its own calls directly. The locks inside GMainContext,
 * GThreadPool (and so g_task_run_in_thread()) and GAsyncQueue stay
 * invisible, and data handed over through them is still reported.
 *
 * Build and use:
 *
 *   cc -shared -fPIC -o helgrind-glib.so tools/helgrind-glib.c \
 *     $(pkg-config --cflags glib-2.0)
 *   LD_PRELOAD=$PWD/helgrind-glib.so valgrind --tool=helgrind \
 *     _build/tests/test-snapshot
 */

#define _GNU_SOURCE

#include <dlfcn.h>
#include <stdlib.h>
#include <glib.h>
#include <valgrind/helgrind.h>

/* Returns libglib's own definition of @name. A program that loads GLib
 * with dlopen(RTLD_LOCAL), as nbdkit loads a plugin, keeps it out of the
 * global scope that RTLD_NEXT searches, so the symbol is then looked up in
 * libglib itself. */
static void *
lookup_glib (const char *name)
{
  void *symbol = dlsym (RTLD_NEXT, name);
  void *glib;

  if (symbol != NULL)
    return symbol;

  glib = dlopen ("libglib-2.0.so.0", RTLD_LAZY | RTLD_NOLOAD);
  if (glib == NULL)
    abort ();
  symbol = dlsym (glib, name);
  dlclose (glib);
  if (symbol == NULL)
    abort ();

  return symbol;
}

#define NEXT(name) \
  static __typeof__ (name) *next_##name; \
  if (next_##name == NULL) \
    next_##name = (__typeof__ (name) *) lookup_glib (#name)

void
g_mutex_init (GMutex *mutex)
{
  NEXT (g_mutex_init);

  next_g_mutex_init (mutex);
  VALGRIND_HG_MUTEX_INIT_POST (mutex, 0);
}

void
g_mutex_clear (GMutex *mutex)
{
  NEXT (g_mutex_clear);

  VALGRIND_HG_MUTEX_DESTROY_PRE (mutex);
  next_g_mutex_clear (mutex);
}

void
g_mutex_lock (GMutex *mutex)
{
  NEXT (g_mutex_lock);

  VALGRIND_HG_MUTEX_LOCK_PRE (mutex, 0);
  next_g_mutex_lock (mutex);
  VALGRIND_HG_MUTEX_LOCK_POST (mutex);
}

gboolean
g_mutex_trylock (GMutex *mutex)
{
  gboolean locked;
  NEXT (g_mutex_trylock);

  VALGRIND_HG_MUTEX_LOCK_PRE (mutex, 1);
  locked = next_g_mutex_trylock (mutex);
  if (locked)
    VALGRIND_HG_MUTEX_LOCK_POST (mutex);

  return locked;
}

void
g_mutex_unlock (GMutex *mutex)
{
  NEXT (g_mutex_unlock);

  VALGRIND_HG_MUTEX_UNLOCK_PRE (mutex);
  next_g_mutex_unlock (mutex);
  VALGRIND_HG_MUTEX_UNLOCK_POST (mutex);
}

/* A wait releases @mutex, sleeps, and takes @mutex again. What the
 * signalling thread did before g_cond_signal() happens before the return. */
void
g_cond_wait (GCond  *cond,
             GMutex *mutex)
{
  NEXT (g_cond_wait);

  VALGRIND_HG_MUTEX_UNLOCK_PRE (mutex);
  VALGRIND_HG_MUTEX_UNLOCK_POST (mutex);
  next_g_cond_wait (cond, mutex);
  VALGRIND_HG_MUTEX_LOCK_PRE (mutex, 0);
  VALGRIND_HG_MUTEX_LOCK_POST (mutex);
  ANNOTATE_HAPPENS_AFTER (cond);
}

gboolean
g_cond_wait_until (GCond  *cond,
                   GMutex *mutex,
                   gint64  end_time)
{
  gboolean signalled;
  NEXT (g_cond_wait_until);

  VALGRIND_HG_MUTEX_UNLOCK_PRE (mutex);
  VALGRIND_HG_MUTEX_UNLOCK_POST (mutex);
  signalled = next_g_cond_wait_until (cond, mutex, end_time);
  VALGRIND_HG_MUTEX_LOCK_PRE (mutex, 0);
  VALGRIND_HG_MUTEX_LOCK_POST (mutex);
  ANNOTATE_HAPPENS_AFTER (cond);

  return signalled;
}

void
g_cond_signal (GCond *cond)
{
  NEXT (g_cond_signal);

  ANNOTATE_HAPPENS_BEFORE (cond);
  next_g_cond_signal (cond);
}

void
g_cond_broadcast (GCond *cond)
{
  NEXT (g_cond_broadcast);

  ANNOTATE_HAPPENS_BEFORE (cond);
  next_g_cond_broadcast (cond);
}

/* What a thread did before pushing an item happens before the pop that
 * returns it. */
void
g_async_queue_push (GAsyncQueue *queue,
                    gpointer     data)
{
  NEXT (g_async_queue_push);

  ANNOTATE_HAPPENS_BEFORE (queue);
  next_g_async_queue_push (queue, data);
}

gpointer
g_async_queue_pop (GAsyncQueue *queue)
{
  gpointer data;
  NEXT (g_async_queue_pop);

  data = next_g_async_queue_pop (queue);
  ANNOTATE_HAPPENS_AFTER (queue);

  return data;
}

gpointer
g_async_queue_try_pop (GAsyncQueue *queue)
{
  gpointer data;
  NEXT (g_async_queue_try_pop);

  data = next_g_async_queue_try_pop (queue);
  if (data != NULL)
    ANNOTATE_HAPPENS_AFTER (queue);

  return data;
}
