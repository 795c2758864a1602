/* The rounding and root functions wasm's float instructions map to (ck_libc.c). */
#ifndef CK_MATH_H
#define CK_MATH_H
double floor(double); float floorf(float);
double ceil(double); float ceilf(float);
double trunc(double); float truncf(float);
double nearbyint(double); float nearbyintf(float);
double sqrt(double); float sqrtf(float);
double fabs(double); float fabsf(float);
double copysign(double, double); float copysignf(float, float);
#define INFINITY (__builtin_inff())
#define NAN (__builtin_nanf(""))
#define signbit(x) __builtin_signbit(x)
#define isnan(x) __builtin_isnan(x)
#endif
