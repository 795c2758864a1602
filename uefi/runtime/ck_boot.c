/* boot.next: hand the machine over to the boot option after the current one,
 * the way the boot manager would have gone on (UEFI 2.10 §3.1 Boot Manager).
 *
 * BootCurrent (§3.3) names the option that started this image; the options
 * after it in BootOrder are tried in order. An option is skipped when it is
 * not LOAD_OPTION_ACTIVE or not of LOAD_OPTION_CATEGORY_BOOT (§3.1.3: the
 * boot manager leaves application options out of the normal boot), when its
 * EFI_LOAD_OPTION is malformed, or when LoadImage refuses it. The first one
 * LoadImage accepts is started with StartImage:
 *   - LoadImage with BootPolicy TRUE (§7.4), so the firmware's own checks,
 *     Secure Boot's image verification (§32.5) included, apply to it;
 *   - its LoadOptions are the option's OptionalData (§3.1.3);
 *   - BootCurrent names it while it runs and the watchdog is armed for five
 *     minutes, as the boot manager does before a boot option (§7.5.1);
 *   - our own asynchronous USB transfers are cancelled first.
 * Device paths (§3.1.2, §10.3.5): a full path goes to LoadImage as it is; a
 * short-form file path (FILEPATH node first) is looked for on every simple
 * file system, this image's own volume first; a short-form hard drive path
 * (HD node first) is matched against the partitions; a path that names a
 * device and no file gets the removable-media file \EFI\BOOT\BOOTX64.EFI
 * (§3.5.1.1) on the file systems below that device.
 *
 * Answer: "NNNN STATUS" when the started image returned (STATUS its exit
 * status in hex), after a line "ccidkit: boot.next: starting BootNNNN ..." on
 * the console. Errors: EFI_NOT_FOUND when no option is left to try (no
 * BootCurrent, nothing active after it), else the last LoadImage failure
 * (EFI_SECURITY_VIOLATION, EFI_ACCESS_DENIED, ...) with the options named. */
#include "ck.h"

#define LOAD_OPTION_ACTIVE 0x00000001u
#define LOAD_OPTION_CATEGORY 0x00001F00u     /* LOAD_OPTION_CATEGORY_BOOT is 0 */
#define CK_MAX_ORDER 512                     /* BootOrder entries looked at */
#define CK_MAX_VAR 65536
#define CK_MAX_DP 4096                       /* bytes of one device path */
#define CK_WATCHDOG_S 300
#define MEDIA_DP 0x04
#define MEDIA_HD_DP 0x01
#define MEDIA_FILE_DP 0x04
#define END_DP 0x7f

static EFI_GUID g_global_guid = {0x8be4df61, 0x93ca, 0x11d2,
                                 {0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}};
static EFI_GUID g_dp_guid = {0x09576e91, 0x6d3f, 0x11d2,
                             {0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b}};
static EFI_GUID g_sfs_guid = {0x964e5b22, 0x6459, 0x11d2,
                              {0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b}};
static EFI_GUID g_li_guid = {0x5b1b31a1, 0x9562, 0x11d2,
                             {0x8e, 0x3f, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b}};

static char g_msg[160];

typedef struct {
  uint32_t attributes;
  const uint8_t *description;   /* CHAR16, unaligned */
  size_t description_len;       /* characters */
  const uint8_t *path;          /* first device path of FilePathList, end node included */
  size_t path_len;
  const uint8_t *optional;
  size_t optional_len;
} load_option_t;

static unsigned node_len(const uint8_t *p) { return (unsigned)p[2] | (unsigned)p[3] << 8; }
static int is_end(const uint8_t *p) { return (p[0] & 0x7f) == END_DP; }

/* Bytes of the first device path instance in p[0..n), its end node included;
 * 0 when malformed. */
static size_t dp_first_len(const uint8_t *p, size_t n) {
  size_t i = 0;
  for (int k = 0; k < 256; k++) {
    if (i + 4 > n) return 0;
    unsigned l = node_len(p + i);
    if (l < 4 || i + l > n) return 0;
    if (is_end(p + i)) return l == 4 ? i + 4 : 0;
    i += l;
  }
  return 0;
}

/* EFI_LOAD_OPTION (§3.1.3): UINT32 Attributes, UINT16 FilePathListLength,
 * CHAR16 Description[] (NUL-terminated), FilePathList, OptionalData. */
static int parse_load_option(const uint8_t *d, size_t n, load_option_t *o) {
  if (n < 6 + 2) return -1;
  o->attributes = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
  size_t fpl = (size_t)d[4] | (size_t)d[5] << 8;
  size_t i = 6;
  while (i + 1 < n && (d[i] | d[i + 1])) i += 2;
  if (i + 1 >= n) return -1;
  o->description = d + 6;
  o->description_len = (i - 6) / 2;
  i += 2;
  if (fpl < 4 || i + fpl > n) return -1;
  o->path = d + i;
  o->path_len = dp_first_len(d + i, fpl);
  if (!o->path_len) return -1;
  o->optional = d + i + fpl;
  o->optional_len = n - i - fpl;
  return 0;
}

