/* Log lines a peer can cause at will: the first in full, then a count per interval.
 * See log_ratelimit.h. */
#include "log_ratelimit.h"
#include "../log.h"

static void log_ratelimit_flush(struct log_ratelimit *rl)
{
	if (!rl->suppressed)
		return;
	log_warning("%llu more %s in the last %llu s", rl->suppressed, rl->what,
		    (rl->interval_usec + 999999) / 1000000);
	rl->suppressed = 0;
}

/* An interval ends: a count opens the next one, none ends the burst. */
static void log_ratelimit_interval_end(void *data)
{
	struct log_ratelimit *rl = data;

	if (!rl->suppressed)
		return;
	log_ratelimit_flush(rl);
	loop_timer_arm(&rl->timer, rl->interval_usec);
}

void log_ratelimit_init(struct loop *loop, struct log_ratelimit *rl,
			unsigned long long interval_usec, const char *what)
{
	rl->interval_usec = interval_usec;
	rl->suppressed = 0;
	rl->what = what;
	loop_timer_init(loop, &rl->timer, log_ratelimit_interval_end, rl);
}

bool log_ratelimit_allow(struct log_ratelimit *rl)
{
	if (loop_timer_armed(&rl->timer)) {
		rl->suppressed++;
		return false;
	}
	loop_timer_arm(&rl->timer, rl->interval_usec);
	return true;
}

void log_ratelimit_destroy(struct log_ratelimit *rl)
{
	if (rl->what)
		log_ratelimit_flush(rl);
	loop_timer_destroy(&rl->timer);
}
