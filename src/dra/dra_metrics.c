/* The DRA service's metrics source: Prepare and Unprepare outcomes per claim, claims
 * restored at start, and the claims prepared now, read from its stats at scrape time. */
#include "dra_plugin.h"
#include "../metrics/metrics.h"

void dra_plugin_metrics_write(struct metrics_writer *w, const void *data)
{
	const struct dra_plugin_stats *st = dra_plugin_stats(data);

	metrics_counter(w, "dra_claims_prepared_total",
			"NodePrepareResources claims answered with devices (repeats count)",
			st->prepared);
	metrics_counter(w, "dra_claim_prepare_failures_total",
			"NodePrepareResources claims answered with an error", st->prepare_failures);
	metrics_counter(w, "dra_claims_unprepared_total", "prepared claims unprepared",
			st->unprepared);
	metrics_counter(w, "dra_claim_unprepare_failures_total",
			"NodeUnprepareResources claims answered with an error",
			st->unprepare_failures);
	metrics_counter(w, "dra_claims_restored_total",
			"prepared claims read back from the state dir at start", st->restored);
	metrics_gauge(w, "dra_claims", "claims prepared or being prepared on this node",
		      st->claims);
}
