/* The little of <stdlib.h> the generated code names. */
#ifndef CK_STDLIB_H
#define CK_STDLIB_H
#include <stddef.h>
void abort(void) __attribute__((noreturn));
#endif
