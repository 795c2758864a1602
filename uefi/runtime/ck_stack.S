/* ck_call_on_stack(arg, fn, top): run fn(arg) on the stack that ends at
 * `top` and come back to the caller's stack (SysV ABI, as crt0 calls us).
 * OVMF gives an application a small stack; the wasm2c code needs far more
 * (one C frame per wasm call). */
	.text
	.globl	ck_call_on_stack
	.type	ck_call_on_stack, @function
ck_call_on_stack:
	pushq	%rbp
	movq	%rsp, %rbp
	movq	%rdx, %rsp
	andq	$-16, %rsp
	callq	*%rsi
	movq	%rbp, %rsp
	popq	%rbp
	ret
	.size	ck_call_on_stack, .-ck_call_on_stack
	.section .note.GNU-stack,"",@progbits
