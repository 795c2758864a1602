/* USB services over EFI_USB_IO_PROTOCOL (UEFI spec §17.2): one handle per
 * interface; descriptors, control and bulk transfers with timeouts, and the
 * interrupt-IN endpoint through UsbAsyncInterruptTransfer feeding a queue
 * here that Python drains ("usb.intr_poll"): a synchronous interrupt read
 * would drop a NotifySlotChange that arrives between two reads.
 *
 * Handles are small integers (1..CK_USB_MAX_DEV) into the table filled by
 * "usb.list"; each use re-opens the protocol, so an unplugged device gives
 * an error answer, never a stale pointer. */
#include "ck.h"

#define CK_USB_MAX_DEV 32
#define CK_USB_MAX_XFER 65600         /* dwMaxCCIDMessageLength 65554 + margin */
#define CK_INTR_SLOTS 8
#define CK_INTR_QUEUE 64
#define CK_INTR_PACKET 64

typedef struct {
  UINT8 RequestType, Request;
  UINT16 Value, Index, Length;
} ck_usb_request_t;

typedef struct {
  UINT8 Length, DescriptorType;
  UINT16 BcdUSB;
  UINT8 DeviceClass, DeviceSubClass, DeviceProtocol, MaxPacketSize0;
  UINT16 IdVendor, IdProduct, BcdDevice;
  UINT8 StrManufacturer, StrProduct, StrSerialNumber, NumConfigurations;
} __attribute__((packed)) ck_usb_device_desc_t;

typedef struct {
  UINT8 Length, DescriptorType;
  UINT16 TotalLength;
  UINT8 NumInterfaces, ConfigurationValue, Configuration, Attributes, MaxPower;
} __attribute__((packed)) ck_usb_config_desc_t;

typedef struct {
  UINT8 Length, DescriptorType, InterfaceNumber, AlternateSetting, NumEndpoints;
  UINT8 InterfaceClass, InterfaceSubClass, InterfaceProtocol, Interface;
} __attribute__((packed)) ck_usb_interface_desc_t;

typedef struct {
  UINT8 Length, DescriptorType, EndpointAddress, Attributes;
  UINT16 MaxPacketSize;
  UINT8 Interval;
} __attribute__((packed)) ck_usb_endpoint_desc_t;

typedef EFI_STATUS(EFIAPI *ck_async_cb_t)(VOID *Data, UINTN DataLength, VOID *Context,
                                          UINT32 Status);

typedef struct ck_usb_io {
  EFI_STATUS(EFIAPI *UsbControlTransfer)(struct ck_usb_io *, ck_usb_request_t *, UINT32 Direction,
                                         UINT32 Timeout, VOID *Data, UINTN DataLength,
                                         UINT32 *Status);
  EFI_STATUS(EFIAPI *UsbBulkTransfer)(struct ck_usb_io *, UINT8 Endpoint, VOID *Data,
                                      UINTN *DataLength, UINTN Timeout, UINT32 *Status);
  EFI_STATUS(EFIAPI *UsbAsyncInterruptTransfer)(struct ck_usb_io *, UINT8 Endpoint,
                                                BOOLEAN IsNewTransfer, UINTN PollingInterval,
                                                UINTN DataLength, ck_async_cb_t Callback,
                                                VOID *Context);
  VOID *UsbSyncInterruptTransfer;
  VOID *UsbIsochronousTransfer;
  VOID *UsbAsyncIsochronousTransfer;
  EFI_STATUS(EFIAPI *UsbGetDeviceDescriptor)(struct ck_usb_io *, ck_usb_device_desc_t *);
  EFI_STATUS(EFIAPI *UsbGetConfigDescriptor)(struct ck_usb_io *, ck_usb_config_desc_t *);
  EFI_STATUS(EFIAPI *UsbGetInterfaceDescriptor)(struct ck_usb_io *, ck_usb_interface_desc_t *);
  EFI_STATUS(EFIAPI *UsbGetEndpointDescriptor)(struct ck_usb_io *, UINT8 Index,
                                               ck_usb_endpoint_desc_t *);
  VOID *UsbGetStringDescriptor;
  VOID *UsbGetSupportedLanguages;
  VOID *UsbPortReset;
} ck_usb_io_t;

static EFI_GUID g_usbio_guid = {0x2B2F68D6, 0x0CD2, 0x44cf,
                                {0x8E, 0x8B, 0xBB, 0xA2, 0x0B, 0x1B, 0x5B, 0x75}};

