/* The flag table's types, private to src/config: config.c holds the flags both
 * programs share (and the device plugin's own, marked), config_dra.c the DRA driver's,
 * which only iommufd-dra-driver links. */
#pragma once

#include "config.h"

#include <stddef.h>
#include <stdio.h>

enum option_kind { KIND_STRING, KIND_INT, KIND_DURATION, KIND_BOOL, KIND_CHOICE, KIND_MODE };

struct choice {
	const char *name;
	int value;
};

struct option_spec {
	const char *name;
	enum option_kind kind;
	size_t offset;
	const char *metavar;
	const char *help;
	const struct choice *choices; /* KIND_CHOICE: ends with a NULL name */
	int min, max;		      /* KIND_INT */
	unsigned only;		      /* BOTH_PROGRAMS or ONLY_DEVICE_PLUGIN */
};

#define BOTH_PROGRAMS	   0u
#define ONLY_DEVICE_PLUGIN (1u << CONFIG_DEVICE_PLUGIN)

/**
 * FIELD() - where a flag's value lives in struct config
 * @f: the member, e.g. kubelet.devices
 */
#define FIELD(f) offsetof(struct config, f)

/* The most flags a program may add to the shared table. */
#define CONFIG_FLAVOR_MAX_SPECS 16

/* One program: its name, the line --help starts with, its own flags after the shared
 * ones, its defaults over the modules' and its derived settings. */
struct config_flavor {
	enum config_program program;
	const char *name;
	const char *summary;
	const struct option_spec *specs;
	size_t n_specs;
	void (*defaults)(struct config *config);	 /* NULL: the modules' */
	int (*finish)(struct config *config, FILE *err); /* NULL: nothing more */
};
