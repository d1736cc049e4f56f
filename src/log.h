/* Logging to stderr, one line per event, in the kubelet's klog style:
 *   I1121 08:00:00.000000   1234 file.c:42] message
 * or, with log_set_format(LOG_FORMAT_JSON), one JSON object per line.
 * Levels: error, warning, info; info messages carry a verbosity (-v N) like klog's V(N). */
#pragma once

#include <stdarg.h>
#include <stdbool.h>

enum log_level { LOG_ERROR, LOG_WARNING, LOG_INFO };

enum log_format {
	LOG_FORMAT_TEXT, /* klog: I1121 08:00:00.000000   1234 file.c:42] message */
	LOG_FORMAT_JSON, /* one object per line: ts, level, v, caller, pid, msg */
};

/* Sets the format of the lines that follow (default text). */
void log_set_format(enum log_format format);

/* Sets the verbosity threshold: info messages with verbosity > level are dropped. */
void log_set_verbosity(int level);
bool log_enabled(int verbosity);

void log_write(enum log_level level, int verbosity, const char *file, int line, const char *fmt,
	       ...) __attribute__((format(printf, 5, 6)));

/* log_write() with the arguments in a va_list. */
void log_vwrite(enum log_level level, int verbosity, const char *file, int line, const char *fmt,
		va_list ap) __attribute__((format(printf, 5, 0)));

#define log_error(...)	 log_write(LOG_ERROR, 0, __FILE__, __LINE__, __VA_ARGS__)
#define log_warning(...) log_write(LOG_WARNING, 0, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...)	 log_write(LOG_INFO, 0, __FILE__, __LINE__, __VA_ARGS__)
/* Info at verbosity v: printed only with -v v or higher. */
#define log_debug(v, ...)                                                                          \
	do {                                                                                       \
		if (log_enabled(v))                                                                \
			log_write(LOG_INFO, (v), __FILE__, __LINE__, __VA_ARGS__);                 \
	} while (0)

/**
 * struct log_once - an event logged once per cause
 * @logged: whether it was logged yet
 * @cause:  the cause (an -errno, or 0) it was last logged with
 *
 * Its line goes out again only when the cause changes; repeats are logged at
 * verbosity 1. Zeroed: nothing logged yet.
 */
struct log_once {
	bool logged;
	int cause;
};

/**
 * log_once_write() - log an event unless this cause was just logged
 * @once:  the event's state, updated to @cause
 * @cause: why it happened this time (an -errno, or 0)
 * @level: the level of a first line
 * @file:  source file of the caller
 * @line:  source line of the caller
 * @fmt:   printf format of the message, then its arguments
 *
 * Logs like log_write() at @level, or at verbosity 1 when @once last logged the same
 * @cause. Use log_error_once(), log_warning_once() or log_info_once(): they pass the
 * caller's __FILE__ and __LINE__.
 */
void log_once_write(struct log_once *once, int cause, enum log_level level, const char *file,
		    int line, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#define log_error_once(once, cause, ...)                                                           \
	log_once_write(once, cause, LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warning_once(once, cause, ...)                                                         \
	log_once_write(once, cause, LOG_WARNING, __FILE__, __LINE__, __VA_ARGS__)
#define log_info_once(once, cause, ...)                                                            \
	log_once_write(once, cause, LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
