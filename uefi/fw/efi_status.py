"""EFI_STATUS values the smart card facades return that efi.py does not define.

efi.py holds the common ones (EFI_SUCCESS, EFI_INVALID_PARAMETER, ...); this
module re-exports them and adds the rest of UEFI 2.10 Appendix D that the
Smart Card Reader and Edge protocols (§35.6) list, with ``status_name``
covering both sets.
"""

from ccidkit.uefi.fw import efi
from ccidkit.uefi.fw.efi import (  # noqa: F401  (re-exported)
    EFI_SUCCESS, EFI_INVALID_PARAMETER, EFI_UNSUPPORTED, EFI_BAD_BUFFER_SIZE,
    EFI_BUFFER_TOO_SMALL, EFI_NOT_READY, EFI_DEVICE_ERROR, EFI_OUT_OF_RESOURCES,
    EFI_NOT_FOUND, EFI_ACCESS_DENIED, EFI_NO_RESPONSE, EFI_TIMEOUT, EFI_NOT_STARTED,
    EFI_ALREADY_STARTED, EFI_ABORTED, EFI_SECURITY_VIOLATION, EfiError,
)

_ERR = 0x8000000000000000
# UEFI 2.10 Appendix D, Table D-3
EFI_VOLUME_CORRUPTED = _ERR | 10
EFI_VOLUME_FULL = _ERR | 11
EFI_NO_MEDIA = _ERR | 12
EFI_MEDIA_CHANGED = _ERR | 13
EFI_PROTOCOL_ERROR = _ERR | 24
EFI_COMPROMISED_DATA = _ERR | 33

_MORE = (
    (EFI_VOLUME_CORRUPTED, "EFI_VOLUME_CORRUPTED"), (EFI_VOLUME_FULL, "EFI_VOLUME_FULL"),
    (EFI_NO_MEDIA, "EFI_NO_MEDIA"), (EFI_MEDIA_CHANGED, "EFI_MEDIA_CHANGED"),
    (EFI_PROTOCOL_ERROR, "EFI_PROTOCOL_ERROR"), (EFI_COMPROMISED_DATA, "EFI_COMPROMISED_DATA"),
)


def status_name(status):
    """The EFI_* name of an EFI_STATUS (``EFI_ERROR`` when unknown)."""
    for value, name in _MORE:
        if value == status:
            return name
    return efi.status_name(status)


def EFI_ERROR(status):
    """True for an error status (the high bit set), as the C macro."""
    return (status & _ERR) != 0
