/* The wasm2c runtime functions the generated code calls, for UEFI.
 *
 * Linear memory: reserved once from AllocatePages at the largest size we
 * allow (CK_WASM_MAX_PAGES) and never moved, because the generated code keeps
 * the base pointer in locals across calls (WASM_RT_USE_MMAP-style). Every
 * access is bounds-checked against the current size by the generated code
 * (WASM_RT_MEMCHECK_BOUNDS_CHECK); growing only zeroes and publishes pages.
 *
 * Traps and wasm exceptions unwind with setjmp/longjmp. */
#include "ck.h"
#include "wasm-rt.h"
#include "wasm-rt-exceptions.h"

#ifndef CK_WASM_MAX_PAGES
#define CK_WASM_MAX_PAGES 1024            /* 64 MiB of linear memory at most */
#endif

uint32_t wasm_rt_call_stack_depth;
static bool g_initialized;
static wasm_rt_memory_t *g_memory;       /* the module's only memory */

/* Set by the embedder around the module's entry point (ck_main.c). */
jmp_buf *ck_trap_target;
uint32_t ck_last_trap;

void wasm_rt_init(void) { g_initialized = true; }
bool wasm_rt_is_initialized(void) { return g_initialized; }
void wasm_rt_free(void) { g_initialized = false; }
void wasm_rt_init_thread(void) {}
void wasm_rt_free_thread(void) {}

void abort(void) { wasm_rt_trap(WASM_RT_TRAP_UNREACHABLE); }

const char *wasm_rt_strerror(wasm_rt_trap_t trap) {
  switch (trap) {
    case WASM_RT_TRAP_NONE: return "no error";
    case WASM_RT_TRAP_OOB: return "out of bounds memory access";
    case WASM_RT_TRAP_INT_OVERFLOW: return "integer overflow";
    case WASM_RT_TRAP_DIV_BY_ZERO: return "integer divide by zero";
    case WASM_RT_TRAP_INVALID_CONVERSION: return "invalid conversion";
    case WASM_RT_TRAP_UNREACHABLE: return "unreachable executed";
    case WASM_RT_TRAP_CALL_INDIRECT: return "invalid call_indirect";
    case WASM_RT_TRAP_NULL_REF: return "null reference";
    case WASM_RT_TRAP_UNCAUGHT_EXCEPTION: return "uncaught exception";
    case WASM_RT_TRAP_UNALIGNED: return "unaligned atomic";
    case WASM_RT_TRAP_EXHAUSTION: return "call stack exhausted";
    default: return "unknown trap";
  }
}

void wasm_rt_trap(wasm_rt_trap_t code) {
  ck_last_trap = (uint32_t)code;
  if (ck_trap_target) longjmp(*ck_trap_target, 1);
  ck_puts("ccidkit: wasm trap outside the module\r\n");
  ck_exit_now(70);
}

/* ---- memory ---- */
void wasm_rt_allocate_memory(wasm_rt_memory_t *mem, uint64_t initial_pages,
                             uint64_t max_pages, bool is64, uint32_t page_size) {
  if (is64 || page_size != WASM_DEFAULT_PAGE_SIZE || g_memory) {
    ck_puts("ccidkit: unsupported wasm memory\r\n");
    ck_exit_now(70);
  }
  uint64_t cap = CK_WASM_MAX_PAGES;
  if (max_pages < cap) cap = max_pages;
  if (initial_pages > cap) {
    ck_puts("ccidkit: wasm memory larger than the reservation\r\n");
    ck_exit_now(70);
  }
  EFI_PHYSICAL_ADDRESS base = 0;
  UINTN efi_pages = (UINTN)(cap * (WASM_DEFAULT_PAGE_SIZE / 4096));
  EFI_STATUS s = ck_bs->AllocatePages(AllocateAnyPages, EfiLoaderData, efi_pages, &base);
  if (EFI_ERROR(s)) {
    ck_puts("ccidkit: cannot reserve wasm memory\r\n");
    ck_exit_now(70);
  }
  mem->data = (uint8_t *)(uintptr_t)base;
  mem->data_end = mem->data + cap * WASM_DEFAULT_PAGE_SIZE;
  mem->page_size = page_size;
  mem->pages = initial_pages;
  mem->max_pages = cap;
  mem->size = initial_pages * WASM_DEFAULT_PAGE_SIZE;
  mem->is64 = false;
  memset(mem->data, 0, mem->size);
  g_memory = mem;
}