static EFI_STATUS get_var(const CHAR16 *name, uint8_t **data, size_t *size) {
  UINT32 attr = 0;
  UINTN n = 0;
  *data = NULL;
  *size = 0;
  EFI_STATUS s = ck_rs->GetVariable((CHAR16 *)name, &g_global_guid, &attr, &n, NULL);
  if (s == EFI_SUCCESS) return EFI_SUCCESS;           /* empty */
  if (s != EFI_BUFFER_TOO_SMALL) return s;
  if (n > CK_MAX_VAR) return EFI_BAD_BUFFER_SIZE;
  uint8_t *b = ck_alloc(n);
  if (!b) return EFI_OUT_OF_RESOURCES;
  s = ck_rs->GetVariable((CHAR16 *)name, &g_global_guid, &attr, &n, b);
  if (EFI_ERROR(s)) { ck_free(b); return s; }
  *data = b;
  *size = n;
  return EFI_SUCCESS;
}

static void option_name(CHAR16 *w, unsigned num) {   /* "Boot####", upper-case hex (§3.1.1) */
  static const char *h = "0123456789ABCDEF";
  const char *b = "Boot";
  for (int i = 0; i < 4; i++) w[i] = (CHAR16)b[i];
  for (int i = 0; i < 4; i++) w[4 + i] = (CHAR16)h[(num >> (12 - 4 * i)) & 15];
  w[8] = 0;
}

/* the whole device path of a handle (end included), or 0 */
static size_t handle_path(EFI_HANDLE h, const uint8_t **p) {
  EFI_DEVICE_PATH *dp = NULL;
  if (EFI_ERROR(ck_bs->HandleProtocol(h, &g_dp_guid, (void **)&dp)) || !dp) return 0;
  *p = (const uint8_t *)dp;
  return dp_first_len(*p, CK_MAX_DP);
}

/* a fresh device path: a (without its end node) + b (with its end node) */
static uint8_t *dp_join(const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
  uint8_t *r = ck_alloc(an - 4 + bn);
  if (!r) return NULL;
  memcpy(r, a, an - 4);
  memcpy(r + an - 4, b, bn);
  return r;
}

/* a FILEPATH node for \EFI\BOOT\BOOTX64.EFI and an end node */
static size_t default_file_path(uint8_t *out) {
  static const char *f = "\\EFI\\BOOT\\BOOTX64.EFI";
  size_t n = strlen(f), l = 4 + 2 * (n + 1);
  out[0] = MEDIA_DP;
  out[1] = MEDIA_FILE_DP;
  out[2] = (uint8_t)l;
  out[3] = (uint8_t)(l >> 8);
  for (size_t i = 0; i <= n; i++) {
    out[4 + 2 * i] = (uint8_t)(i < n ? f[i] : 0);
    out[5 + 2 * i] = 0;
  }
  out[l] = END_DP;
  out[l + 1] = 0xff;
  out[l + 2] = 4;
  out[l + 3] = 0;
  return l + 4;
}

static int has_file_node(const uint8_t *p, size_t n) {
  for (size_t i = 0; i + 4 <= n && !is_end(p + i); i += node_len(p + i))
    if (p[i] == MEDIA_DP && p[i + 1] == MEDIA_FILE_DP) return 1;
  return 0;
}

static EFI_STATUS try_load(const uint8_t *path, EFI_HANDLE *out) {
  EFI_HANDLE h = NULL;
  EFI_STATUS s = ck_bs->LoadImage(TRUE, ck_image, (EFI_DEVICE_PATH *)path, NULL, 0, &h);
  if (s == EFI_SECURITY_VIOLATION && h) ck_bs->UnloadImage(h);   /* loaded, not to be run */
  if (EFI_ERROR(s)) return s;
  *out = h;
  return EFI_SUCCESS;
}

/* keep the most telling failure: a refusal beats "not there" */
static EFI_STATUS worse(EFI_STATUS old, EFI_STATUS s) {
  if (old == EFI_SECURITY_VIOLATION || old == EFI_ACCESS_DENIED) return old;
  return s;
}

/* Expand a short-form or device-only path over the simple file systems and
 * load the first that works. kind 1: file path only; 2: HD node first;
 * 3: a device, no file. */
