/* notify: kernel invalidations, sent from a thread of their own (a request handler must never
 * notify the kernel about what it is handling), and the store hook. */
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
	bool entry;
	fuse_ino_t ino; /* inode, or the parent for an entry */
	char *name;
	struct notice *next;
};

static void notice_push(struct fs *fs, bool entry, fuse_ino_t ino, const char *name)
{
	if (!fs->se || !fs->notifier_running)
		return;
	struct notice *n = xcalloc(1, sizeof(*n));
	n->entry = entry;
	n->ino = ino;
	n->name = name ? xstrdup(name) : NULL;
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

void notify_inval_inode(struct fs *fs, fuse_ino_t ino)
{
	notice_push(fs, false, ino, NULL);
}

void notify_inval_entry(struct fs *fs, fuse_ino_t parent, const char *name)
{
	notice_push(fs, true, parent, name);
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
		if (n->entry)
			fuse_lowlevel_notify_inval_entry(fs->se, n->ino, n->name, strlen(n->name));
		else
			fuse_lowlevel_notify_inval_inode(fs->se, n->ino, 0, 0);
		free(n->name);
		free(n);
		pthread_mutex_lock(&fs->lock);
		fs->ndone++;
		pthread_cond_broadcast(&fs->ndone_cond);
	}
	while (fs->nhead) {
		struct notice *n = fs->nhead;
		fs->nhead = n->next;
		free(n->name);
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

/* After the state changed behind the kernel's back (a root config.yml apply), drop every
 * cached name and attribute below projects/. */
void inval_projects(struct fs *fs)
{
	fuse_ino_t *inos = NULL, *parents = NULL;
	char **names = NULL;
	size_t n = 0, cap = 0;
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->nbuckets; i++) {
		for (struct node *x = fs->by_ino[i]; x; x = x->ino_next) {
			if (x->kind != N_PROJECTS && x->kind != N_PROJECT && x->kind != N_BACKENDS &&
			    x->kind != N_BACKEND && x->kind != N_BCONFIG && x->kind != N_BSTATUS &&
			    x->kind != N_PEVENTS && x->kind != N_RCONFIG)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				inos = xrealloc(inos, cap * sizeof(*inos));
				parents = xrealloc(parents, cap * sizeof(*parents));
				names = xrealloc(names, cap * sizeof(*names));
			}
			inos[n] = x->ino;
			parents[n] = x->parent;
			names[n] = x->linked ? xstrdup(x->name) : NULL;
			n++;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	for (size_t i = 0; i < n; i++) {
		notify_inval_inode(fs, inos[i]);
		if (names[i])
			notify_inval_entry(fs, parents[i], names[i]);
		free(names[i]);
	}
	free(inos);
	free(parents);
	free(names);
}

/* store hook: a transaction changed a journal or backends of project (NULL: many). Drop the
 * kernel's cached attributes of the generated files that show them. */
void fs_store_changed(void *arg, const char *project)
{
	struct fs *fs = arg;
	struct item {
		bool entry;
		fuse_ino_t ino;
		char name[NAME_MAX + 1];
	} *items = NULL;
	size_t n = 0, cap = 0;
	bool all = project == NULL;
	char p[STORE_NAME_MAX] = "";
	if (project)
		fmt(p, sizeof(p), "%.*s", (int)strcspn(project, ":"), project);
	bump(fs); /* also for changes made in the background (engine, offers refreshes) */
	if (fs->offerd)
		offerd_changed(fs->offerd, project ? p : NULL);
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->nbuckets; i++) {
		for (struct node *x = fs->by_ino[i]; x; x = x->ino_next) {
			bool mine = all || !strcmp(x->project, p);
			bool hit = false, entry = false;
			if (x->kind == N_RCONFIG)
				hit = true;
			else if (x->kind == N_REVENTS)
				hit = all || !p[0];
			else if (x->kind == N_OFFER)
				continue; /* maybe 100,000 of them: their dentries time out, their
					   * contents are read uncached */
			else if (is_generated(x->kind) || x->kind == N_FLEETS || x->kind == N_FLEET ||
				 x->kind == N_INSTANCES || x->kind == N_OFFERS || x->kind == N_OQUERY)
				hit = mine;
			else if (x->kind == N_INSTANCE || x->kind == N_FSPEC)
				hit = entry = mine && x->linked;
			if (!hit)
				continue;
			if (n + 2 > cap) {
				cap = cap ? cap * 2 : 64;
				items = xrealloc(items, cap * sizeof(*items));
			}
			items[n].entry = false;
			items[n].ino = x->ino;
			n++;
			if (entry) {
				items[n].entry = true;
				items[n].ino = x->parent;
				fmt(items[n].name, sizeof(items[n].name), "%s", x->name);
				n++;
			}
		}
	}
	pthread_mutex_unlock(&fs->lock);
	for (size_t i = 0; i < n; i++) {
		if (items[i].entry)
			notify_inval_entry(fs, items[i].ino, items[i].name);
		else
			notify_inval_inode(fs, items[i].ino);
	}
	free(items);
}

void bump(struct fs *fs)
{
	pthread_mutex_lock(&fs->cache_lock);
	fs->gen++;
	pthread_mutex_unlock(&fs->cache_lock);
}

