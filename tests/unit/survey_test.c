#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ipc.h"
#include "log.h"
#include "msg.h"
#include "survey.h"
#include "util.h"

#define DEADLINE_MS 5000

static char tmpdir[64];
static nng_socket surv, resp;
static int surv_fd = -1, resp_fd = -1;
static int log_pipe[2];

struct fill_state {
	int calls;
	uint8_t state;
};

static void
fill(void *arg, struct msg_health *h, struct buf *metrics)
{
	struct fill_state *fs = arg;

	fs->calls++;
	h->hl_state = fs->state;
	h->hl_uptime_ms = 4321;
	h->hl_detail = json_pack("{s:s, s:{s:b}}", "proc", "poller", "classes",
	    "my-org/my-runner", 1);
	buf_printf(metrics,
	    "# TYPE runner_provisioner_calls_total counter\n"
	    "runner_provisioner_calls_total %d\n",
	    fs->calls);
}

static int
wait_readable(int fd, uint64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int rv;

	do {
		rv = poll(&pfd, 1, ms_until(deadline, now_ms()));
	} while (rv == -1 && errno == EINTR);
	return rv == 1;
}

static int
setup(void **state)
{
	char dir[128], err[256], url[IPC_URL_MAX];

	(void)state;
	if (pipe(log_pipe) == -1)
		return -1;
	log_init("survey-test", LOG_LVL_INFO);
	log_set_fd(log_pipe[1]);
	strcpy(tmpdir, "/tmp/rp-survey-XXXXXX");
	if (mkdtemp(tmpdir) == NULL ||
	    ipc_rundir(tmpdir, dir, sizeof(dir), err, sizeof(err)) == -1 ||
	    ipc_url(url, sizeof(url), dir, IPC_HEALTH) == -1 ||
	    ipc_open(&surv, IPC_SURVEYOR_LISTEN, url, &surv_fd) == -1 ||
	    ipc_open(&resp, IPC_RESPONDENT_DIAL, url, &resp_fd) == -1)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	nng_close(resp);
	nng_close(surv);
	log_set_fd(-1);
	close(log_pipe[0]);
	close(log_pipe[1]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Surveys reach only connected respondents: send until the respondent
 * sees one.  Returns with a survey waiting on resp. */
static void
survey_until_delivered(const void *q, size_t len)
{
	uint64_t deadline = now_ms() + DEADLINE_MS;

	for (;;) {
		assert_int_equal(ipc_send(surv, q, len), 0);
		if (wait_readable(resp_fd, now_ms() + 50))
			return;
		if (now_ms() >= deadline)
			fail_msg("no survey reached the respondent");
	}
}

/* Asks until an answer comes back: the query goes out, survey_answer
 * answers what waits on the respondent, and the surveyor receives the
 * answer to its newest survey.  Bounded by a deadline. */
static void
ask(const void *q, size_t len, enum health_role role, uint32_t *seq,
    struct fill_state *fs, struct msg_hdr *h, struct msg_health *hl)
{
	uint64_t deadline = now_ms() + DEADLINE_MS;
	nng_msg *m;

	for (;;) {
		assert_int_equal(ipc_send(surv, q, len), 0);
		if (wait_readable(resp_fd, now_ms() + 50)) {
			(void)survey_answer(resp, role, seq, fill, fs);
			if (wait_readable(surv_fd, now_ms() + 200))
				break;
		}
		if (now_ms() >= deadline)
			fail_msg("no answer within %d ms", DEADLINE_MS);
	}
	assert_int_equal(ipc_recv(surv, &m), 1);
	assert_int_equal(
	    msg_health_decode(nng_msg_body(m), nng_msg_len(m), h, hl), MSG_OK);
	nng_msg_free(m);
}

static void
test_answer(void **state)
{
	struct msg_health_query q = { .q_sent_ms = 99 };
	struct fill_state fs = { .state = HEALTH_DEGRADED };
	struct buf b = { 0 };
	struct msg_health hl;
	struct msg_hdr h;
	uint32_t seq = 40;
	json_t *c;

	(void)state;
	msg_health_query_encode(&q, 1, &b);
	ask(b.b_data, b.b_len, ROLE_POLLER, &seq, &fs, &h, &hl);
	buf_free(&b);
	/* one sequence number per answer sent */
	assert_true(fs.calls >= 1);
	assert_int_equal(seq, 40 + (uint32_t)fs.calls);
	assert_int_equal(h.h_kind, MSG_HEALTH);
	assert_in_range(h.h_seq, 41, seq);
	assert_int_equal(h.h_pid, (uint32_t)getpid());
	assert_int_equal(hl.hl_role, ROLE_POLLER);
	assert_int_equal(hl.hl_state, HEALTH_DEGRADED);
	assert_int_equal(hl.hl_uptime_ms, 4321);
	assert_string_equal(
	    json_string_value(json_object_get(hl.hl_detail, "proc")),
	    "poller");
	c = json_object_get(
	    json_object_get(hl.hl_detail, "classes"), "my-org/my-runner");
	assert_true(json_is_true(c));
	assert_non_null(
	    strstr(hl.hl_metrics, "\nrunner_provisioner_calls_total "));
	assert_int_equal(hl.hl_metrics_len, strlen(hl.hl_metrics));
	msg_health_clear(&hl);
}

/* A malformed query is dropped (logged), never answered: nothing is
 * filled, encoded or numbered.  The next valid query is answered. */
static void
test_malformed_dropped(void **state)
{
	static const char junk[] = "RP\x01\x02garbage that is no query";
	struct msg_health_query q = { .q_sent_ms = 7 };
	struct fill_state fs = { .state = HEALTH_OK };
	char line[LOG_LINE_MAX + 1];
	struct buf b = { 0 };
	struct msg_health hl;
	struct msg_hdr h;
	uint32_t seq = 0;
	ssize_t n;

	(void)state;
	survey_until_delivered(junk, sizeof(junk) - 1);
	assert_int_equal(
	    survey_answer(resp, ROLE_ACTUATOR, &seq, fill, &fs), 0);
	assert_int_equal(fs.calls, 0);
	assert_int_equal(seq, 0);
	n = read(log_pipe[0], line, sizeof(line) - 1);
	assert_true(n > 0);
	line[n] = '\0';
	assert_non_null(strstr(line, "malformed health query"));

	/* a demand is no query either */
	msg_demand_encode(
	    &(struct msg_demand){ .d_ok = true, .d_class = "a/b" }, 1, &b);
	survey_until_delivered(b.b_data, b.b_len);
	assert_int_equal(
	    survey_answer(resp, ROLE_ACTUATOR, &seq, fill, &fs), 0);
	assert_int_equal(fs.calls, 0);
	assert_int_equal(seq, 0);

	buf_reset(&b);
	msg_health_query_encode(&q, 2, &b);
	ask(b.b_data, b.b_len, ROLE_ACTUATOR, &seq, &fs, &h, &hl);
	buf_free(&b);
	assert_int_equal(hl.hl_role, ROLE_ACTUATOR);
	assert_int_equal(hl.hl_state, HEALTH_OK);
	assert_in_range(h.h_seq, 1, seq);
	assert_int_equal(seq, (uint32_t)fs.calls);
	msg_health_clear(&hl);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_malformed_dropped, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
