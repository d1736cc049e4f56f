/* One error object for a reason that must reach a log line or a gRPC status: the
 * -errno code and a one-line message saying what failed, on what, and why. It is
 * filled where the error arises and reported once, by the layer that decides what
 * happens (see "Conventions" in docs/architecture.md). */
#pragma once

#define ERROR_MESSAGE_SIZE 512

/**
 * struct error - why something failed, for the layer that reports it
 * @code:    0, or the -errno of the failure
 * @message: one line naming what failed, on what, and why; "" while @code is 0,
 *           truncated if longer
 */
struct error {
	int code;
	char message[ERROR_MESSAGE_SIZE];
};

/**
 * error_set() - record a failure
 * @e:    where to record it; may be NULL when the caller wants only the code
 * @code: the failure, a negative errno
 * @fmt:  printf format of the message, then its arguments
 *
 * So a failure path reads
 * "return error_set(e, -errno, "cannot open %s: %s", path, error_text(errno));".
 *
 * Return: @code.
 */
int error_set(struct error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * error_message() - the text to log or send for an error
 * @e: the error
 *
 * Return: @e's message; error_text(-code) when the code was set without one; "" for an
 * error that is not set.
 */
const char *error_message(const struct error *e);
