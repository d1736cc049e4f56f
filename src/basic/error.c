/* The error object: a -errno code with the message a log line or a gRPC status shows. */
#include "error.h"
#include "error_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int error_set(struct error *e, int code, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return code;
	e->code = code;
	va_start(ap, fmt);
	/* Truncation is acceptable: the message is one line for a human. */
	(void)vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return code;
}

const char *error_message(const struct error *e)
{
	if (e->message[0])
		return e->message;
	return e->code < 0 ? error_text(-e->code) : "";
}