enum { DIR_IN = 0, DIR_OUT = 1, DIR_NONE = 2 };   /* EFI_USB_DATA_DIRECTION */

static EFI_HANDLE g_dev[CK_USB_MAX_DEV + 1];
static int g_ndev;

/* interrupt queues; the callback runs at TPL_NOTIFY or below, the reader
 * raises to TPL_NOTIFY while it drains */
typedef struct {
  int active;
  EFI_HANDLE handle;
  uint8_t ep;
  ck_usb_io_t *io;
  uint32_t head, count, dropped, last_status;
  uint16_t len[CK_INTR_QUEUE];
  uint8_t data[CK_INTR_QUEUE][CK_INTR_PACKET];
} ck_intr_t;
static ck_intr_t *g_intr;          /* CK_INTR_SLOTS queues, allocated on first use */
static uint8_t *g_xfer;            /* transfer buffer, allocated on first use */

static int buffers_ready(void) {
  if (!g_xfer) g_xfer = ck_alloc(CK_USB_MAX_XFER);
  if (!g_intr) {
    g_intr = ck_alloc(CK_INTR_SLOTS * sizeof(ck_intr_t));
    if (g_intr) memset(g_intr, 0, CK_INTR_SLOTS * sizeof(ck_intr_t));
  }
  return g_xfer && g_intr;
}

#define BAD(m) do { *msg = (m); return EFI_INVALID_PARAMETER; } while (0)

static EFI_STATUS open_dev(uint64_t h, ck_usb_io_t **io, EFI_HANDLE *eh, const char **msg) {
  if (h < 1 || h > (uint64_t)g_ndev) { *msg = "unknown USB handle (call usb.list)"; return EFI_INVALID_PARAMETER; }
  EFI_STATUS s = ck_bs->HandleProtocol(g_dev[h], &g_usbio_guid, (void **)io);
  if (EFI_ERROR(s) || !*io) { *msg = "device gone"; return EFI_NOT_FOUND; }
  if (eh) *eh = g_dev[h];
  return EFI_SUCCESS;
}

static EFI_STATUS xfer_error(EFI_STATUS s, UINT32 usb_status, const char **msg) {
  static char m[48];
  const char *base = "transfer failed, UsbStatus 0x";
  size_t k = 0;
  for (; base[k]; k++) m[k] = base[k];
  for (int i = 7; i >= 0; i--) m[k++] = "0123456789abcdef"[(usb_status >> (4 * i)) & 15];
  m[k] = 0;
  *msg = m;
  return s;
}

/* usb.list -> one line per UsbIo handle:
 * "HANDLE DEVDESC_HEX CONFIG_HEX IFDESC_HEX EP:ATTR:MPS:INTERVAL,..." */
static EFI_STATUS svc_list(ck_args_t *a, ck_out_t *o, const char **msg) {
  if (ck_arg_end(a)) BAD("no arguments");
  UINTN n = 0;
  EFI_HANDLE *hs = NULL;
  g_ndev = 0;
  EFI_STATUS s = ck_bs->LocateHandleBuffer(ByProtocol, &g_usbio_guid, NULL, &n, &hs);
  if (s == EFI_NOT_FOUND) return EFI_SUCCESS;         /* no USB interface at all */
  if (EFI_ERROR(s)) { *msg = "LocateHandleBuffer"; return s; }
  int line = 0;
  for (UINTN i = 0; i < n && g_ndev < CK_USB_MAX_DEV; i++) {
    ck_usb_io_t *io = NULL;
    if (EFI_ERROR(ck_bs->HandleProtocol(hs[i], &g_usbio_guid, (void **)&io)) || !io) continue;
    ck_usb_device_desc_t dd;
    ck_usb_config_desc_t cd;
    ck_usb_interface_desc_t id;
    if (EFI_ERROR(io->UsbGetDeviceDescriptor(io, &dd)) ||
        EFI_ERROR(io->UsbGetConfigDescriptor(io, &cd)) ||
        EFI_ERROR(io->UsbGetInterfaceDescriptor(io, &id)))
      continue;
    g_dev[++g_ndev] = hs[i];
    if (line++) ck_out_char(o, '\n');
    ck_out_dec(o, g_ndev);
    ck_out_char(o, ' ');
    ck_out_hexbytes(o, (const uint8_t *)&dd, sizeof dd);
    ck_out_char(o, ' ');
    /* the whole configuration: GET_DESCRIPTOR(CONFIGURATION) (USB 2.0 §9.4.3) */
    uint16_t total = cd.TotalLength;
    int got = 0;
    if (total >= sizeof cd && total <= 4096) {
      ck_usb_request_t rq = {0x80, 6, (UINT16)(2 << 8), 0, total};
      UINT32 us = 0;
      if (!EFI_ERROR(io->UsbControlTransfer(io, &rq, DIR_IN, 1000, g_xfer, total, &us))) {
        ck_out_hexbytes(o, g_xfer, total);
        got = 1;
      }
    }
    if (!got) ck_out_hexbytes(o, (const uint8_t *)&cd, sizeof cd);
    ck_out_char(o, ' ');
    ck_out_hexbytes(o, (const uint8_t *)&id, sizeof id);
    ck_out_char(o, ' ');
    int eps = 0;
    for (UINT8 e = 0; e < id.NumEndpoints && e < 32; e++) {
      ck_usb_endpoint_desc_t ed;
      if (EFI_ERROR(io->UsbGetEndpointDescriptor(io, e, &ed))) continue;
      if (eps++) ck_out_char(o, ',');
      ck_out_dec(o, ed.EndpointAddress);
      ck_out_char(o, ':');
      ck_out_dec(o, ed.Attributes);
      ck_out_char(o, ':');
      ck_out_dec(o, ed.MaxPacketSize);
      ck_out_char(o, ':');
      ck_out_dec(o, ed.Interval);
    }
    if (!eps) ck_out_char(o, '-');
  }
  ck_bs->FreePool(hs);
  return EFI_SUCCESS;
}

