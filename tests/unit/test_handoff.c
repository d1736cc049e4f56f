/* Handoff state machine against real unix sockets, real SCM_RIGHTS and real peer
 * processes, driven by the real loop: consumption, retries, timeouts, expiry,
 * replacement, stale sockets, hostile peers, fd leaks and idle timers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <sys/sysmacros.h>

#include "handoff/handoff.h"
#include "test_helpers.h"

#define MAX_PATHS 8

struct fixture {
        struct loop *loop;
        struct handoff *handoff;
        struct handoff_options opts;
        char *dir;
        char *socket_dir;
        char *paths[MAX_PATHS];
        int path_count;
        int fds_before;
        dev_t null_rdev, zero_rdev;
};

static int setup(void **state)
{
        struct fixture *f = xcalloc(1, sizeof(*f));
        struct stat st;

        f->fds_before = test_count_open_fds();
        assert_int_equal(loop_new(&f->loop), 0);
        f->dir = test_make_temp_dir();
        assert_non_null(f->dir);
        f->socket_dir = xasprintf("%s/run/fd-sockets", f->dir);
        handoff_options_init(&f->opts);
        f->opts.socket_dir = f->socket_dir;
        f->opts.ttl_usec = 20ULL * 1000000;
        assert_int_equal(stat("/dev/null", &st), 0);
        f->null_rdev = st.st_rdev;
        assert_int_equal(stat("/dev/zero", &st), 0);
        f->zero_rdev = st.st_rdev;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        handoff_free(f->handoff);
        loop_free(f->loop);
        test_remove_tree(f->dir);
        for (int i = 0; i < f->path_count; i++)
                free(f->paths[i]);
        free(f->socket_dir);
        free(f->dir);
        int fds_before = f->fds_before;
        free(f);
        /* Every socket, peer, timer and offered fd is closed again. */
        assert_int_equal(test_count_open_fds(), fds_before);
        return 0;
}

static void start(struct fixture *f)
{
        assert_int_equal(handoff_new(f->loop, &f->opts, &f->handoff), 0);
}

/* Offers a fresh fd of device (e.g. /dev/null) for id; returns a copy of the path. */
static const char *offer(struct fixture *f, const char *id, const char *device)
{
        const char *path = NULL;
        char reason[256] = "";
        int fd = open(device, O_RDWR | O_CLOEXEC);

        assert_true(fd >= 0);
        int r = handoff_offer(f->handoff, id, fd, &path, reason, sizeof(reason));
        if (r < 0)
                fail_msg("handoff_offer: %s", reason);
        assert_true(f->path_count < MAX_PATHS);
        f->paths[f->path_count] = xstrdup(path);
        return f->paths[f->path_count++];
}

static bool path_exists(const char *path)
{
        struct stat st;

        return lstat(path, &st) == 0;
}

struct at_least {
        const unsigned long long *counter;
        unsigned long long value;
};

static bool counter_reached(void *data)
{
        struct at_least *a = data;

        return *a->counter >= a->value;
}

static bool run_until_counter(struct fixture *f, const unsigned long long *counter,
                              unsigned long long value, int timeout_ms)
{
        struct at_least a = {counter, value};

        return test_run_until(f->loop, counter_reached, &a, timeout_ms);
}

struct peer_args {
        const char *path;
        dev_t expected_rdev;
        const char *ack; /* bytes to answer with */
};

/* Receives as KubeVirt's virt-launcher does: one recvmsg with a 32-byte data buffer
 * and a 4096-byte control buffer, checks what arrived, answers, closes. */
static int receive_like_kubevirt(void *data)
{
        struct peer_args *a = data;
        char buf[32];
        char control[4096];
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control,
                             .msg_controllen = sizeof(control)};
        int fd = -1, fds = 0;
        struct stat st;

        int s = test_connect(a->path);
        CHILD_CHECK(s >= 0);
        ssize_t n = recvmsg(s, &msg, 0);
        CHILD_CHECK(n == 1);
        CHILD_CHECK(buf[0] == 0x00);
        CHILD_CHECK(!(msg.msg_flags & MSG_CTRUNC));
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                CHILD_CHECK(c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS);
                fds += (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                memcpy(&fd, CMSG_DATA(c), sizeof(int));
        }
        CHILD_CHECK(fds == 1);
        CHILD_CHECK(fstat(fd, &st) == 0);
        CHILD_CHECK(S_ISCHR(st.st_mode) && st.st_rdev == a->expected_rdev);
        const char *ack = a->ack ? a->ack : "\0";
        size_t ack_len = a->ack ? strlen(a->ack) : 1;
        CHILD_CHECK(write(s, ack, ack_len) == (ssize_t)ack_len);
        close(fd);
        close(s);
        return 0;
}

