/* Entry point of the ccidkit UEFI application: set up the console, clocks,
 * the boot volume and a private stack, then run MicroPython (wasm2c) on
 * /boot.py with the command line of the shell or of \ccidkit\args.txt. */
#include "ck.h"
#include "wasm-rt.h"
#include "mp.h"

#ifndef CK_STACK_BYTES
#define CK_STACK_BYTES (16u << 20)   /* private native stack */
#endif
#define CK_MAX_ARGS 32
#define CK_ARGS_BYTES 2048

EFI_HANDLE ck_image;
EFI_SYSTEM_TABLE *ck_st;
EFI_BOOT_SERVICES *ck_bs;
EFI_RUNTIME_SERVICES *ck_rs;
EFI_FILE_HANDLE ck_volume_root;

extern jmp_buf *ck_trap_target;
extern uint32_t ck_last_trap;
extern uint32_t wasm_rt_call_stack_depth;
extern void ck_call_on_stack(void *arg, void (*fn)(void *), void *top);

/* the command line handed to MicroPython's main() */
int ck_argc;
const char *ck_argv[CK_MAX_ARGS];
static char g_argbuf[CK_ARGS_BYTES];
static size_t g_argused;
int ck_from_shell;                 /* started by the UEFI shell (vs. boot manager) */
int ck_exit_marked;                /* efi.exit(): /boot.py printed the exit marker */

static uint8_t *g_stack_base;
static jmp_buf g_exit_jmp;
static uint32_t g_exit_status;
static int g_in_module;

/* ---- memory ---- */
void *ck_alloc(size_t n) {
  void *p = NULL;
  if (EFI_ERROR(ck_bs->AllocatePool(EfiLoaderData, n ? n : 1, &p))) return NULL;
  return p;
}
void ck_free(void *p) {
  if (p) ck_bs->FreePool(p);
}

/* ---- clocks: TSC calibrated against Stall(), wall time from GetTime ---- */
static uint64_t g_tsc_hz = 1000000000ull;
static uint64_t g_tsc0;
static uint64_t g_epoch0_ns;

static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

/* days since 1970-01-01 of a proleptic Gregorian date */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void clock_init(void) {
  uint64_t t0 = rdtsc();
  ck_bs->Stall(20000);                        /* 20 ms */
  uint64_t t1 = rdtsc();
  if (t1 > t0) g_tsc_hz = (t1 - t0) * 50;
  g_tsc0 = rdtsc();
  EFI_TIME tm;
  if (!EFI_ERROR(ck_rs->GetTime(&tm, NULL)) && tm.Month >= 1 && tm.Month <= 12) {
    int64_t days = days_from_civil(tm.Year, tm.Month, tm.Day);
    int64_t secs = days * 86400 + tm.Hour * 3600 + tm.Minute * 60 + tm.Second;
    if (tm.TimeZone != EFI_UNSPECIFIED_TIMEZONE) secs += (int64_t)tm.TimeZone * 60;
    if (secs > 0) g_epoch0_ns = (uint64_t)secs * 1000000000ull + tm.Nanosecond;
  }
}

uint64_t ck_tsc_hz(void) { return g_tsc_hz; }

uint64_t ck_ticks_ns(void) {
  uint64_t d = rdtsc() - g_tsc0;
  /* d * 1e9 / hz without overflow for centuries of uptime */
  uint64_t s = d / g_tsc_hz, r = d % g_tsc_hz;
  return s * 1000000000ull + (r * 1000000000ull) / g_tsc_hz;
}
uint64_t ck_ticks_us(void) { return ck_ticks_ns() / 1000; }
uint64_t ck_realtime_ns(void) { return g_epoch0_ns + ck_ticks_ns(); }

/* ---- command line ---- */
static int add_arg(const char *s, size_t n) {
  if (ck_argc >= CK_MAX_ARGS - 1 || g_argused + n + 1 > sizeof g_argbuf) return -1;
  char *d = g_argbuf + g_argused;
  memcpy(d, s, n);
  d[n] = 0;
  g_argused += n + 1;
  ck_argv[ck_argc++] = d;
  return 0;
}

