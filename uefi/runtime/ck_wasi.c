/* WASI preview1 for the wasm2c MicroPython, over UEFI.
 *
 * fd 0/1/2 are the console (ck_console.c); fd 3 is the only preopen, "/",
 * which joins the embedded read-only table and the boot volume (the table
 * wins). Files are read-only: opening one reads it whole. Every pointer and
 * length from the wasm side is checked with ck_mem() first.
 * Function numbering and record layouts: WASI preview1 (wasi_snapshot_preview1). */
#include "ck.h"
#include "wasm-rt.h"
#include "mp.h"

/* WASI errno values */
enum {
  E_OK = 0, E_2BIG = 1, E_ACCES = 2, E_BADF = 8, E_EXIST = 20, E_FAULT = 21, E_INVAL = 28,
  E_IO = 29, E_ISDIR = 31, E_MFILE = 33, E_NAMETOOLONG = 37, E_NOENT = 44, E_NOMEM = 48,
  E_NOSYS = 52, E_NOTDIR = 54, E_NOTSUP = 58, E_ROFS = 69, E_SPIPE = 70
};
enum { FT_UNKNOWN = 0, FT_CHAR = 2, FT_DIR = 3, FT_FILE = 4 };

#define MAX_FDS 24
#define PATH_MAX_LEN 512
#define MAX_DIR_NAMES_BYTES 16384

extern int ck_argc;
extern const char *ck_argv[];

typedef struct {
  int used;
  int type;                /* FT_FILE or FT_DIR */
  const uint8_t *data;     /* file contents */
  uint64_t size, pos;
  uint8_t *owned;          /* pool copy of a volume file */
  char *names;             /* dir: NUL-separated child names */
  uint32_t names_len, nnames;
  uint8_t *name_types;     /* dir: FT_ of each child */
  char path[PATH_MAX_LEN]; /* absolute */
} ck_fd_t;

static ck_fd_t g_fds[MAX_FDS];

static const char *g_environ[] = {"MICROPYPATH=/lib:/lib/tests/portable", "HOME=/"};
#define N_ENVIRON (sizeof g_environ / sizeof g_environ[0])

/* ---- helpers ---- */
static ck_fd_t *get_fd(uint32_t fd) {
  if (fd < 3 || fd >= MAX_FDS || !g_fds[fd].used) return NULL;
  return &g_fds[fd];
}

/* Join base (absolute) and a relative path; resolve "." and "..". */
static int join_path(const char *base, const uint8_t *rel, uint32_t rel_len, char *out) {
  char tmp[PATH_MAX_LEN * 2];
  size_t bl = strlen(base);
  if (bl + 1 + rel_len + 1 > sizeof tmp) return -1;
  memcpy(tmp, base, bl);
  tmp[bl] = '/';
  memcpy(tmp + bl + 1, rel, rel_len);
  size_t tl = bl + 1 + rel_len;
  size_t o = 0;
  out[o++] = '/';
  size_t i = 0;
  while (i < tl) {
    while (i < tl && tmp[i] == '/') i++;
    size_t s = i;
    while (i < tl && tmp[i] != '/') i++;
    size_t n = i - s;
    if (n == 0 || (n == 1 && tmp[s] == '.')) continue;
    if (n == 2 && tmp[s] == '.' && tmp[s + 1] == '.') {
      while (o > 1 && out[o - 1] != '/') o--;
      if (o > 1) o--;
      continue;
    }
    if (tmp[s] == 0) return -1;
    if (o > 1) out[o++] = '/';
    if (o + n + 1 >= PATH_MAX_LEN) return -1;
    memcpy(out + o, tmp + s, n);
    o += n;
  }
  out[o] = 0;
  return 0;
}

static int resolve(uint32_t dirfd, uint32_t path_ptr, uint32_t path_len, char *out) {
  const char *base;
  if (dirfd == 3) base = "";
  else {
    ck_fd_t *d = get_fd(dirfd);
    if (!d) return E_BADF;
    if (d->type != FT_DIR) return E_NOTDIR;
    base = d->path;
    if (base[0] == '/' && base[1] == 0) base = "";
  }
  uint8_t *p = ck_mem(path_ptr, path_len);
  if (!p) return E_FAULT;
  for (uint32_t i = 0; i < path_len; i++)
    if (p[i] == 0) return E_INVAL;
  if (join_path(base, p, path_len, out) != 0) return E_NAMETOOLONG;
  return E_OK;
}