static EFI_STATUS load_expanded(const uint8_t *p, size_t pn, int kind, EFI_HANDLE *out) {
  UINTN count = 0;
  EFI_HANDLE *hs = NULL;
  EFI_STATUS result = EFI_NOT_FOUND;
  if (EFI_ERROR(ck_bs->LocateHandleBuffer(ByProtocol, &g_sfs_guid, NULL, &count, &hs)) || !hs)
    return EFI_NOT_FOUND;
  EFI_HANDLE own = NULL;
  EFI_LOADED_IMAGE *li = NULL;
  if (!EFI_ERROR(ck_bs->HandleProtocol(ck_image, &g_li_guid, (void **)&li)) && li)
    own = li->DeviceHandle;
  uint8_t deflt[64];
  size_t dn = default_file_path(deflt);
  for (UINTN k = 0; k <= count && k <= 1024; k++) {
    /* this image's own volume first, then the others in handle order */
    EFI_HANDLE h = k == 0 ? own : hs[k - 1];
    if (!h || (k > 0 && h == own)) continue;
    int is_fs = 0;
    for (UINTN j = 0; j < count; j++) is_fs |= hs[j] == h;
    if (!is_fs) continue;
    const uint8_t *hp;
    size_t hn = handle_path(h, &hp);
    if (!hn) continue;
    uint8_t *full = NULL;
    if (kind == 1) {
      full = dp_join(hp, hn, p, pn);
    } else if (kind == 2) {
      /* the partition's HD node must equal the option's */
      unsigned l = node_len(p);
      int match = 0;
      for (size_t i = 0; i + 4 <= hn && !is_end(hp + i); i += node_len(hp + i))
        if (node_len(hp + i) == l && !memcmp(hp + i, p, l)) match = 1;
      if (!match) continue;
      const uint8_t *rest = p + l;
      size_t rn = pn - l;
      full = has_file_node(rest, rn) ? dp_join(hp, hn, rest, rn) : dp_join(hp, hn, deflt, dn);
    } else {
      if (hn < pn || memcmp(hp, p, pn - 4)) continue;    /* not below the option's device */
      full = dp_join(hp, hn, deflt, dn);
    }
    if (!full) { result = EFI_OUT_OF_RESOURCES; break; }
    EFI_STATUS s = try_load(full, out);
    ck_free(full);
    if (!EFI_ERROR(s)) { result = s; break; }
    result = worse(result, s);
  }
  ck_bs->FreePool(hs);
  return result;
}

static EFI_STATUS load_option_image(const load_option_t *o, EFI_HANDLE *out) {
  const uint8_t *p = o->path;
  if (p[0] == MEDIA_DP && p[1] == MEDIA_FILE_DP) return load_expanded(p, o->path_len, 1, out);
  if (p[0] == MEDIA_DP && p[1] == MEDIA_HD_DP) return load_expanded(p, o->path_len, 2, out);
  /* LoadImage reads the device path in place: give it an aligned copy */
  uint8_t *copy = ck_alloc(o->path_len);
  if (!copy) return EFI_OUT_OF_RESOURCES;
  memcpy(copy, p, o->path_len);
  EFI_STATUS s = try_load(copy, out);
  ck_free(copy);
  if (EFI_ERROR(s) && !has_file_node(p, o->path_len)) {
    EFI_STATUS s2 = load_expanded(p, o->path_len, 3, out);
    s = EFI_ERROR(s2) ? worse(s, s2) : s2;
  }
  return s;
}

static void msg_add(size_t *at, const char *s) {
  while (*s && *at + 1 < sizeof g_msg) g_msg[(*at)++] = *s++;
  g_msg[*at] = 0;
}
static void msg_hex4(size_t *at, unsigned v) {
  char b[5];
  for (int i = 0; i < 4; i++) b[i] = "0123456789ABCDEF"[(v >> (12 - 4 * i)) & 15];
  b[4] = 0;
  msg_add(at, b);
}

