/* kinds: the tree as data. Every node kind (enum nkind) is declared once here: the
 * directories it appears in, its name when the name is fixed, its class, its mode and the
 * functions that differ from the generic behaviour (see struct kind_def in internal.h).
 *
 * Lookup (resolve), listings (dir_listing), node_exists and rendering walk this table. A new
 * fixed file is one line here plus its render function.
 *
 * The rows are in tree order: a directory's fixed children are listed in the order of their
 * rows, before its variable children (its list function) and its drafts. */
#include <string.h>

#include "internal.h"

#define IN(k) (1ULL << (k))

static const struct kind_def kinds[] = {
	{N_ROOT, 0, NULL, K_DIR, .drafts = true},
	{N_RFILTER, IN(N_ROOT), ".rsync-filter", K_GEN, .render = render_rfilter,
	 .size = size_rfilter, .inval = INV_PROJECT},
	{N_README, IN(N_ROOT), "README", K_GEN, .render = render_readme, .size = size_readme,
	 .inval = INV_PROJECT},
	{N_RCONFIG, IN(N_ROOT), "config.yml", K_CANON, 0600, .render = render_rconfig,
	 .size = size_rconfig, .inval = INV_ALWAYS, .on_apply = true},
	{N_REVENTS, IN(N_ROOT), "events", K_GEN, .render = render_events, .size = size_events,
	 .inval = INV_MOUNT},
	{N_PROJECTS, IN(N_ROOT), "projects", K_DIR, .lookup = lookup_projects,
	 .list = list_projects, .on_apply = true},

	/* projects/<p>/ */
	{N_PROJECT, IN(N_PROJECTS), NULL, K_DIR, .exists = exists_project, .on_apply = true},
	{N_BACKENDS, IN(N_PROJECT), "backends", K_DIR, .exists = exists_project,
	 .lookup = lookup_backends, .list = list_backends, .on_apply = true},
	{N_BACKEND, IN(N_BACKENDS), NULL, K_DIR, .drafts = true, .exists = exists_backend,
	 .on_apply = true},
	{N_BCONFIG, IN(N_BACKEND), "config.yml", K_CANON, 0600, .exists = exists_bconfig,
	 .present = present_bconfig, .on_apply = true},
	{N_BSTATUS, IN(N_BACKEND), "status", K_GEN, .exists = exists_backend,
	 .render = render_bstatus, .inval = INV_PROJECT, .on_apply = true},
	{N_PEVENTS, IN(N_PROJECT), "events", K_GEN, .exists = exists_project,
	 .render = render_events, .size = size_events, .inval = INV_PROJECT, .on_apply = true},

	/* fleets */
	{N_FLEETS, IN(N_PROJECT), "fleets", K_DIR, .drafts = true, .exists = exists_project,
	 .lookup = lookup_fleets, .list = list_fleets, .inval = INV_PROJECT},
	{N_FSPEC, IN(N_FLEETS), NULL, K_CANON, 0600, .exists = exists_spec, .inval = INV_PROJECT},
	{N_FLEET, IN(N_FLEETS), NULL, K_DIR, .exists = exists_fleet, .inval = INV_PROJECT},
	{N_FEVENTS, IN(N_FLEET), "events", K_GEN, .exists = exists_fleet, .render = render_events,
	 .size = size_events, .inval = INV_PROJECT},
	{N_FSSHCFG, IN(N_FLEET), "ssh_config", K_GEN, .exists = exists_fleet,
	 .render = render_fsshcfg, .inval = INV_PROJECT},
	{N_FSTATUS, IN(N_FLEET), "status", K_GEN, .exists = exists_fleet, .render = render_fstatus,
	 .inval = INV_PROJECT},
	{N_INSTANCES, IN(N_FLEET), "instances", K_DIR, .exists = exists_fleet,
	 .lookup = lookup_instances, .list = list_instances, .inval = INV_PROJECT},
	{N_INSTANCE, IN(N_INSTANCES), NULL, K_DIR, .exists = exists_instance, .inval = INV_PROJECT},
	{N_IINFO, IN(N_INSTANCE), "info.yml", K_GEN, .exists = exists_instance,
	 .render = render_instance, .inval = INV_PROJECT},
	{N_ISSH, IN(N_INSTANCE), "ssh", K_GEN, .exists = exists_instance,
	 .render = render_instance, .inval = INV_PROJECT},
	{N_ISTATUS, IN(N_INSTANCE), "status", K_GEN, .exists = exists_instance,
	 .render = render_instance, .inval = INV_PROJECT},

	/* ssh access */
	{N_PSSHDIR, IN(N_PROJECT), "ssh", K_DIR, .exists = exists_project},
	/* the project's private key is a secret: owner only, whatever the mount says */
	{N_PKEY, IN(N_PSSHDIR), "id_rsa", K_GEN, 0600, .exists = exists_project,
	 .render = render_key, .size = size_key, .inval = INV_PROJECT},
	{N_PKEYPUB, IN(N_PSSHDIR), "id_rsa.pub", K_GEN, .exists = exists_project,
	 .render = render_key, .size = size_key, .inval = INV_PROJECT},
	{N_PKNOWN, IN(N_PSSHDIR), "known_hosts", K_GEN, .exists = exists_project,
	 .render = render_known_hosts, .inval = INV_PROJECT},
	{N_PSSHCFG, IN(N_PROJECT), "ssh_config", K_GEN, .exists = exists_project,
	 .render = render_psshcfg, .inval = INV_PROJECT},

	/* offers */
	{N_OFFERS, IN(N_PROJECT), "offers", K_DIR, .exists = exists_project,
	 .lookup = lookup_offers, .list = list_offers, .inval = INV_PROJECT},
	{N_OQUERY, IN(N_OFFERS), NULL, K_DIR, .exists = exists_project, .lookup = lookup_offers,
	 .list = list_offers, .inval = INV_PROJECT},
	{N_OFFER, IN(N_OFFERS) | IN(N_OQUERY), NULL, K_GEN, .exists = exists_project,
	 .render = render_offers},
	{N_OJSON, IN(N_PROJECT) | IN(N_OQUERY), "offers.json", K_GEN, .exists = exists_project,
	 .render = render_offers, .size = size_table, .inval = INV_PROJECT},
	{N_OTSV, IN(N_PROJECT) | IN(N_OQUERY), "offers.tsv", K_GEN, .exists = exists_project,
	 .render = render_offers, .size = size_table, .inval = INV_PROJECT},

	/* any other name created in a directory with .drafts */
	{.kind = N_DRAFT, .cls = K_DRAFT},
};

