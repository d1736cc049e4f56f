/* The benchmark's figures and its table: see figures.h. */
#include "figures.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void figure_define(struct figures *t, int id, enum unit unit, const char *goal_text, double goal,
		   const char *go_text, const char *fmt, ...)
{
	struct figure *f = &t->f[id];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->name, sizeof(f->name), fmt, ap);
	va_end(ap);
	f->unit = unit;
	f->has_goal = goal_text != NULL;
	f->goal = goal;
	f->goal_text = goal_text ? goal_text : "-";
	f->go_text = go_text ? go_text : "-";
}

void figure_add(struct figures *t, int id, double value)
{
	struct figure *f = &t->f[id];

	if (f->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 16;
		f->v = xrealloc(f->v, f->cap * sizeof(*f->v));
	}
	f->v[f->n++] = value;
}

void figures_free(struct figures *t)
{
	for (int i = 0; i < F_COUNT; i++) {
		free(t->f[i].v);
		t->f[i] = (struct figure){0};
	}
}

/* Orders numbers ascending, NAN (no measurement) last. */
int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	if (isnan(x) || isnan(y))
		return isnan(x) - isnan(y);
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of n sorted values. */
double percentile(const double *sorted, size_t n, double p)
{
	size_t rank = (size_t)ceil(p / 100.0 * (double)n);

	return sorted[rank > 0 ? rank - 1 : 0];
}

static void format_value(char *buf, size_t size, enum unit unit, double v)
{
	if (isnan(v)) {
		snprintf(buf, size, "n/a");
		return;
	}
	static const struct {
		double scale;
		int decimals;
		const char *suffix;
	} units[] = {
	    [UNIT_MS] = {1e6, 2, " ms"}, [UNIT_US] = {1e3, 1, " us"}, [UNIT_KIB] = {1, 0, " KiB"},
	    [UNIT_BYTES] = {1, 1, " B"}, [UNIT_COUNT] = {1, 0, ""},   [UNIT_PERCENT] = {1, 0, " %"},
	};
	snprintf(buf, size, "%.*f%s", units[unit].decimals, v / units[unit].scale,
		 units[unit].suffix);
}

/* The median of n sorted values. */
static double median_of(const double *sorted, size_t n)
{
	return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

/* Prints the table (Markdown); returns the number of figures without a sample. */
int figures_print_table(struct figures *t)
{
	int missing = 0;

	printf("| %-44s | %12s | %-23s | %4s | %-12s | %-16s | %-4s |\n", "figure", "median",
	       "spread (min .. max)", "n", "goal", "Go plugin", "");
	printf("|:%.44s-|-%.12s:|:%.23s-|-%.4s:|:%.12s-|:%.16s-|:%.4s-|\n", DASHES, DASHES, DASHES,
	       DASHES, DASHES, DASHES, DASHES);
	for (int i = 0; i < F_COUNT; i++) {
		struct figure *f = &t->f[i];
		char median[32] = "MISSING", lo[32] = "", hi[32] = "", spread[64] = "-";
		const char *verdict = "";

		if (f->n > 0) {
			qsort(f->v, f->n, sizeof(*f->v), compare_double);
			double m = median_of(f->v, f->n);
			format_value(median, sizeof(median), f->unit, m);
			if (f->n > 1) {
				format_value(lo, sizeof(lo), f->unit, f->v[0]);
				format_value(hi, sizeof(hi), f->unit, f->v[f->n - 1]);
				snprintf(spread, sizeof(spread), "%s .. %s", lo, hi);
			}
			if (f->has_goal && !isnan(m))
				verdict = m <= f->goal ? "ok" : "MISS";
		} else {
			missing++;
		}
		printf("| %-44s | %12s | %-23s | %4zu | %-12s | %-16s | %-4s |\n", f->name, median,
		       spread, f->n, f->goal_text, f->go_text, verdict);
	}
	return missing;
}
