#include "bootloop.h"

enum boot_verdict
boot_judge(const struct boot_params *p, const struct boot_evidence *ev,
    uint64_t created_ms, uint64_t stopped_ms)
{
	uint64_t life = stopped_ms > created_ms ? stopped_ms - created_ms : 0;

	if (p->bp_idle_timeout_ms > 0 && life >= p->bp_idle_timeout_ms)
		return BOOT_IDLE;
	if (ev->be_good_since_ms == 0 || ev->be_good_since_ms > created_ms)
		return BOOT_UNKNOWN;
	if (ev->be_job_ms != 0 && ev->be_job_ms >= created_ms)
		return BOOT_OK;
	return BOOT_FAILED;
}

static enum boot_event
reset(struct boot_guard *g)
{
	bool was = g->bg_loop;

	g->bg_streak = 0;
	g->bg_failed_life_max_ms = 0;
	g->bg_last_failed_ms = 0;
	g->bg_loop = false;
	g->bg_probes = 0;
	g->bg_reclaim_at_ms = 0;
	return was ? BOOT_EV_RECOVERED : BOOT_EV_NONE;
}

uint64_t
boot_probe_delay_ms(const struct boot_guard *g)
{
	uint64_t d = BOOT_LOOP_BACKOFF_MS;
	unsigned int i;

	for (i = 0; i < g->bg_probes && d < BOOT_LOOP_BACKOFF_CAP_MS; i++)
		d *= 2;
	return d < BOOT_LOOP_BACKOFF_CAP_MS ? d : BOOT_LOOP_BACKOFF_CAP_MS;
}

enum boot_event
boot_note_stopped(struct boot_guard *g, enum boot_verdict v,
    uint64_t lifetime_ms, uint64_t now_ms, uint64_t wall_ms)
{
	switch (v) {
	case BOOT_UNKNOWN:
		return BOOT_EV_NONE;
	case BOOT_OK:
	case BOOT_IDLE:
		return reset(g);
	case BOOT_FAILED:
		break;
	}
	if (lifetime_ms > g->bg_failed_life_max_ms)
		g->bg_failed_life_max_ms = lifetime_ms;
	g->bg_last_failed_ms = wall_ms;
	if (++g->bg_streak < BOOT_LOOP_STREAK || g->bg_loop)
		return BOOT_EV_NONE;
	g->bg_loop = true;
	g->bg_probes = 0;
	g->bg_reclaim_at_ms = now_ms + boot_probe_delay_ms(g);
	return BOOT_EV_LOOP;
}

enum boot_event
boot_note_evidence(struct boot_guard *g, const struct boot_evidence *ev)
{
	/* A job after the last failure: the failures were not a pattern. */
	if (g->bg_streak > 0 && ev->be_job_ms >= g->bg_last_failed_ms)
		return reset(g);
	return BOOT_EV_NONE;
}

enum boot_event
boot_note_running(
    struct boot_guard *g, const struct boot_params *p, uint64_t lifetime_ms)
{
	if (g->bg_loop && lifetime_ms >= p->bp_stay_up_ms &&
	    lifetime_ms >= 2 * g->bg_failed_life_max_ms)
		return reset(g);
	return BOOT_EV_NONE;
}

bool
boot_may_reclaim(const struct boot_guard *g, uint64_t now_ms)
{
	return !g->bg_loop || now_ms >= g->bg_reclaim_at_ms;
}

void
boot_reclaimed(struct boot_guard *g, uint64_t now_ms)
{
	if (!g->bg_loop)
		return;
	g->bg_probes++;
	g->bg_reclaim_at_ms = now_ms + boot_probe_delay_ms(g);
}

const char *
boot_verdict_name(enum boot_verdict v)
{
	switch (v) {
	case BOOT_OK:
		return "a job ran while it lived";
	case BOOT_IDLE:
		return "reached its idle timeout";
	case BOOT_UNKNOWN:
		return "no complete demand record of its life";
	case BOOT_FAILED:
		return "stopped without any job running in its class";
	}
	return "?";
}
