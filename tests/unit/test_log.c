/* Log lines as read by a person and by a log pipeline: a JSON line carries the event's
 * fields as keys of their own (strings escaped, numbers bare, a NULL string left out),
 * and the text line of the same event reads as before, the message only. */
#include "test_helpers.h"

#include "log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Runs one log call with stderr sent to a temporary file; returns what it wrote. */
static char *captured(void (*emit)(void))
{
	char path[] = "/tmp/test_log.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	emit();
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	off_t size = lseek(fd, 0, SEEK_END);
	assert_true(size > 0);
	char *text = calloc(1, (size_t)size + 1);
	assert_non_null(text);
	assert_int_equal(pread(fd, text, (size_t)size, 0), size);
	close(fd);
	return text;
}

static void emit_handoff_line(void)
{
	log_info_f(LOG_FIELDS(LOG_STR("device", "iommufd3"), LOG_STR("socket", "/s/a\"b.sock"),
			      LOG_NUM("peer_pid", 42), LOG_NUM("uid", 107), LOG_STR("pod", NULL)),
		   "handed the fd of %s to pid %d", "iommufd3", 42);
}

static void log_json_line_carries_fields_as_keys(void **state)
{
	(void)state;
	log_set_format(LOG_FORMAT_JSON);
	char *line = captured(emit_handoff_line);
	log_set_format(LOG_FORMAT_TEXT);
	if (!strstr(line, "\"msg\":\"handed the fd of iommufd3 to pid 42\",\"device\":\"iommufd3\","
			  "\"socket\":\"/s/a\\\"b.sock\",\"peer_pid\":42,\"uid\":107}\n"))
		fail_msg("fields missing or malformed: %s", line);
	assert_null(strstr(line, "\"pod\""));
	free(line);
}

static void log_text_line_reads_as_before(void **state)
{
	(void)state;
	char *line = captured(emit_handoff_line);
	size_t n = strlen(line);
	const char *tail = "] handed the fd of iommufd3 to pid 42\n";
	assert_true(n > strlen(tail));
	assert_string_equal(line + n - strlen(tail), tail);
	assert_int_equal(line[0], 'I');
	free(line);
}

static void emit_long_field(void)
{
	static char value[9000];
	memset(value, 'x', sizeof(value) - 1);
	log_warning_f(LOG_FIELDS(LOG_NUM("errno", 24), LOG_STR("reason", value)), "short");
}

/* A field too long for the line is cut, and the line stays one valid object. */
static void log_json_line_stays_an_object_when_a_field_is_too_long(void **state)
{
	(void)state;
	log_set_format(LOG_FORMAT_JSON);
	char *line = captured(emit_long_field);
	log_set_format(LOG_FORMAT_TEXT);
	size_t n = strlen(line);
	assert_true(n < 8192);
	assert_string_equal(line + n - 2, "}\n");
	assert_non_null(strstr(line, "\"msg\":\"short\",\"errno\":24,"));
	assert_int_equal(strchr(line, '\n') - line, (long)n - 1);
	free(line);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(log_json_line_carries_fields_as_keys),
	    cmocka_unit_test(log_text_line_reads_as_before),
	    cmocka_unit_test(log_json_line_stays_an_object_when_a_field_is_too_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
