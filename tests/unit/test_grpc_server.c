/* Unit tests of the gRPC server's lifetime edges (src/grpc/server.c) and the shared
 * half-close (src/basic/stream_socket.c): drain completion always comes from the loop,
 * and a lingering socket is closed on the peer's EOF only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "basic/stream_socket.h"
#include "grpc/server.h"
#include "loop/loop.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static void count_call(void *data)
{
	(*(int *)data)++;
}

static void drain_without_connections_completes_from_the_loop_not_inside_the_call(void **state)
{
	struct loop *loop;
	struct grpc_server *server;
	int done = 0;
	(void)state;

	assert_int_equal(loop_new(&loop), 0);
	assert_int_equal(grpc_server_new(loop, NULL, 0, NULL, &server), 0);
	grpc_server_drain(server, count_call, &done);
	assert_int_equal(done, 0); /* not synchronously: the caller's state is not ready */
	assert_true(loop_run_once(loop, 1000) >= 0);
	assert_int_equal(done, 1);
	assert_true(loop_run_once(loop, 0) >= 0);
	assert_int_equal(done, 1); /* once */
	grpc_server_free(server);
	loop_free(loop);
}

static void half_close_sends_eof_and_drains_until_the_peer_closes(void **state)
{
	int sv[2];
	char c;
	(void)state;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(write(sv[0], "answer", 6), 6);
	assert_int_equal(half_close_start(sv[0]), 0);
	char buf[16];
	assert_int_equal(read(sv[1], buf, sizeof(buf)), 6); /* what we sent arrives whole */
	assert_int_equal(read(sv[1], buf, sizeof(buf)), 0); /* then our EOF */
	assert_int_equal(half_close_drain(sv[0]), 0);	    /* peer still open: wait */
	assert_int_equal(write(sv[1], "late", 4), 4);
	assert_int_equal(half_close_drain(sv[0]), 0); /* its input is discarded */
	assert_int_equal(recv(sv[0], &c, 1, MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	close(sv[1]);
	assert_int_equal(half_close_drain(sv[0]), 1); /* its EOF: close now */
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(drain_without_connections_completes_from_the_loop_not_inside_the_call),
	    cmocka_unit_test(half_close_sends_eof_and_drains_until_the_peer_closes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