/* Takes the fd, then hangs up without acknowledging. */
static int receive_and_hang_up(void *data)
{
        struct peer_args *a = data;
        char buf[32], control[4096];
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control,
                             .msg_controllen = sizeof(control)};

        int s = test_connect(a->path);
        CHILD_CHECK(s >= 0);
        CHILD_CHECK(recvmsg(s, &msg, MSG_CMSG_CLOEXEC) == 1);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        CHILD_CHECK(c && c->cmsg_type == SCM_RIGHTS);
        int fd;
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
        close(fd);
        close(s);
        return 0;
}

/* Connects and hangs up at once, reading nothing. */
static int connect_and_hang_up(void *data)
{
        struct peer_args *a = data;
        int s = test_connect(a->path);

        CHILD_CHECK(s >= 0);
        close(s);
        return 0;
}

/* Takes the fd and never answers; returns once the plugin closes the connection. */
static int receive_and_never_ack(void *data)
{
        struct peer_args *a = data;
        char buf[32], control[4096];
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control,
                             .msg_controllen = sizeof(control)};

        int s = test_connect(a->path);
        CHILD_CHECK(s >= 0);
        CHILD_CHECK(recvmsg(s, &msg, MSG_CMSG_CLOEXEC) == 1);
        CHILD_CHECK(read(s, buf, sizeof(buf)) == 0); /* EOF: the plugin gave up on us */
        return 0;
}

/* Answers before reading anything, then waits for the plugin to hang up. */
static int answer_without_taking_fd(void *data)
{
        struct peer_args *a = data;
        struct pollfd p = {.events = POLLRDHUP};

        p.fd = test_connect(a->path);
        CHILD_CHECK(p.fd >= 0);
        CHILD_CHECK(write(p.fd, "\0", 1) == 1);
        CHILD_CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLRDHUP));
        return 0;
}

static void expect_child(pid_t pid)
{
        assert_true(pid > 0);
        assert_int_equal(test_wait(pid), 0);
}

static void handoff_kubevirt_like_receiver_consumes_offer_and_socket_is_unlinked(void **state)
{
        struct fixture *f = *state;
        struct stat st;

        start(f);
        const char *path = offer(f, "iommufd0", "/dev/null");
        assert_int_equal(strncmp(path, f->socket_dir, strlen(f->socket_dir)), 0);
        assert_non_null(strstr(path, "/iommufd0-"));
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(handoff_pending(f->handoff), 1);

        struct peer_args a = {.path = path, .expected_rdev = f->null_rdev};
        pid_t pid = test_fork(receive_like_kubevirt, &a);
        assert_true(run_until_counter(f, &handoff_stats(f->handoff)->consumed, 1, 10000));
        expect_child(pid);

        assert_false(path_exists(path));
        assert_int_equal(handoff_pending(f->handoff), 0);
        assert_int_equal(handoff_stats(f->handoff)->offered, 1);
        assert_int_equal(handoff_stats(f->handoff)->peer_gone, 0);
}

static void handoff_any_byte_after_taking_the_fd_acknowledges(void **state)
{
        struct fixture *f = *state;

        start(f);
        const char *path = offer(f, "iommufd0", "/dev/null");
        struct peer_args a = {.path = path, .expected_rdev = f->null_rdev, .ack = "garbage!"};
        pid_t pid = test_fork(receive_like_kubevirt, &a);
        assert_true(run_until_counter(f, &handoff_stats(f->handoff)->consumed, 1, 10000));
        expect_child(pid);
        assert_false(path_exists(path));
}

static void handoff_peer_that_disconnects_before_ack_leaves_offer_for_retry(void **state)
{
        struct fixture *f = *state;
        const struct handoff_stats *s;

        start(f);
        s = handoff_stats(f->handoff);
        const char *path = offer(f, "iommufd0", "/dev/null");
        struct peer_args a = {.path = path, .expected_rdev = f->null_rdev};

        pid_t pid = test_fork(receive_and_hang_up, &a);
        assert_true(run_until_counter(f, &s->peer_gone, 1, 10000));
        expect_child(pid);
        pid = test_fork(connect_and_hang_up, &a);
        assert_true(run_until_counter(f, &s->peer_gone, 2, 10000));
        expect_child(pid);
        assert_int_equal(s->consumed, 0);
        assert_int_equal(handoff_pending(f->handoff), 1);
        assert_true(path_exists(path));

        pid = test_fork(receive_like_kubevirt, &a);
        assert_true(run_until_counter(f, &s->consumed, 1, 10000));
        expect_child(pid);
        assert_false(path_exists(path));
}