/* usb.control H bmRequestType bRequest wValue wIndex TIMEOUT_MS (LENGTH | HEX) */
static EFI_STATUS svc_control(ck_args_t *a, ck_out_t *o, const char **msg) {
  uint64_t h, rt, rq, val, idx, tmo;
  if (ck_arg_u64(a, &h) || ck_arg_u64(a, &rt) || ck_arg_u64(a, &rq) || ck_arg_u64(a, &val) ||
      ck_arg_u64(a, &idx) || ck_arg_u64(a, &tmo) || rt > 255 || rq > 255 || val > 0xffff ||
      idx > 0xffff || tmo == 0 || tmo > 60000)
    BAD("usb.control H TYPE REQ VALUE INDEX TIMEOUT_MS LENGTH|HEX");
  size_t len = 0;
  int dir;
  if (rt & 0x80) {
    uint64_t l;
    if (ck_arg_u64(a, &l) || l > 4096) BAD("IN length 0..4096");
    len = (size_t)l;
    dir = len ? DIR_IN : DIR_NONE;
  } else {
    if (ck_arg_hexbytes(a, g_xfer, 4096, &len)) BAD("OUT data: hex (or -), at most 4096 bytes");
    dir = len ? DIR_OUT : DIR_NONE;
  }
  if (ck_arg_end(a)) BAD("too many arguments");
  ck_usb_io_t *io;
  EFI_STATUS s = open_dev(h, &io, NULL, msg);
  if (EFI_ERROR(s)) return s;
  ck_usb_request_t r = {(UINT8)rt, (UINT8)rq, (UINT16)val, (UINT16)idx, (UINT16)len};
  UINT32 us = 0;
  s = io->UsbControlTransfer(io, &r, (UINT32)dir, (UINT32)tmo, len ? g_xfer : NULL, len, &us);
  if (EFI_ERROR(s)) return xfer_error(s, us, msg);
  if (dir == DIR_IN) ck_out_hexbytes(o, g_xfer, len);   /* UsbIo gives no actual length */
  return EFI_SUCCESS;
}

