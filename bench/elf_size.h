/* The binary size figure: whether an ELF executable is static, and the size of a
 * copy stripped with strip --strip-all. */
#pragma once

#include "bench.h"

#include <stdbool.h>

/* Sets *is_static to whether the 64-bit ELF file at path has no program interpreter.
 * Returns 0, -ENOEXEC (not a 64-bit ELF file, or its program headers are cut short)
 * or open's -errno. */
int elf_is_static(const char *path, bool *is_static);

/* Strips a copy of the options' size binary into dir/stripped and adds its size in
 * bytes to F_BINARY_SIZE; sets *is_static. Dies on failure (binutils missing). */
void elf_measure_stripped(struct bench *b, const char *dir, bool *is_static);
