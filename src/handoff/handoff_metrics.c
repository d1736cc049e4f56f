/* The handoff module's metrics source: offers, how they ended, how long they waited,
 * rescues, failed consumer connections and pending sockets, read from the handoff at
 * scrape time. */
#include "handoff.h"
#include "../metrics/metrics.h"
#include "../util.h"

/* A VM start: the consumer connects once qemu is exec'd, from under a second to many
 * minutes when the image is pulled or a migration target waits. */
static const double wait_buckets[] = {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};

void handoff_metrics_observe_wait(struct handoff_stats *st, double seconds)
{
	metrics_histogram_observe(&st->wait, wait_buckets, ARRAY_SIZE(wait_buckets), seconds);
}

void handoff_metrics_write(struct metrics_writer *w, const void *handoff)
{
	const struct handoff_stats *st = handoff_stats(handoff);

	metrics_counter(w, "handoff_offers_total", "Handoff sockets created for allocations.",
			st->offered);
	metrics_family(
	    w, "handoffs_total", METRICS_COUNTER,
	    "Ended handoff offers by outcome: consumed (fd taken and acknowledged), "
	    "expired (unclaimed after --handoff-ttl), replaced (the device was allocated "
	    "again), abandoned (no pod holds the device any more, per the PodResources "
	    "API), withdrawn (its Allocate failed before the kubelet was told).");
	metrics_sample_labelled(w, "outcome", "consumed", st->consumed);
	metrics_sample_labelled(w, "outcome", "expired", st->expired);
	metrics_sample_labelled(w, "outcome", "replaced", st->replaced);
	metrics_sample_labelled(w, "outcome", "abandoned", st->abandoned);
	metrics_sample_labelled(w, "outcome", "withdrawn", st->withdrawn);
	metrics_family(w, "handoff_rescues_total", METRICS_COUNTER,
		       "Sockets a dead instance left that were served again with a fresh iommufd "
		       "(outcome ok), or removed because that failed (outcome failed).");
	metrics_sample_labelled(w, "outcome", "ok", st->rescued);
	metrics_sample_labelled(w, "outcome", "failed", st->rescue_failures);
	metrics_family(w, "handoff_connections_failed_total", METRICS_COUNTER,
		       "Consumer connections that did not consume the fd: peer_gone (hung up "
		       "before acknowledging), ack_timeout (no ACK within --ack-timeout), refused, "
		       "unauthorized (a uid not in --allowed-uids).");
	metrics_sample_labelled(w, "reason", "peer_gone", st->peer_gone);
	metrics_sample_labelled(w, "reason", "ack_timeout", st->ack_timeouts);
	metrics_sample_labelled(w, "reason", "refused", st->refused);
	metrics_sample_labelled(w, "reason", "unauthorized", st->unauthorized);
	metrics_histogram(w, "handoff_wait_seconds",
			  "Time from an offer (Allocate, or the re-serving of a dead instance's "
			  "socket) to its consumer's ACK, for consumed offers.",
			  &st->wait, wait_buckets, ARRAY_SIZE(wait_buckets));
	metrics_gauge(w, "handoff_pending_sockets",
		      "Handoff sockets waiting for their consumer now.", handoff_pending(handoff));
}
