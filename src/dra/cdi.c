/* CDI specs for prepared claims: rendered as JSON (strings escaped, though every one
 * is already checked: driver name, uid, our own paths) and written through
 * dra_files.c, so the runtime never reads half a spec. */
#include "cdi.h"
#include "dra_files.h"
#include "../kubelet/kubelet_options.h"
#include "../util.h"

#include <stdio.h>
#include <string.h>

/* Appends s as a JSON string (RFC 8259 section 7). */
static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

char *cdi_spec_render(const struct cdi_options *o, const char *claim_uid, const char *socket_path)
{
	char *out = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&out, &size);

	if (!f)
		abort(); /* out of memory */
	fputs("{\"cdiVersion\":\"" CDI_VERSION "\",\"kind\":", f);
	cleanup_free char *kind = xasprintf("%s/" CDI_CLASS, o->driver);
	json_string(f, kind);
	fputs(",\"devices\":[{\"name\":", f);
	json_string(f, claim_uid);
	fputs(",\"containerEdits\":{\"mounts\":[{\"hostPath\":", f);
	json_string(f, socket_path);
	fputs(",\"containerPath\":", f);
	json_string(f, o->container_socket_path);
	fputs(",\"options\":[\"bind\"]}]", f);
	if (o->device_node) {
		/* hostPath (CDI spec 0.5.0) is where the runtime finds the node; path is
		 * where it appears in the container. */
		fputs(",\"deviceNodes\":[{\"path\":\"" KUBELET_DEVICE_NODE_CONTAINER_PATH
		      "\",\"hostPath\":",
		      f);
		json_string(f, o->device_node);
		fputs(",\"permissions\":\"rw\"}]", f);
	}
	fputs("}}]}\n", f);
	if (fclose(f) != 0)
		abort(); /* a memstream fails only for want of memory */
	return out;
}

char *cdi_spec_file_name(const struct cdi_options *o, const char *claim_uid)
{
	return xasprintf("%s-%s.json", o->driver, claim_uid);
}

char *cdi_device_id(const struct cdi_options *o, const char *claim_uid)
{
	return xasprintf("%s/" CDI_CLASS "=%s", o->driver, claim_uid);
}

int cdi_spec_write(const struct cdi_options *o, int dir_fd, const char *dir_path,
		   const char *claim_uid, const char *socket_path, struct error *e)
{
	cleanup_free char *json = cdi_spec_render(o, claim_uid, socket_path);
	cleanup_free char *name = cdi_spec_file_name(o, claim_uid);

	/* The runtime runs as root: 0600 is enough, and says nobody else needs it. */
	return dra_file_write_atomic(dir_fd, dir_path, name, json, strlen(json), 0600, e);
}

int cdi_spec_remove(const struct cdi_options *o, int dir_fd, const char *dir_path,
		    const char *claim_uid, struct error *e)
{
	cleanup_free char *name = cdi_spec_file_name(o, claim_uid);

	return dra_file_remove(dir_fd, dir_path, name, e);
}