/* /lib is the image's alone: imports never wait for the disk, and a folder
 * on the volume cannot shadow a module. */
static int in_lib(const char *path) {
  return memcmp(path, "/lib", 4) == 0 && (path[4] == 0 || path[4] == '/');
}

/* What is at `path`: FT_FILE / FT_DIR / 0, with the size of a file. */
static int lookup(const char *path, uint64_t *size, const ck_embedded_file_t **emb) {
  size_t n = strlen(path);
  const ck_embedded_file_t *f = ck_embedded_find(path, n);
  if (emb) *emb = f;
  if (f) { *size = f->size; return FT_FILE; }
  if (ck_embedded_is_dir(path, n)) { *size = 0; return FT_DIR; }
  if (in_lib(path)) return 0;
  int is_dir = 0;
  uint64_t sz = 0;
  if (!EFI_ERROR(ck_volume_stat(path, &is_dir, &sz))) {
    *size = is_dir ? 0 : sz;
    return is_dir ? FT_DIR : FT_FILE;
  }
  return 0;
}

static uint32_t efi_to_errno(EFI_STATUS s) {
  if (s == EFI_NOT_FOUND) return E_NOENT;
  if (s == EFI_ACCESS_DENIED) return E_ACCES;
  if (s == EFI_OUT_OF_RESOURCES) return E_NOMEM;
  if (s == EFI_WRITE_PROTECTED) return E_ROFS;
  if (s == EFI_BAD_BUFFER_SIZE) return E_NOMEM;
  return E_IO;
}

/* ---- directories: the child names of the table and of the volume ---- */
static int dir_has(ck_fd_t *d, const char *name, size_t n) {
  const char *p = d->names;
  for (uint32_t i = 0; i < d->nnames; i++) {
    size_t l = strlen(p);
    if (l == n && memcmp(p, name, n) == 0) return 1;
    p += l + 1;
  }
  return 0;
}

static void dir_add(ck_fd_t *d, const char *name, size_t n, uint8_t type) {
  if (n == 0 || dir_has(d, name, n)) return;
  if (d->names_len + n + 1 > MAX_DIR_NAMES_BYTES || d->nnames >= MAX_DIR_NAMES_BYTES / 2) return;
  memcpy(d->names + d->names_len, name, n);
  d->names[d->names_len + n] = 0;
  d->names_len += (uint32_t)n + 1;
  d->name_types[d->nnames++] = type;
}

static void dir_collect(ck_fd_t *d) {
  const char *dp = d->path;
  size_t dl = strlen(dp);
  if (dl == 1) dl = 0;                                  /* "/" */
  for (int i = 0; i < ck_embedded_count(); i++) {
    const char *p = ck_embedded_at(i)->path;
    size_t pl = strlen(p);
    if (pl <= dl + 1 || memcmp(p, dp, dl) != 0 || p[dl] != '/') continue;
    const char *c = p + dl + 1;
    size_t cl = 0;
    while (c[cl] && c[cl] != '/') cl++;
    dir_add(d, c, cl, c[cl] == '/' ? FT_DIR : FT_FILE);
  }
  if (!ck_volume_root || in_lib(dp)) return;
  CHAR16 w[PATH_MAX_LEN];
  size_t n = 0;
  for (size_t i = 0; dp[i] && n + 1 < PATH_MAX_LEN; i++) w[n++] = dp[i] == '/' ? L'\\' : (CHAR16)(uint8_t)dp[i];
  w[n] = 0;
  EFI_FILE_HANDLE fh = NULL;
  if (EFI_ERROR(ck_volume_root->Open(ck_volume_root, &fh, w, EFI_FILE_MODE_READ, 0))) return;
  uint8_t buf[sizeof(EFI_FILE_INFO) + 512] __attribute__((aligned(8)));
  for (int guard = 0; guard < 4096; guard++) {
    UINTN bs = sizeof buf;
    if (EFI_ERROR(fh->Read(fh, &bs, buf)) || bs == 0) break;
    EFI_FILE_INFO *fi = (EFI_FILE_INFO *)buf;
    char name[256];
    size_t k = 0;
    for (size_t i = 0; fi->FileName[i] && k < sizeof name; i++)
      name[k++] = fi->FileName[i] < 0x80 ? (char)fi->FileName[i] : '?';
    if ((k == 1 && name[0] == '.') || (k == 2 && name[0] == '.' && name[1] == '.')) continue;
    dir_add(d, name, k, (fi->Attribute & EFI_FILE_DIRECTORY) ? FT_DIR : FT_FILE);
  }
  fh->Close(fh);
}