/* Split an ASCII line on blanks ("..." groups words) into arguments. */
static void add_line(const char *s, size_t n, int skip_first) {
  size_t i = 0;
  int idx = 0;
  while (i < n) {
    while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
    if (i >= n || s[i] == '\r' || s[i] == '\n') break;
    char tmp[256];
    size_t k = 0;
    int quoted = 0;
    while (i < n && s[i] != '\r' && s[i] != '\n' && (quoted || (s[i] != ' ' && s[i] != '\t'))) {
      if (s[i] == '"') quoted = !quoted;
      else if (k < sizeof tmp) tmp[k++] = s[i];
      i++;
    }
    if (!(skip_first && idx == 0)) add_arg(tmp, k);
    idx++;
  }
}

/* UCS-2 to ASCII; anything else becomes '?'. */
static size_t narrow(const CHAR16 *w, size_t wn, char *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < wn && w[i] && n < cap; i++)
    out[n++] = (w[i] >= 0x20 && w[i] < 0x7f) || w[i] == '\t' ? (char)w[i] : '?';
  return n;
}

typedef struct {
  CHAR16 **Argv;
  UINTN Argc;
  void *StdIn, *StdOut, *StdErr;
} ck_shell_parameters_t;
static EFI_GUID g_shell_params_guid = {0x752f3136, 0x4e16, 0x4fdc,
                                       {0xa2, 0x2a, 0xe5, 0xf4, 0x68, 0x12, 0xf4, 0xca}};

static int is_text(const CHAR16 *w, size_t wn) {
  if (wn == 0) return 0;
  for (size_t i = 0; i < wn; i++) {
    if (w[i] == 0) return i > 0;
    if (w[i] < 0x20 || w[i] >= 0x7f) return 0;
  }
  return 1;
}

static void args_init(EFI_LOADED_IMAGE *li) {
  static const char *fixed[] = {"micropython", "-X", "heapsize=" CK_HEAPSIZE, "/boot.py"};
  for (unsigned i = 0; i < sizeof fixed / sizeof fixed[0]; i++) add_arg(fixed[i], strlen(fixed[i]));
  char line[1024];

  ck_shell_parameters_t *sp = NULL;
  if (!EFI_ERROR(ck_bs->HandleProtocol(ck_image, &g_shell_params_guid, (void **)&sp)) && sp) {
    ck_from_shell = 1;
    for (UINTN i = 1; i < sp->Argc && i < CK_MAX_ARGS; i++) {
      size_t wl = 0;
      while (sp->Argv[i][wl]) wl++;
      size_t n = narrow(sp->Argv[i], wl, line, sizeof line);
      add_arg(line, n);
    }
    return;
  }
  if (li && li->LoadOptions && li->LoadOptionsSize >= 2) {
    const CHAR16 *w = li->LoadOptions;
    size_t wn = li->LoadOptionsSize / 2;
    if (is_text(w, wn)) {
      size_t n = narrow(w, wn, line, sizeof line);
      /* a shell without the parameters protocol passes its command line,
       * program name first */
      size_t e = 0;
      while (e < n && line[e] != ' ') e++;
      int skip = e >= 4 && (line[e - 4] == '.' && (line[e - 3] | 32) == 'e' &&
                            (line[e - 2] | 32) == 'f' && (line[e - 1] | 32) == 'i');
      ck_from_shell = 1;
      add_line(line, n, skip);
      return;
    }
  }
  uint8_t *data = NULL;
  uint64_t size = 0;
  if (!EFI_ERROR(ck_volume_read("/ccidkit/args.txt", &data, &size))) {
    size_t n = size < sizeof line ? (size_t)size : sizeof line;
    memcpy(line, data, n);
    ck_free(data);
    add_line(line, n, 0);
  }
}

/* ---- the wasm side's imports carry no state of their own ---- */
struct w2c_micropython__wasm { int unused; };
struct w2c_wasi__snapshot__preview1 { int unused; };
static struct w2c_micropython__wasm g_host_instance;
static struct w2c_wasi__snapshot__preview1 g_wasi_instance;
static w2c_mp g_mp;

void ck_exit_now(uint32_t status) {
  g_exit_status = status;
  if (g_in_module) longjmp(g_exit_jmp, 2);
  /* before or after the module: nothing to unwind */
  ck_usb_shutdown();
  ck_bs->Exit(ck_image, status ? EFIERR(status) : EFI_SUCCESS, 0, NULL);
  for (;;) __asm__ volatile("hlt");
}