static EFI_STATUS bulk(ck_args_t *a, ck_out_t *o, const char **msg, int in) {
  uint64_t h, ep, tmo, l = 0;
  size_t len = 0;
  if (ck_arg_u64(a, &h) || ck_arg_u64(a, &ep) || ck_arg_u64(a, &tmo) || ep > 255 || tmo == 0 ||
      tmo > 600000)
    BAD("usb.bulk_* H EP TIMEOUT_MS ...");
  if (in) {
    if (ck_arg_u64(a, &l) || l == 0 || l > CK_USB_MAX_XFER) BAD("bulk IN length 1..65600");
    len = (size_t)l;
    if (!(ep & 0x80)) BAD("bulk IN needs an IN endpoint (0x80 set)");
  } else {
    if (ck_arg_hexbytes(a, g_xfer, CK_USB_MAX_XFER, &len)) BAD("bulk OUT data: hex");
    if (ep & 0x80) BAD("bulk OUT needs an OUT endpoint");
  }
  if (ck_arg_end(a)) BAD("too many arguments");
  ck_usb_io_t *io;
  EFI_STATUS s = open_dev(h, &io, NULL, msg);
  if (EFI_ERROR(s)) return s;
  UINTN n = len;
  UINT32 us = 0;
  s = io->UsbBulkTransfer(io, (UINT8)ep, g_xfer, &n, (UINTN)tmo, &us);
  if (EFI_ERROR(s)) return xfer_error(s, us, msg);
  if (n > len) n = len;
  if (in) ck_out_hexbytes(o, g_xfer, n);
  else ck_out_dec(o, (int64_t)n);
  return EFI_SUCCESS;
}
static EFI_STATUS svc_bulk_in(ck_args_t *a, ck_out_t *o, const char **m) { return bulk(a, o, m, 1); }
static EFI_STATUS svc_bulk_out(ck_args_t *a, ck_out_t *o, const char **m) { return bulk(a, o, m, 0); }

static EFI_STATUS EFIAPI intr_callback(VOID *data, UINTN len, VOID *ctx, UINT32 status) {
  ck_intr_t *q = ctx;
  if (!q || !q->active) return EFI_SUCCESS;
  q->last_status = status;
  if (status || !data || len == 0) return EFI_SUCCESS;
  if (q->count >= CK_INTR_QUEUE) { q->dropped++; return EFI_SUCCESS; }
  uint32_t slot = (q->head + q->count) % CK_INTR_QUEUE;
  if (len > CK_INTR_PACKET) len = CK_INTR_PACKET;
  memcpy(q->data[slot], data, len);
  q->len[slot] = (uint16_t)len;
  q->count++;
  return EFI_SUCCESS;
}

static ck_intr_t *find_intr(EFI_HANDLE eh, uint8_t ep) {
  for (int i = 0; i < CK_INTR_SLOTS; i++)
    if (g_intr[i].active && g_intr[i].handle == eh && g_intr[i].ep == ep) return &g_intr[i];
  return NULL;
}

static EFI_STATUS intr_args(ck_args_t *a, uint64_t *h, uint64_t *ep, const char **msg) {
  if (ck_arg_u64(a, h) || ck_arg_u64(a, ep) || *ep > 255 || !(*ep & 0x80)) BAD("H EP (IN endpoint)");
  return EFI_SUCCESS;
}

/* usb.intr_start H EP LENGTH INTERVAL_MS */
static EFI_STATUS svc_intr_start(ck_args_t *a, ck_out_t *o, const char **msg) {
  (void)o;
  uint64_t h, ep, len, ivl;
  if (intr_args(a, &h, &ep, msg) || ck_arg_u64(a, &len) || ck_arg_u64(a, &ivl) || ck_arg_end(a) ||
      len == 0 || len > CK_INTR_PACKET || ivl == 0 || ivl > 255)
    BAD("usb.intr_start H EP LENGTH(1..64) INTERVAL_MS(1..255)");
  ck_usb_io_t *io;
  EFI_HANDLE eh;
  EFI_STATUS s = open_dev(h, &io, &eh, msg);
  if (EFI_ERROR(s)) return s;
  if (find_intr(eh, (uint8_t)ep)) { *msg = "already started"; return EFI_ALREADY_STARTED; }
  ck_intr_t *q = NULL;
  for (int i = 0; i < CK_INTR_SLOTS && !q; i++)
    if (!g_intr[i].active) q = &g_intr[i];
  if (!q) { *msg = "too many interrupt endpoints"; return EFI_OUT_OF_RESOURCES; }
  EFI_TPL old = ck_bs->RaiseTPL(TPL_NOTIFY);
  memset(q, 0, sizeof *q);
  q->handle = eh;
  q->ep = (uint8_t)ep;
  q->io = io;
  q->active = 1;
  ck_bs->RestoreTPL(old);
  s = io->UsbAsyncInterruptTransfer(io, (UINT8)ep, TRUE, (UINTN)ivl, (UINTN)len, intr_callback, q);
  if (EFI_ERROR(s)) {
    q->active = 0;
    *msg = "UsbAsyncInterruptTransfer";
  }
  return s;
}