static void fd_release(ck_fd_t *f) {
  ck_free(f->owned);
  ck_free(f->names);
  ck_free(f->name_types);
  memset(f, 0, sizeof *f);
}

/* open files and folders the program did not close */
void ck_wasi_release(void) {
  for (int i = 3; i < MAX_FDS; i++)
    if (g_fds[i].used) fd_release(&g_fds[i]);
}

/* ---- WASI functions ---- */
#define WASI(name) w2c_wasi__snapshot__preview1_##name
typedef struct w2c_wasi__snapshot__preview1 wasi_t;

u32 WASI(args_sizes_get)(wasi_t *w, u32 argc_ptr, u32 size_ptr) {
  (void)w;
  uint32_t total = 0;
  for (int i = 0; i < ck_argc; i++) total += (uint32_t)strlen(ck_argv[i]) + 1;
  if (ck_mem_put32(argc_ptr, (uint32_t)ck_argc) || ck_mem_put32(size_ptr, total)) return E_FAULT;
  return E_OK;
}

u32 WASI(args_get)(wasi_t *w, u32 argv_ptr, u32 buf_ptr) {
  (void)w;
  for (int i = 0; i < ck_argc; i++) {
    uint32_t n = (uint32_t)strlen(ck_argv[i]) + 1;
    uint8_t *d = ck_mem(buf_ptr, n);
    if (!d || ck_mem_put32(argv_ptr + 4u * (uint32_t)i, buf_ptr)) return E_FAULT;
    memcpy(d, ck_argv[i], n);
    buf_ptr += n;
  }
  return E_OK;
}

u32 WASI(environ_sizes_get)(wasi_t *w, u32 count_ptr, u32 size_ptr) {
  (void)w;
  uint32_t total = 0;
  for (unsigned i = 0; i < N_ENVIRON; i++) total += (uint32_t)strlen(g_environ[i]) + 1;
  if (ck_mem_put32(count_ptr, N_ENVIRON) || ck_mem_put32(size_ptr, total)) return E_FAULT;
  return E_OK;
}

u32 WASI(environ_get)(wasi_t *w, u32 env_ptr, u32 buf_ptr) {
  (void)w;
  for (unsigned i = 0; i < N_ENVIRON; i++) {
    uint32_t n = (uint32_t)strlen(g_environ[i]) + 1;
    uint8_t *d = ck_mem(buf_ptr, n);
    if (!d || ck_mem_put32(env_ptr + 4u * i, buf_ptr)) return E_FAULT;
    memcpy(d, g_environ[i], n);
    buf_ptr += n;
  }
  return E_OK;
}

u32 WASI(clock_time_get)(wasi_t *w, u32 id, u64 precision, u32 out) {
  (void)w;
  (void)precision;
  uint64_t t;
  if (id == 0) t = ck_realtime_ns();          /* REALTIME */
  else if (id <= 3) t = ck_ticks_ns();        /* MONOTONIC, PROCESS/THREAD_CPUTIME */
  else return E_INVAL;
  return ck_mem_put64(out, t) ? E_FAULT : E_OK;
}

u32 WASI(fd_close)(wasi_t *w, u32 fd) {
  (void)w;
  ck_fd_t *f = get_fd(fd);
  if (fd <= 3) return E_OK;
  if (!f) return E_BADF;
  fd_release(f);
  return E_OK;
}

u32 WASI(fd_fdstat_get)(wasi_t *w, u32 fd, u32 out) {
  (void)w;
  uint8_t *p = ck_mem(out, 24);
  if (!p) return E_FAULT;
  memset(p, 0, 24);
  uint64_t rights = ~0ull;
  if (fd <= 2) p[0] = FT_CHAR;
  else if (fd == 3) p[0] = FT_DIR;
  else {
    ck_fd_t *f = get_fd(fd);
    if (!f) return E_BADF;
    p[0] = (uint8_t)f->type;
  }
  memcpy(p + 8, &rights, 8);
  memcpy(p + 16, &rights, 8);
  return E_OK;
}