static uint64_t g_stack_peak;
uint64_t ck_mem_peak_stack(void) {
  /* the stack was filled with 0xA5 at start: count what was touched */
  uint64_t untouched = 0;
  while (untouched < CK_STACK_BYTES && g_stack_base[untouched] == 0xA5) untouched++;
  g_stack_peak = CK_STACK_BYTES - untouched;
  return g_stack_peak;
}

static void run_module(void *unused) {
  (void)unused;
  jmp_buf trap_jmp;
  wasm_rt_init();
  wasm2c_mp_instantiate(&g_mp, &g_host_instance, &g_wasi_instance);
  g_in_module = 1;
  volatile int how = (int)setjmp(g_exit_jmp);
  if (how == 0) {
    if (setjmp(trap_jmp) == 0) {
      ck_trap_target = &trap_jmp;
      w2c_mp_0x5Fstart(&g_mp);
      g_exit_status = 0;
    } else {
      ck_puts("\r\nccidkit: wasm trap: ");
      ck_puts(wasm_rt_strerror((wasm_rt_trap_t)ck_last_trap));
      ck_puts("\r\n");
      g_exit_status = 70;
      ck_exit_marked = 1;
      ck_puts("CCIDKIT-EXIT status=70\r\n");
    }
  }
  if (!ck_exit_marked) {
    /* sys.exit() or an exception that escaped /boot.py: MicroPython ended
     * with proc_exit and nobody printed the marker the host waits for */
    ck_puts("CCIDKIT-EXIT status=");
    ck_put_dec(g_exit_status);
    ck_puts("\r\n");
  }
  g_in_module = 0;
  ck_trap_target = NULL;
  wasm_rt_call_stack_depth = 0;
}

EFI_STATUS efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st) {
  ck_image = image;
  ck_st = st;
  ck_bs = st->BootServices;
  ck_rs = st->RuntimeServices;
  ck_bs->SetWatchdogTimer(0, 0, 0, NULL);    /* long test runs must not reboot */
  ck_console_init();
  clock_init();

  EFI_LOADED_IMAGE *li = NULL;
  EFI_GUID lip = LOADED_IMAGE_PROTOCOL;
  if (!EFI_ERROR(ck_bs->HandleProtocol(image, &lip, (void **)&li)) && li) {
    EFI_GUID sfs = SIMPLE_FILE_SYSTEM_PROTOCOL;
    EFI_FILE_IO_INTERFACE *fs = NULL;
    if (!EFI_ERROR(ck_bs->HandleProtocol(li->DeviceHandle, &sfs, (void **)&fs)) && fs) {
      EFI_FILE_HANDLE root = NULL;
      if (!EFI_ERROR(fs->OpenVolume(fs, &root))) ck_volume_root = root;
    }
  }
  ck_fs_init();
  args_init(li);

  EFI_PHYSICAL_ADDRESS sb = 0;
  if (EFI_ERROR(ck_bs->AllocatePages(AllocateAnyPages, EfiLoaderData,
                                     CK_STACK_BYTES / 4096, &sb))) {
    ck_puts("ccidkit: cannot allocate the stack\r\n");
    return EFI_OUT_OF_RESOURCES;
  }
  g_stack_base = (uint8_t *)(uintptr_t)sb;
  memset(g_stack_base, 0xA5, CK_STACK_BYTES);
  ck_call_on_stack(NULL, run_module, g_stack_base + CK_STACK_BYTES);

  uint32_t status = g_exit_status;
  ck_usb_shutdown();
  /* nothing of a run stays allocated: the shell may start the image again */
  wasm2c_mp_free(&g_mp);
  ck_bs->FreePages(sb, CK_STACK_BYTES / 4096);
  ck_host_release();
  if (ck_volume_root) ck_volume_root->Close(ck_volume_root);
  if (!ck_from_shell) {
    /* booted directly: nobody to return to; tell QEMU and power off */
    ck_outb(0xf4, (uint8_t)status);
    ck_rs->ResetSystem(EfiResetShutdown, EFI_SUCCESS, 0, NULL);
  }
  return status ? EFIERR(status) : EFI_SUCCESS;
}
