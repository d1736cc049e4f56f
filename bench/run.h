/* One run of the benchmark: one plugin process against the fake kubelet, from exec
 * to SIGTERM, then a second plugin with its device missing; every figure but the
 * binary size gets one sample (or several) from it. */
#pragma once

#include "bench.h"

/* Runs number run (0-based; strace counts only in run 0) in the existing directory
 * dir, adding its samples to b's figures. Dies on any failure. */
void run_once(struct bench *b, int run, const char *dir);