u32 WASI(fd_prestat_get)(wasi_t *w, u32 fd, u32 out) {
  (void)w;
  if (fd != 3) return E_BADF;
  uint8_t *p = ck_mem(out, 8);
  if (!p) return E_FAULT;
  memset(p, 0, 8);                      /* tag 0: directory */
  uint32_t len = 1;                     /* "/" */
  memcpy(p + 4, &len, 4);
  return E_OK;
}

u32 WASI(fd_prestat_dir_name)(wasi_t *w, u32 fd, u32 path, u32 len) {
  (void)w;
  if (fd != 3) return E_BADF;
  if (len < 1) return E_INVAL;
  uint8_t *p = ck_mem(path, 1);
  if (!p) return E_FAULT;
  p[0] = '/';
  return E_OK;
}

u32 WASI(fd_read)(wasi_t *w, u32 fd, u32 iovs, u32 iovs_len, u32 nread_ptr) {
  (void)w;
  uint64_t total = 0;
  if (iovs_len > 1024) return E_INVAL;
  if (fd == 0) {
    /* stdin: lines typed on ConIn (with echo), served in whatever pieces
     * libc asks for (MicroPython reads one byte at a time) */
    static char line[1024];
    static size_t line_len, line_pos;
    if (line_pos >= line_len) {
      line_len = ck_read_line(line, sizeof line);
      line_pos = 0;
    }
    for (uint32_t i = 0; i < iovs_len && line_pos < line_len; i++) {
      uint32_t bp, bl;
      if (ck_mem_get32(iovs + 8 * i, &bp) || ck_mem_get32(iovs + 8 * i + 4, &bl)) return E_FAULT;
      uint8_t *d = ck_mem(bp, bl);
      if (!d) return E_FAULT;
      size_t n = line_len - line_pos < bl ? line_len - line_pos : bl;
      memcpy(d, line + line_pos, n);
      line_pos += n;
      total += n;
    }
    return ck_mem_put32(nread_ptr, (uint32_t)total) ? E_FAULT : E_OK;
  }
  ck_fd_t *f = get_fd(fd);
  if (!f) return E_BADF;
  if (f->type != FT_FILE) return E_ISDIR;
  for (uint32_t i = 0; i < iovs_len; i++) {
    uint32_t bp, bl;
    if (ck_mem_get32(iovs + 8 * i, &bp) || ck_mem_get32(iovs + 8 * i + 4, &bl)) return E_FAULT;
    uint8_t *d = ck_mem(bp, bl);
    if (!d) return E_FAULT;
    uint64_t avail = f->pos < f->size ? f->size - f->pos : 0;
    uint64_t n = bl < avail ? bl : avail;
    memcpy(d, f->data + f->pos, n);
    f->pos += n;
    total += n;
    if (n < bl) break;
  }
  return ck_mem_put32(nread_ptr, (uint32_t)total) ? E_FAULT : E_OK;
}

u32 WASI(fd_write)(wasi_t *w, u32 fd, u32 iovs, u32 iovs_len, u32 nwritten_ptr) {
  (void)w;
  if (fd != 1 && fd != 2) return fd < MAX_FDS && (fd == 3 || get_fd(fd)) ? E_ROFS : E_BADF;
  if (iovs_len > 1024) return E_INVAL;
  uint64_t total = 0;
  for (uint32_t i = 0; i < iovs_len; i++) {
    uint32_t bp, bl;
    if (ck_mem_get32(iovs + 8 * i, &bp) || ck_mem_get32(iovs + 8 * i + 4, &bl)) return E_FAULT;
    uint8_t *d = ck_mem(bp, bl);
    if (!d) return E_FAULT;
    ck_write((const char *)d, bl);
    total += bl;
  }
  return ck_mem_put32(nwritten_ptr, (uint32_t)total) ? E_FAULT : E_OK;
}

