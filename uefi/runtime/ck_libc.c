/* The few C library routines the generated code and the shim need, written
 * for the firmware: no libc exists under UEFI (and libefi's byte loops clash
 * with these names, so only setjmp.o is taken from libefi). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

void *memcpy(void *dst, const void *src, size_t n) {
  void *d = dst;
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
  uint8_t *d = dst;
  const uint8_t *s = src;
  if (d == s || n == 0) return dst;
  if (d < s || d >= s + n) return memcpy(dst, src, n);
  /* overlapping, copy backwards */
  d += n - 1;
  s += n - 1;
  __asm__ volatile("std\n\trep movsb\n\tcld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  void *d = dst;
  __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
  const uint8_t *x = a, *y = b;
  for (size_t i = 0; i < n; i++)
    if (x[i] != y[i]) return (int)x[i] - (int)y[i];
  return 0;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

/* gcc may call this for __builtin_popcountll without -mpopcnt. */
int __popcountdi2(long long v) {
  unsigned long long x = (unsigned long long)v;
  int c = 0;
  while (x) { x &= x - 1; c++; }
  return c;
}

/* ---- math: only what wasm's f32/f64 instructions need ---- */
double fabs(double x) { return __builtin_fabs(x); }
double copysign(double x, double y) { return __builtin_copysign(x, y); }
float copysignf(float x, float y) { return __builtin_copysignf(x, y); }
float fabsf(float x) { return __builtin_fabsf(x); }

double sqrt(double x) {
  double r;
  __asm__("sqrtsd %1, %0" : "=x"(r) : "x"(x));
  return r;
}
float sqrtf(float x) {
  float r;
  __asm__("sqrtss %1, %0" : "=x"(r) : "x"(x));
  return r;
}

/* 2^52 (2^23 for float): from this magnitude on every value is an integer.
 * Adding and subtracting it rounds in the current mode (nearest-even). */
static const double two52 = 4503599627370496.0;
static const float two23 = 8388608.0f;

double nearbyint(double x) {
  double a = __builtin_fabs(x);
  if (!(a < two52)) return x;                /* integral, inf or nan */
  volatile double t = a + two52;
  double r = t - two52;
  return __builtin_copysign(r, x);           /* keeps -0.0 */
}
float nearbyintf(float x) {
  float a = __builtin_fabsf(x);
  if (!(a < two23)) return x;
  volatile float t = a + two23;
  float r = t - two23;
  return __builtin_copysignf(r, x);
}

double trunc(double x) {
  if (!(__builtin_fabs(x) < two52)) return x;
  return __builtin_copysign((double)(long long)x, x);
}
float truncf(float x) {
  if (!(__builtin_fabsf(x) < two23)) return x;
  return __builtin_copysignf((float)(int)x, x);
}

double floor(double x) {
  double t = trunc(x);
  if (t > x) t -= 1.0;                       /* negative non-integers */
  return t == 0.0 ? __builtin_copysign(0.0, x) : t;
}
float floorf(float x) {
  float t = truncf(x);
  if (t > x) t -= 1.0f;
  return t == 0.0f ? __builtin_copysignf(0.0f, x) : t;
}

double ceil(double x) {
  double t = trunc(x);
  if (t < x) t += 1.0;
  return t == 0.0 ? __builtin_copysign(0.0, x) : t;
}
float ceilf(float x) {
  float t = truncf(x);
  if (t < x) t += 1.0f;
  return t == 0.0f ? __builtin_copysignf(0.0f, x) : t;
}
