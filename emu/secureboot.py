"""UEFI Secure Boot for ccidkit images: keys, signing, and OVMF variable stores.

    from ccidkit.emu import secureboot as sb
    keys = sb.ensure_keys(folder)                  # key.pem + cert.pem (cert.der), made once
    sb.sign_efi(unsigned, signed, keys.key, keys.cert)          # Debian sbsigntool's sbsign
    sb.verify_efi(signed, keys.cert)               # True / False (sbverify)
    vars_fd = sb.make_vars(keys.cert, folder)      # OVMF VARS: PK, KEK, db = our certificate,
                                                   # Secure Boot on (virt-firmware's virt-fw-vars)
    code, vars_fd = sb.firmware(folder, keys.cert) # OVMF_CODE_4M.secboot.fd and that store
    esp = sb.signed_esp(build_result, keys.key, keys.cert)   # a copy of the ESP, signed
    Vm(esp, **sb.vm_options(code, vars_fd))        # firmware=(code, vars), extra_args
    sb.add_boot_options(vars_fd, out, [("\\EFI\\BOOT\\BOOTX64.EFI", None),
                                       ("\\next.efi", "hello")])  # Boot#### + BootOrder

The secure-boot build of OVMF keeps its variables in SMM: QEMU needs
``-machine smm=on`` and ``-global driver=cfi.pflash01,property=secure,value=on``
(``QEMU_ARGS``). With PK enrolled and SecureBootEnable set, the firmware's
image verification (UEFI 2.10 §32.5) runs every image it starts against db:
an unsigned image, or one signed by a key db does not hold, is refused with
EFI_SECURITY_VIOLATION and never runs (OVMF falls through to its next boot
option).

The keys are test keys for VMs: one self-signed RSA-2048 certificate is PK,
KEK and db at once. Never enrol them in a real machine's firmware.
"""

import datetime
import os
import shutil
import subprocess
import sys
import uuid

from ccidkit.core.errors import CcidkitError

SECBOOT_CODE_CANDIDATES = (
    ("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.secboot.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
)
QEMU_ARGS = ("-machine", "smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on")
# the owner GUID of our signature list entries (any GUID; a fixed one keeps stores comparable)
OWNER_GUID = "3f2a5c1e-8d0b-4c6e-9a71-0c1d2e3f4a5b"
COMMON_NAME = "ccidkit Secure Boot test key"
TOOL_TIMEOUT_S = 120


class SecureBootError(CcidkitError):
    """``name``: SBSIGN_MISSING, SBSIGN_FAILED, VIRT_FW_MISSING, VARS_FAILED,
    OVMF_SECBOOT_MISSING, BAD_KEY."""


class Keys:
    def __init__(self, folder):
        self.folder = folder
        self.key = os.path.join(folder, "key.pem")
        self.cert = os.path.join(folder, "cert.pem")
        self.cert_der = os.path.join(folder, "cert.der")


def _run(argv, what, name):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=TOOL_TIMEOUT_S)
    except FileNotFoundError:
        raise SecureBootError("%s: %s not found" % (what, argv[0]), None,
                              name.replace("FAILED", "MISSING"))
    except subprocess.TimeoutExpired:
        raise SecureBootError("%s timed out" % what, None, name)
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise SecureBootError("%s failed (exit %d): %s" % (what, proc.returncode, out[-2000:]),
                              proc.returncode, name)
    return out