u32 WASI(fd_seek)(wasi_t *w, u32 fd, u64 offset, u32 whence, u32 out) {
  (void)w;
  if (fd <= 2) return E_SPIPE;
  ck_fd_t *f = get_fd(fd);
  if (!f) return E_BADF;
  if (f->type != FT_FILE) return E_ISDIR;
  int64_t base;
  if (whence == 0) base = 0;                 /* SET */
  else if (whence == 1) base = (int64_t)f->pos;
  else if (whence == 2) base = (int64_t)f->size;
  else return E_INVAL;
  int64_t np = base + (int64_t)offset;
  if (np < 0) return E_INVAL;
  f->pos = (uint64_t)np;
  return ck_mem_put64(out, f->pos) ? E_FAULT : E_OK;
}

u32 WASI(fd_sync)(wasi_t *w, u32 fd) {
  (void)w;
  (void)fd;
  return E_OK;
}

u32 WASI(fd_readdir)(wasi_t *w, u32 fd, u32 buf, u32 buf_len, u64 cookie, u32 used_ptr) {
  (void)w;
  ck_fd_t *f = get_fd(fd);
  if (!f) return fd == 3 ? E_NOTSUP : E_BADF;
  if (f->type != FT_DIR) return E_NOTDIR;
  uint8_t *out = ck_mem(buf, buf_len);
  if (!out) return E_FAULT;
  uint32_t used = 0;
  const char *p = f->names;
  for (uint32_t i = 0; i < f->nnames; i++) {
    size_t l = strlen(p);
    if (i >= cookie) {
      uint8_t ent[24];
      uint64_t next = i + 1, ino = i + 1;
      uint32_t nl = (uint32_t)l;
      memset(ent, 0, sizeof ent);
      memcpy(ent, &next, 8);
      memcpy(ent + 8, &ino, 8);
      memcpy(ent + 16, &nl, 4);
      ent[20] = f->name_types[i];
      /* copy as much as fits: a truncated entry tells libc to retry bigger */
      for (size_t k = 0; k < 24 && used < buf_len; k++) out[used++] = ent[k];
      for (size_t k = 0; k < l && used < buf_len; k++) out[used++] = (uint8_t)p[k];
      if (used >= buf_len) break;
    }
    p += l + 1;
  }
  return ck_mem_put32(used_ptr, used) ? E_FAULT : E_OK;
}

u32 WASI(path_filestat_get)(wasi_t *w, u32 fd, u32 flags, u32 path, u32 path_len, u32 out) {
  (void)w;
  (void)flags;
  char abs[PATH_MAX_LEN];
  int e = resolve(fd, path, path_len, abs);
  if (e) return (u32)e;
  uint64_t size = 0;
  int t = lookup(abs, &size, NULL);
  if (!t) return E_NOENT;
  uint8_t *p = ck_mem(out, 64);
  if (!p) return E_FAULT;
  memset(p, 0, 64);
  uint64_t nlink = 1;
  p[16] = (uint8_t)t;
  memcpy(p + 24, &nlink, 8);
  memcpy(p + 32, &size, 8);
  return E_OK;
}

u32 WASI(path_open)(wasi_t *w, u32 dirfd, u32 dirflags, u32 path, u32 path_len, u32 oflags,
                    u64 rights_base, u64 rights_inh, u32 fdflags, u32 fd_out) {
  (void)w;
  (void)dirflags;
  (void)rights_inh;
  char abs[PATH_MAX_LEN];
  int e = resolve(dirfd, path, path_len, abs);
  if (e) return (u32)e;
  const uint64_t RIGHT_FD_WRITE = 1ull << 6;
  if ((oflags & (1 | 4 | 8)) || (fdflags & 1)) return E_ROFS;  /* CREAT EXCL TRUNC, APPEND */
  const ck_embedded_file_t *emb = NULL;
  uint64_t size = 0;
  int t = lookup(abs, &size, &emb);
  if (!t) return E_NOENT;
  if ((oflags & 2) && t != FT_DIR) return E_NOTDIR;
  if (t == FT_FILE && (rights_base & RIGHT_FD_WRITE)) return E_ROFS;
  uint32_t fd = 4;
  while (fd < MAX_FDS && g_fds[fd].used) fd++;
  if (fd >= MAX_FDS) return E_MFILE;
  ck_fd_t *f = &g_fds[fd];
  memset(f, 0, sizeof *f);
  f->type = t;
  memcpy(f->path, abs, strlen(abs) + 1);
  if (t == FT_FILE) {
    if (emb) {
      f->data = emb->data;
      f->size = emb->size;
    } else {
      uint8_t *d = NULL;
      uint64_t sz = 0;
      EFI_STATUS s = ck_volume_read(abs, &d, &sz);
      if (EFI_ERROR(s)) return efi_to_errno(s);
      f->owned = d;
      f->data = d;
      f->size = sz;
    }
  } else {
    f->names = ck_alloc(MAX_DIR_NAMES_BYTES);
    f->name_types = ck_alloc(MAX_DIR_NAMES_BYTES / 2);
    if (!f->names || !f->name_types) {
      fd_release(f);
      return E_NOMEM;
    }
    dir_collect(f);
  }
  f->used = 1;
  return ck_mem_put32(fd_out, fd) ? E_FAULT : E_OK;
}

