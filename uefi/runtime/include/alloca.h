#ifndef CK_ALLOCA_H
#define CK_ALLOCA_H
#define alloca(n) __builtin_alloca(n)
#endif
