/* The one intrusive list every module uses: a circular doubly linked list with a
 * sentinel head, the node embedded in its owner (found again with container_of), as
 * the kernel's list.h and dbus-broker's c-list do. No allocation per node. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/**
 * container_of() - the struct that embeds a member
 * @ptr:    pointer to the member
 * @type:   the embedding struct's type
 * @member: the member's name in @type
 *
 * Return: a pointer to the @type that holds *@ptr.
 */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/**
 * struct list - a list head, or a node embedded in its owner
 * @prev: the previous node (the head's: the last node)
 * @next: the next node (the head's: the first node)
 */
struct list {
	struct list *prev, *next;
};

/**
 * list_init() - make @l an empty list (or an unlinked node)
 * @l: the head or node
 */
static inline void list_init(struct list *l)
{
	l->prev = l->next = l;
}

/**
 * list_empty() - whether the list headed by @l has no node
 * @l: an initialised head
 * Return: true if empty (for a node: if it is not on any list)
 */
static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

/**
 * list_append() - link @node at the tail of @head
 * @head: an initialised head
 * @node: a node not on any list
 */
static inline void list_append(struct list *head, struct list *node)
{
	node->prev = head->prev;
	node->next = head;
	head->prev->next = node;
	head->prev = node;
}

/**
 * list_unlink() - take @node off its list; a no-op for an unlinked node
 * @node: an initialised node
 */
static inline void list_unlink(struct list *node)
{
	node->prev->next = node->next;
	node->next->prev = node->prev;
	list_init(node);
}

/**
 * list_entry() - the owner of a list node
 * @node:   the struct list embedded in it
 * @type:   the owner's type
 * @member: the node's field name in @type
 *
 * Return: a pointer to the owner.
 */
#define list_entry(node, type, member) container_of(node, type, member)

/**
 * list_first() - the owner of a list's first node
 * @head:   a non-empty list's head
 * @type:   the owner's type
 * @member: the node's field name in @type
 *
 * Return: a pointer to the first entry.
 */
#define list_first(head, type, member) list_entry((head)->next, type, member)

/**
 * list_for_each() - iterate over every entry of a list
 * @pos:    the loop cursor, a pointer to the entries' type
 * @head:   the list's head
 * @member: the node's field name in the entries' type
 *
 * The loop body must not unlink @pos. @member is a field name, which cannot be
 * parenthesized.
 */
#define list_for_each(pos, head, member)                                                           \
	for ((pos) = list_entry((head)->next, __typeof__(*(pos)), member);                         \
	     &(pos)->member != (head);                                                             \
	     (pos) = list_entry((pos)->member.next, __typeof__(*(pos)), member))

/**
 * list_for_each_safe() - iterate over every entry; the body may unlink (or free) @pos
 * @pos:    the loop cursor, a pointer to the entries' type
 * @next:   another cursor of that type, holding the entry after @pos
 * @head:   the list's head
 * @member: the node's field name in the entries' type
 *
 * The body may unlink @pos but no other entry (in particular not @next).
 */
#define list_for_each_safe(pos, next, head, member)                                                \
	for ((pos) = list_entry((head)->next, __typeof__(*(pos)), member),                         \
	    (next) = list_entry((pos)->member.next, __typeof__(*(pos)), member);                   \
	     &(pos)->member != (head);                                                             \
	     (pos) = (next), (next) = list_entry((next)->member.next, __typeof__(*(pos)), member))
