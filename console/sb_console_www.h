/*  sb_console_www: the page's files (console/www/), built into the binary
    by console/www.cmake, so the console serves them wherever it is
    installed, offline, and never opens a file a request names.
*/
#ifndef SB_CONSOLE_WWW_H_INCLUDED
#define SB_CONSOLE_WWW_H_INCLUDED

#include <stddef.h>

typedef struct {
    const char *name;           //  its path on the server, "/app.js"
    const char *type;           //  Content-Type
    const unsigned char *data;  //  its bytes
    size_t size;                //  how many
} sb_console_www_t;

//  Every file, ending with {NULL}.
extern const sb_console_www_t sb_console_www[];

#endif