u32 WASI(path_readlink)(wasi_t *w, u32 fd, u32 path, u32 path_len, u32 buf, u32 buf_len, u32 used) {
  (void)w; (void)fd; (void)path; (void)path_len; (void)buf; (void)buf_len; (void)used;
  return E_INVAL;                                 /* no symbolic links here */
}
u32 WASI(path_create_directory)(wasi_t *w, u32 fd, u32 path, u32 len) {
  (void)w; (void)fd; (void)path; (void)len;
  return E_ROFS;
}
u32 WASI(path_remove_directory)(wasi_t *w, u32 fd, u32 path, u32 len) {
  (void)w; (void)fd; (void)path; (void)len;
  return E_ROFS;
}
u32 WASI(path_unlink_file)(wasi_t *w, u32 fd, u32 path, u32 len) {
  (void)w; (void)fd; (void)path; (void)len;
  return E_ROFS;
}
u32 WASI(path_rename)(wasi_t *w, u32 a, u32 b, u32 c, u32 d, u32 e, u32 f) {
  (void)w; (void)a; (void)b; (void)c; (void)d; (void)e; (void)f;
  return E_ROFS;
}

/* Clock subscriptions sleep (bounded to 60 s per call); fd ones are ready. */
u32 WASI(poll_oneoff)(wasi_t *w, u32 in, u32 out, u32 nsubs, u32 nevents_ptr) {
  (void)w;
  if (nsubs == 0 || nsubs > 64) return E_INVAL;
  uint8_t *subs = ck_mem(in, (uint64_t)nsubs * 48);
  uint8_t *evs = ck_mem(out, (uint64_t)nsubs * 32);
  if (!subs || !evs) return E_FAULT;
  uint64_t now = ck_ticks_ns(), wait = ~0ull;
  int have_fd = 0;
  for (uint32_t i = 0; i < nsubs; i++) {
    uint8_t *s = subs + 48 * i;
    if (s[8] == 0) {
      uint32_t id;
      uint64_t timeout;
      uint16_t flags;
      memcpy(&id, s + 16, 4);
      memcpy(&timeout, s + 24, 8);
      memcpy(&flags, s + 40, 2);
      uint64_t rel = timeout;
      if (flags & 1) {                            /* absolute time */
        uint64_t cur = id == 0 ? ck_realtime_ns() : now;
        rel = timeout > cur ? timeout - cur : 0;
      }
      if (rel < wait) wait = rel;
    } else {
      have_fd = 1;
    }
  }
  if (!have_fd && wait != ~0ull) {
    if (wait > 60000000000ull) wait = 60000000000ull;
    uint64_t end = now + wait;
    while (ck_ticks_ns() < end) {
      uint64_t left_us = (end - ck_ticks_ns()) / 1000;
      ck_bs->Stall(left_us > 10000 ? 10000 : (left_us ? left_us : 1));
    }
  }
  uint32_t n = 0;
  for (uint32_t i = 0; i < nsubs; i++) {
    uint8_t *s = subs + 48 * i;
    uint8_t *e = evs + 32 * n;
    memset(e, 0, 32);
    memcpy(e, s, 8);                              /* userdata */
    e[10] = s[8];                                 /* type */
    n++;
  }
  return ck_mem_put32(nevents_ptr, n) ? E_FAULT : E_OK;
}

void WASI(proc_exit)(wasi_t *w, u32 code) {
  (void)w;
  ck_exit_now(code);
}

u32 WASI(sched_yield)(wasi_t *w) {
  (void)w;
  return E_OK;
}
