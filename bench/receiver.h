/* The consumer's side of one handoff (docs/protocol.md), timed: the plugin's own
 * consumer library (iommufd_receive_on) behind a connect of ours, so the time runs
 * from the connect to the plugin closing its end after the ACK. */
#pragma once

#include "bench.h"

/* Connects to the handoff socket at path, receives the 0x00 byte and the fd (closed
 * at once), ACKs, and waits up to BENCH_WAIT_MS for each step and for the plugin to
 * close. Returns the time from connect to that close, in ns; dies on any failure. */
unsigned long long receiver_handoff(struct bench *b, const char *path);
