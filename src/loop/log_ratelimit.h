/* The one rate limit for a log line a peer can cause at will (a refused connection):
 * the first of a burst is logged in full, the rest are counted, and the count goes
 * out as one line per interval ("N more ... in the last 10 s") from a loop timer, so
 * a flood costs a few lines and the audit lines around it stay in the logs. */
#pragma once

#include "loop.h"

#include <stdbool.h>

/* One line per this while the flood lasts. */
#define LOG_RATELIMIT_INTERVAL_USEC (10ULL * 1000000)

struct log_ratelimit {
	struct loop_timer timer; /* armed while an interval is open */
	unsigned long long interval_usec;
	unsigned long long suppressed; /* events counted, not logged, in this interval */
	const char *what;	       /* static: "connections refused on handoff sockets" */
};

/**
 * log_ratelimit_init() - make a limit with no interval open
 * @loop:          the loop whose timer closes each interval
 * @rl:            the limit, embedded in its owner
 * @interval_usec: the interval (LOG_RATELIMIT_INTERVAL_USEC)
 * @what:          static text naming the events, for the count line
 */
void log_ratelimit_init(struct loop *loop, struct log_ratelimit *rl,
			unsigned long long interval_usec, const char *what);

/**
 * log_ratelimit_allow() - whether to log this event in full
 * @rl: the limit
 *
 * The first event with no interval open is logged (true) and opens one; each later
 * event in it is counted (false). When an interval closes with events counted, a
 * warning "N more <what> in the last S s" is logged and the next interval opens;
 * one that closes with none ends the burst.
 *
 * Return: true if the caller logs this event, false if it was counted.
 */
bool log_ratelimit_allow(struct log_ratelimit *rl);

/**
 * log_ratelimit_destroy() - log what is still counted and stop the timer
 * @rl: the limit; safe on a zeroed one
 */
void log_ratelimit_destroy(struct log_ratelimit *rl);
