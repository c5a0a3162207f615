/*
 * console_assets.h - the web console's files (host/console/), compiled into
 * the host at build time by cmake/EvhConsole.cmake, which generates the
 * table below (console_assets.c in the build tree).  Nothing is read from
 * disk at run time, so the console needs no install step and cannot drift
 * from the binary that serves it.
 */
#ifndef EVH_CONSOLE_ASSETS_H
#define EVH_CONSOLE_ASSETS_H

#include <stddef.h>

typedef struct console_asset {
    const char *name;               /* the file name: "index.html", "app.js" */
    const char *content_type;       /* from the extension, with charset for text */
    const unsigned char *data;      /* the bytes, followed by one NUL not counted */
    size_t len;
    const char *etag;               /* "\"<first 16 hex digits of its SHA-256>\"" */
} console_asset;

/* Every file, sorted by name; the last entry is {0}. */
extern const console_asset console_assets[];

#endif
