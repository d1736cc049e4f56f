/* Logging to stderr, one line per event, in the kubelet's klog style:
 *   I1121 08:00:00.000000   1234 file.c:42] message
 * or, with log_set_format(LOG_FORMAT_JSON), one JSON object per line, where an event's
 * fields (log_fields()) are keys of their own; text lines show only the message.
 * Levels: error, warning, info; info messages carry a verbosity (-v N) like klog's V(N). */
#pragma once

#include <stdarg.h>
#include <stdbool.h>

enum log_level { LOG_ERROR, LOG_WARNING, LOG_INFO };

enum log_format {
	LOG_FORMAT_TEXT, /* klog: I1121 08:00:00.000000   1234 file.c:42] message */
	LOG_FORMAT_JSON, /* one object per line: ts, level, v, caller, pid, msg, fields */
};

/* One key of an event (device, socket, pod, namespace, peer_pid, uid, errno, reason):
 * a string or a number. Keys never repeat ts, level, v, caller, pid (the daemon's
 * own) or msg. */
struct log_field {
	const char *key;
	const char *text; /* a string field's value; NULL: left out of the line */
	long long number; /* a number field's value */
	bool numeric;
};

/**
 * LOG_STR() - a string field of an event
 * @k: its key
 * @v: its value; NULL leaves the field out of the line
 */
#define LOG_STR(k, v) ((struct log_field){.key = (k), .text = (v)})
/**
 * LOG_NUM() - a number field of an event
 * @k: its key
 * @v: its value, any integer
 */
#define LOG_NUM(k, v) ((struct log_field){.key = (k), .number = (long long)(v), .numeric = true})
/**
 * LOG_FIELDS() - the fields of one event, as log_fields_write() takes them
 * @...: LOG_STR() and LOG_NUM() fields; the array ends with a NULL key
 */
#define LOG_FIELDS(...) ((const struct log_field[]){__VA_ARGS__, {0}})

/**
 * log_set_format() - choose the format of the lines that follow
 * @format: text (the default) or JSON
 */
void log_set_format(enum log_format format);

/**
 * log_set_verbosity() - set the verbosity threshold
 * @level: info messages with a verbosity above it are dropped
 */
void log_set_verbosity(int level);

/**
 * log_enabled() - whether an info message at @verbosity would be printed
 * @verbosity: the message's verbosity (-v N)
 *
 * Return: true if @verbosity is within the threshold.
 */
bool log_enabled(int verbosity);

/**
 * log_write() - log one line
 * @level:     error, warning or info
 * @verbosity: for info, the -v level it needs (0: always)
 * @file:      source file of the caller
 * @line:      source line of the caller
 * @fmt:       printf format of the message, then its arguments
 *
 * Use log_error(), log_warning(), log_info() or log_debug(): they pass the caller's
 * __FILE__ and __LINE__.
 */
void log_write(enum log_level level, int verbosity, const char *file, int line, const char *fmt,
	       ...) __attribute__((format(printf, 5, 6)));

/**
 * log_vwrite() - log_write() with the arguments in a va_list
 * @level:     error, warning or info
 * @verbosity: for info, the -v level it needs (0: always)
 * @file:      source file of the caller
 * @line:      source line of the caller
 * @fmt:       printf format of the message
 * @ap:        its arguments
 */
void log_vwrite(enum log_level level, int verbosity, const char *file, int line, const char *fmt,
		va_list ap) __attribute__((format(printf, 5, 0)));

/**
 * log_fields_write() - log one line that carries the event's fields
 * @level:     error, warning or info
 * @verbosity: for info, the -v level it needs (0: always)
 * @file:      source file of the caller
 * @line:      source line of the caller
 * @fields:    the event's fields (LOG_FIELDS()), keys of their own in JSON, not shown
 *             in text (the message says them already)
 * @fmt:       printf format of the message, then its arguments
 *
 * Use log_error_f(), log_warning_f() or log_info_f().
 */
void log_fields_write(enum log_level level, int verbosity, const char *file, int line,
		      const struct log_field *fields, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/**
 * log_error_f() - log an error line with fields from here
 * @fields: LOG_FIELDS(LOG_STR("device", id), ...)
 * @...:    printf format of the message, then its arguments
 */
#define log_error_f(fields, ...)                                                                   \
	log_fields_write(LOG_ERROR, 0, __FILE__, __LINE__, fields, __VA_ARGS__)

/**
 * log_warning_f() - log a warning line with fields from here
 * @fields: LOG_FIELDS(LOG_STR("device", id), ...)
 * @...:    printf format of the message, then its arguments
 */
#define log_warning_f(fields, ...)                                                                 \
	log_fields_write(LOG_WARNING, 0, __FILE__, __LINE__, fields, __VA_ARGS__)

/**
 * log_info_f() - log an info line with fields from here, at verbosity 0
 * @fields: LOG_FIELDS(LOG_STR("device", id), ...)
 * @...:    printf format of the message, then its arguments
 */
#define log_info_f(fields, ...)                                                                    \
	log_fields_write(LOG_INFO, 0, __FILE__, __LINE__, fields, __VA_ARGS__)

/**
 * log_debug_f() - log an info line with fields at verbosity @v
 * @v:      the verbosity: printed only with -v @v or higher
 * @fields: LOG_FIELDS(LOG_STR("device", id), ...)
 * @...:    printf format of the message, then its arguments
 */
#define log_debug_f(v, fields, ...)                                                                \
	do {                                                                                       \
		if (log_enabled(v))                                                                \
			log_fields_write(LOG_INFO, (v), __FILE__, __LINE__, fields, __VA_ARGS__);  \
	} while (0)

/**
 * log_error() - log an error line from here
 * @...: printf format of the message, then its arguments
 */
#define log_error(...) log_write(LOG_ERROR, 0, __FILE__, __LINE__, __VA_ARGS__)

/**
 * log_warning() - log a warning line from here
 * @...: printf format of the message, then its arguments
 */
#define log_warning(...) log_write(LOG_WARNING, 0, __FILE__, __LINE__, __VA_ARGS__)

/**
 * log_info() - log an info line from here, at verbosity 0
 * @...: printf format of the message, then its arguments
 */
#define log_info(...) log_write(LOG_INFO, 0, __FILE__, __LINE__, __VA_ARGS__)

/**
 * log_debug() - log an info line at verbosity @v
 * @v:   the verbosity: printed only with -v @v or higher
 * @...: printf format of the message, then its arguments
 *
 * The arguments are not evaluated when @v is above the threshold.
 */
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

/**
 * log_error_once() - log_once_write() an error from here
 * @once:  the event's struct log_once
 * @cause: why it happened this time (an -errno, or 0)
 * @...:   printf format of the message, then its arguments
 */
#define log_error_once(once, cause, ...)                                                           \
	log_once_write(once, cause, LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

/**
 * log_warning_once() - log_once_write() a warning from here
 * @once:  the event's struct log_once
 * @cause: why it happened this time (an -errno, or 0)
 * @...:   printf format of the message, then its arguments
 */
#define log_warning_once(once, cause, ...)                                                         \
	log_once_write(once, cause, LOG_WARNING, __FILE__, __LINE__, __VA_ARGS__)

/**
 * log_info_once() - log_once_write() an info line from here
 * @once:  the event's struct log_once
 * @cause: why it happened this time (an -errno, or 0)
 * @...:   printf format of the message, then its arguments
 */
#define log_info_once(once, cause, ...)                                                            \
	log_once_write(once, cause, LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
