/* setjmp for the UEFI runtime: the two routines come from gnu-efi's libefi
 * (setjmp.o, SysV ABI). libefi's routine stores eight registers (rbx, rsp,
 * rbp, r12-r15, rip); the spare words after them are ours: `spare[0]` keeps
 * the wasm call depth of an exception handler (see wasm_fixups.h). */
#ifndef CK_SETJMP_H
#define CK_SETJMP_H
typedef struct {
  unsigned long long regs[8];
  unsigned long long spare[2];
} __attribute__((aligned(16))) jmp_buf[1];
extern unsigned long long setjmp(jmp_buf env) __attribute__((returns_twice));
extern void longjmp(jmp_buf env, unsigned long long value) __attribute__((noreturn));
/* No signals in firmware: the sig* forms are the plain ones. */
#define sigsetjmp(env, savemask) setjmp(env)
#define siglongjmp(env, val) longjmp(env, val)
#endif