static void handoff_peer_that_never_acks_times_out(void **state)
{
        struct fixture *f = *state;
        const struct handoff_stats *s;

        f->opts.ack_timeout_usec = 200 * 1000;
        start(f);
        s = handoff_stats(f->handoff);
        const char *path = offer(f, "iommufd0", "/dev/null");
        struct peer_args a = {.path = path, .expected_rdev = f->null_rdev};

        unsigned long long t0 = now_usec();
        pid_t pid = test_fork(receive_and_never_ack, &a);
        assert_true(run_until_counter(f, &s->ack_timeouts, 1, 10000));
        assert_true(now_usec() - t0 >= 200 * 1000);
        expect_child(pid);
        assert_int_equal(s->consumed, 0);
        assert_int_equal(handoff_pending(f->handoff), 1);
        assert_true(path_exists(path));

        pid = test_fork(receive_like_kubevirt, &a);
        assert_true(run_until_counter(f, &s->consumed, 1, 10000));
        expect_child(pid);
}

static void handoff_peer_answering_without_taking_the_fd_does_not_consume(void **state)
{
        struct fixture *f = *state;
        const struct handoff_stats *s;

        start(f);
        s = handoff_stats(f->handoff);
        const char *path = offer(f, "iommufd0", "/dev/null");
        struct peer_args a = {.path = path, .expected_rdev = f->null_rdev};

        pid_t pid = test_fork(answer_without_taking_fd, &a);
        assert_true(run_until_counter(f, &s->refused, 1, 10000));
        expect_child(pid);
        assert_int_equal(s->consumed, 0);
        assert_true(path_exists(path));

        pid = test_fork(receive_like_kubevirt, &a);
        assert_true(run_until_counter(f, &s->consumed, 1, 10000));
        expect_child(pid);
}

static void handoff_unclaimed_offer_expires_after_ttl(void **state)
{
        struct fixture *f = *state;

        f->opts.ttl_usec = 200 * 1000;
        start(f);
        unsigned long long t0 = now_usec();
        const char *path = offer(f, "iommufd0", "/dev/null");
        assert_true(run_until_counter(f, &handoff_stats(f->handoff)->expired, 1, 10000));
        assert_true(now_usec() - t0 >= 200 * 1000);
        assert_false(path_exists(path));
        assert_int_equal(handoff_pending(f->handoff), 0);
        /* The offered fd is closed too: teardown counts the fds. */
}

static void handoff_reoffer_of_same_device_id_replaces_old_offer(void **state)
{
        struct fixture *f = *state;

        start(f);
        const char *old_path = offer(f, "iommufd3", "/dev/null");
        const char *new_path = offer(f, "iommufd3", "/dev/zero");
        assert_string_not_equal(old_path, new_path);
        assert_false(path_exists(old_path));
        assert_true(path_exists(new_path));
        assert_int_equal(handoff_stats(f->handoff)->replaced, 1);
        assert_int_equal(handoff_pending(f->handoff), 1);

        /* The peer gets the new fd. */
        struct peer_args a = {.path = new_path, .expected_rdev = f->zero_rdev};
        pid_t pid = test_fork(receive_like_kubevirt, &a);
        assert_true(run_until_counter(f, &handoff_stats(f->handoff)->consumed, 1, 10000));
        expect_child(pid);
}

static void bind_and_close(const char *path)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(s >= 0);
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
        assert_int_equal(bind(s, (struct sockaddr *)&addr, sizeof(addr)), 0);
        close(s);
}

static void handoff_removes_stale_sockets_but_nothing_else_at_startup(void **state)
{
        struct fixture *f = *state;
        char *run = xasprintf("%s/run", f->dir);
        char *stale = xasprintf("%s/iommufd0-7.sock", f->socket_dir);
        char *regular = xasprintf("%s/notes.sock", f->socket_dir);
        char *other = xasprintf("%s/other-socket", f->socket_dir);

        assert_int_equal(mkdir(run, 0700), 0);
        assert_int_equal(mkdir(f->socket_dir, 0700), 0);
        bind_and_close(stale);
        bind_and_close(other);
        int fd = open(regular, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);

        start(f);
        assert_false(path_exists(stale));
        assert_true(path_exists(regular));
        assert_true(path_exists(other));
        free(run);
        free(stale);
        free(regular);
        free(other);
}