static void put_description(const load_option_t *o) {
  char b[65];
  size_t n = 0;
  for (size_t i = 0; i < o->description_len && n < 64; i++) {
    unsigned c = o->description[2 * i] | o->description[2 * i + 1] << 8;
    b[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  b[n] = 0;
  ck_puts(b);
}

static EFI_STATUS start_option(unsigned num, const load_option_t *o, EFI_HANDLE h,
                               ck_out_t *out, const char **msg) {
  /* LoadOptions = OptionalData; the buffer lives until StartImage returns */
  void *lo = NULL;
  EFI_LOADED_IMAGE *li = NULL;
  if (o->optional_len && !EFI_ERROR(ck_bs->HandleProtocol(h, &g_li_guid, (void **)&li)) && li) {
    lo = ck_alloc(o->optional_len);
    if (!lo) {
      ck_bs->UnloadImage(h);
      *msg = "no memory";
      return EFI_OUT_OF_RESOURCES;
    }
    memcpy(lo, o->optional, o->optional_len);
    li->LoadOptions = lo;
    li->LoadOptionsSize = (UINT32)o->optional_len;
  }
  ck_puts("ccidkit: boot.next: starting Boot");
  char hex[5];
  for (int i = 0; i < 4; i++) hex[i] = "0123456789ABCDEF"[(num >> (12 - 4 * i)) & 15];
  hex[4] = 0;
  ck_puts(hex);
  ck_puts(" \"");
  put_description(o);
  ck_puts("\"\r\n");

  ck_usb_shutdown();       /* none of our interrupt callbacks may run into the next image */
  UINT16 cur = 0;
  UINTN cur_size = sizeof cur;
  UINT32 cur_attr = 0;
  int had_current = !EFI_ERROR(ck_rs->GetVariable(L"BootCurrent", &g_global_guid, &cur_attr,
                                                  &cur_size, &cur)) && cur_size == 2;
  UINT16 next = (UINT16)num;
  /* best effort: a firmware may keep BootCurrent to itself */
  ck_rs->SetVariable(L"BootCurrent", &g_global_guid,
                     EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS, 2, &next);
  ck_bs->SetWatchdogTimer(CK_WATCHDOG_S, 0, 0, NULL);
  UINTN exit_size = 0;
  CHAR16 *exit_data = NULL;
  EFI_STATUS s = ck_bs->StartImage(h, &exit_size, &exit_data);
  /* back here: the image returned (an OS loader never does) */
  ck_bs->SetWatchdogTimer(0, 0, 0, NULL);
  if (had_current)
    ck_rs->SetVariable(L"BootCurrent", &g_global_guid,
                       EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS, 2, &cur);
  if (exit_data) ck_bs->FreePool(exit_data);
  ck_free(lo);
  ck_out_str(out, hex);
  ck_out_char(out, ' ');
  ck_out_hex_u(out, s);
  return EFI_SUCCESS;
}

EFI_STATUS ck_boot_next(ck_args_t *a, ck_out_t *out, const char **msg) {
  size_t at = 0;
  g_msg[0] = 0;
  if (ck_arg_end(a)) { *msg = "boot.next takes no arguments"; return EFI_INVALID_PARAMETER; }
  uint8_t *cur_b, *order_b;
  size_t cur_n, order_n;
  EFI_STATUS s = get_var(L"BootCurrent", &cur_b, &cur_n);
  if (EFI_ERROR(s) || cur_n != 2) {
    ck_free(cur_b);
    *msg = "no BootCurrent: the boot manager did not start this image";
    return EFI_NOT_FOUND;
  }
  unsigned current = cur_b[0] | cur_b[1] << 8;
  ck_free(cur_b);
  s = get_var(L"BootOrder", &order_b, &order_n);
  if (EFI_ERROR(s) || order_n < 2) {
    ck_free(order_b);
    *msg = "no BootOrder";
    return EFI_NOT_FOUND;
  }
  size_t count = order_n / 2;
  if (count > CK_MAX_ORDER) count = CK_MAX_ORDER;
  /* after BootCurrent; the whole order when BootCurrent is not in it (BootNext) */
  size_t first = 0;
  for (size_t i = 0; i < count; i++)
    if ((unsigned)(order_b[2 * i] | order_b[2 * i + 1] << 8) == current) { first = i + 1; break; }
  EFI_STATUS last = EFI_NOT_FOUND;
  int tried = 0;
  msg_add(&at, "no boot option after Boot");
  msg_hex4(&at, current);
  msg_add(&at, " could be loaded:");
  for (size_t i = first; i < count; i++) {
    unsigned num = order_b[2 * i] | order_b[2 * i + 1] << 8;
    if (num == current) continue;
    CHAR16 name[9];
    option_name(name, num);
    uint8_t *d;
    size_t dn;
    load_option_t o;
    if (EFI_ERROR(get_var(name, &d, &dn))) continue;
    if (parse_load_option(d, dn, &o) || !(o.attributes & LOAD_OPTION_ACTIVE) ||
        (o.attributes & LOAD_OPTION_CATEGORY)) {
      ck_free(d);
      continue;
    }
    tried = 1;
    EFI_HANDLE h = NULL;
    EFI_STATUS ls = load_option_image(&o, &h);
    if (!EFI_ERROR(ls)) {
      s = start_option(num, &o, h, out, msg);
      ck_free(d);
      ck_free(order_b);
      return s;
    }
    last = worse(last == EFI_NOT_FOUND ? ls : last, ls);
    msg_add(&at, " Boot");
    msg_hex4(&at, num);
    msg_add(&at, " ");
    msg_add(&at, ck_status_name(ls));
    ck_free(d);
  }
  ck_free(order_b);
  if (!tried) {
    at = 0;
    msg_add(&at, "no active boot option after Boot");
    msg_hex4(&at, current);
    *msg = g_msg;
    return EFI_NOT_FOUND;
  }
  *msg = g_msg;
  return last;
}
