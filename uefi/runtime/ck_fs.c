/* Files: the read-only table embedded in the image (ck_files.S, written by
 * uefi/build.py) and, behind it, the boot volume (EFI_SIMPLE_FILE_SYSTEM,
 * read-only use). Table layout, little-endian:
 *   "CKFS0001", u32 count, u32 reserved,
 *   count x { u32 path_off, u32 path_len, u32 data_off, u32 data_len },
 * offsets from the start of the table; paths absolute, '/'-separated, sorted. */
#include "ck.h"

extern const uint8_t ck_files_blob[];
extern const uint8_t ck_files_blob_end[];

#define CK_MAX_EMBEDDED 1024
#define CK_MAX_VOLUME_FILE (16u << 20)

static ck_embedded_file_t g_files[CK_MAX_EMBEDDED];
static int g_nfiles;

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

void ck_fs_init(void) {
  const uint8_t *b = ck_files_blob;
  uint64_t total = (uint64_t)(ck_files_blob_end - ck_files_blob);
  if (total < 16 || memcmp(b, "CKFS0001", 8) != 0) {
    ck_puts("ccidkit: embedded file table missing\r\n");
    return;
  }
  uint32_t count = rd32(b + 8);
  if (count > CK_MAX_EMBEDDED || 16 + (uint64_t)count * 16 > total) {
    ck_puts("ccidkit: embedded file table damaged\r\n");
    return;
  }
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t *e = b + 16 + i * 16;
    uint32_t po = rd32(e), pl = rd32(e + 4), dof = rd32(e + 8), dl = rd32(e + 12);
    if ((uint64_t)po + pl + 1 > total || (uint64_t)dof + dl > total || pl == 0 || b[po + pl] != 0)
      continue;                           /* skip a damaged entry */
    g_files[g_nfiles].path = (const char *)(b + po);
    g_files[g_nfiles].data = b + dof;
    g_files[g_nfiles].size = dl;
    g_nfiles++;
  }
}

int ck_embedded_count(void) { return g_nfiles; }
const ck_embedded_file_t *ck_embedded_at(int i) {
  return (i >= 0 && i < g_nfiles) ? &g_files[i] : NULL;
}

const ck_embedded_file_t *ck_embedded_find(const char *path, size_t len) {
  for (int i = 0; i < g_nfiles; i++) {
    const char *p = g_files[i].path;
    if (strlen(p) == len && memcmp(p, path, len) == 0) return &g_files[i];
  }
  return NULL;
}

/* A directory exists when some file lives below it ("/" always does). */
int ck_embedded_is_dir(const char *path, size_t len) {
  if (len == 1 && path[0] == '/') return 1;
  for (int i = 0; i < g_nfiles; i++) {
    const char *p = g_files[i].path;
    if (strlen(p) > len && memcmp(p, path, len) == 0 && p[len] == '/') return 1;
  }
  return 0;
}

/* ---- boot volume ---- */
static EFI_STATUS volume_open(const char *path, EFI_FILE_HANDLE *fh) {
  if (!ck_volume_root) return EFI_NOT_FOUND;
  CHAR16 w[260];
  size_t n = 0;
  for (size_t i = 0; path[i] && n < 258; i++) w[n++] = path[i] == '/' ? L'\\' : (CHAR16)(uint8_t)path[i];
  if (n == 0) w[n++] = L'\\';
  w[n] = 0;
  return ck_volume_root->Open(ck_volume_root, fh, w, EFI_FILE_MODE_READ, 0);
}

static EFI_STATUS volume_info(EFI_FILE_HANDLE fh, int *is_dir, uint64_t *size) {
  EFI_GUID ig = EFI_FILE_INFO_ID;
  uint8_t buf[sizeof(EFI_FILE_INFO) + 512];
  UINTN bs = sizeof buf;
  EFI_STATUS s = fh->GetInfo(fh, &ig, &bs, buf);
  if (EFI_ERROR(s)) return s;
  EFI_FILE_INFO *fi = (EFI_FILE_INFO *)buf;
  *is_dir = (fi->Attribute & EFI_FILE_DIRECTORY) != 0;
  *size = fi->FileSize;
  return EFI_SUCCESS;
}

EFI_STATUS ck_volume_stat(const char *path, int *is_dir, uint64_t *size) {
  EFI_FILE_HANDLE fh = NULL;
  EFI_STATUS s = volume_open(path, &fh);
  if (EFI_ERROR(s)) return s;
  s = volume_info(fh, is_dir, size);
  fh->Close(fh);
  return s;
}

EFI_STATUS ck_volume_read(const char *path, uint8_t **data, uint64_t *size) {
  EFI_FILE_HANDLE fh = NULL;
  EFI_STATUS s = volume_open(path, &fh);
  if (EFI_ERROR(s)) return s;
  int is_dir = 0;
  uint64_t sz = 0;
  s = volume_info(fh, &is_dir, &sz);
  if (!EFI_ERROR(s) && (is_dir || sz > CK_MAX_VOLUME_FILE)) s = is_dir ? EFI_ACCESS_DENIED : EFI_BAD_BUFFER_SIZE;
  uint8_t *buf = NULL;
  if (!EFI_ERROR(s)) {
    buf = ck_alloc((size_t)sz + 1);
    if (!buf) s = EFI_OUT_OF_RESOURCES;
  }
  if (!EFI_ERROR(s)) {
    UINTN n = (UINTN)sz;
    s = fh->Read(fh, &n, buf);
    if (!EFI_ERROR(s) && n != sz) s = EFI_DEVICE_ERROR;
  }
  fh->Close(fh);
  if (EFI_ERROR(s)) {
    ck_free(buf);
    return s;
  }
  *data = buf;
  *size = sz;
  return EFI_SUCCESS;
}
