// SPDX-License-Identifier: MIT
/*
 * faultrelay's flags and its fault plan: --fault, and --random-faults drawn from a seed
 * (splitmix64, so a seed names one plan on every machine). See usage().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "faultrelay.h"

const char *const fault_names[] = { "none", "reset", "stall", "blackhole", "delay" };
static struct relay_config *cfg;

static void usage(FILE *f)
{
	fprintf(f,
"usage: faultrelay --listen HOST:PORT --upstream HOST:PORT [--fault CONN:KIND:AT]...\n"
"                  [--random-faults K:KIND --seed S --span BYTES [--among N]]\n"
"                  [--capture DIR]\n"
"\n"
"A TCP relay that injects faults, for the failover tests: accepts on --listen, connects\n"
"each accepted connection to --upstream and forwards both ways (splice through a 1 MiB\n"
"pipe per direction: a side that stops reading stops the relay reading its peer). EOF on\n"
"one side is passed on as a shutdown of the write side; a reset or error on one side\n"
"resets the other. Connections are numbered in accept order from 0.\n"
"\n"
"  --listen HOST:PORT     address to accept on (port 0: any free port; see 'listening')\n"
"  --upstream HOST:PORT   where each accepted connection is relayed to\n"
"  --fault CONN:KIND:AT   on connection CONN, once AT bytes (the two directions together,\n"
"                         suffixes K, M, G) have been forwarded, apply KIND; the relay\n"
"                         reads no more than AT bytes of it before then. AT 0: as soon as\n"
"                         the upstream connection is made. Repeatable, one per connection.\n"
"                         KIND is one of:\n"
"                           reset      SO_LINGER 0 and close both sockets: an RST each way\n"
"                           stall      stop reading and writing both ways, close nothing\n"
"                                      (the sockets stay open until the relay exits)\n"
"                           blackhole  keep reading both sides and drop the bytes; forward\n"
"                                      nothing, close nothing\n"
"                           delay      forward nothing either way for --delay-ms, then go\n"
"                                      on relaying (a handshake held up on one stream)\n"
"  --random-faults K:KIND also K faults of KIND on K distinct connections drawn among the\n"
"                         first --among, each at a point drawn in [1, --span)\n"
"  --seed S               seed of those draws (default 1); the same seed, the same plan\n"
"  --span BYTES           upper bound of the random points (needed by --random-faults)\n"
"  --among N              connections the random faults are drawn among (default 4: the\n"
"                         streams a stripe side opens first)\n"
"  --delay-ms MS          how long a delay fault holds its connection (default 1000)\n"
"  --capture DIR          write the first %d bytes the client side sends on connection N\n"
"                         to DIR/conn-N.bin (a stripe side's HELLO and AUTH frames)\n"
"  -h, --help             this text\n"
"\n"
"Prints one line per event on stdout, flushed:\n"
"  plan conn N KIND at BYTES          each planned fault, before listening\n"
"  listening PORT\n"
"  conn N accepted\n"
"  conn N connect failed: REASON      (then conn N closed)\n"
"  conn N fault KIND at BYTES\n"
"  conn N resumed                     a delay fault's time is up\n"
"  conn N error: REASON               a socket error; both sides are reset\n"
"  conn N closed                      the relay closed both sockets (also after a reset)\n"
"SIGUSR1 prints 'conn N STATE up BYTES down BYTES' for every connection still held\n"
"(STATE: connecting, relaying, stalled, blackholed or delayed), then 'held N'.\n"
"Exit status: 0 never (it runs until killed), 1 on a setup error, 2 on a bad flag.\n",
		CAPTURE_BYTES);
}

static void bad_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("faultrelay: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n\n", stderr);
	usage(stderr);
	exit(2);
}


/* ---- flags ------------------------------------------------------------------ */

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
	uint64_t v;

	if (parse_size(s, &v) || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static enum fault_kind parse_kind(const char *s)
{
	for (int k = FAULT_RESET; k <= FAULT_DELAY; k++)
		if (!strcmp(s, fault_names[k]))
			return (enum fault_kind)k;
	return FAULT_NONE;
}

static struct addrinfo *parse_addr(const char *flag, const char *arg, int passive)
{
	char host[256];
	const char *colon = strrchr(arg, ':');
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai;
	size_t n;
	int rc;

	if (!colon || colon == arg || !colon[1])
		bad_usage("%s %s: want HOST:PORT", flag, arg);
	n = (size_t)(colon - arg);
	if (arg[0] == '[' && colon[-1] == ']') {       /* [v6]:port */
		arg++;
		n -= 2;
	}
	if (n >= sizeof(host))
		bad_usage("%s: host too long", flag);
	memcpy(host, arg, n);
	host[n] = 0;
	if (passive)
		hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc)
		bad_usage("%s %s: %s", flag, arg, gai_strerror(rc));
	return ai;
}

static void add_fault(unsigned conn, enum fault_kind kind, uint64_t at)
{
	for (unsigned i = 0; i < cfg->n_faults; i++)
		if (cfg->faults[i].conn == conn)
			bad_usage("connection %u has two faults", conn);
	if (cfg->n_faults == MAX_FAULTS)
		bad_usage("more than %d faults", MAX_FAULTS);
	cfg->faults[cfg->n_faults++] = (struct fault){ conn, kind, at };
}

