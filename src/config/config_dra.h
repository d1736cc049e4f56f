/* The DRA driver's part of config_parse(): private to src/config. */
#pragma once

#include "config.h"

#include <stdio.h>

/**
 * config_finish_dra() - derive and check the DRA driver's settings
 * @config: parsed; --plugin-dir, --state-dir and --node-name get their defaults
 *          (allocated: config_free() frees them), the plugin options their shared values
 * @err:    where a refusal is printed
 *
 * Return: 0, or -EINVAL (a driver name that is no DNS subdomain, relative dirs, an
 * incomplete --kube-api set).
 */
int config_finish_dra(struct config *config, FILE *err);
