/* Log lines on stderr, klog-style text or one JSON object per line. A line is
 * formatted into one buffer and written with a single write(2), so lines from
 * concurrent processes never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_verbosity;
static enum log_format log_format = LOG_FORMAT_TEXT;
/* The daemon never forks: its pid is read once, not with a syscall per line. */
static int log_pid;

static int log_process_id(void)
{
	if (!log_pid)
		log_pid = (int)getpid();
	return log_pid;
}

void log_set_verbosity(int level)
{
	log_verbosity = level;
}

void log_set_format(enum log_format format)
{
	log_format = format;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if it is not one
 * (RFC 3629 §4: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
	size_t len = 0;

	if (s[0] < 0x80)
		len = 1;
	else if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;

	if (!len || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
		return 0;
	return len;
}

/* Appends text as the contents of a JSON string (RFC 8259 §7) to out[*used..size),
 * stopping before an escape that would not fit; invalid UTF-8 becomes U+FFFD. */
static void json_escape(char *out, size_t size, size_t *used, const char *text)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t n = strlen(text);

	for (size_t i = 0; i < n;) {
		char esc[8];
		const char *piece = esc;
		size_t piece_len, step = 1;
		size_t seq = utf8_sequence(s + i, n - i);

		if (s[i] == '"' || s[i] == '\\') {
			piece = s[i] == '"' ? "\\\"" : "\\\\";
			piece_len = 2;
		} else if (s[i] < 0x20) {
			piece_len = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", s[i]);
		} else if (!seq) {
			piece = "\xef\xbf\xbd";
			piece_len = 3;
		} else {
			piece = (const char *)s + i;
			piece_len = step = seq;
		}
		if (*used + piece_len >= size)
			return;
		memcpy(out + *used, piece, piece_len);
		*used += piece_len;
		i += step;
	}
}

/* {"ts":"2006-01-02T15:04:05.000000Z","level":"info","v":0,"caller":"file.c:42",
 * "pid":1234,"msg":"...", then the event's fields}: the fields log pipelines (Loki,
 * Elasticsearch, Vector) pick up by name; ts is RFC 3339 UTC. */
static size_t log_format_json(char *buf, size_t size, enum log_level level, int verbosity,
			      const char *base, int line, const struct timeval *tv,
			      const struct tm *tm, const char *msg, const struct log_field *fields)
{
	static const char *const names[] = {"error", "warning", "info"};
	/* Room is kept for the closing brace and newline. */
	size_t room = size - 2;
	size_t used = (size_t)snprintf(
	    buf, size,
	    "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\",\"level\":\"%s\",\"v\":%d,"
	    "\"caller\":\"",
	    tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min, tm->tm_sec,
	    (long)tv->tv_usec, names[level], verbosity);
	json_escape(buf, size, &used, base);
	used += (size_t)snprintf(buf + used, size - used, ":%d\",\"pid\":%d,\"msg\":\"", line,
				 log_process_id());
	json_escape(buf, room - 1, &used, msg);
	buf[used++] = '"';
	for (const struct log_field *f = fields; f && f->key; f++) {
		char number[32];
		size_t key_len = strlen(f->key);
		if (!f->numeric && !f->text)
			continue;
		/* ,"key": and the value; a field that does not fit is left out whole. */
		size_t start = used;
		if (used + key_len + 4 >= room)
			break;
		used += (size_t)snprintf(buf + used, size - used, ",\"%s\":", f->key);
		if (f->numeric) {
			int n = snprintf(number, sizeof(number), "%lld", f->number);
			if (used + (size_t)n >= room) {
				used = start;
				break;
			}
			memcpy(buf + used, number, (size_t)n);
			used += (size_t)n;
			continue;
		}
		buf[used++] = '"';
		json_escape(buf, room - 1, &used, f->text);
		if (used + 1 >= room) {
			used = start;
			break;
		}
		buf[used++] = '"';
	}
	buf[used++] = '}';
	buf[used++] = '\n';
	return used;
}

bool log_enabled(int verbosity)
{
	return verbosity <= log_verbosity;
}

/* Formats and writes one line; fields go into JSON lines only. */
static void log_emit(enum log_level level, int verbosity, const char *file, int line,
		     const struct log_field *fields, const char *fmt, va_list ap)
{
	static const char letters[] = {'E', 'W', 'I'};
	char buf[2048];
	struct timeval tv;
	struct tm tm;

	if (!log_enabled(verbosity))
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	if (log_format == LOG_FORMAT_JSON) {
		char msg[2048];
		vsnprintf(msg, sizeof(msg), fmt, ap);
		char out[8192];
		size_t len = log_format_json(out, sizeof(out), level, verbosity, base, line, &tv,
					     &tm, msg, fields);
		(void)!write(STDERR_FILENO, out, len);
		return;
	}
	int n = snprintf(buf, sizeof(buf), "%c%02d%02d %02d:%02d:%02d.%06ld %7d %s:%d] ",
			 letters[level], tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (long)tv.tv_usec, log_process_id(), base, line);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* Nothing useful can be done if stderr is gone. */
	(void)!write(STDERR_FILENO, buf, (size_t)n);
}

void log_vwrite(enum log_level level, int verbosity, const char *file, int line, const char *fmt,
		va_list ap)
{
	log_emit(level, verbosity, file, line, NULL, fmt, ap);
}

void log_fields_write(enum log_level level, int verbosity, const char *file, int line,
		      const struct log_field *fields, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(level, verbosity, file, line, fields, fmt, ap);
	va_end(ap);
}

void log_write(enum log_level level, int verbosity, const char *file, int line, const char *fmt,
	       ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, verbosity, file, line, fmt, ap);
	va_end(ap);
}

void log_once_write(struct log_once *once, int cause, enum log_level level, const char *file,
		    int line, const char *fmt, ...)
{
	bool repeat = once->logged && once->cause == cause;
	va_list ap;

	once->logged = true;
	once->cause = cause;
	va_start(ap, fmt);
	if (repeat)
		log_vwrite(LOG_INFO, 1, file, line, fmt, ap);
	else
		log_vwrite(level, 0, file, line, fmt, ap);
	va_end(ap);
}
