/* The error object (src/basic/error.h) and the once-per-cause log lines (src/log.h):
 * what a reason carries to a log line or a gRPC status, and where a line says it was
 * written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "basic/error.h"
#include "basic/error_text.h"
#include "log.h"
#include "test_helpers.h"

static void error_set_returns_the_code_and_keeps_the_message(void **state)
{
	struct error e = {0};

	(void)state;
	assert_int_equal(
	    error_set(&e, -ENOENT, "cannot open %s: %s", "/dev/iommu", error_text(ENOENT)),
	    -ENOENT);
	assert_int_equal(e.code, -ENOENT);
	assert_string_equal(e.message,
			    "cannot open /dev/iommu: No such file or directory (ENOENT)");
	assert_string_equal(error_message(&e), e.message);
}

static void error_set_without_an_object_still_returns_the_code(void **state)
{
	(void)state;
	assert_int_equal(error_set(NULL, -EINVAL, "ignored %d", 1), -EINVAL);
}

static void error_set_truncates_a_long_message_to_its_buffer(void **state)
{
	char *long_path = xcalloc(1, 2 * ERROR_MESSAGE_SIZE);
	struct error e = {0};

	(void)state;
	memset(long_path, 'a', 2 * ERROR_MESSAGE_SIZE - 1);
	assert_int_equal(error_set(&e, -ENAMETOOLONG, "path %s", long_path), -ENAMETOOLONG);
	assert_int_equal(strlen(e.message), ERROR_MESSAGE_SIZE - 1);
	assert_memory_equal(e.message, "path aaa", 8);
	free(long_path);
}

static void error_message_of_a_bare_code_is_its_error_text(void **state)
{
	struct error bare = {.code = -EACCES};
	struct error none = {0};

	(void)state;
	assert_string_equal(error_message(&bare), "Permission denied (EACCES)");
	assert_string_equal(error_message(&none), "");
}

static void log_once_logs_a_cause_once_and_again_when_it_changes(void **state)
{
	struct log_once once = {0};
	struct test_stderr_capture capture;

	(void)state;
	log_set_verbosity(0);
	test_capture_stderr_begin(&capture);
	for (int i = 0; i < 3; i++)
		log_warning_once(&once, -ENOTTY, "cause A %d", i);
	log_warning_once(&once, -EPERM, "cause B");
	log_warning_once(&once, -ENOTTY, "cause A again");
	char *log = test_capture_stderr_end(&capture);
	assert_int_equal(test_count_substrings(log, "cause A 0"), 1);
	assert_int_equal(test_count_substrings(log, "cause A 1"), 0);
	assert_int_equal(test_count_substrings(log, "cause B"), 1);
	assert_int_equal(test_count_substrings(log, "cause A again"), 1);
	assert_int_equal(test_count_substrings(log, "\nW"), 2); /* lines 2 and 3 are warnings */
	free(log);
}

static void log_once_repeats_go_to_verbosity_one(void **state)
{
	struct log_once once = {0};
	struct test_stderr_capture capture;

	(void)state;
	log_set_verbosity(1);
	test_capture_stderr_begin(&capture);
	log_error_once(&once, 0, "first");
	log_error_once(&once, 0, "repeat");
	char *log = test_capture_stderr_end(&capture);
	log_set_verbosity(0);
	assert_int_equal(log[0], 'E');
	assert_non_null(strstr(log, "\nI"));
	assert_non_null(strstr(log, "repeat"));
	free(log);
}

static void log_once_names_the_callers_file_and_line(void **state)
{
	struct log_once once = {0};
	struct test_stderr_capture capture;

	(void)state;
	log_set_verbosity(0);
	test_capture_stderr_begin(&capture);
	int line = __LINE__ + 1;
	log_info_once(&once, 0, "located");
	char *log = test_capture_stderr_end(&capture);
	char *where = xasprintf(" test_error.c:%d] located", line);
	assert_non_null(strstr(log, where));
	free(where);
	free(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(error_set_returns_the_code_and_keeps_the_message),
	    cmocka_unit_test(error_set_without_an_object_still_returns_the_code),
	    cmocka_unit_test(error_set_truncates_a_long_message_to_its_buffer),
	    cmocka_unit_test(error_message_of_a_bare_code_is_its_error_text),
	    cmocka_unit_test(log_once_logs_a_cause_once_and_again_when_it_changes),
	    cmocka_unit_test(log_once_repeats_go_to_verbosity_one),
	    cmocka_unit_test(log_once_names_the_callers_file_and_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
