/* Included before every wasm2c-generated file (gcc -include).
 *
 * wasm2c counts call depth (WASM_RT_STACK_DEPTH_COUNT) but a caught wasm
 * exception longjmps over the FUNC_EPILOGUE of every frame it unwinds, so
 * the counter would creep up with each Python exception until the runtime
 * trapped with "call stack exhausted". Each handler records the depth at
 * its `try` in the spare word of its jmp_buf; wasm_rt_throw (ck_wasm_rt.c)
 * restores it before jumping. */
#ifndef CK_WASM_FIXUPS_H
#define CK_WASM_FIXUPS_H
#include "wasm-rt.h"
#include "wasm-rt-exceptions.h"
#undef WASM_RT_SETJMP_EXN
#define WASM_RT_SETJMP_EXN(buf)                                   \
  ((buf).initialized = true,                                      \
   (buf).buffer[0].spare[0] = wasm_rt_call_stack_depth,           \
   setjmp((buf).buffer))
#endif
