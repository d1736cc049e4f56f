/* The registration's lifecycle on kubelet.sock as one enum: which moves between its
 * states are allowed, and their names for the log. registration.c moves only through
 * registration_set_state(), which asks registration_transition_allowed(). */
#include "registration.h"
#include "../log.h"

#include <errno.h>

#include <stddef.h>

static const char *const state_names[] = {
    [REGISTRATION_NONE] = "none",
    [REGISTRATION_SERVING] = "serving",
    [REGISTRATION_REGISTERING] = "registering",
    [REGISTRATION_REGISTERED] = "registered",
    [REGISTRATION_GONE] = "gone",
    [REGISTRATION_FOREIGN] = "foreign",
    [REGISTRATION_SUPERSEDED] = "superseded",
};

#define BIT(s) (1U << (s))

/* For each state, the states it may move to. Superseded is final: a newer instance
 * of ours serves the kubelet, and the kubelet must never see us again. */
static const unsigned allowed[] = {
    [REGISTRATION_NONE] = BIT(REGISTRATION_SERVING) | BIT(REGISTRATION_FOREIGN),
    [REGISTRATION_SERVING] = BIT(REGISTRATION_REGISTERING) | BIT(REGISTRATION_GONE) |
			     BIT(REGISTRATION_FOREIGN) | BIT(REGISTRATION_SUPERSEDED),
    [REGISTRATION_REGISTERING] = BIT(REGISTRATION_REGISTERED) | BIT(REGISTRATION_SERVING) |
				 BIT(REGISTRATION_GONE) | BIT(REGISTRATION_FOREIGN) |
				 BIT(REGISTRATION_SUPERSEDED),
    [REGISTRATION_REGISTERED] = BIT(REGISTRATION_SERVING) | BIT(REGISTRATION_GONE) |
				BIT(REGISTRATION_FOREIGN) | BIT(REGISTRATION_SUPERSEDED),
    [REGISTRATION_GONE] = BIT(REGISTRATION_SERVING) | BIT(REGISTRATION_FOREIGN),
    [REGISTRATION_FOREIGN] = BIT(REGISTRATION_SERVING),
    [REGISTRATION_SUPERSEDED] = 0,
};

_Static_assert(sizeof(state_names) / sizeof(state_names[0]) == REGISTRATION_STATE_COUNT,
	       "a name for every state");
_Static_assert(sizeof(allowed) / sizeof(allowed[0]) == REGISTRATION_STATE_COUNT,
	       "a row for every state");

const char *registration_state_name(enum registration_state state)
{
	return (unsigned)state < REGISTRATION_STATE_COUNT ? state_names[state] : "invalid";
}

bool registration_transition_allowed(enum registration_state from, enum registration_state to)
{
	return (unsigned)from < REGISTRATION_STATE_COUNT &&
	       (unsigned)to < REGISTRATION_STATE_COUNT && (allowed[from] & BIT(to));
}

bool registration_state_serving(enum registration_state state)
{
	return state == REGISTRATION_SERVING || state == REGISTRATION_REGISTERING ||
	       state == REGISTRATION_REGISTERED;
}

int registration_state_change(enum registration_state *state, enum registration_state next)
{
	if (next == *state)
		return 0;
	if (!registration_transition_allowed(*state, next)) {
		log_error("registration: refusing the move from %s to %s (a bug: please report it)",
			  registration_state_name(*state), registration_state_name(next));
		return -EINVAL;
	}
	log_debug(2, "registration: %s -> %s", registration_state_name(*state),
		  registration_state_name(next));
	*state = next;
	return 0;
}