/* usb.intr_poll H EP -> "HEX HEX ..." (oldest first) */
static EFI_STATUS svc_intr_poll(ck_args_t *a, ck_out_t *o, const char **msg) {
  uint64_t h, ep;
  if (intr_args(a, &h, &ep, msg) || ck_arg_end(a)) BAD("usb.intr_poll H EP");
  if (h < 1 || h > (uint64_t)g_ndev) BAD("unknown USB handle");
  ck_intr_t *q = find_intr(g_dev[h], (uint8_t)ep);
  if (!q) { *msg = "not started"; return EFI_NOT_STARTED; }
  uint8_t tmp[CK_INTR_QUEUE][CK_INTR_PACKET];
  uint16_t lens[CK_INTR_QUEUE];
  EFI_TPL old = ck_bs->RaiseTPL(TPL_NOTIFY);
  uint32_t n = q->count;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t slot = (q->head + i) % CK_INTR_QUEUE;
    lens[i] = q->len[slot];
    memcpy(tmp[i], q->data[slot], lens[i]);
  }
  q->head = (q->head + n) % CK_INTR_QUEUE;
  q->count = 0;
  ck_bs->RestoreTPL(old);
  if (n == 0) {
    /* Nothing queued: tell an unplugged device apart from a quiet one, so the
       driver's event poll sees the reader go (its queued packets come first). */
    ck_usb_io_t *io;
    EFI_STATUS s = open_dev(h, &io, NULL, msg);
    if (EFI_ERROR(s)) return s;
  }
  for (uint32_t i = 0; i < n; i++) {
    if (i) ck_out_char(o, ' ');
    ck_out_hexbytes(o, tmp[i], lens[i]);
  }
  return EFI_SUCCESS;
}

static EFI_STATUS svc_intr_stop(ck_args_t *a, ck_out_t *o, const char **msg) {
  (void)o;
  uint64_t h, ep;
  if (intr_args(a, &h, &ep, msg) || ck_arg_end(a)) BAD("usb.intr_stop H EP");
  if (h < 1 || h > (uint64_t)g_ndev) BAD("unknown USB handle");
  ck_intr_t *q = find_intr(g_dev[h], (uint8_t)ep);
  if (!q) { *msg = "not started"; return EFI_NOT_STARTED; }
  ck_usb_io_t *io = NULL;
  /* the device may be gone already; then there is nothing to cancel */
  if (!EFI_ERROR(ck_bs->HandleProtocol(q->handle, &g_usbio_guid, (void **)&io)) && io)
    io->UsbAsyncInterruptTransfer(io, q->ep, FALSE, 0, 0, NULL, NULL);
  EFI_TPL old = ck_bs->RaiseTPL(TPL_NOTIFY);
  q->active = 0;
  ck_bs->RestoreTPL(old);
  return EFI_SUCCESS;
}

/* Before the image goes away: the firmware must not call intr_callback
 * (our code) after the application returned. */
void ck_usb_shutdown(void) {
  for (int i = 0; g_intr && i < CK_INTR_SLOTS; i++) {
    ck_intr_t *q = &g_intr[i];
    if (!q->active) continue;
    ck_usb_io_t *io = NULL;
    if (!EFI_ERROR(ck_bs->HandleProtocol(q->handle, &g_usbio_guid, (void **)&io)) && io)
      io->UsbAsyncInterruptTransfer(io, q->ep, FALSE, 0, 0, NULL, NULL);
    q->active = 0;
  }
  ck_free(g_intr);
  g_intr = NULL;
  ck_free(g_xfer);
  g_xfer = NULL;
}

static const struct {
  const char *name;
  ck_service_fn fn;
} g_usb_services[] = {
    {"usb.list", svc_list},           {"usb.control", svc_control},
    {"usb.bulk_in", svc_bulk_in},     {"usb.bulk_out", svc_bulk_out},
    {"usb.intr_start", svc_intr_start}, {"usb.intr_poll", svc_intr_poll},
    {"usb.intr_stop", svc_intr_stop},
};

EFI_STATUS ck_usb_service(const char *name, size_t nl, ck_args_t *args, ck_out_t *out,
                          const char **msg, int *found) {
  if (nl > 4 && !memcmp(name, "usb.", 4) && !buffers_ready()) {
    *found = 1;
    *msg = "no memory for USB buffers";
    return EFI_OUT_OF_RESOURCES;
  }
  for (unsigned i = 0; i < sizeof g_usb_services / sizeof g_usb_services[0]; i++) {
    if (strlen(g_usb_services[i].name) == nl && !memcmp(g_usb_services[i].name, name, nl)) {
      *found = 1;
      return g_usb_services[i].fn(args, out, msg);
    }
  }
  *found = 0;
  return EFI_UNSUPPORTED;
}
