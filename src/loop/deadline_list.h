/* The one deadline-ordered list with one timer: entries embedded in their owners,
 * kept earliest first, with the list's loop timer armed for the head. Every change
 * re-arms it, so no owner ever calls a "rearm" by hand (handoff.c, http.c). */
#pragma once

#include "../basic/list.h"
#include "loop.h"

struct deadline_list;

/**
 * struct deadline_entry - one deadline, embedded in its owner
 * @link: in the list, earliest first; unlinked while not set
 * @at:   on the now_usec() clock; 0: not set
 */
struct deadline_entry {
	struct list link;
	unsigned long long at;
};

/* Called for each entry whose deadline passed, already taken off the list: it may
 * set it again, free its owner, or set and cancel other entries. */
typedef void (*deadline_expired_fn)(void *data, struct deadline_entry *entry);

struct deadline_list {
	struct list entries; /* struct deadline_entry.link, earliest first */
	struct loop_timer timer;
	deadline_expired_fn expired;
	void *data;
};

/**
 * deadline_list_init() - make an empty list with a disarmed timer
 * @loop:    the loop whose timer it uses (no fd, no syscall)
 * @list:    the list, embedded in its owner
 * @expired: called as expired(data, entry) for each entry that is due
 * @data:    passed to @expired
 */
void deadline_list_init(struct loop *loop, struct deadline_list *list, deadline_expired_fn expired,
			void *data);

/**
 * deadline_entry_init() - make an entry that is not set
 * @entry: the entry, embedded in its owner
 */
void deadline_entry_init(struct deadline_entry *entry);

/**
 * deadline_set() - set (or move) an entry's deadline, re-arming the timer
 * @list:  the list
 * @entry: an initialised entry, set or not
 * @at:    the new deadline on the now_usec() clock; 0 cancels it
 *
 * O(n) in the entries after @at (new deadlines are usually the latest, so a search
 * from the tail ends at once); the timer is set again only when the head changes.
 */
void deadline_set(struct deadline_list *list, struct deadline_entry *entry, unsigned long long at);

/**
 * deadline_cancel() - take an entry off its list
 * @list:  the list
 * @entry: an initialised entry; a no-op if it is not set
 */
void deadline_cancel(struct deadline_list *list, struct deadline_entry *entry);

/**
 * deadline_list_destroy() - disarm the timer for good
 * @list: the list; its entries must all be cancelled (their owners gone) first
 */
void deadline_list_destroy(struct deadline_list *list);