static void parse_fault(const char *arg)
{
	char buf[128], *kind, *at;
	unsigned conn;
	uint64_t bytes;
	enum fault_kind k;

	if (strlen(arg) >= sizeof(buf))
		bad_usage("--fault %s: too long", arg);
	strcpy(buf, arg);
	kind = strchr(buf, ':');
	at = kind ? strchr(kind + 1, ':') : NULL;
	if (!at)
		bad_usage("--fault %s: want CONN:KIND:AT", arg);
	*kind++ = 0;
	*at++ = 0;
	if (parse_uint(buf, UINT_MAX - 1, &conn))
		bad_usage("--fault %s: bad connection number '%s'", arg, buf);
	k = parse_kind(kind);
	if (k == FAULT_NONE)
		bad_usage("--fault %s: KIND is reset, stall, blackhole or delay, not '%s'", arg, kind);
	if (parse_size(at, &bytes))
		bad_usage("--fault %s: bad byte count '%s'", arg, at);
	add_fault(conn, k, bytes);
}

/* splitmix64: a small, seedable, well-mixed generator */
static uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int has_fault(unsigned conn)
{
	for (unsigned i = 0; i < cfg->n_faults; i++)
		if (cfg->faults[i].conn == conn)
			return 1;
	return 0;
}

/* K faults on K distinct connections among the first `among` that --fault left free,
 * each at a point in [1, span): a partial Fisher-Yates shuffle, then the points. */
static void plan_random(const char *spec, uint64_t seed, uint64_t span, unsigned among)
{
	char buf[64], *kind;
	unsigned k, n_free = 0, *free_conns;
	enum fault_kind kd;
	uint64_t rng = seed;

	if (strlen(spec) >= sizeof(buf) || !(kind = strchr(strcpy(buf, spec), ':')))
		bad_usage("--random-faults %s: want K:KIND", spec);
	*kind++ = 0;
	if (parse_uint(buf, MAX_FAULTS, &k) || k == 0)
		bad_usage("--random-faults %s: bad count '%s'", spec, buf);
	kd = parse_kind(kind);
	if (kd == FAULT_NONE)
		bad_usage("--random-faults %s: KIND is reset, stall, blackhole or delay, not '%s'",
			  spec, kind);
	if (span < 2)
		bad_usage("--random-faults needs --span of at least 2");
	if (among > MAX_FAULTS * 64)
		bad_usage("--among %u: too many", among);
	free_conns = calloc(among, sizeof(*free_conns));
	if (!free_conns)
		bad_usage("out of memory");
	for (unsigned c = 0; c < among; c++)
		if (!has_fault(c))
			free_conns[n_free++] = c;
	if (k > n_free)
		bad_usage("--random-faults %u: only %u of the first %u connections (--among) are "
			  "free of a --fault", k, n_free, among);
	for (unsigned i = 0; i < k; i++) {
		unsigned j = i + (unsigned)(next_random(&rng) % (n_free - i));
		unsigned c = free_conns[j];

		free_conns[j] = free_conns[i];
		free_conns[i] = c;
	}
	for (unsigned i = 0; i < k; i++)
		add_fault(free_conns[i], kd, 1 + next_random(&rng) % (span - 1));
	free(free_conns);
}


void parse_flags(int argc, char **argv, struct relay_config *config)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "upstream", required_argument, NULL, 'u' },
		{ "fault", required_argument, NULL, 'f' },
		{ "random-faults", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 's' },
		{ "span", required_argument, NULL, 'n' },
		{ "among", required_argument, NULL, 'a' },
		{ "capture", required_argument, NULL, 'c' },
		{ "delay-ms", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *random_spec = NULL;
	uint64_t seed = 1, span = 0;
	unsigned among = 4;
	int opt;

	cfg = config;
	cfg->delay_ms = 1000;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': cfg->listen_arg = optarg; break;
		case 'u': cfg->upstream = parse_addr("--upstream", optarg, 0); break;
		case 'f': parse_fault(optarg); break;
		case 'r': random_spec = optarg; break;
		case 's':
			if (parse_size(optarg, &seed))
				bad_usage("--seed %s: not a number", optarg);
			break;
		case 'n':
			if (parse_size(optarg, &span))
				bad_usage("--span %s: not a byte count", optarg);
			break;
		case 'a':
			if (parse_uint(optarg, UINT_MAX - 1, &among) || among == 0)
				bad_usage("--among %s: not a count", optarg);
			break;
		case 'c': cfg->capture_dir = optarg; break;
		case 'd':
			if (parse_uint(optarg, 3600 * 1000, &cfg->delay_ms))
				bad_usage("--delay-ms %s: not a count of milliseconds up to an hour",
					  optarg);
			break;
		case 'h': usage(stdout); exit(0);
		default:
			bad_usage("unknown flag or missing value: %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		bad_usage("unexpected argument: %s", argv[optind]);
	if (!cfg->listen_arg || !cfg->upstream)
		bad_usage("--listen and --upstream are needed");
	if (random_spec)
		plan_random(random_spec, seed, span, among);
	if (cfg->capture_dir) {
		struct stat st;

		if (stat(cfg->capture_dir, &st) < 0 || !S_ISDIR(st.st_mode))
			bad_usage("--capture %s: not a directory", cfg->capture_dir);
	}
	cfg->listen = parse_addr("--listen", cfg->listen_arg, 1);
}
