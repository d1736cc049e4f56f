/* klog-style log lines on stderr. A line is formatted into one buffer and written
 * with a single write(2), so lines from concurrent processes never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_verbosity;

void log_set_verbosity(int level)
{
	log_verbosity = level;
}

bool log_enabled(int verbosity)
{
	return verbosity <= log_verbosity;
}

void log_write(enum log_level level, int verbosity, const char *file, int line, const char *fmt, ...)
{
	static const char letters[] = {'E', 'W', 'I'};
	char buf[2048];
	struct timeval tv;
	struct tm tm;
	va_list ap;

	if (!log_enabled(verbosity))
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	int n = snprintf(buf, sizeof(buf), "%c%02d%02d %02d:%02d:%02d.%06ld %7d %s:%d] ",
			 letters[level], tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (long)tv.tv_usec, (int)getpid(), base, line);
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* Nothing useful can be done if stderr is gone. */
	(void)!write(STDERR_FILENO, buf, (size_t)n);
}
