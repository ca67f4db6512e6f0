/* notify: kernel invalidations, sent from a thread of their own, and the store hook.
 *
 * Only inode invalidations (attributes, a directory's cached listing) are ever sent: the
 * kernel handles them without taking any directory lock. Entry invalidations are never sent:
 * the kernel handles one with the parent directory's lock held, and that lock may be held by
 * a rename or create waiting for this daemon's answer. If the daemon is killed then (SIGKILL,
 * the OOM killer), the notifying thread can never leave the kernel, /dev/fuse is never
 * closed, and the mount and the state dir's lock stay wedged until a fusectl abort. A name
 * that disappears behind the kernel's back is handled without one: its inode is invalidated,
 * and a path operation on it gets ESTALE, on which the kernel looks the name up again
 * (docs/internals/commit.md, "Invalidations"). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/fleets.h"
#include "../core/offerd.h"
#include "../core/state.h"
#include "internal.h"

/* ---- notifier: kernel invalidations from a thread of their own ---- */

struct notice {
	fuse_ino_t ino;
	struct notice *next;
};

void notify_inval_inode(struct fs *fs, fuse_ino_t ino)
{
	if (!fs->se || !fs->notifier_running)
		return;
	struct notice *n = xcalloc(1, sizeof(*n));
	n->ino = ino;
	pthread_mutex_lock(&fs->lock);
	if (fs->ntail)
		fs->ntail->next = n;
	else
		fs->nhead = n;
	fs->ntail = n;
	fs->npushed++;
	pthread_cond_signal(&fs->ncond);
	pthread_mutex_unlock(&fs->lock);
}

void notify_sync(struct fs *fs, int timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&fs->lock);
	uint64_t target = fs->npushed;
	while (fs->notifier_running && !fs->stopping && fs->ndone < target)
		if (pthread_cond_timedwait(&fs->ndone_cond, &fs->lock, &until))
			break;
	pthread_mutex_unlock(&fs->lock);
}

static void *notifier_main(void *arg)
{
	struct fs *fs = arg;
	pthread_mutex_lock(&fs->lock);
	for (;;) {
		while (!fs->nhead && !fs->stopping)
			pthread_cond_wait(&fs->ncond, &fs->lock);
		if (fs->stopping)
			break;
		struct notice *n = fs->nhead;
		fs->nhead = n->next;
		if (!fs->nhead)
			fs->ntail = NULL;
		pthread_mutex_unlock(&fs->lock);
		/* ENOENT just means the kernel had forgotten it already */
		fuse_lowlevel_notify_inval_inode(fs->se, n->ino, 0, 0);
		free(n);
		pthread_mutex_lock(&fs->lock);
		fs->ndone++;
		pthread_cond_broadcast(&fs->ndone_cond);
	}
	while (fs->nhead) {
		struct notice *n = fs->nhead;
		fs->nhead = n->next;
		free(n);
	}
	fs->ntail = NULL;
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

int notify_start(struct fs *fs)
{
	pthread_cond_init(&fs->ncond, NULL);
	pthread_cond_init(&fs->ndone_cond, NULL);
	fs->notifier_running = true;
	int r = pthread_create(&fs->notifier, NULL, notifier_main, fs);
	if (r)
		fs->notifier_running = false;
	return -r;
}

void notify_stop(struct fs *fs)
{
	if (!fs->notifier_running)
		return;
	pthread_mutex_lock(&fs->lock);
	fs->stopping = true;
	pthread_cond_signal(&fs->ncond);
	pthread_cond_broadcast(&fs->ndone_cond);
	pthread_mutex_unlock(&fs->lock);
	pthread_join(fs->notifier, NULL);
	fs->notifier_running = false;
}

/* Drop the kernel's cached attributes (and listings) of every node hit(arg, node) picks:
 * collected under fs->lock, sent after it (an invalidation may wait for the kernel). */
static void inval_where(struct fs *fs, bool (*hit)(const void *arg, const struct node *x),
			const void *arg)
{
	fuse_ino_t *inos = NULL;
	size_t n = 0, cap = 0;
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->nbuckets; i++) {
		for (struct node *x = fs->by_ino[i]; x; x = x->ino_next) {
			if (!hit(arg, x))
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				inos = xrealloc(inos, cap * sizeof(*inos));
			}
			inos[n++] = x->ino;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	for (size_t i = 0; i < n; i++)
		notify_inval_inode(fs, inos[i]);
	free(inos);
}

static bool on_apply(const void *arg, const struct node *x)
{
	(void)arg;
	return kind_def(x->kind)->on_apply;
}

/* After the state changed behind the kernel's back (a root config.yml apply), drop every
 * cached attribute and listing below projects/ (names that went away answer ESTALE). */
void notify_inval_projects(struct fs *fs)
{
	inval_where(fs, on_apply, NULL);
}

/* The project a store change was in ("" the mount's journal), or all of them. */
struct changed {
	bool all;
	char p[STORE_NAME_MAX];
};

/* an instance or a spec the engine removed: its attributes go, and the listing of its
 * directory (invalidated too) no longer shows it */
static bool on_change(const void *arg, const struct node *x)
{
	const struct changed *c = arg;
	enum kinval iv = kind_def(x->kind)->inval;
	return iv == INV_ALWAYS || (iv == INV_MOUNT && (c->all || !c->p[0])) ||
	       (iv == INV_PROJECT && (c->all || !strcmp(x->project, c->p)));
}

/* store hook: a transaction changed a journal or backends of project (NULL: many). Drop the
 * kernel's cached attributes of the generated files that show them. */
void fs_store_changed(void *arg, const char *project)
{
	struct fs *fs = arg;
	struct changed c = {.all = project == NULL};
	if (project && fmt(c.p, sizeof(c.p), "%.*s", (int)strcspn(project, ":"), project))
		c.all = true; /* longer than any project name: drop them all, not the wrong one */
	notify_bump(fs); /* also for changes made in the background (engine, offers refreshes) */
	if (fs->offerd)
		offerd_changed(fs->offerd, c.all ? NULL : c.p);
	inval_where(fs, on_change, &c);
}

void notify_bump(struct fs *fs)
{
	pthread_mutex_lock(&fs->cache_lock);
	fs->gen++;
	pthread_mutex_unlock(&fs->cache_lock);
}

