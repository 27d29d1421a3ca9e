// SPDX-License-Identifier: MIT
/* faultrelay: what its flags plan (faultrelay_plan.c) and the relay (faultrelay.c) runs. */
#ifndef FAULTRELAY_H
#define FAULTRELAY_H

#include <stdint.h>

#define CAPTURE_BYTES 200            /* what --capture keeps of each connection */
#define MAX_FAULTS 1024

enum fault_kind { FAULT_NONE, FAULT_RESET, FAULT_STALL, FAULT_BLACKHOLE, FAULT_DELAY };
extern const char *const fault_names[];  /* by enum fault_kind */

struct fault {
	unsigned conn;               /* in accept order from 0 */
	enum fault_kind kind;
	uint64_t at;                 /* bytes forwarded, both directions together */
};

struct relay_config {
	const char *listen_arg;
	struct addrinfo *listen, *upstream;
	const char *capture_dir;     /* NULL: no capture */
	struct fault faults[MAX_FAULTS];
	unsigned n_faults;
	unsigned delay_ms;           /* how long a delay fault holds its connection */
};

/* Fills config from the command line; prints usage and exits 2 on a bad flag, 0 after
 * --help. */
void parse_flags(int argc, char **argv, struct relay_config *config);

#endif