#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

/* What a kind that is none (0, a parent that is gone) is. */
static const struct kind_def no_kind = {0};

/* The rows are in the enum's order (fs.h), so a kind is its row: every node of a sweep over
 * 100,000 nodes asks. kinds_check() proves the order at mount. */
const struct kind_def *kind_def(enum nkind k)
{
	return k >= N_ROOT && k < N_KINDS ? &kinds[k - N_ROOT] : &no_kind;
}

bool kinds_check(void)
{
	for (size_t i = 0; i < NKINDS; i++)
		if (kinds[i].kind != (enum nkind)(N_ROOT + i))
			return false;
	return NKINDS == N_KINDS - N_ROOT;
}

const struct kind_def *kind_next_fixed(enum nkind dir, const struct kind_def *after)
{
	size_t i = after ? (size_t)(after - kinds) + 1 : 0;
	for (; i < NKINDS; i++)
		if (kinds[i].name && (kinds[i].parents & IN(dir)))
			return &kinds[i];
	return NULL;
}

const struct kind_def *kind_fixed(enum nkind dir, const char *name)
{
	for (const struct kind_def *d = NULL; (d = kind_next_fixed(dir, d));)
		if (!strcmp(d->name, name))
			return d;
	return NULL;
}

bool is_dir_kind(enum nkind k)
{
	return kind_def(k)->cls == K_DIR;
}

bool is_generated(enum nkind k)
{
	return kind_def(k)->cls == K_GEN;
}

bool is_canonical(enum nkind k)
{
	return kind_def(k)->cls == K_CANON;
}

bool draft_dir(enum nkind k)
{
	return kind_def(k)->drafts;
}
