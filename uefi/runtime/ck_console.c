/* Console: text goes to ConOut; when no ConOut device sits on a serial port
 * it is also written to COM1 directly, so a host always reads it on the
 * serial line (and never twice). Keys come from ConIn. */
#include "ck.h"

#define COM1 0x3f8
static int g_com1_direct;

void ck_outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

static void com1_put(uint8_t c) {
  /* wait for the transmit holding register (LSR bit 5), bounded */
  for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++) {
  }
  ck_outb(COM1, c);
}

/* Does any text-output device have a UART node in its device path? */
static int conout_on_serial(void) {
  EFI_GUID tout = SIMPLE_TEXT_OUTPUT_PROTOCOL;
  EFI_GUID dpg = DEVICE_PATH_PROTOCOL;
  UINTN n = 0;
  EFI_HANDLE *hs = NULL;
  int found = 0;
  if (EFI_ERROR(ck_bs->LocateHandleBuffer(ByProtocol, &tout, NULL, &n, &hs))) return 0;
  for (UINTN i = 0; i < n && !found; i++) {
    EFI_DEVICE_PATH *dp = NULL;
    if (EFI_ERROR(ck_bs->HandleProtocol(hs[i], &dpg, (void **)&dp)) || !dp) continue;
    for (int guard = 0; guard < 64; guard++) {
      uint8_t type = dp->Type & 0x7f, sub = dp->SubType;
      uint16_t len = (uint16_t)(dp->Length[0] | (dp->Length[1] << 8));
      if (type == 0x7f || len < 4) break;
      if (type == MESSAGING_DEVICE_PATH && sub == MSG_UART_DP) { found = 1; break; }
      dp = (EFI_DEVICE_PATH *)((uint8_t *)dp + len);
    }
  }
  ck_bs->FreePool(hs);
  return found;
}

void ck_console_init(void) {
  g_com1_direct = !conout_on_serial();
  if (g_com1_direct) {
    /* 115200 8N1, FIFO on */
    ck_outb(COM1 + 1, 0x00);
    ck_outb(COM1 + 3, 0x80);
    ck_outb(COM1 + 0, 0x01);
    ck_outb(COM1 + 1, 0x00);
    ck_outb(COM1 + 3, 0x03);
    ck_outb(COM1 + 2, 0xC7);
  }
}

/* UTF-8 in, UCS-2 out to ConOut, "\n" as "\r\n" (a lone "\r\n" stays). */
void ck_write(const char *buf, size_t len) {
  CHAR16 w[130];
  size_t k = 0;
  for (size_t i = 0; i < len; i++) {
    uint8_t c = (uint8_t)buf[i];
    uint32_t cp = c;
    if (c >= 0x80) {                     /* decode a UTF-8 sequence, '?' when bad */
      int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
      if (extra < 0 || i + extra >= len) {
        cp = '?';
      } else {
        cp = c & (0x3F >> extra);
        for (int j = 1; j <= extra && i + j < len; j++) cp = (cp << 6) | (buf[i + j] & 0x3F);
        i += extra;
      }
      if (cp > 0xFFFF) cp = '?';
    }
    if (cp == '\n' && !(i > 0 && buf[i - 1] == '\r')) w[k++] = '\r';
    w[k++] = (CHAR16)cp;
    if (g_com1_direct) {
      if (c == '\n' && !(i > 0 && buf[i - 1] == '\r')) com1_put('\r');
      if (c < 0x80) com1_put(c);
      else com1_put('?');
    }
    if (k >= 128) {
      w[k] = 0;
      ck_st->ConOut->OutputString(ck_st->ConOut, w);
      k = 0;
    }
  }
  if (k) {
    w[k] = 0;
    ck_st->ConOut->OutputString(ck_st->ConOut, w);
  }
}

void ck_puts(const char *s) { ck_write(s, strlen(s)); }

void ck_put_dec(uint64_t v) {
  char b[24];
  int i = 23;
  b[i] = 0;
  do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
  ck_puts(b + i);
}

void ck_put_hex(uint64_t v) {
  char b[20];
  int i = 19;
  b[i] = 0;
  do { b[--i] = "0123456789ABCDEF"[v & 15]; v >>= 4; } while (v);
  ck_puts(b + i);
}

/* One key: 1 when read, 0 on timeout, -1 on error. timeout_ms < 0 waits. */
int ck_read_key(int64_t timeout_ms, uint16_t *scan, uint16_t *uc) {
  EFI_INPUT_KEY key;
  EFI_EVENT timer = NULL;
  if (timeout_ms >= 0) {
    if (EFI_ERROR(ck_bs->CreateEvent(EVT_TIMER, 0, NULL, NULL, &timer))) return -1;
    ck_bs->SetTimer(timer, TimerRelative, (UINT64)timeout_ms * 10000);
  }
  int r = 0;
  for (;;) {
    EFI_STATUS s = ck_st->ConIn->ReadKeyStroke(ck_st->ConIn, &key);
    if (s == EFI_SUCCESS) { *scan = key.ScanCode; *uc = key.UnicodeChar; r = 1; break; }
    if (s != EFI_NOT_READY) { r = -1; break; }
    EFI_EVENT evs[2] = {ck_st->ConIn->WaitForKey, timer};
    UINTN idx = 0;
    if (EFI_ERROR(ck_bs->WaitForEvent(timer ? 2 : 1, evs, &idx))) { r = -1; break; }
    if (timer && idx == 1) { r = 0; break; }
  }
  if (timer) ck_bs->CloseEvent(timer);
  return r;
}

/* stdin: one line with echo, ended by Enter (no timeout: a person types). */
size_t ck_read_line(char *buf, size_t cap) {
  size_t n = 0;
  while (n + 1 < cap) {
    uint16_t scan, uc;
    if (ck_read_key(-1, &scan, &uc) != 1) break;
    if (uc == '\r' || uc == '\n') {
      buf[n++] = '\n';
      ck_puts("\r\n");
      break;
    }
    if (uc == 8) {
      if (n) { n--; ck_puts("\b \b"); }
      continue;
    }
    if (uc >= 0x20 && uc < 0x7f) {
      buf[n++] = (char)uc;
      ck_write(&buf[n - 1], 1);
    }
  }
  return n;
}