static void handoff_creates_socket_dir_0700_and_sockets_with_configured_mode(void **state)
{
        struct fixture *f = *state;
        struct stat st;

        start(f);
        assert_int_equal(stat(f->socket_dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        const char *path = offer(f, "iommufd0", "/dev/null");
        assert_int_equal(lstat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0666);
}

static void handoff_sockets_get_configured_owner_and_mode(void **state)
{
        struct fixture *f = *state;
        struct stat st;

        if (geteuid() != 0)
                skip();
        f->opts.socket_mode = 0600;
        f->opts.socket_uid = 107;
        f->opts.socket_gid = 107;
        start(f);
        const char *path = offer(f, "iommufd0", "/dev/null");
        assert_int_equal(lstat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(st.st_uid, 107);
        assert_int_equal(st.st_gid, 107);
}

static void handoff_rejects_device_ids_that_could_escape_the_socket_dir(void **state)
{
        struct fixture *f = *state;
        const char *bad[] = {"../evil", "a/b", "", ".hidden", "x y", "iommufd0\n",
                             "0123456789012345678901234567890123456789012345678901234567890123X"};

        start(f);
        int fds = test_count_open_fds();
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                const char *path = NULL;
                char reason[256] = "";
                int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
                assert_int_equal(handoff_offer(f->handoff, bad[i], fd, &path, reason,
                                               sizeof(reason)),
                                 -EINVAL);
                assert_non_null(strstr(reason, "invalid device id"));
                assert_null(path);
        }
        /* The fd is taken even on failure. */
        assert_int_equal(test_count_open_fds(), fds);
        assert_int_equal(handoff_pending(f->handoff), 0);
        assert_int_equal(handoff_stats(f->handoff)->offered, 0);
}

static void handoff_free_withdraws_every_offer(void **state)
{
        struct fixture *f = *state;

        start(f);
        const char *a = offer(f, "iommufd0", "/dev/null");
        const char *b = offer(f, "iommufd1", "/dev/null");
        handoff_free(f->handoff);
        f->handoff = NULL;
        assert_false(path_exists(a));
        assert_false(path_exists(b));
}

static void handoff_arms_no_timer_while_nothing_is_pending(void **state)
{
        struct fixture *f = *state;

        start(f);
        assert_int_equal(test_count_armed_timerfds(), 0);
        const char *path = offer(f, "iommufd0", "/dev/null");
        assert_int_equal(test_count_armed_timerfds(), 1); /* the TTL */

        struct peer_args a = {.path = path, .expected_rdev = f->null_rdev};
        pid_t pid = test_fork(receive_like_kubevirt, &a);
        assert_true(run_until_counter(f, &handoff_stats(f->handoff)->consumed, 1, 10000));
        expect_child(pid);
        assert_int_equal(test_count_armed_timerfds(), 0);
        unsigned long long wakeups = loop_wakeups(f->loop);
        assert_int_equal(loop_run_once(f->loop, 300), 0);
        assert_int_equal(loop_wakeups(f->loop), wakeups + 1); /* only the timeout itself */
}

struct crowd_args {
        const char *path;
        int connections; /* attempts */
        int hold;        /* connections kept open */
        int ready_fd, done_fd;
};

/* Opens many connections that never read (some send garbage), tells the parent,
 * and holds them until the parent says done. */
static int hostile_crowd(void *data)
{
        struct crowd_args *a = data;
        int held[256], count = 0;
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        char c;

        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", a->path);
        for (int i = 0; i < a->connections; i++) {
                int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                CHILD_CHECK(s >= 0);
                if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                        CHILD_CHECK(errno == EAGAIN);
                        close(s);
                        continue;
                }
                if (i % 10 == 0)
                        CHILD_CHECK(write(s, "garbage", 7) == 7);
                if (count < a->hold && count < (int)ARRAY_SIZE(held))
                        held[count++] = s;
                else
                        close(s);
        }
        CHILD_CHECK(write(a->ready_fd, "r", 1) == 1);
        CHILD_CHECK(read(a->done_fd, &c, 1) >= 0);
        for (int i = 0; i < count; i++)
                close(held[i]);
        return 0;
}

static bool fd_readable(void *data)
{
        struct pollfd p = {.fd = *(int *)data, .events = POLLIN};

        return poll(&p, 1, 0) == 1;
}

static void handoff_thousand_hostile_connects_do_not_block_a_good_peer(void **state)
{
        struct fixture *f = *state;
        int ready[2], done[2];

        start(f);
        const struct handoff_stats *s = handoff_stats(f->handoff);
        const char *hostile_path = offer(f, "iommufd0", "/dev/null");
        const char *good_path = offer(f, "iommufd1", "/dev/zero");
        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        assert_int_equal(pipe2(done, O_CLOEXEC), 0);
        struct crowd_args c = {.path = hostile_path,
                               .connections = 1000,
                               .hold = 200,
                               .ready_fd = ready[1],
                               .done_fd = done[0]};
        pid_t crowd = test_fork(hostile_crowd, &c);
        assert_true(test_run_until(f->loop, fd_readable, &ready[0], 20000));

        /* The default 10 s ACK timeout holds the crowd's slots; the good peer on the
         * other allocation must not wait for any of it. */
        unsigned long long t0 = now_usec();
        struct peer_args a = {.path = good_path, .expected_rdev = f->zero_rdev};
        pid_t good = test_fork(receive_like_kubevirt, &a);
        assert_true(run_until_counter(f, &s->consumed, 1, 5000));
        assert_true(now_usec() - t0 < 5000000);
        expect_child(good);
        assert_false(path_exists(good_path));
        assert_true(path_exists(hostile_path));
        assert_int_equal(handoff_pending(f->handoff), 1);

        assert_int_equal(write(done[1], "d", 1), 1);
        expect_child(crowd);
        close(done[1]);
        close(ready[0]);
        close(ready[1]);
        close(done[0]);
}

static void handoff_serves_at_most_max_peers_connections_per_offer(void **state)
{
        struct fixture *f = *state;
        int ready[2], done[2];

        start(f);
        const struct handoff_stats *s = handoff_stats(f->handoff);
        const char *path = offer(f, "iommufd0", "/dev/null");
        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        assert_int_equal(pipe2(done, O_CLOEXEC), 0);
        int sockets_before = test_count_fds_like("socket:");
        struct crowd_args c = {
                .path = path, .connections = 20, .hold = 20, .ready_fd = ready[1], .done_fd = done[0]};
        pid_t crowd = test_fork(hostile_crowd, &c);
        assert_true(test_run_until(f->loop, fd_readable, &ready[0], 10000));
        test_run_for(f->loop, 300);
        /* Peers that sent garbage are refused, the next ones take their places. */
        assert_int_equal(test_count_fds_like("socket:") - sockets_before,
                         HANDOFF_DEFAULT_MAX_PEERS);

        assert_int_equal(write(done[1], "d", 1), 1);
        expect_child(crowd);
        close(done[1]);
        /* Every connection ends as refused or gone; none consumed the offer. */
        unsigned long long deadline = now_usec() + 10000000;
        while (s->peer_gone + s->refused < 20 && now_usec() < deadline)
                loop_run_once(f->loop, 10);
        assert_int_equal(s->peer_gone + s->refused, 20);
        assert_int_equal(s->consumed, 0);
        assert_true(path_exists(path));
        close(ready[0]);
        close(ready[1]);
        close(done[0]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
                T(handoff_kubevirt_like_receiver_consumes_offer_and_socket_is_unlinked),
                T(handoff_any_byte_after_taking_the_fd_acknowledges),
                T(handoff_peer_that_disconnects_before_ack_leaves_offer_for_retry),
                T(handoff_peer_that_never_acks_times_out),
                T(handoff_peer_answering_without_taking_the_fd_does_not_consume),
                T(handoff_unclaimed_offer_expires_after_ttl),
                T(handoff_reoffer_of_same_device_id_replaces_old_offer),
                T(handoff_removes_stale_sockets_but_nothing_else_at_startup),
                T(handoff_creates_socket_dir_0700_and_sockets_with_configured_mode),
                T(handoff_sockets_get_configured_owner_and_mode),
                T(handoff_rejects_device_ids_that_could_escape_the_socket_dir),
                T(handoff_free_withdraws_every_offer),
                T(handoff_arms_no_timer_while_nothing_is_pending),
                T(handoff_thousand_hostile_connects_do_not_block_a_good_peer),
                T(handoff_serves_at_most_max_peers_connections_per_offer),
#undef T
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