uint64_t wasm_rt_grow_memory(wasm_rt_memory_t *mem, uint64_t delta) {
  uint64_t old = mem->pages;
  if (delta == 0) return old;
  if (delta > mem->max_pages || old + delta > mem->max_pages) return (uint64_t)-1;
  uint64_t new_size = (old + delta) * WASM_DEFAULT_PAGE_SIZE;
  memset(mem->data + mem->size, 0, new_size - mem->size);
  mem->pages = old + delta;
  mem->size = new_size;
  return old;
}

/* The shell may run the image again: give the reservation back. */
void wasm_rt_free_memory(wasm_rt_memory_t *mem) {
  if (!mem->data) return;
  ck_bs->FreePages((EFI_PHYSICAL_ADDRESS)(uintptr_t)mem->data,
                   (UINTN)((mem->data_end - mem->data) / 4096));
  mem->data = mem->data_end = NULL;
  mem->size = mem->pages = 0;
  if (g_memory == mem) g_memory = NULL;
}

uint8_t *ck_mem(uint64_t addr, uint64_t len) {
  if (!g_memory) return NULL;
  if (addr > g_memory->size || len > g_memory->size - addr) return NULL;
  return g_memory->data + addr;
}
int ck_mem_put32(uint64_t addr, uint32_t v) {
  uint8_t *p = ck_mem(addr, 4);
  if (!p) return -1;
  memcpy(p, &v, 4);
  return 0;
}
int ck_mem_put64(uint64_t addr, uint64_t v) {
  uint8_t *p = ck_mem(addr, 8);
  if (!p) return -1;
  memcpy(p, &v, 8);
  return 0;
}
int ck_mem_get32(uint64_t addr, uint32_t *v) {
  uint8_t *p = ck_mem(addr, 4);
  if (!p) return -1;
  memcpy(v, p, 4);
  return 0;
}

/* ---- tables ---- */
void wasm_rt_allocate_funcref_table(wasm_rt_funcref_table_t *t, uint32_t elements,
                                    uint32_t max_elements) {
  t->size = elements;
  t->max_size = elements;               /* this module never grows its table */
  (void)max_elements;
  t->data = elements ? ck_alloc((size_t)elements * sizeof(wasm_rt_funcref_t)) : NULL;
  if (elements && !t->data) {
    ck_puts("ccidkit: out of memory (table)\r\n");
    ck_exit_now(70);
  }
  for (uint32_t i = 0; i < elements; i++) t->data[i] = wasm_rt_funcref_null_value;
}
void wasm_rt_free_funcref_table(wasm_rt_funcref_table_t *t) {
  if (t->data) ck_free(t->data);
  t->data = NULL;
}
uint32_t wasm_rt_grow_funcref_table(wasm_rt_funcref_table_t *t, uint32_t delta,
                                    wasm_rt_funcref_t init) {
  (void)init;
  return delta ? 0xffffffffu : t->size;
}

/* ---- exceptions (MicroPython's nlr runs on wasm exception handling) ---- */
#define CK_EXN_MAX 256
static wasm_rt_tag_t g_exn_tag;
static uint32_t g_exn_size;
static uint8_t g_exn_data[CK_EXN_MAX];
static wasm_rt_jmp_buf *g_unwind_target;

void wasm_rt_load_exception(const wasm_rt_tag_t tag, uint32_t size, const void *values) {
  if (size > CK_EXN_MAX) wasm_rt_trap(WASM_RT_TRAP_EXHAUSTION);
  g_exn_tag = tag;
  g_exn_size = size;
  if (size) memcpy(g_exn_data, values, size);
}

void wasm_rt_throw(void) {
  wasm_rt_jmp_buf *t = g_unwind_target;
  if (!t || !t->initialized) wasm_rt_trap(WASM_RT_TRAP_UNCAUGHT_EXCEPTION);
  t->initialized = false;
  /* back to the call depth of the handler's frame (see wasm_fixups.h) */
  wasm_rt_call_stack_depth = (uint32_t)t->buffer[0].spare[0];
  longjmp(t->buffer, WASM_RT_TRAP_UNCAUGHT_EXCEPTION);
}

wasm_rt_jmp_buf *wasm_rt_get_unwind_target(void) { return g_unwind_target; }
void wasm_rt_set_unwind_target(wasm_rt_jmp_buf *target) { g_unwind_target = target; }
wasm_rt_tag_t wasm_rt_exception_tag(void) { return g_exn_tag; }
uint32_t wasm_rt_exception_size(void) { return g_exn_size; }
void *wasm_rt_exception(void) { return g_exn_data; }
