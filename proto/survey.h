/* The children's side of the supervisor's health survey. */
#ifndef RP_SURVEY_H
#define RP_SURVEY_H

#include <stdint.h>

#include <nng/nng.h>

#include "msg.h"

/* Fills h's state, uptime and detail (a new JSON object, released by
 * survey_answer) and appends the process's metrics text. */
typedef void (*survey_fill_fn)(
    void *arg, struct msg_health *h, struct buf *metrics_text);

/* survey.c */
/* Answers the health queries waiting on s with one answer (to the latest;
 * the respondent has forgotten the others).  Malformed queries are logged
 * and dropped.  Returns 1 when it answered, else 0. */
int survey_answer(
    nng_socket s, enum health_role, uint32_t *seq, survey_fill_fn, void *arg);

#endif
