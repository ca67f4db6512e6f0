/* Unit tests of backends/ssh against real sshd processes on 127.0.0.1.
 *
 * The "sshd" test case's unchecked fixture (run once, in the runner process) makes host and
 * client keys with ssh-keygen and starts two `sshd -D -e` on free high ports with their own
 * host keys and an authorized_keys file in a temporary directory: A (used directly and as the
 * jump host), B (reached as 127.0.0.1:<portB> through A) and C (a legacy server taking only
 * SHA-1 "ssh-rsa" signatures from RSA keys). Its teardown kills them. When
 * sshd or ssh-keygen is missing, or sshd does not come up, those tests are skipped with a
 * loud message on stderr. The "local" case needs no sshd: key parsing, key generation,
 * refused and silent ports, bad arguments.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "../../backends/ssh.h"
#include "../../lib/util.h"
#include "suites.h"

#define SSHD "/usr/sbin/sshd"
#define KEYGEN "/usr/bin/ssh-keygen"
#define SSH "/usr/bin/ssh"
#define TMO 10000
#define MAXOUT (1024 * 1024)

/* ---- process helpers ---- */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run argv; stdout into out (NUL-terminated, cut to outlen-1), stderr to /dev/null.
 * Returns the exit status, or -1. */
static int run_capture(char *const argv[], char *out, size_t outlen)
{
	int pfd[2];
	if (pipe(pfd) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int dn = open("/dev/null", O_RDWR);
		dup2(pfd[1], 1);
		dup2(dn, 2);
		dup2(dn, 0);
		close(pfd[0]);
		close(pfd[1]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	size_t len = 0;
	char tmp[4096];
	ssize_t n;
	while ((n = read(pfd[0], tmp, sizeof(tmp))) > 0) {
		size_t k = (size_t)n;
		if (out && len + k >= outlen)
			k = outlen - 1 - len;
		if (out) {
			memcpy(out + len, tmp, k);
			len += k;
		}
	}
	if (out && outlen)
		out[len] = '\0';
	close(pfd[0]);
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	struct buf b;
	buf_init(&b, 1 << 20);
	char tmp[4096];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		if (buf_append(&b, tmp, n)) {
			buf_free(&b);
			fclose(f);
			return NULL;
		}
	fclose(f);
	char *p = buf_steal(&b, len);
	return p ? p : xstrdup("");
}

static int spit(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t n = strlen(s);
	int r = write(fd, s, n) == (ssize_t)n ? 0 : -EIO;
	close(fd);
	return r;
}

/* "TYPE BASE64" of an authorized_keys / .pub line (comment dropped), malloc'd. */
static char *key_id(const char *line)
{
	const char *sp = strchr(line, ' ');
	if (!sp)
		return NULL;
	const char *end = sp + 1;
	while (*end && *end != ' ' && *end != '\n')
		end++;
	return xstrndup(line, (size_t)(end - line));
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &sl) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

static bool port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* ---- keys ---- */

enum {
	K_ED25519,    /* OpenSSH format */
	K_ED25519_P8, /* PKCS#8 PEM "BEGIN PRIVATE KEY" */
	K_ECDSA,      /* OpenSSH format, P-256 */
	K_ECDSA_PEM,  /* SEC1 PEM "BEGIN EC PRIVATE KEY", P-384 */
	K_ECDSA521,   /* OpenSSH format, P-521 */
	K_RSA,	      /* OpenSSH format, 2048 */
	K_RSA_PEM,    /* PKCS#1 PEM, 2048 */
	K_PROJECT,    /* sshc_generate_key: RSA 3072 PEM */
	K_WRONG,      /* ed25519, not authorized */
	K_WRONG_RSA,  /* RSA PEM, not authorized */
	K_HOST_A,     /* sshd A's ed25519 host key */
	K_HOST_A_EC,  /* sshd A's ecdsa host key */
	K_HOST_B,     /* sshd B's ed25519 host key */
	K_N
};

static const struct {
	const char *file;
	const char *keygen_args; /* NULL: made in C */
} KEYDEF[K_N] = {
	[K_ED25519] = {"ed25519", "-t ed25519"},
	[K_ED25519_P8] = {"ed25519_p8", NULL},
	[K_ECDSA] = {"ecdsa", "-t ecdsa -b 256"},
	[K_ECDSA_PEM] = {"ecdsa_pem", "-t ecdsa -b 384 -m PEM"},
	[K_ECDSA521] = {"ecdsa521", "-t ecdsa -b 521"},
	[K_RSA] = {"rsa", "-t rsa -b 2048"},
	[K_RSA_PEM] = {"rsa_pem", "-t rsa -b 2048 -m PEM"},
	[K_PROJECT] = {"project", NULL},
	[K_WRONG] = {"wrong", "-t ed25519"},
	[K_WRONG_RSA] = {"wrong_rsa", "-t rsa -b 2048 -m PEM"},
	[K_HOST_A] = {"hostA_ed25519", "-t ed25519"},
	[K_HOST_A_EC] = {"hostA_ecdsa", "-t ecdsa -b 256"},
	[K_HOST_B] = {"hostB_ed25519", "-t ed25519"},
};

struct key {
	char *text; /* private key */
	size_t len;
	char *pub; /* "TYPE BASE64" */
};

static struct {
	bool ready;
	char skip[256]; /* why the sshd tests are skipped */
	char dir[PATH_MAX];
	char user[64];
	struct key k[K_N];
	int port_a, port_b, port_c;
	pid_t pid_a, pid_b, pid_c;
} g;

static int make_key(int i, char *why, size_t whylen)
{
	char path[PATH_MAX], pubpath[PATH_MAX + 8];
	fmt_cut(path, sizeof(path), "%s/%s", g.dir, KEYDEF[i].file);
	fmt_cut(pubpath, sizeof(pubpath), "%s.pub", path);
	if (KEYDEF[i].keygen_args) {
		char args[64];
		fmt_cut(args, sizeof(args), "%s", KEYDEF[i].keygen_args);
		char *argv[16] = {(char *)KEYGEN, (char *)"-q", (char *)"-N", (char *)"",
				  (char *)"-C",	  (char *)"",	(char *)"-f", path};
		int n = 8;
		for (char *p = args; *p && n < 15;) { /* split on spaces */
			argv[n++] = p;
			while (*p && *p != ' ')
				p++;
			while (*p == ' ')
				*p++ = '\0';
		}
		argv[n] = NULL;
		if (run_capture(argv, NULL, 0) != 0) {
			fmt_cut(why, whylen, "ssh-keygen %s failed", KEYDEF[i].keygen_args);
			return -1;
		}
	} else if (i == K_PROJECT) {
		char *pem = NULL;
		size_t n = 0;
		if (sshc_generate_key(&pem, &n) != 0 || spit(path, pem) != 0) {
			free(pem);
			fmt_cut(why, whylen, "sshc_generate_key failed");
			return -1;
		}
		free(pem);
	} else {
		EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		FILE *f = fopen(path, "w");
		bool ok = pk && f && PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
		if (f)
			fclose(f);
		EVP_PKEY_free(pk);
		if (!ok) {
			fmt_cut(why, whylen, "cannot make a PKCS#8 Ed25519 key");
			return -1;
		}
	}
	g.k[i].text = slurp(path, &g.k[i].len);
	if (!g.k[i].text) {
		fmt_cut(why, whylen, "cannot read %s", path);
		return -1;
	}
	/* the public half as OpenSSH sees it (ssh-keygen -y cannot read PKCS#8 Ed25519) */
	char out[4096] = "";
	if (i == K_ED25519_P8) {
		char *pub = NULL;
		if (sshc_public_key(g.k[i].text, g.k[i].len, NULL, &pub) != 0) {
			fmt_cut(why, whylen, "sshc_public_key failed on a PKCS#8 Ed25519 key");
			return -1;
		}
		fmt_cut(out, sizeof(out), "%s", pub);
		free(pub);
	} else {
		char *argv[] = {(char *)KEYGEN, (char *)"-y", (char *)"-f", path, NULL};
		if (run_capture(argv, out, sizeof(out)) != 0) {
			fmt_cut(why, whylen, "ssh-keygen -y %s failed", path);
			return -1;
		}
	}
	g.k[i].pub = key_id(out);
	if (!g.k[i].pub) {
		fmt_cut(why, whylen, "no public key for %s", path);
		return -1;
	}
	return 0;
}

static pid_t start_sshd(const char *name, int port, const char *extra, char *why, size_t whylen)
{
	char conf[PATH_MAX], log[PATH_MAX], text[4096];
	fmt_cut(conf, sizeof(conf), "%s/sshd_%s.conf", g.dir, name);
	fmt_cut(log, sizeof(log), "%s/sshd_%s.log", g.dir, name);
	fmt_cut(text, sizeof(text),
		"Port %d\nListenAddress 127.0.0.1\n%sPidFile none\n"
		"AuthorizedKeysFile %s/authorized_keys\nStrictModes no\nUsePAM no\n"
		"PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
		"PubkeyAuthentication yes\nPermitRootLogin yes\nAllowTcpForwarding yes\n"
		"UseDNS no\nPrintMotd no\nMaxStartups 100\nMaxAuthTries 20\n"
		"LogLevel VERBOSE\n",
		port, extra, g.dir);
	if (spit(conf, text) != 0) {
		fmt_cut(why, whylen, "cannot write %s", conf);
		return -1;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		/* never outlive the test runner, whatever happens to it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int dn = open("/dev/null", O_RDONLY);
		dup2(dn, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(SSHD, SSHD, "-D", "-e", "-f", conf, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 250; i++) { /* up to 5 s */
		if (port_open(port))
			return pid;
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			char *l = slurp(log, NULL);
			fmt_cut(why, whylen, "sshd %s exited: %.150s", name, l ? l : "");
			free(l);
			return -1;
		}
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fmt_cut(why, whylen, "sshd %s did not listen on port %d", name, port);
	return -1;
}

static void stop_sshd(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {
			*pid = 0;
			return;
		}
		usleep(10000);
	}
	kill(*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	*pid = 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void env_teardown(void)
{
	stop_sshd(&g.pid_a);
	stop_sshd(&g.pid_b);
	stop_sshd(&g.pid_c);
	for (int i = 0; i < K_N; i++) {
		free(g.k[i].text);
		free(g.k[i].pub);
	}
	if (g.dir[0])
		nftw(g.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	memset(&g, 0, sizeof(g));
}

static void env_setup(void)
{
	char why[256] = "";
	memset(&g, 0, sizeof(g));
	if (access(SSHD, X_OK) != 0 || access(KEYGEN, X_OK) != 0) {
		fmt_cut(why, sizeof(why),
			"%s or %s is not installed (apt-get install "
			"openssh-server openssh-client)",
			SSHD, KEYGEN);
		goto skip;
	}
	struct passwd *pw = getpwuid(geteuid());
	if (!pw) {
		fmt_cut(why, sizeof(why), "no passwd entry for uid %d", (int)geteuid());
		goto skip;
	}
	fmt_cut(g.user, sizeof(g.user), "%s", pw->pw_name);
	/* sshd running as root needs its privilege separation directory */
	if (geteuid() == 0)
		(void)mkdir("/run/sshd", 0755);
	fmt_cut(g.dir, sizeof(g.dir), "/tmp/fleetfs-ssh-XXXXXX");
	if (!mkdtemp(g.dir)) {
		g.dir[0] = '\0';
		fmt_cut(why, sizeof(why), "mkdtemp: %s", strerror(errno));
		goto skip;
	}
	for (int i = 0; i < K_N; i++)
		if (make_key(i, why, sizeof(why)))
			goto skip;
	struct buf ak;
	buf_init(&ak, 1 << 20);
	for (int i = 0; i < K_N; i++)
		if (i != K_WRONG && i != K_WRONG_RSA && i < K_HOST_A)
			(void)buf_printf(&ak, "%s test-%s\n", g.k[i].pub, KEYDEF[i].file);
	char path[PATH_MAX];
	fmt_cut(path, sizeof(path), "%s/authorized_keys", g.dir);
	int r = spit(path, ak.data);
	buf_free(&ak);
	if (r) {
		fmt_cut(why, sizeof(why), "cannot write %s", path);
		goto skip;
	}
	char hk[2 * PATH_MAX + 64];
	g.port_a = free_port();
	fmt_cut(hk, sizeof(hk), "HostKey %s/%s\nHostKey %s/%s\n", g.dir, KEYDEF[K_HOST_A].file,
		g.dir, KEYDEF[K_HOST_A_EC].file);
	g.pid_a = start_sshd("A", g.port_a, hk, why, sizeof(why));
	if (g.pid_a <= 0)
		goto skip;
	g.port_b = free_port();
	fmt_cut(hk, sizeof(hk), "HostKey %s/%s\n", g.dir, KEYDEF[K_HOST_B].file);
	g.pid_b = start_sshd("B", g.port_b, hk, why, sizeof(why));
	if (g.pid_b <= 0)
		goto skip;
	/* C: a legacy server that takes only SHA-1 "ssh-rsa" signatures from RSA keys */
	g.port_c = free_port();
	fmt_cut(hk, sizeof(hk), "HostKey %s/%s\nPubkeyAcceptedAlgorithms ssh-rsa,ssh-ed25519\n",
		g.dir, KEYDEF[K_HOST_B].file);
	g.pid_c = start_sshd("C", g.port_c, hk, why, sizeof(why));
	if (g.pid_c <= 0)
		goto skip;
	g.ready = true;
	return;
skip:
	fmt_cut(g.skip, sizeof(g.skip), "%s", why);
	fprintf(stderr, "\n*** test_ssh: SKIPPING the tests against a real sshd: %s ***\n\n", why);
	stop_sshd(&g.pid_a);
	stop_sshd(&g.pid_b);
	stop_sshd(&g.pid_c);
}

#define NEED_SSHD()                                                                                \
	do {                                                                                       \
		if (!g.ready) {                                                                    \
			fprintf(stderr, "*** test_ssh: %s SKIPPED (no sshd: %s) ***\n", __func__,  \
				g.skip);                                                           \
			return;                                                                    \
		}                                                                                  \
	} while (0)

static struct sshc_endpoint ep(int port, int key, const char *pin)
{
	struct sshc_endpoint e = {.host = "127.0.0.1",
				  .port = port,
				  .user = g.user,
				  .key = g.k[key].text,
				  .keylen = g.k[key].len,
				  .pin = pin};
	return e;
}

/* ---- against sshd ---- */

START_TEST(test_run_command)
{
	NEED_SSHD();
	struct sshc_endpoint t = ep(g.port_a, K_ED25519, NULL);
	struct sshc_result res = {0};
	char err[512] = "";
	int r = sshc_run(&t, NULL, "echo hello; echo oops >&2; exit 3", TMO, MAXOUT, &res, err,
			 sizeof(err));
	ck_assert_msg(r == 0, "%d %s", r, err);
	ck_assert_str_eq(err, ""); /* nothing to say on success */
	ck_assert_str_eq(res.out, "hello\n");
	ck_assert_uint_eq(res.outlen, 6);
	ck_assert_str_eq(res.errout, "oops\n");
	ck_assert_uint_eq(res.errlen, 5);
	ck_assert_int_eq(res.exit_status, 3);
	/* ed25519 is preferred when no pin says otherwise */
	ck_assert_str_eq(res.host_key, g.k[K_HOST_A].pub);
	ck_assert_str_eq(res.jump_key, "");
	sshc_result_free(&res);
	sshc_result_free(&res); /* twice is fine */

	/* no output at all: empty strings, not NULL; stdin is at EOF */
	struct sshc_result r2 = {0};
	ck_assert_int_eq(sshc_run(&t, NULL, "cat; true", TMO, MAXOUT, &r2, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(r2.out);
	ck_assert_ptr_nonnull(r2.errout);
	ck_assert_str_eq(r2.out, "");
	ck_assert_int_eq(r2.exit_status, 0);
	sshc_result_free(&r2);

	/* killed by a signal: 128 + its number, as a shell reports it */
	struct sshc_result r3 = {0};
	ck_assert_int_eq(sshc_run(&t, NULL, "kill -TERM $$", TMO, MAXOUT, &r3, err, sizeof(err)),
			 0);
	ck_assert_int_eq(r3.exit_status, 128 + 15);
	sshc_result_free(&r3);

	/* large output on both streams */
	struct sshc_result r4 = {0};
	r = sshc_run(&t, NULL,
		     "head -c 700000 /dev/zero | tr \"\\0\" x; head -c 300000 /dev/zero >&2", TMO,
		     MAXOUT, &r4, err, sizeof(err));
	ck_assert_msg(r == 0, "%d %s", r, err);
	ck_assert_uint_eq(r4.outlen, 700000);
	ck_assert_uint_eq(r4.errlen, 300000);
	ck_assert_int_eq(r4.out[699999], 'x');
	sshc_result_free(&r4);
}
END_TEST

START_TEST(test_output_cap)
{
	NEED_SSHD();
	struct sshc_endpoint t = ep(g.port_a, K_ED25519, NULL);
	struct sshc_result res = {0};
	char err[512] = "";
	int r = sshc_run(&t, NULL, "head -c 100000 /dev/zero", TMO, 1000, &res, err, sizeof(err));
	ck_assert_int_eq(r, -EFBIG);
	ck_assert(strstr(err, "stdout") != NULL);
	sshc_result_free(&res);
	r = sshc_run(&t, NULL, "head -c 1000 /dev/zero >&2", TMO, 1000, &res, err, sizeof(err));
	ck_assert_msg(r == 0, "%d %s", r, err); /* exactly the cap is fine */
	ck_assert_uint_eq(res.errlen, 1000);
	sshc_result_free(&res);
}
END_TEST

START_TEST(test_pinned_host_key)
{
	NEED_SSHD();
	char err[512] = "";
	/* the ed25519 pin; with a comment after it */
	char *pin = xasprintf("%s root@somewhere", g.k[K_HOST_A].pub);
	struct sshc_endpoint t = ep(g.port_a, K_ED25519, pin);
	struct sshc_result res = {0};
	int r = sshc_run(&t, NULL, "echo ok", TMO, MAXOUT, &res, err, sizeof(err));
	ck_assert_msg(r == 0, "%d %s", r, err);
	ck_assert_str_eq(res.host_key, g.k[K_HOST_A].pub);
	sshc_result_free(&res);
	free(pin);

	/* a pin of the server's other key type is honoured: that key is negotiated */
	t.pin = g.k[K_HOST_A_EC].pub;
	memset(&res, 0, sizeof(res));
	r = sshc_run(&t, NULL, "echo ok", TMO, MAXOUT, &res, err, sizeof(err));
	ck_assert_msg(r == 0, "%d %s", r, err);
	ck_assert_str_eq(res.host_key, g.k[K_HOST_A_EC].pub);
	ck_assert(strncmp(res.host_key, "ecdsa-sha2-nistp256 ", 20) == 0);
	sshc_result_free(&res);
}
END_TEST

START_TEST(test_wrong_pin)
{
	NEED_SSHD();
	char err[512] = "";
	/* another ed25519 key */
	struct sshc_endpoint t = ep(g.port_a, K_ED25519, g.k[K_HOST_B].pub);
	struct sshc_result res = {0};
	int r = sshc_run(&t, NULL, "echo ok", TMO, MAXOUT, &res, err, sizeof(err));
	ck_assert_int_eq(r, -EKEYREJECTED);
	ck_assert_str_eq(res.host_key, g.k[K_HOST_A].pub); /* the new key is reported */
	ck_assert(strstr(err, "differs") != NULL);
	ck_assert_ptr_null(res.out);
	sshc_result_free(&res);

	/* a type the server does not have: whatever it presents is refused */
	t.pin = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7";
	memset(&res, 0, sizeof(res));
	ck_assert_int_eq(sshc_run(&t, NULL, "echo ok", TMO, MAXOUT, &res, err, sizeof(err)),
			 -EKEYREJECTED);
	ck_assert_str_eq(res.host_key, g.k[K_HOST_A].pub);
	sshc_result_free(&res);

	/* garbage pin */
	t.pin = "nonsense";
	memset(&res, 0, sizeof(res));
	ck_assert_int_eq(sshc_run(&t, NULL, "echo ok", TMO, MAXOUT, &res, err, sizeof(err)),
			 -EKEYREJECTED);
	sshc_result_free(&res);
}
END_TEST

START_TEST(test_wrong_client_key)
{
	NEED_SSHD();
	char err[512] = "";
	int keys[] = {K_WRONG, K_WRONG_RSA};
	for (size_t i = 0; i < 2; i++) {
		struct sshc_endpoint t = ep(g.port_a, keys[i], g.k[K_HOST_A].pub);
		struct sshc_result res = {0};
		int r = sshc_run(&t, NULL, "echo ok", TMO, MAXOUT, &res, err, sizeof(err));
		ck_assert_msg(r == -EACCES, "%s: %d %s", KEYDEF[keys[i]].file, r, err);
		ck_assert(strstr(err, "refused") != NULL);
		ck_assert_str_eq(res.host_key, g.k[K_HOST_A].pub);
		sshc_result_free(&res);
	}
	/* right key, wrong user */
	struct sshc_endpoint t = ep(g.port_a, K_ED25519, NULL);
	t.user = "fleetfs-no-such-user";
	struct sshc_result res = {0};
	ck_assert_int_eq(sshc_run(&t, NULL, "echo ok", TMO, MAXOUT, &res, err, sizeof(err)),
			 -EACCES);
	sshc_result_free(&res);
}
END_TEST

START_TEST(test_key_types)
{
	NEED_SSHD();
	int keys[] = {K_ED25519,  K_ED25519_P8, K_ECDSA,   K_ECDSA_PEM,
		      K_ECDSA521, K_RSA,	K_RSA_PEM, K_PROJECT};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		int k = keys[i];
		struct sshc_endpoint t = ep(g.port_a, k, g.k[K_HOST_A].pub);
		struct sshc_result res = {0};
		char err[512] = "";
		int r = sshc_run(&t, NULL, "echo ok", TMO, MAXOUT, &res, err, sizeof(err));
		ck_assert_msg(r == 0, "%s: %d %s", KEYDEF[k].file, r, err);
		ck_assert_str_eq(err, "");
		ck_assert_str_eq(res.out, "ok\n");
		ck_assert_int_eq(res.exit_status, 0);
		sshc_result_free(&res);
	}
}
END_TEST

/* RSA keys fall back to ssh-rsa (SHA-1) on servers that refuse rsa-sha2-512. */
START_TEST(test_rsa_legacy_server)
{
	NEED_SSHD();
	int keys[] = {K_RSA, K_RSA_PEM, K_PROJECT, K_ED25519};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		struct sshc_endpoint t = ep(g.port_c, keys[i], g.k[K_HOST_B].pub);
		struct sshc_result res = {0};
		char err[512] = "";
		int r = sshc_run(&t, NULL, "echo legacy", TMO, MAXOUT, &res, err, sizeof(err));
		ck_assert_msg(r == 0, "%s: %d %s", KEYDEF[keys[i]].file, r, err);
		ck_assert_str_eq(res.out, "legacy\n");
		sshc_result_free(&res);
	}
	/* an ECDSA key is not accepted there at all */
	struct sshc_endpoint t = ep(g.port_c, K_ECDSA, NULL);
	struct sshc_result res = {0};
	char err[512] = "";
	ck_assert_int_eq(sshc_run(&t, NULL, "true", TMO, MAXOUT, &res, err, sizeof(err)), -EACCES);
	sshc_result_free(&res);
}
END_TEST

/* The project key works with OpenSSH's own client too. */
START_TEST(test_project_key_with_openssh)
{
	NEED_SSHD();
	if (access(SSH, X_OK) != 0) {
		fprintf(stderr, "*** test_ssh: %s SKIPPED (no %s) ***\n", __func__, SSH);
		return;
	}
	char path[PATH_MAX], port[16], dest[128], out[256];
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/%s", g.dir, KEYDEF[K_PROJECT].file), 0);
	ck_assert_int_eq(fmt(port, sizeof(port), "%d", g.port_a), 0);
	ck_assert_int_eq(fmt(dest, sizeof(dest), "%s@127.0.0.1", g.user), 0);
	char *argv[] = {(char *)SSH,
			(char *)"-F",
			(char *)"/dev/null",
			(char *)"-i",
			path,
			(char *)"-o",
			(char *)"IdentitiesOnly=yes",
			(char *)"-o",
			(char *)"BatchMode=yes",
			(char *)"-o",
			(char *)"StrictHostKeyChecking=no",
			(char *)"-o",
			(char *)"UserKnownHostsFile=/dev/null",
			(char *)"-o",
			(char *)"ConnectTimeout=10",
			(char *)"-p",
			port,
			dest,
			(char *)"echo via-openssh",
			NULL};
	ck_assert_int_eq(run_capture(argv, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "via-openssh\n");
	ck_assert(strncmp(g.k[K_PROJECT].text, "-----BEGIN RSA PRIVATE KEY-----", 31) == 0);
}
END_TEST

START_TEST(test_jump_host)
{
	NEED_SSHD();
	/* target: the RSA project key (our own signing); jump: ed25519 (libssh2's) */
	struct sshc_endpoint t = ep(g.port_b, K_PROJECT, g.k[K_HOST_B].pub);
	struct sshc_endpoint j = ep(g.port_a, K_ED25519, g.k[K_HOST_A].pub);
	struct sshc_result res = {0};
	char err[512] = "";
	int r = sshc_run(&t, &j,
			 "head -c 500000 /dev/zero | tr \"\\0\" y; echo; echo to-stderr >&2; "
			 "exit 5",
			 TMO, MAXOUT, &res, err, sizeof(err));
	ck_assert_msg(r == 0, "%d %s", r, err);
	ck_assert_str_eq(err, "");
	ck_assert_uint_eq(res.outlen, 500001);
	ck_assert_int_eq(res.out[0], 'y');
	ck_assert_int_eq(res.out[499999], 'y');
	ck_assert_str_eq(res.errout, "to-stderr\n");
	ck_assert_int_eq(res.exit_status, 5);
	ck_assert_str_eq(res.host_key, g.k[K_HOST_B].pub);
	ck_assert_str_eq(res.jump_key, g.k[K_HOST_A].pub);
	sshc_result_free(&res);

	/* other key types on both sides, no pins */
	t = ep(g.port_b, K_ECDSA, NULL);
	j = ep(g.port_a, K_RSA, NULL);
	memset(&res, 0, sizeof(res));
	r = sshc_run(&t, &j, "echo through", TMO, MAXOUT, &res, err, sizeof(err));
	ck_assert_msg(r == 0, "%d %s", r, err);
	ck_assert_str_eq(res.out, "through\n");
	sshc_result_free(&res);
}
END_TEST

START_TEST(test_jump_errors)
{
	NEED_SSHD();
	char err[512] = "";
	struct sshc_result res = {0};
	/* the jump host's key is pinned too */
	struct sshc_endpoint t = ep(g.port_b, K_ED25519, g.k[K_HOST_B].pub);
	struct sshc_endpoint j = ep(g.port_a, K_ED25519, g.k[K_HOST_B].pub);
	ck_assert_int_eq(sshc_run(&t, &j, "true", TMO, MAXOUT, &res, err, sizeof(err)),
			 -EKEYREJECTED);
	ck_assert_str_eq(res.jump_key, g.k[K_HOST_A].pub);
	ck_assert_str_eq(res.host_key, "");
	ck_assert(strstr(err, "jump host") != NULL);
	sshc_result_free(&res);

	/* the target's pin, through the jump host */
	t.pin = g.k[K_HOST_A].pub;
	j.pin = g.k[K_HOST_A].pub;
	memset(&res, 0, sizeof(res));
	ck_assert_int_eq(sshc_run(&t, &j, "true", TMO, MAXOUT, &res, err, sizeof(err)),
			 -EKEYREJECTED);
	ck_assert_str_eq(res.host_key, g.k[K_HOST_B].pub);
	ck_assert_str_eq(res.jump_key, g.k[K_HOST_A].pub);
	sshc_result_free(&res);

	/* refused at the target, through the jump host */
	t = ep(g.port_b, K_WRONG, NULL);
	memset(&res, 0, sizeof(res));
	ck_assert_int_eq(sshc_run(&t, &j, "true", TMO, MAXOUT, &res, err, sizeof(err)), -EACCES);
	sshc_result_free(&res);

	/* refused at the jump host */
	t = ep(g.port_b, K_ED25519, NULL);
	j = ep(g.port_a, K_WRONG_RSA, NULL);
	memset(&res, 0, sizeof(res));
	ck_assert_int_eq(sshc_run(&t, &j, "true", TMO, MAXOUT, &res, err, sizeof(err)), -EACCES);
	ck_assert(strstr(err, "jump host") != NULL);
	sshc_result_free(&res);

	/* nothing listens behind the jump host */
	int closed = free_port();
	t = ep(closed, K_ED25519, NULL);
	j = ep(g.port_a, K_ED25519, NULL);
	memset(&res, 0, sizeof(res));
	int r = sshc_run(&t, &j, "true", TMO, MAXOUT, &res, err, sizeof(err));
	ck_assert_msg(r == -ECONNREFUSED, "%d %s", r, err);
	sshc_result_free(&res);
}
END_TEST

START_TEST(test_command_timeout)
{
	NEED_SSHD();
	char err[512] = "";
	struct sshc_endpoint t = ep(g.port_a, K_ED25519, NULL);
	struct sshc_result res = {0};
	int64_t t0 = mono_ms();
	int r = sshc_run(&t, NULL, "sleep 10", 1500, MAXOUT, &res, err, sizeof(err));
	int64_t dt = mono_ms() - t0;
	ck_assert_int_eq(r, -ETIMEDOUT);
	ck_assert_msg(dt >= 1400 && dt < 2500, "took %lld ms", (long long)dt);
	ck_assert(strstr(err, "timed out") != NULL);
	sshc_result_free(&res);

	/* output that never stops: the deadline holds while bytes keep flowing */
	memset(&res, 0, sizeof(res));
	t0 = mono_ms();
	r = sshc_run(&t, NULL, "yes", 1500, 32 * 1024 * 1024, &res, err, sizeof(err));
	dt = mono_ms() - t0;
	ck_assert_msg(r == -ETIMEDOUT || r == -EFBIG, "%d %s", r, err);
	ck_assert_msg(dt < 2500, "took %lld ms", (long long)dt);
	sshc_result_free(&res);

	/* through the jump host */
	struct sshc_endpoint j = ep(g.port_a, K_ED25519, NULL);
	t = ep(g.port_b, K_ED25519, NULL);
	memset(&res, 0, sizeof(res));
	t0 = mono_ms();
	r = sshc_run(&t, &j, "sleep 10", 1500, MAXOUT, &res, err, sizeof(err));
	dt = mono_ms() - t0;
	ck_assert_int_eq(r, -ETIMEDOUT);
	ck_assert_msg(dt >= 1400 && dt < 2500, "took %lld ms", (long long)dt);
	sshc_result_free(&res);
}
END_TEST

struct par {
	bool jump;
	int rc;
	char out[64];
};

static void *par_run(void *arg)
{
	struct par *p = arg;
	struct sshc_endpoint t = ep(p->jump ? g.port_b : g.port_a, K_ED25519, NULL);
	struct sshc_endpoint j = ep(g.port_a, K_PROJECT, g.k[K_HOST_A].pub);
	struct sshc_result res = {0};
	char err[512] = "";
	p->rc = sshc_run(&t, p->jump ? &j : NULL, "echo par; head -c 100000 /dev/zero", TMO, MAXOUT,
			 &res, err, sizeof(err));
	if (p->rc == 0)
		fmt_cut(p->out, sizeof(p->out), "%.4s %zu", res.out, res.outlen);
	sshc_result_free(&res);
	return NULL;
}

/* Calls in parallel threads share nothing. */
START_TEST(test_concurrent)
{
	NEED_SSHD();
	pthread_t th[6];
	struct par p[6];
	for (int i = 0; i < 6; i++) {
		p[i] = (struct par){.jump = i % 2 == 1};
		ck_assert_int_eq(pthread_create(&th[i], NULL, par_run, &p[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(p[i].rc, 0);
		ck_assert_str_eq(p[i].out, "par\n 100004");
	}
}
END_TEST

START_TEST(test_timing)
{
	NEED_SSHD();
	const int n = 5;
	int keys[] = {K_ED25519, K_PROJECT};
	for (size_t k = 0; k < 2; k++) {
		int64_t t0 = mono_ms();
		for (int i = 0; i < n; i++) {
			struct sshc_endpoint t = ep(g.port_a, keys[k], g.k[K_HOST_A].pub);
			struct sshc_result res = {0};
			char err[512] = "";
			ck_assert_int_eq(
				sshc_run(&t, NULL, "true", TMO, MAXOUT, &res, err, sizeof(err)), 0);
			sshc_result_free(&res);
		}
		int64_t per = (mono_ms() - t0) / n;
		fprintf(stderr,
			"test_ssh: one sshc_run on loopback (%s key, ASan build): %lld ms\n",
			KEYDEF[keys[k]].file, (long long)per);
		ck_assert_int_lt(per, 3000);
	}
}
END_TEST

/* ---- key functions (against ssh-keygen's view of the same keys) ---- */

START_TEST(test_public_keys)
{
	NEED_SSHD(); /* the keys come from the fixture */
	for (int i = 0; i < K_N; i++) {
		char *pub = NULL;
		ck_assert_int_eq(sshc_public_key(g.k[i].text, g.k[i].len, NULL, &pub), 0);
		ck_assert_msg(strcmp(pub, g.k[i].pub) == 0, "%s: %s vs %s", KEYDEF[i].file, pub,
			      g.k[i].pub);
		free(pub);
		ck_assert_int_eq(sshc_public_key(g.k[i].text, g.k[i].len, "fleet key", &pub), 0);
		char *want = xasprintf("%s fleet key", g.k[i].pub);
		ck_assert_str_eq(pub, want);
		free(want);
		free(pub);
	}
	char *pub = NULL;
	ck_assert_int_eq(sshc_public_key(g.k[0].text, g.k[0].len, "two\nlines", &pub), -EINVAL);
	ck_assert_ptr_null(pub);
}
END_TEST

/* ---- local (no sshd) ---- */

START_TEST(test_generate_key)
{
	char *pem = NULL;
	size_t n = 0;
	ck_assert_int_eq(sshc_generate_key(&pem, &n), 0);
	ck_assert_uint_eq(strlen(pem), n);
	ck_assert(strncmp(pem, "-----BEGIN RSA PRIVATE KEY-----\n", 32) == 0);
	BIO *bio = BIO_new_mem_buf(pem, (int)n);
	EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	ck_assert_ptr_nonnull(pk);
	ck_assert_int_eq(EVP_PKEY_get_base_id(pk), EVP_PKEY_RSA);
	ck_assert_int_eq(EVP_PKEY_get_bits(pk), 3072);
	EVP_PKEY_free(pk);
	BIO_free(bio);
	char *pub = NULL;
	ck_assert_int_eq(sshc_public_key(pem, n, "p", &pub), 0);
	ck_assert(strncmp(pub, "ssh-rsa AAAAB3NzaC1yc2E", 23) == 0);
	free(pub);
	/* two keys differ */
	char *pem2 = NULL;
	ck_assert_int_eq(sshc_generate_key(&pem2, NULL), 0);
	ck_assert(strcmp(pem, pem2) != 0);
	free(pem);
	free(pem2);
}
END_TEST

/* A known Ed25519 key in the OpenSSH format and its public half (made with ssh-keygen). */
static const char OSSH_ED25519[] =
	"-----BEGIN OPENSSH PRIVATE KEY-----\n"
	"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
	"QyNTUxOQAAACDPPOP1GwG/i+HQMb82iOU54FO230SRFLeouR0pzk7r0AAAAJCqcrmIqnK5\n"
	"iAAAAAtzc2gtZWQyNTUxOQAAACDPPOP1GwG/i+HQMb82iOU54FO230SRFLeouR0pzk7r0A\n"
	"AAAECqgvqGxHfcfFHRp8viaq5gz63lKg1cJykl8X5Shh/rqc884/UbAb+L4dAxvzaI5Tng\n"
	"U7bfRJEUt6i5HSnOTuvQAAAADHRlc3RAZmxlZXRmcwE=\n"
	"-----END OPENSSH PRIVATE KEY-----\n";
static const char OSSH_ED25519_PUB[] =
	"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM884/UbAb+L4dAxvzaI5TngU7bfRJEUt6i5HSnOTuvQ";

START_TEST(test_bad_keys)
{
	char *pub = NULL;
	ck_assert_int_eq(sshc_public_key(OSSH_ED25519, strlen(OSSH_ED25519), NULL, &pub), 0);
	ck_assert_str_eq(pub, OSSH_ED25519_PUB);
	free(pub);
	pub = NULL;

	const char *bad[] = {
		"",
		"not a key",
		"-----BEGIN OPENSSH PRIVATE KEY-----\n!!!!\n-----END OPENSSH PRIVATE KEY-----\n",
		"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
		"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n",
		"-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(sshc_public_key(bad[i], strlen(bad[i]), NULL, &pub), -EINVAL);
		ck_assert_ptr_null(pub);
	}
	/* every truncation of a good key fails cleanly or parses (never reads past len) */
	size_t len = strlen(OSSH_ED25519);
	for (size_t n = 0; n < len; n++) {
		char *cut = xmalloc(n ? n : 1);
		memcpy(cut, OSSH_ED25519, n);
		if (sshc_public_key(cut, n, NULL, &pub) == 0)
			free(pub);
		pub = NULL;
		free(cut);
	}
	/* a bad key fails before any connection is tried (port 1 would be refused) */
	struct sshc_endpoint t = {
		.host = "127.0.0.1", .port = 1, .user = "u", .key = "junk", .keylen = 4};
	struct sshc_result res = {0};
	char err[512] = "";
	ck_assert_int_eq(sshc_run(&t, NULL, "true", 2000, 100, &res, err, sizeof(err)), -EINVAL);
	ck_assert(strstr(err, "bad key") != NULL);
	sshc_result_free(&res);

	/* passphrase-protected keys are refused with a reason, never prompted for */
	char dir[] = "/tmp/fleetfs-sshkey-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char path[PATH_MAX];
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/enc", dir), 0);
	if (access(KEYGEN, X_OK) == 0) {
		char *argv[] = {(char *)KEYGEN,	   (char *)"-q", (char *)"-t",
				(char *)"ed25519", (char *)"-N", (char *)"secret",
				(char *)"-f",	   path,	 NULL};
		ck_assert_int_eq(run_capture(argv, NULL, 0), 0);
		size_t kl = 0;
		char *k = slurp(path, &kl);
		ck_assert_ptr_nonnull(k);
		t.key = k;
		t.keylen = kl;
		ck_assert_int_eq(sshc_run(&t, NULL, "true", 2000, 100, &res, err, sizeof(err)),
				 -EINVAL);
		ck_assert(strstr(err, "passphrase") != NULL);
		/* its public half is in clear */
		ck_assert_int_eq(sshc_public_key(k, kl, NULL, &pub), 0);
		free(pub);
		free(k);
	}
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ck_assert_ptr_nonnull(pk);
	BIO *bio = BIO_new(BIO_s_mem());
	ck_assert(PEM_write_bio_PrivateKey(bio, pk, EVP_aes_128_cbc(), NULL, 0, NULL,
					   (void *)"secret"));
	char *p = NULL;
	long pl = BIO_get_mem_data(bio, &p);
	t.key = p;
	t.keylen = (size_t)pl;
	ck_assert_int_eq(sshc_run(&t, NULL, "true", 2000, 100, &res, err, sizeof(err)), -EINVAL);
	BIO_free(bio);
	EVP_PKEY_free(pk);
	(void)remove(path);
	char pubpath[PATH_MAX + 8];
	ck_assert_int_eq(fmt(pubpath, sizeof(pubpath), "%s.pub", path), 0);
	(void)remove(pubpath);
	(void)remove(dir);
}
END_TEST

START_TEST(test_closed_port)
{
	int port = free_port();
	ck_assert_int_gt(port, 0);
	struct sshc_endpoint t = {.host = "127.0.0.1",
				  .port = port,
				  .user = "u",
				  .key = OSSH_ED25519,
				  .keylen = strlen(OSSH_ED25519)};
	struct sshc_result res = {0};
	char err[512] = "";
	ck_assert_int_eq(sshc_run(&t, NULL, "true", 3000, 100, &res, err, sizeof(err)),
			 -ECONNREFUSED);
	ck_assert(strstr(err, "cannot connect") != NULL);
	ck_assert_str_eq(res.host_key, "");
	sshc_result_free(&res);
	/* also as a jump host */
	struct sshc_endpoint j = t;
	t.port = 22;
	ck_assert_int_eq(sshc_run(&t, &j, "true", 3000, 100, &res, err, sizeof(err)),
			 -ECONNREFUSED);
	ck_assert(strstr(err, "jump host") != NULL);
	sshc_result_free(&res);
}
END_TEST

/* A listener that accepts (in the kernel) and never says a word: the banner wait times out. */
START_TEST(test_silent_server_times_out)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
	struct sshc_endpoint t = {.host = "127.0.0.1",
				  .port = ntohs(a.sin_port),
				  .user = "u",
				  .key = OSSH_ED25519,
				  .keylen = strlen(OSSH_ED25519)};
	struct sshc_result res = {0};
	char err[512] = "";
	int64_t t0 = mono_ms();
	int r = sshc_run(&t, NULL, "true", 700, 100, &res, err, sizeof(err));
	int64_t dt = mono_ms() - t0;
	ck_assert_int_eq(r, -ETIMEDOUT);
	ck_assert_msg(dt >= 650 && dt < 1500, "took %lld ms", (long long)dt);
	ck_assert(strstr(err, "timed out") != NULL);
	sshc_result_free(&res);
	close(fd);
}
END_TEST

START_TEST(test_invalid_args)
{
	struct sshc_endpoint t = {.host = "127.0.0.1",
				  .port = 22,
				  .user = "u",
				  .key = OSSH_ED25519,
				  .keylen = strlen(OSSH_ED25519)};
	struct sshc_result res = {0};
	char err[128];
	ck_assert_int_eq(sshc_run(NULL, NULL, "true", 1000, 100, &res, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(sshc_run(&t, NULL, NULL, 1000, 100, &res, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(sshc_run(&t, NULL, "true", 0, 100, &res, err, sizeof(err)), -EINVAL);
	t.port = 70000;
	ck_assert_int_eq(sshc_run(&t, NULL, "true", 1000, 100, &res, err, sizeof(err)), -EINVAL);
	t.port = 22;
	t.user = "";
	ck_assert_int_eq(sshc_run(&t, NULL, "true", 1000, 100, &res, err, sizeof(err)), -EINVAL);
	t.user = "u";
	struct sshc_endpoint j = t;
	j.host = NULL;
	ck_assert_int_eq(sshc_run(&t, &j, "true", 1000, 100, &res, NULL, 0), -EINVAL);
	sshc_result_free(&res);
	ck_assert_int_eq(sshc_global_init(), 0);
	ck_assert_int_eq(sshc_global_init(), 0);
}
END_TEST

/* A name that does not resolve fails within the timeout, resolver or not. */
START_TEST(test_unresolvable)
{
	struct sshc_endpoint t = {.host = "no-such-host.invalid",
				  .port = 22,
				  .user = "u",
				  .key = OSSH_ED25519,
				  .keylen = strlen(OSSH_ED25519)};
	struct sshc_result res = {0};
	char err[512] = "";
	int64_t t0 = mono_ms();
	int r = sshc_run(&t, NULL, "true", 2000, 100, &res, err, sizeof(err));
	int64_t dt = mono_ms() - t0;
	ck_assert_msg(r == -EHOSTUNREACH || r == -ETIMEDOUT, "%d %s", r, err);
	ck_assert_msg(dt < 3000, "took %lld ms", (long long)dt);
	sshc_result_free(&res);
}
END_TEST

Suite *ssh_suite(void)
{
	Suite *s = suite_create("ssh");
	TCase *local = tcase_create("local");
	TCase *sshd = tcase_create("sshd");
	tcase_set_timeout(local, 30);
	tcase_add_test(local, test_generate_key);
	tcase_add_test(local, test_bad_keys);
	tcase_add_test(local, test_closed_port);
	tcase_add_test(local, test_silent_server_times_out);
	tcase_add_test(local, test_invalid_args);
	tcase_add_test(local, test_unresolvable);
	tcase_add_unchecked_fixture(sshd, env_setup, env_teardown);
	tcase_set_timeout(sshd, 60);
	tcase_add_test(sshd, test_run_command);
	tcase_add_test(sshd, test_output_cap);
	tcase_add_test(sshd, test_pinned_host_key);
	tcase_add_test(sshd, test_wrong_pin);
	tcase_add_test(sshd, test_wrong_client_key);
	tcase_add_test(sshd, test_key_types);
	tcase_add_test(sshd, test_rsa_legacy_server);
	tcase_add_test(sshd, test_project_key_with_openssh);
	tcase_add_test(sshd, test_public_keys);
	tcase_add_test(sshd, test_jump_host);
	tcase_add_test(sshd, test_jump_errors);
	tcase_add_test(sshd, test_command_timeout);
	tcase_add_test(sshd, test_concurrent);
	tcase_add_test(sshd, test_timing);
	suite_add_tcase(s, local);
	suite_add_tcase(s, sshd);
	return s;
}
