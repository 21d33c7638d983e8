/*
 * container_of.h - the object that embeds a member, from a pointer to that
 * member (the Linux kernel's container_of). Callbacks of the loop glue,
 * libcurl transfers and the queue hand back a pointer to the embedded
 * handle; this finds its owner without a back-pointer.
 */
#ifndef SOLLOL_CONTAINER_OF_H
#define SOLLOL_CONTAINER_OF_H

#include <stddef.h>

/* `ptr` points at `member` of a `type`; the result is that `type *`. A
 * const `ptr` is the caller's to respect (the cast drops it, as the
 * hand-written casts it replaces did). */
#define SOL_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
