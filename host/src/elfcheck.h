/*
 * elfcheck.h - what a plugin library exports and which libraries it needs,
 * read from its ELF file with <elf.h>, without loading it: none of the
 * plugin's code (not even its constructors) runs.  `evhost plugins
 * validate` reports both (cli_plugins.c).
 *
 * Exports: the defined, visible dynamic symbols (.dynsym) besides
 * evh_plugin_entry.  Linker-made ones (_init, _fini, _edata, _end,
 * __bss_start, absolute version names) are not counted.
 *
 * Dependencies: each DT_NEEDED entry is looked up the way the dynamic
 * linker would, without running anything: already loaded in this process,
 * then the library's DT_RUNPATH/DT_RPATH ($ORIGIN expanded),
 * LD_LIBRARY_PATH, the directories of /etc/ld.so.conf (and its includes),
 * the host's own search path (dlinfo) and /lib, /usr/lib, /lib64,
 * /usr/lib64; a file found must be an ELF shared object for this machine,
 * as ld.so skips others.  A library that is on the disk but missing from
 * ld.so.cache (ldconfig not run) counts as found: the dlopen that follows
 * in `validate` reports that case.
 */
#ifndef EVH_ELFCHECK_H
#define EVH_ELFCHECK_H

#include <stddef.h>

typedef struct elf_report {
    int exports_entry;    /* 1 when evh_plugin_entry is exported */
    char **extra_exports; /* other exported symbol names, in table order */
    size_t n_extra_exports;
    char **needed; /* every DT_NEEDED entry, in file order */
    size_t n_needed;
    char **missing; /* those of needed that were not found */
    size_t n_missing;
} elf_report;

/*
 * Read the library at path into *r (zeroed first; release it with
 * elf_report_release, also on failure).  Returns EVH_OK, or EVH_E_LOAD when
 * the file is not an ELF shared object for this machine or is malformed,
 * EVH_E_IO when it cannot be read, EVH_E_NOMEM; then *err (malloc'd, the
 * caller frees it) says why.
 */
int elfcheck_library(const char *path, elf_report *r, char **err);

void elf_report_release(elf_report *r);

#endif
