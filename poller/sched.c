/*
 * When each class is polled.  A class is on the fast interval
 * (--poll-interval) while it has tasks; once every poll for
 * --idle-poll-after found none it moves to the idle interval
 * (--idle-poll-interval), and the first task or failure brings it back.
 * Polls fall on a grid: class i of n at epoch + i * interval / n + k *
 * interval, so the polls of many classes are spread evenly over the
 * interval instead of leaving together.  Classes wait in a min-heap on
 * their due time; when the request budget is short, the longest-waiting
 * class goes first, which is round-robin.
 */
#include <stdlib.h>
#include <string.h>

#include "poller.h"
#include "util.h"

void
sched_init(struct sched *sc, size_t nclasses, uint64_t epoch, uint64_t fast_ms,
    uint64_t idle_ms, uint64_t idle_after_ms)
{
	memset(sc, 0, sizeof(*sc));
	sc->sc_heap =
	    xcalloc(nclasses > 0 ? nclasses : 1, sizeof(*sc->sc_heap));
	sc->sc_nclasses = nclasses;
	sc->sc_epoch_ms = epoch;
	sc->sc_fast_ms = fast_ms;
	sc->sc_idle_ms = idle_ms > fast_ms ? idle_ms : fast_ms;
	sc->sc_idle_after_ms = idle_after_ms;
}

void
sched_free(struct sched *sc)
{
	free(sc->sc_heap);
	sc->sc_heap = NULL;
	sc->sc_len = 0;
}

static bool
before(const struct sched_slot *a, const struct sched_slot *b)
{
	if (a->ss_due_ms != b->ss_due_ms)
		return a->ss_due_ms < b->ss_due_ms;
	return a->ss_index < b->ss_index;
}

static void
place(struct sched *sc, size_t i, struct sched_slot *s)
{
	sc->sc_heap[i] = s;
	s->ss_heap = i;
}

static void
sift_up(struct sched *sc, size_t i)
{
	struct sched_slot *s = sc->sc_heap[i];
	size_t parent;

	while (i > 0) {
		parent = (i - 1) / 2;
		if (!before(s, sc->sc_heap[parent]))
			break;
		place(sc, i, sc->sc_heap[parent]);
		i = parent;
	}
	place(sc, i, s);
}

static void
sift_down(struct sched *sc, size_t i)
{
	struct sched_slot *s = sc->sc_heap[i];
	size_t child;

	for (;;) {
		child = 2 * i + 1;
		if (child >= sc->sc_len)
			break;
		if (child + 1 < sc->sc_len &&
		    before(sc->sc_heap[child + 1], sc->sc_heap[child]))
			child++;
		if (!before(sc->sc_heap[child], s))
			break;
		place(sc, i, sc->sc_heap[child]);
		i = child;
	}
	place(sc, i, s);
}

static void
push(struct sched *sc, struct sched_slot *s)
{
	if (sc->sc_len >= sc->sc_nclasses)
		fatalx("%s: more slots than classes", __func__);
	sc->sc_heap[sc->sc_len++] = s;
	sift_up(sc, sc->sc_len - 1);
}

uint64_t
sched_grid_after(
    const struct sched *sc, uint64_t t, uint64_t interval, size_t index)
{
	uint64_t first, n = sc->sc_nclasses > 0 ? sc->sc_nclasses : 1;

	/* index * interval / n without overflow for any realistic sizes:
	 * interval < 2^40 ms, n <= 2^20. */
	first = sc->sc_epoch_ms + (uint64_t)index * interval / n;
	if (t < first)
		return first;
	return first + ((t - first) / interval + 1) * interval;
}

void
sched_add(struct sched *sc, struct sched_slot *s, size_t index)
{
	memset(s, 0, sizeof(*s));
	s->ss_index = index;
	s->ss_heap = SCHED_UNQUEUED;
	s->ss_due_ms = sched_grid_after(sc, 0, sc->sc_fast_ms, index);
	push(sc, s);
}

struct sched_slot *
sched_due(const struct sched *sc, uint64_t now)
{
	if (sc->sc_len == 0 || sc->sc_heap[0]->ss_due_ms > now)
		return NULL;
	return sc->sc_heap[0];
}

uint64_t
sched_next_ms(const struct sched *sc)
{
	return sc->sc_len > 0 ? sc->sc_heap[0]->ss_due_ms : UINT64_MAX;
}

void
sched_started(struct sched *sc, struct sched_slot *s, uint64_t now)
{
	size_t i = s->ss_heap;

	if (i >= sc->sc_len || sc->sc_heap[i] != s)
		fatalx("%s: slot not queued", __func__);
	sc->sc_len--;
	if (i < sc->sc_len) {
		place(sc, i, sc->sc_heap[sc->sc_len]);
		sift_down(sc, i);
		sift_up(sc, sc->sc_heap[i]->ss_heap);
	}
	s->ss_heap = SCHED_UNQUEUED;
	s->ss_prev_started_ms = s->ss_started_ms;
	s->ss_started_ms = now;
}

uint64_t
sched_interval(const struct sched *sc, const struct sched_slot *s)
{
	return s->ss_idle ? sc->sc_idle_ms : sc->sc_fast_ms;
}

bool
sched_finished(struct sched *sc, struct sched_slot *s,
    enum sched_outcome outcome, uint64_t not_before_ms, uint64_t now)
{
	bool was_idle = s->ss_idle;
	uint64_t due;

	if (outcome == SCHED_QUIET) {
		if (!s->ss_quiet) {
			s->ss_quiet = true;
			s->ss_quiet_since_ms = s->ss_started_ms;
		}
		s->ss_idle =
		    now - s->ss_quiet_since_ms >= sc->sc_idle_after_ms;
	} else {
		s->ss_quiet = false;
		s->ss_idle = false;
	}
	if (s->ss_idle != was_idle) {
		if (s->ss_idle)
			sc->sc_nidle++;
		else
			sc->sc_nidle--;
	}
	/* The next point of the class's grid after this poll started: on
	 * time, the next interval; late (a slow answer, a short budget), as
	 * soon as possible. */
	due = sched_grid_after(
	    sc, s->ss_started_ms, sched_interval(sc, s), s->ss_index);
	if (due < not_before_ms)
		due = not_before_ms;
	s->ss_due_ms = due;
	push(sc, s);
	return s->ss_idle != was_idle;
}

double
sched_needed_rps(const struct sched *sc)
{
	size_t fast = sc->sc_nclasses - sc->sc_nidle;

	return 2000.0 *
	    ((double)fast / (double)sc->sc_fast_ms +
	        (double)sc->sc_nidle / (double)sc->sc_idle_ms);
}
