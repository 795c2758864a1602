/* host.call(name, payload) -> str: the services the firmware gives Python.
 *
 * Answers are text: "=" + value on success, "!" + "<status hex> <EFI name>
 * <message>" on failure (uefi/fw/efi.py turns that into EfiError). Payloads
 * are blank-separated tokens; numbers are decimal or 0x-hex, binary data is
 * hex. Every token is checked; an unknown name or a malformed payload is an
 * error answer, never a crash.
 *
 * MicroPython allocates host_result_cap() bytes for every answer. The cap
 * stays small; a bigger answer is kept here, its size returned (MicroPython
 * raises ValueError "result too large"), and the next host_result_cap()
 * makes room for the "_pending" call that collects it. */
#include "ck.h"
#include "wasm-rt.h"
#include "mp.h"

#define CK_RESULT_CAP 4096
#define CK_MAX_NAME 64
#define CK_MAX_PAYLOAD (1u << 20)
#define CK_MAX_RESULT (4u << 20)

static char *g_pending;
static size_t g_pending_len;

extern int ck_from_shell;
extern int ck_exit_marked;

/* ---- output buffer ---- */
static void out_reserve(ck_out_t *o, size_t more) {
  if (o->failed) return;
  if (o->len + more <= o->cap) return;
  size_t nc = o->cap ? o->cap : 256;
  while (nc < o->len + more) nc *= 2;
  if (nc > CK_MAX_RESULT) { o->failed = 1; return; }
  char *nb = ck_alloc(nc);
  if (!nb) { o->failed = 1; return; }
  if (o->len) memcpy(nb, o->buf, o->len);
  ck_free(o->buf);
  o->buf = nb;
  o->cap = nc;
}
void ck_out_mem(ck_out_t *o, const char *s, size_t n) {
  out_reserve(o, n);
  if (o->failed) return;
  memcpy(o->buf + o->len, s, n);
  o->len += n;
}
void ck_out_str(ck_out_t *o, const char *s) { ck_out_mem(o, s, strlen(s)); }
void ck_out_char(ck_out_t *o, char c) { ck_out_mem(o, &c, 1); }
void ck_out_dec(ck_out_t *o, int64_t v) {
  char b[24];
  int i = 23;
  uint64_t u = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
  b[i] = 0;
  do { b[--i] = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) b[--i] = '-';
  ck_out_str(o, b + i);
}
void ck_out_hex_u(ck_out_t *o, uint64_t v) {
  char b[20];
  int i = 19;
  b[i] = 0;
  do { b[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
  ck_out_str(o, b + i);
}
void ck_out_hexbytes(ck_out_t *o, const uint8_t *p, size_t n) {
  out_reserve(o, 2 * n);
  if (o->failed) return;
  for (size_t i = 0; i < n; i++) {
    o->buf[o->len++] = "0123456789abcdef"[p[i] >> 4];
    o->buf[o->len++] = "0123456789abcdef"[p[i] & 15];
  }
}

/* ---- payload tokens ---- */
int ck_arg_tok(ck_args_t *a, const char **s, size_t *n) {
  while (a->p < a->end && *a->p == ' ') a->p++;
  if (a->p >= a->end) return -1;
  const char *b = a->p;
  while (a->p < a->end && *a->p != ' ') a->p++;
  *s = b;
  *n = (size_t)(a->p - b);
  return 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int ck_arg_u64(ck_args_t *a, uint64_t *v) {
  const char *s;
  size_t n;
  if (ck_arg_tok(a, &s, &n) || n == 0 || n > 20) return -1;
  uint64_t r = 0;
  if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    if (n > 18) return -1;
    for (size_t i = 2; i < n; i++) {
      int h = hexval(s[i]);
      if (h < 0) return -1;
      r = (r << 4) | (uint64_t)h;
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      if (s[i] < '0' || s[i] > '9') return -1;
      uint64_t nr = r * 10 + (uint64_t)(s[i] - '0');
      if (nr / 10 != r) return -1;        /* overflow */
      r = nr;
    }
  }
  *v = r;
  return 0;
}

int ck_arg_hexbytes(ck_args_t *a, uint8_t *dst, size_t cap, size_t *n) {
  const char *s;
  size_t l;
  if (ck_arg_tok(a, &s, &l)) return -1;
  if (l == 1 && s[0] == '-') { *n = 0; return 0; }
  if (l % 2 || l / 2 > cap) return -1;
  for (size_t i = 0; i < l / 2; i++) {
    int h = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
    if (h < 0 || lo < 0) return -1;
    dst[i] = (uint8_t)(h << 4 | lo);
  }
  *n = l / 2;
  return 0;
}

int ck_arg_end(ck_args_t *a) {
  while (a->p < a->end && *a->p == ' ') a->p++;
  return a->p == a->end ? 0 : -1;
}

/* ---- status names (UEFI spec, Appendix D) ---- */
const char *ck_status_name(EFI_STATUS s) {
  switch (s) {
    case EFI_SUCCESS: return "EFI_SUCCESS";
    case EFI_LOAD_ERROR: return "EFI_LOAD_ERROR";
    case EFI_INVALID_PARAMETER: return "EFI_INVALID_PARAMETER";
    case EFI_UNSUPPORTED: return "EFI_UNSUPPORTED";
    case EFI_BAD_BUFFER_SIZE: return "EFI_BAD_BUFFER_SIZE";
    case EFI_BUFFER_TOO_SMALL: return "EFI_BUFFER_TOO_SMALL";
    case EFI_NOT_READY: return "EFI_NOT_READY";
    case EFI_DEVICE_ERROR: return "EFI_DEVICE_ERROR";
    case EFI_WRITE_PROTECTED: return "EFI_WRITE_PROTECTED";
    case EFI_OUT_OF_RESOURCES: return "EFI_OUT_OF_RESOURCES";
    case EFI_NOT_FOUND: return "EFI_NOT_FOUND";
    case EFI_ACCESS_DENIED: return "EFI_ACCESS_DENIED";
    case EFI_NO_RESPONSE: return "EFI_NO_RESPONSE";
    case EFI_NO_MAPPING: return "EFI_NO_MAPPING";
    case EFI_TIMEOUT: return "EFI_TIMEOUT";
    case EFI_NOT_STARTED: return "EFI_NOT_STARTED";
    case EFI_ALREADY_STARTED: return "EFI_ALREADY_STARTED";
    case EFI_ABORTED: return "EFI_ABORTED";
    case EFI_SECURITY_VIOLATION: return "EFI_SECURITY_VIOLATION";
    default: return "EFI_ERROR";
  }
}

/* ---- services ---- */
#define BAD(m) do { *msg = (m); return EFI_INVALID_PARAMETER; } while (0)

static EFI_STATUS svc_stall(ck_args_t *a, ck_out_t *o, const char **msg) {
  (void)o;
  uint64_t us;
  if (ck_arg_u64(a, &us) || ck_arg_end(a)) BAD("stall US");
  if (us > 10000000) BAD("stall is limited to 10 s");
  ck_bs->Stall((UINTN)us);
  return EFI_SUCCESS;
}

static EFI_STATUS svc_ticks(ck_args_t *a, ck_out_t *o, const char **msg) {
  if (ck_arg_end(a)) BAD("no arguments");
  ck_out_dec(o, (int64_t)ck_ticks_us());
  return EFI_SUCCESS;
}

static EFI_STATUS svc_time(ck_args_t *a, ck_out_t *o, const char **msg) {
  if (ck_arg_end(a)) BAD("no arguments");
  EFI_TIME t;
  EFI_STATUS s = ck_rs->GetTime(&t, NULL);
  if (EFI_ERROR(s)) { *msg = "GetTime"; return s; }
  int v[6] = {t.Year, t.Month, t.Day, t.Hour, t.Minute, t.Second};
  for (int i = 0; i < 6; i++) {
    if (i) ck_out_char(o, ' ');
    ck_out_dec(o, v[i]);
  }
  return EFI_SUCCESS;
}

static EFI_STATUS svc_info(ck_args_t *a, ck_out_t *o, const char **msg) {
  if (ck_arg_end(a)) BAD("no arguments");
  ck_out_str(o, "tsc_hz=");
  ck_out_dec(o, (int64_t)ck_tsc_hz());
  ck_out_str(o, " stack_peak=");
  ck_out_dec(o, (int64_t)ck_mem_peak_stack());
  ck_out_str(o, " from_shell=");
  ck_out_dec(o, ck_from_shell);
  ck_out_str(o, " files=");
  ck_out_dec(o, ck_embedded_count());
  return EFI_SUCCESS;
}

static EFI_STATUS svc_rng(ck_args_t *a, ck_out_t *o, const char **msg) {
  uint64_t n;
  if (ck_arg_u64(a, &n) || ck_arg_end(a) || n == 0 || n > 4096) BAD("rng N (1..4096)");
  EFI_GUID g = EFI_RNG_PROTOCOL_GUID;
  EFI_RNG_PROTOCOL *rng = NULL;
  EFI_STATUS s = ck_bs->LocateProtocol(&g, NULL, (void **)&rng);
  if (EFI_ERROR(s) || !rng) { *msg = "no EFI_RNG_PROTOCOL"; return EFI_UNSUPPORTED; }
  uint8_t buf[4096];
  s = rng->GetRNG(rng, NULL, (UINTN)n, buf);
  if (EFI_ERROR(s)) { *msg = "GetRNG"; return s; }
  ck_out_hexbytes(o, buf, (size_t)n);
  memset(buf, 0, sizeof buf);
  return EFI_SUCCESS;
}

/* "8be4df61-93ca-11d2-aa0d-00e098032b8c" */
static int parse_guid(const char *s, size_t n, EFI_GUID *g) {
  if (n != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') return -1;
  uint8_t b[16];
  int k = 0;
  for (size_t i = 0; i < 36 && k < 16; i++) {
    if (s[i] == '-') continue;
    int h = hexval(s[i]), l = hexval(s[i + 1]);
    if (h < 0 || l < 0) return -1;
    b[k++] = (uint8_t)(h << 4 | l);
    i++;
  }
  if (k != 16) return -1;
  g->Data1 = (UINT32)b[0] << 24 | (UINT32)b[1] << 16 | (UINT32)b[2] << 8 | b[3];
  g->Data2 = (UINT16)(b[4] << 8 | b[5]);
  g->Data3 = (UINT16)(b[6] << 8 | b[7]);
  memcpy(g->Data4, b + 8, 8);
  return 0;
}

/* variable name: ASCII token (no blanks), up to 127 characters */
static int parse_varname(ck_args_t *a, CHAR16 *w, size_t cap) {
  const char *s;
  size_t n;
  if (ck_arg_tok(a, &s, &n) || n == 0 || n + 1 > cap) return -1;
  for (size_t i = 0; i < n; i++) {
    if ((uint8_t)s[i] < 0x21 || (uint8_t)s[i] > 0x7e) return -1;
    w[i] = (CHAR16)s[i];
  }
  w[n] = 0;
  return 0;
}

static EFI_STATUS svc_var_get(ck_args_t *a, ck_out_t *o, const char **msg) {
  const char *gs;
  size_t gn;
  EFI_GUID g;
  CHAR16 name[128];
  if (ck_arg_tok(a, &gs, &gn) || parse_guid(gs, gn, &g) || parse_varname(a, name, 128) ||
      ck_arg_end(a))
    BAD("var.get GUID NAME");
  UINT32 attr = 0;
  UINTN size = 0;
  EFI_STATUS s = ck_rs->GetVariable(name, &g, &attr, &size, NULL);
  if (s != EFI_BUFFER_TOO_SMALL) {
    if (s == EFI_SUCCESS) { ck_out_dec(o, attr); ck_out_str(o, " -"); return EFI_SUCCESS; }
    *msg = "GetVariable";
    return s;
  }
  if (size > 65536) { *msg = "variable larger than 64 KiB"; return EFI_BAD_BUFFER_SIZE; }
  uint8_t *buf = ck_alloc(size);
  if (!buf) { *msg = "no memory"; return EFI_OUT_OF_RESOURCES; }
  s = ck_rs->GetVariable(name, &g, &attr, &size, buf);
  if (!EFI_ERROR(s)) {
    ck_out_dec(o, attr);
    ck_out_char(o, ' ');
    if (size) ck_out_hexbytes(o, buf, size);
    else ck_out_char(o, '-');
  } else {
    *msg = "GetVariable";
  }
  ck_free(buf);
  return s;
}

static EFI_STATUS svc_var_set(ck_args_t *a, ck_out_t *o, const char **msg) {
  (void)o;
  const char *gs;
  size_t gn, n;
  EFI_GUID g;
  CHAR16 name[128];
  uint64_t attr;
  const size_t cap = 65536;
  uint8_t *data = ck_alloc(cap);
  if (!data) { *msg = "no memory"; return EFI_OUT_OF_RESOURCES; }
  EFI_STATUS s;
  if (ck_arg_tok(a, &gs, &gn) || parse_guid(gs, gn, &g) || parse_varname(a, name, 128) ||
      ck_arg_u64(a, &attr) || attr > 0xffffffffu || ck_arg_hexbytes(a, data, cap, &n) ||
      ck_arg_end(a)) {
    *msg = "var.set GUID NAME ATTRIBUTES HEX";
    s = EFI_INVALID_PARAMETER;
  } else {
    s = ck_rs->SetVariable(name, &g, (UINT32)attr, n, n ? data : NULL);
    if (EFI_ERROR(s)) *msg = "SetVariable";
  }
  ck_free(data);
  return s;
}

static EFI_STATUS svc_reset(ck_args_t *a, ck_out_t *o, const char **msg) {
  (void)o;
  const char *k;
  size_t kn;
  uint64_t status;
  if (ck_arg_tok(a, &k, &kn) || ck_arg_u64(a, &status) || ck_arg_end(a)) BAD("reset KIND STATUS");
  EFI_RESET_TYPE t;
  if (kn == 8 && !memcmp(k, "shutdown", 8)) t = EfiResetShutdown;
  else if (kn == 4 && !memcmp(k, "cold", 4)) t = EfiResetCold;
  else if (kn == 4 && !memcmp(k, "warm", 4)) t = EfiResetWarm;
  else BAD("reset kind: shutdown, cold or warm");
  ck_usb_shutdown();
  ck_rs->ResetSystem(t, status ? EFIERR(status) : EFI_SUCCESS, 0, NULL);
  *msg = "ResetSystem returned";
  return EFI_DEVICE_ERROR;
}

static EFI_STATUS svc_debug_exit(ck_args_t *a, ck_out_t *o, const char **msg) {
  (void)o;
  uint64_t code;
  if (ck_arg_u64(a, &code) || ck_arg_end(a) || code > 255) BAD("debug_exit CODE (0..255)");
  ck_outb(0xf4, (uint8_t)code);      /* QEMU isa-debug-exit: exits with (code << 1) | 1 */
  return EFI_SUCCESS;
}

static EFI_STATUS svc_key(ck_args_t *a, ck_out_t *o, const char **msg) {
  const char *s;
  size_t n;
  int64_t timeout = -1;
  if (ck_arg_tok(a, &s, &n)) BAD("con.key TIMEOUT_MS|-");
  if (!(n == 1 && s[0] == '-')) {
    ck_args_t one = {s, s + n};
    uint64_t t;
    if (ck_arg_u64(&one, &t) || t > 3600000) BAD("con.key timeout up to 1 h");
    timeout = (int64_t)t;
  }
  if (ck_arg_end(a)) BAD("con.key TIMEOUT_MS|-");
  uint16_t scan = 0, uc = 0;
  int r = ck_read_key(timeout, &scan, &uc);
  if (r < 0) { *msg = "ReadKeyStroke"; return EFI_DEVICE_ERROR; }
  if (r == 1) {
    ck_out_dec(o, scan);
    ck_out_char(o, ' ');
    ck_out_dec(o, uc);
  }
  return EFI_SUCCESS;
}

static EFI_STATUS svc_exit(ck_args_t *a, ck_out_t *o, const char **msg) {
  (void)o;
  uint64_t code;
  if (ck_arg_u64(a, &code) || ck_arg_end(a) || code > 255) BAD("exit CODE (0..255)");
  ck_exit_marked = 1;
  ck_exit_now((uint32_t)code);
}

static EFI_STATUS svc_pending(ck_args_t *a, ck_out_t *o, const char **msg) {
  if (ck_arg_end(a)) BAD("no arguments");
  if (!g_pending) { *msg = "no pending answer"; return EFI_NOT_READY; }
  /* the stored answer already carries its "=" */
  ck_out_mem(o, g_pending + 1, g_pending_len - 1);
  return EFI_SUCCESS;
}

static const struct {
  const char *name;
  ck_service_fn fn;
} g_services[] = {
    {"stall", svc_stall},       {"time.ticks_us", svc_ticks}, {"time.get", svc_time},
    {"rng", svc_rng},           {"var.get", svc_var_get},     {"var.set", svc_var_set},
    {"reset", svc_reset},       {"debug_exit", svc_debug_exit}, {"con.key", svc_key},
    {"exit", svc_exit},         {"rt.info", svc_info},        {"_pending", svc_pending},
    {"boot.next", ck_boot_next},
};

static void dispatch(const char *name, size_t nl, const char *payload, size_t pl, ck_out_t *o) {
  const char *msg = "";
  EFI_STATUS s = EFI_UNSUPPORTED;
  ck_args_t args = {payload, payload + pl};
  int found = 0;
  ck_out_char(o, '=');
  for (unsigned i = 0; i < sizeof g_services / sizeof g_services[0]; i++) {
    if (strlen(g_services[i].name) == nl && !memcmp(g_services[i].name, name, nl)) {
      found = 1;
      s = g_services[i].fn(&args, o, &msg);
      break;
    }
  }
  if (!found) s = ck_usb_service(name, nl, &args, o, &msg, &found);
  if (!found) {
    s = EFI_UNSUPPORTED;
    msg = "unknown service";
  }
  if (o->failed) {
    s = EFI_OUT_OF_RESOURCES;
    msg = "answer too large";
    o->failed = 0;
  }
  if (EFI_ERROR(s)) {
    o->len = 0;
    ck_out_char(o, '!');
    ck_out_hex_u(o, s);
    ck_out_char(o, ' ');
    ck_out_str(o, ck_status_name(s));
    ck_out_char(o, ' ');
    ck_out_str(o, msg);
  }
}

void ck_wasi_release(void);

void ck_host_release(void) {
  ck_free(g_pending);
  g_pending = NULL;
  g_pending_len = 0;
  ck_wasi_release();
}

typedef struct w2c_micropython__wasm host_t;

u32 w2c_micropython__wasm_host_result_cap(host_t *h) {
  (void)h;
  if (g_pending && g_pending_len + 1 > CK_RESULT_CAP) return (u32)(g_pending_len + 1);
  return CK_RESULT_CAP;
}

u32 w2c_micropython__wasm_host_call(host_t *h, u32 name_ptr, u32 name_len, u32 payload_ptr,
                                    u32 payload_len, u32 result_ptr, u32 result_cap) {
  (void)h;
  ck_out_t o = {0};
  uint8_t *name = ck_mem(name_ptr, name_len);
  uint8_t *payload = ck_mem(payload_ptr, payload_len);
  uint8_t *result = ck_mem(result_ptr, result_cap);
  if (!name || !payload || !result || name_len == 0 || name_len > CK_MAX_NAME ||
      payload_len > CK_MAX_PAYLOAD) {
    if (!result || result_cap < 64) return (u32)-1;
    ck_out_str(&o, "!");
    ck_out_hex_u(&o, EFI_INVALID_PARAMETER);
    ck_out_str(&o, " EFI_INVALID_PARAMETER bad name or payload");
  } else {
    int collecting = name_len == 8 && !memcmp(name, "_pending", 8);
    if (!collecting && g_pending) {      /* an answer nobody collected */
      ck_free(g_pending);
      g_pending = NULL;
      g_pending_len = 0;
    }
    dispatch((const char *)name, name_len, (const char *)payload, payload_len, &o);
    if (collecting) {
      ck_free(g_pending);
      g_pending = NULL;
      g_pending_len = 0;
    }
  }
  if (o.len > result_cap) {
    /* keep it for "_pending" */
    ck_free(g_pending);
    g_pending = o.buf;
    g_pending_len = o.len;
    return (u32)o.len;
  }
  memcpy(result, o.buf, o.len);
  ck_free(o.buf);
  return (u32)o.len;
}
