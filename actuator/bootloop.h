/*
 * The boot-loop guard (DESIGN §5): VMs that stop without ever having run a
 * job, BOOT_LOOP_STREAK in a row, mean a bad runner token, CircleCI address
 * or image.  Reclaim of stopped VMs then slows to one per
 * BOOT_LOOP_BACKOFF_MS, doubling up to BOOT_LOOP_BACKOFF_CAP_MS, until a
 * job runs, a VM stops normally, or a VM stays up.
 *
 * Pure functions of the class's VM history and demand evidence: no clock,
 * no I/O, no logging.  Callers pass the times and log the events.
 *
 * Whether a VM ran a job is judged from its class's demand: a job running
 * or a task claimed while the VM existed.  That evidence is per class, not
 * per VM, so a VM that ran a job is never taken for a failed boot, however
 * fast it booted and however short its job was.  A VM whose life is not
 * covered by an unbroken run of good demand (the actuator started after
 * it, or CircleCI could not be polled meanwhile) is not judged at all.
 */
#ifndef RP_BOOTLOOP_H
#define RP_BOOTLOOP_H

#include <stdbool.h>
#include <stdint.h>

#define BOOT_LOOP_STREAK         3 /* failed boots in a row */
#define BOOT_LOOP_BACKOFF_MS     30000
#define BOOT_LOOP_BACKOFF_CAP_MS 600000

enum boot_verdict {
	BOOT_OK,      /* a job ran or a task was claimed while it lived */
	BOOT_IDLE,    /* it reached its idle timeout: how an unused VM ends */
	BOOT_UNKNOWN, /* its life is not covered by good demand */
	BOOT_FAILED,  /* stopped without any job in its class meanwhile */
};

/* What the class's demand shows; wall-clock ms since the epoch. */
struct boot_evidence {
	uint64_t be_good_since_ms; /* unbroken good demand since; 0: none */
	uint64_t be_job_ms;        /* last job running or task claimed; 0 */
};

struct boot_params {
	uint64_t bp_idle_timeout_ms; /* the class's idleTimeout; 0: none */
	uint64_t bp_stay_up_ms;      /* --boot-loop-threshold */
};

struct boot_guard {
	unsigned int bg_streak;         /* failed boots in a row */
	uint64_t bg_failed_life_max_ms; /* longest life among them */
	uint64_t bg_last_failed_ms;     /* wall clock of the last one */
	bool bg_loop;
	unsigned int bg_probes;    /* reclaims during the loop */
	uint64_t bg_reclaim_at_ms; /* loop: next reclaim (monotonic) */
};

enum boot_event {
	BOOT_EV_NONE,
	BOOT_EV_LOOP,      /* the class entered a boot loop */
	BOOT_EV_RECOVERED, /* the loop ended */
};

/* bootloop.c */
/* Judges a stopped VM from its creation and stop times. */
enum boot_verdict boot_judge(const struct boot_params *,
    const struct boot_evidence *, uint64_t created_ms, uint64_t stopped_ms);
/* Counts a newly stopped VM (call once per VM). now_ms is monotonic and
 * wall_ms the wall clock, both "now". */
enum boot_event boot_note_stopped(struct boot_guard *, enum boot_verdict,
    uint64_t lifetime_ms, uint64_t now_ms, uint64_t wall_ms);
/* A job ran since the last failed boot: the streak (and a loop) ends. */
enum boot_event boot_note_evidence(
    struct boot_guard *, const struct boot_evidence *);
/* A VM has been running for lifetime_ms: long enough, it ends the loop. */
enum boot_event boot_note_running(
    struct boot_guard *, const struct boot_params *, uint64_t lifetime_ms);
/* Whether a stopped VM may be deleted now (monotonic ms). */
bool boot_may_reclaim(const struct boot_guard *, uint64_t now_ms);
/* A stopped VM is being deleted: during a loop, the next one waits. */
void boot_reclaimed(struct boot_guard *, uint64_t now_ms);
/* The delay the next probe during a loop waits (for logs). */
uint64_t boot_probe_delay_ms(const struct boot_guard *);
const char *boot_verdict_name(enum boot_verdict);

#endif
