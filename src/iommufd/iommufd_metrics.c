/* The iommufd module's metrics sources: outcomes of IOMMU_OPTION_RLIMIT_MODE per open,
 * and whether the device node exists, read from the opener and the presence watch at
 * scrape time. */
#include "device_presence.h"
#include "iommufd.h"
#include "../metrics/metrics.h"

void iommufd_metrics_write(struct metrics_writer *w, const void *opener)
{
	const struct iommufd_stats *st = iommufd_opener_stats(opener);

	metrics_family(w, "rlimit_mode_outcomes_total", METRICS_COUNTER,
		       "Opens of the iommufd device by outcome of IOMMU_OPTION_RLIMIT_MODE: set, "
		       "unsupported (ENOTTY/EOPNOTSUPP), no_capability (EPERM), failed, "
		       "open_failed.");
	for (int o = 0; o < IOMMUFD_OUTCOME_COUNT; o++)
		metrics_sample_labelled(w, "outcome", iommufd_outcome_name(o), st->outcomes[o]);
}

void device_presence_metrics_write(struct metrics_writer *w, const void *presence)
{
	metrics_gauge(w, "device_present", "1 while the iommufd device node exists.",
		      device_presence_present(presence));
}
