/* A deadline-ordered list with one loop timer armed for its head. See
 * deadline_list.h. */
#include "deadline_list.h"
#include "../util.h"

static void deadline_list_rearm(struct deadline_list *list)
{
	unsigned long long at = list_empty(&list->entries)
				    ? 0
				    : list_first(&list->entries, struct deadline_entry, link)->at;

	loop_timer_arm_at(&list->timer, at);
}

/* Takes every due entry off the head, earliest first, and hands it to its owner. */
static void deadline_list_fire(void *data)
{
	struct deadline_list *list = data;
	unsigned long long now = now_usec();

	while (!list_empty(&list->entries)) {
		struct deadline_entry *e = list_first(&list->entries, struct deadline_entry, link);
		if (e->at > now)
			break;
		list_unlink(&e->link);
		e->at = 0;
		list->expired(list->data, e);
	}
	deadline_list_rearm(list);
}

void deadline_list_init(struct loop *loop, struct deadline_list *list, deadline_expired_fn expired,
			void *data)
{
	list_init(&list->entries);
	list->expired = expired;
	list->data = data;
	loop_timer_init(loop, &list->timer, deadline_list_fire, list);
}

void deadline_entry_init(struct deadline_entry *entry)
{
	list_init(&entry->link);
	entry->at = 0;
}

void deadline_set(struct deadline_list *list, struct deadline_entry *entry, unsigned long long at)
{
	list_unlink(&entry->link);
	entry->at = at;
	if (at) {
		/* From the tail: insert after the last entry due no later. */
		struct list *pos = list->entries.prev;
		while (pos != &list->entries &&
		       list_entry(pos, struct deadline_entry, link)->at > at)
			pos = pos->prev;
		list_append(pos->next, &entry->link); /* i.e. insert after pos */
	}
	deadline_list_rearm(list);
}

void deadline_cancel(struct deadline_list *list, struct deadline_entry *entry)
{
	if (!entry->at && list_empty(&entry->link))
		return;
	deadline_set(list, entry, 0);
}

void deadline_list_destroy(struct deadline_list *list)
{
	loop_timer_destroy(&list->timer);
}
