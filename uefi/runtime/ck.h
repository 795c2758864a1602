/* ccidkit UEFI runtime: declarations shared by the C files of the shim that
 * runs the wasm2c translation of MicroPython (WASI preview1 over UEFI).
 *
 * Layers:  MicroPython (wasm) -> wasm2c C -> this shim (WASI + host.call
 * over UEFI boot services) -> gnu-efi crt0 -> PE32+ application. */
#ifndef CK_H
#define CK_H

#include <efi.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>

/* ---- firmware handles (ck_main.c) ---- */
extern EFI_HANDLE ck_image;
extern EFI_SYSTEM_TABLE *ck_st;
extern EFI_BOOT_SERVICES *ck_bs;
extern EFI_RUNTIME_SERVICES *ck_rs;
extern EFI_FILE_HANDLE ck_volume_root;   /* boot volume root, or NULL */

/* ---- wasm linear memory (ck_wasm_rt.c) ---- */
/* A pointer to `len` bytes of wasm memory at `addr`, or NULL when the range
 * leaves the memory: every WASI and host.call argument goes through this. */
uint8_t *ck_mem(uint64_t addr, uint64_t len);
int ck_mem_put32(uint64_t addr, uint32_t v);
int ck_mem_put64(uint64_t addr, uint64_t v);
int ck_mem_get32(uint64_t addr, uint32_t *v);
uint64_t ck_mem_peak_stack(void);

/* ---- console (ck_console.c) ---- */
void ck_console_init(void);
void ck_write(const char *buf, size_t len);      /* ConOut (+ COM1 when needed) */
void ck_puts(const char *s);
void ck_put_dec(uint64_t v);
void ck_put_hex(uint64_t v);
void ck_outb(uint16_t port, uint8_t v);
int ck_read_key(int64_t timeout_ms, uint16_t *scan, uint16_t *uc); /* 1 key, 0 timeout, <0 error */
size_t ck_read_line(char *buf, size_t cap);

/* ---- time (ck_main.c) ---- */
uint64_t ck_ticks_us(void);
uint64_t ck_ticks_ns(void);
uint64_t ck_realtime_ns(void);
uint64_t ck_tsc_hz(void);

/* ---- files (ck_fs.c) ---- */
typedef struct {
  const char *path;      /* absolute, no trailing slash */
  const uint8_t *data;
  uint32_t size;
} ck_embedded_file_t;
void ck_fs_init(void);
int ck_embedded_count(void);
const ck_embedded_file_t *ck_embedded_at(int i);
const ck_embedded_file_t *ck_embedded_find(const char *path, size_t len);
int ck_embedded_is_dir(const char *path, size_t len);
/* Whole-file read from the boot volume into pool memory (read-only use). */
EFI_STATUS ck_volume_read(const char *path, uint8_t **data, uint64_t *size);
EFI_STATUS ck_volume_stat(const char *path, int *is_dir, uint64_t *size);

/* ---- host.call (ck_host.c, ck_usb.c) ---- */
typedef struct {
  char *buf;
  size_t len, cap;
  int failed;            /* out of memory */
} ck_out_t;
void ck_out_str(ck_out_t *o, const char *s);
void ck_out_mem(ck_out_t *o, const char *s, size_t n);
void ck_out_dec(ck_out_t *o, int64_t v);
void ck_out_hex_u(ck_out_t *o, uint64_t v);
void ck_out_hexbytes(ck_out_t *o, const uint8_t *p, size_t n);
void ck_out_char(ck_out_t *o, char c);

/* A payload cursor: space-separated tokens. */
typedef struct {
  const char *p, *end;
} ck_args_t;
int ck_arg_u64(ck_args_t *a, uint64_t *v);               /* decimal or 0x hex */
int ck_arg_tok(ck_args_t *a, const char **s, size_t *n);
int ck_arg_hexbytes(ck_args_t *a, uint8_t *dst, size_t cap, size_t *n); /* "-" = empty */
int ck_arg_end(ck_args_t *a);

/* A service: returns EFI_SUCCESS and writes its answer to `out`, or an error
 * status with a short message in `msg`. */
typedef EFI_STATUS (*ck_service_fn)(ck_args_t *args, ck_out_t *out, const char **msg);
EFI_STATUS ck_usb_service(const char *name, size_t name_len, ck_args_t *args,
                          ck_out_t *out, const char **msg, int *found);
const char *ck_status_name(EFI_STATUS s);
void ck_usb_shutdown(void);      /* cancel async interrupt transfers, free USB buffers */
/* boot.next (ck_boot.c): start the boot option after BootCurrent in BootOrder */
EFI_STATUS ck_boot_next(ck_args_t *args, ck_out_t *out, const char **msg);
void ck_host_release(void);      /* free what host.call and WASI still hold */

/* ---- memory from boot services ---- */
void *ck_alloc(size_t n);
void ck_free(void *p);

/* ---- exit ---- */
void ck_exit_now(uint32_t status) __attribute__((noreturn));

#endif
