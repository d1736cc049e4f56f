/* The binary's size, stripped, and whether it is static (the ELF header and program
 * headers, include/uapi/linux/elf.h: a PT_INTERP entry names the dynamic loader). */
#include "elf_size.h"

#include "supervise.h"
#include "util.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int elf_is_static(const char *path, bool *is_static)
{
	Elf64_Ehdr eh;
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (pread(fd, &eh, sizeof(eh), 0) != sizeof(eh) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
		return -ENOEXEC;
	*is_static = true;
	for (int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof(ph),
			  (off_t)(eh.e_phoff + (Elf64_Off)i * eh.e_phentsize)) != sizeof(ph))
			return -ENOEXEC;
		if (ph.p_type == PT_INTERP)
			*is_static = false;
	}
	return 0;
}

void elf_measure_stripped(struct bench *b, const char *dir, bool *is_static)
{
	const char *binary = b->options.size_binary;
	cleanup_free char *copy = xasprintf("%s/stripped", dir);
	int status;

	int r = elf_is_static(binary, is_static);
	if (r < 0)
		bench_die(b, "cannot size %s: %s", binary,
			  r == -ENOEXEC ? "not a 64-bit ELF file" : strerror(-r));
	pid_t pid = supervise_fork(b, "strip");
	if (pid == 0) {
		execlp("strip", "strip", "--strip-all", "-o", copy, binary, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		bench_die(b, "waitpid strip (pid %d): %s", (int)pid, strerror(errno));
	supervise_child_reaped(b, pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		bench_die(b, "strip --strip-all -o %s %s failed (is binutils installed?)", copy,
			  binary);
	struct stat st;
	if (stat(copy, &st) < 0)
		bench_die(b, "cannot stat %s: %s", copy, strerror(errno));
	figure_add(&b->figures, F_BINARY_SIZE, (double)st.st_size);
}
