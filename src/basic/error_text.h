/* The text of an errno value, the same whatever libc the binary is linked with: glibc's
 * wording (the one the Linux man pages and our docs quote) followed by the errno name,
 * e.g. "Too many open files (EMFILE)". musl words them differently ("No file
 * descriptors available"), and the release is linked with musl. */
#pragma once

/**
 * error_text() - describe an errno value for a log line or an error message.
 * @errnum: a positive errno value (callers holding -errno pass -r).
 *
 * Return: a static string, "<text> (<ENAME>)" for the errno values the plugin and its
 * tools can meet; for any other value the libc's strerror() text.
 */
const char *error_text(int errnum);