def ensure_keys(folder, common_name=COMMON_NAME):
    """A signing key and its self-signed certificate in ``folder`` (made once, 0600 key)."""
    keys = Keys(folder)
    if os.path.isfile(keys.key) and os.path.isfile(keys.cert) and os.path.isfile(keys.cert_der):
        return keys
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    os.makedirs(folder, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ccidkit"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
            .not_valid_after(datetime.datetime(2044, 1, 1, tzinfo=datetime.timezone.utc))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    tmp = keys.key + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    os.replace(tmp, keys.key)
    with open(keys.cert, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(keys.cert_der, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.DER))
    return keys


def parse_sign_option(text):
    """``KEY,CERT`` of ``--sign`` -> (key path, cert path), both existing files."""
    parts = text.split(",")
    if len(parts) != 2 or not all(parts):
        raise SecureBootError("--sign wants KEY,CERT (two files)", None, "BAD_KEY")
    for p in parts:
        if not os.path.isfile(p):
            raise SecureBootError("no such file: %s" % p, None, "BAD_KEY")
    return parts[0], parts[1]


def sign_efi(src, dst, key, cert):
    """sbsign ``src`` into ``dst`` (an Authenticode signature in the PE certificate table)."""
    tmp = dst + ".tmp"
    _run(["sbsign", "--key", key, "--cert", cert, "--output", tmp, src], "sbsign", "SBSIGN_FAILED")
    os.replace(tmp, dst)
    return dst


def verify_efi(path, cert):
    """True when sbverify accepts ``path``'s signature for ``cert``."""
    try:
        proc = subprocess.run(["sbverify", "--cert", cert, path], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=TOOL_TIMEOUT_S)
    except FileNotFoundError:
        raise SecureBootError("sbverify not found (Debian: sbsigntool)", None, "SBSIGN_MISSING")
    return proc.returncode == 0


def signed_esp(build_result, key, cert, out_dir=None):
    """A copy of the build's ESP with BOOTX64.EFI signed; returns the folder
    (``<build>/esp-signed`` by default). The unsigned build stays as it was."""
    esp = build_result.esp_dir if not isinstance(build_result, str) else build_result
    out = out_dir or os.path.join(os.path.dirname(os.path.abspath(esp)), "esp-signed")
    if os.path.isdir(out):
        shutil.rmtree(out)
    shutil.copytree(esp, out)
    efi = os.path.join(out, "EFI", "BOOT", "BOOTX64.EFI")
    sign_efi(efi, efi, key, cert)
    return out


def secboot_firmware():
    """(OVMF secure-boot code, matching VARS template)."""
    for code, vars_ in SECBOOT_CODE_CANDIDATES:
        if os.path.isfile(code) and os.path.isfile(vars_):
            return code, vars_
    raise SecureBootError("OVMF's secure-boot build is missing (Debian: ovmf)", None,
                          "OVMF_SECBOOT_MISSING")


def _virt_fw_vars():
    exe = os.path.join(os.path.dirname(sys.executable), "virt-fw-vars")
    if os.path.exists(exe):
        return [exe]
    found = shutil.which("virt-fw-vars")
    if found:
        return [found]
    raise SecureBootError("virt-fw-vars missing: pip install virt-firmware==26.10", None,
                          "VIRT_FW_MISSING")


def make_vars(cert, out_path, template=None, secure_boot=True):
    """An OVMF variable store with PK, KEK and db holding ``cert`` (and Secure
    Boot enabled unless ``secure_boot`` is False); returns ``out_path``."""
    if template is None:
        template = secboot_firmware()[1]
    tmp = out_path + ".tmp"
    argv = _virt_fw_vars() + ["-i", template, "-o", tmp,
                              "--set-pk", OWNER_GUID, cert,
                              "--add-kek", OWNER_GUID, cert,
                              "--add-db", OWNER_GUID, cert]
    if secure_boot:
        argv.append("--secure-boot")
    _run(argv, "virt-fw-vars", "VARS_FAILED")
    os.replace(tmp, out_path)
    return out_path


def print_vars(path):
    """virt-fw-vars' listing of a store (text)."""
    return _run(_virt_fw_vars() + ["-i", path, "--print", "--verbose"], "virt-fw-vars", "VARS_FAILED")


def firmware(folder, cert):
    """(code, vars) for a Secure Boot VM: the store made in ``folder`` (once per certificate)."""
    code, template = secboot_firmware()
    os.makedirs(folder, exist_ok=True)
    with open(cert, "rb") as f:
        tag = uuid.uuid5(uuid.NAMESPACE_OID, f.read().hex()).hex[:12]
    out = os.path.join(folder, "OVMF_VARS_4M.ccidkit-%s.fd" % tag)
    if not os.path.isfile(out):
        make_vars(cert, out, template)
    return code, out


def vm_options(code, vars_path):
    """Keyword arguments for emu/qemu.Vm that boot this secure-boot firmware:
    ``firmware=(code, vars_path)`` (the harness copies the VARS file at start,
    so the store stays unchanged) and the extra QEMU arguments it needs."""
    return {"firmware": (code, vars_path), "extra_args": list(QEMU_ARGS)}


def add_boot_options(template, out_path, entries):
    """A copy of the variable store ``template`` with one Boot#### option per
    ``(file path on the boot volume, load options text or None)`` appended to
    BootOrder, in order (virt-fw-vars --append-boot-filepath). Each is a
    short-form file path (UEFI 2.10 §3.1.2), titled ``file NAME``, active; the
    text becomes the option's OptionalData (UCS-2), which the firmware hands
    to the image as its LoadOptions. Returns ``out_path``."""
    argv = _virt_fw_vars() + ["-i", template, "-o", out_path + ".tmp"]
    for path, options in entries:
        if not path.startswith("\\") or any(c.isspace() for c in path):
            raise SecureBootError("boot option path: absolute, no blanks: %r" % (path,), None,
                                  "VARS_FAILED")
        if options is not None and (not options.isprintable() or "\n" in options):
            raise SecureBootError("load options: one printable line", None, "VARS_FAILED")
        argv += ["--append-boot-filepath", path if options is None else path + " " + options]
    _run(argv, "virt-fw-vars", "VARS_FAILED")
    os.replace(out_path + ".tmp", out_path)
    return out_path
