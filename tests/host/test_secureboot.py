"""emu/secureboot.py: test keys, sbsign/sbverify, OVMF variable stores with our
certificate enrolled (virt-firmware), and `ccidkit uefi build --sign`."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from ccidkit.emu import qemu
from ccidkit.emu import secureboot as sb

needs_sbsign = pytest.mark.skipif(shutil.which("sbsign") is None, reason="sbsigntool missing")


def image_efi(esp_dir):
    """The run's built image (the plugin's uefi_image fixture builds it once)."""
    src = os.path.join(esp_dir, "EFI", "BOOT", "BOOTX64.EFI")
    assert os.path.isfile(src), "no BOOTX64.EFI in %s" % esp_dir
    return src


def fake_efi(path, esp_dir):
    """A PE32+ image sbsign accepts: a copy of the run's own build."""
    shutil.copyfile(image_efi(esp_dir), path)
    return path


def test_keys_are_made_once_private_and_self_signed(tmp_path):
    from cryptography import x509
    keys = sb.ensure_keys(str(tmp_path / "k"))
    assert os.stat(keys.key).st_mode & 0o777 == 0o600
    with open(keys.cert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    assert cert.subject == cert.issuer
    assert "CN=ccidkit Secure Boot test key" in cert.subject.rfc4514_string()
    before = open(keys.key, "rb").read()
    again = sb.ensure_keys(str(tmp_path / "k"))
    assert open(again.key, "rb").read() == before
    with open(keys.cert_der, "rb") as f:
        assert x509.load_der_x509_certificate(f.read()) == cert


def test_sign_option_parsing(tmp_path):
    a = tmp_path / "a.pem"
    b = tmp_path / "b.pem"
    a.write_text("x")
    b.write_text("y")
    assert sb.parse_sign_option("%s,%s" % (a, b)) == (str(a), str(b))
    for bad in (str(a), "%s,%s,%s" % (a, b, a), ",%s" % b, "%s,%s" % (a, tmp_path / "none")):
        with pytest.raises(sb.SecureBootError) as ei:
            sb.parse_sign_option(bad)
        assert ei.value.name == "BAD_KEY"


@needs_sbsign
def test_signed_image_verifies_only_with_its_certificate_and_unchanged(tmp_path, uefi_image):
    keys = sb.ensure_keys(str(tmp_path / "k"))
    other = sb.ensure_keys(str(tmp_path / "other"))
    src = fake_efi(str(tmp_path / "app.efi"), qemu.resolve_esp(uefi_image))
    dst = sb.sign_efi(src, str(tmp_path / "app.signed.efi"), keys.key, keys.cert)
    assert sb.verify_efi(dst, keys.cert) is True
    assert sb.verify_efi(dst, other.cert) is False
    assert sb.verify_efi(src, keys.cert) is False
    # a byte changed in the code after signing breaks the Authenticode digest
    data = bytearray(open(dst, "rb").read())
    data[0x1000] ^= 0xFF
    bad = tmp_path / "tampered.efi"
    bad.write_bytes(bytes(data))
    assert sb.verify_efi(str(bad), keys.cert) is False
    with pytest.raises(sb.SecureBootError) as ei:
        sb.sign_efi(str(tmp_path / "missing.efi"), str(tmp_path / "x.efi"), keys.key, keys.cert)
    assert ei.value.name == "SBSIGN_FAILED"


def test_vars_store_enrols_our_certificate_as_pk_kek_and_db(tmp_path):
    try:
        sb.secboot_firmware()
        sb._virt_fw_vars()
    except sb.SecureBootError as e:
        pytest.skip(str(e))
    keys = sb.ensure_keys(str(tmp_path / "k"))
    code, vars_fd = sb.firmware(str(tmp_path / "fw"), keys.cert)
    assert code.endswith(".secboot.fd") and os.path.isfile(vars_fd)
    assert os.path.getsize(vars_fd) == os.path.getsize(sb.secboot_firmware()[1])
    text = sb.print_vars(vars_fd)
    for var in ("PK", "KEK", "db"):
        block = re.search(r"name=%s guid=\S+ size=\d+.*?\n\n" % var, text, re.S)
        assert block, text
        assert "subject CN=ccidkit Secure Boot test key" in block.group(0)
    assert re.search(r"name=SecureBootEnable .*\n\s+bool: ON", text)
    # made once per certificate
    mtime = os.path.getmtime(vars_fd)
    assert sb.firmware(str(tmp_path / "fw"), keys.cert)[1] == vars_fd
    assert os.path.getmtime(vars_fd) == mtime
    off = sb.make_vars(keys.cert, str(tmp_path / "off.fd"), secure_boot=False)
    assert not re.search(r"name=SecureBootEnable .*\n\s+bool: ON", sb.print_vars(off))


def test_vm_options_name_the_firmware_without_touching_the_environment(monkeypatch):
    monkeypatch.delenv("CCIDKIT_OVMF_CODE", raising=False)
    monkeypatch.setenv("CCIDKIT_OVMF_VARS", "/keep/me")
    opts = sb.vm_options("/fw/OVMF_CODE_4M.secboot.fd", "/run/VARS.fd")
    assert opts == {"firmware": ("/fw/OVMF_CODE_4M.secboot.fd", "/run/VARS.fd"),
                    "extra_args": ["-machine", "smm=on", "-global",
                                   "driver=cfi.pflash01,property=secure,value=on"]}
    assert "CCIDKIT_OVMF_CODE" not in os.environ
    assert os.environ["CCIDKIT_OVMF_VARS"] == "/keep/me"
    assert not hasattr(sb, "secure_boot_vm")


def test_boot_options_appended_to_a_store(tmp_path):
    keys = sb.ensure_keys(str(tmp_path / "k"))
    secure = sb.make_vars(keys.cert, str(tmp_path / "sb.fd"))
    out = sb.add_boot_options(secure, str(tmp_path / "boot.fd"),
                              [("\\EFI\\BOOT\\BOOTX64.EFI", None),
                               ("\\ccidkit\\next-stage.efi", "hello next-boot-option")])
    text = sb.print_vars(out)
    assert re.search(r'name=Boot0000 .*\n\s+boot entry: title="file BOOTX64.EFI" '
                     r'devpath=FilePath\(\\EFI\\BOOT\\BOOTX64.EFI\)\n', text), text
    m = re.search(r'name=Boot0001 .*\n\s+boot entry: title="file next-stage.efi" '
                  r'devpath=FilePath\(\\ccidkit\\next-stage.efi\) optdata=([0-9a-f]+)', text)
    assert m, text
    # OptionalData: the load options as UCS-2 with a terminating NUL
    assert bytes.fromhex(m.group(1)) == "hello next-boot-option\0".encode("utf-16-le")
    assert re.search(r"name=BootOrder .*\n\s+boot order: 0000, 0001\n", text)
    # the Secure Boot keys of the template are kept, and the template itself untouched
    assert re.search(r"name=SecureBootEnable .*\n\s+bool: ON", text)
    assert "name=PK " in text and "name=db " in text
    assert "Boot0000" not in sb.print_vars(secure)
    for bad in ([("EFI\\x.efi", None)], [("\\a b.efi", None)], [("\\x.efi", "two\nlines")]):
        with pytest.raises(sb.SecureBootError) as e:
            sb.add_boot_options(secure, str(tmp_path / "bad.fd"), bad)
        assert e.value.name == "VARS_FAILED"
    assert not os.path.exists(str(tmp_path / "bad.fd"))


@needs_sbsign
def test_cli_build_sign_writes_a_signed_esp(tmp_path, uefi_image):
    # uefi_image has built the default folder: the CLI finds it cached and signs it
    from ccidkit.uefi.build import default_out_dir
    assert os.path.isfile(os.path.join(default_out_dir(), "ccidkit.efi"))
    keys = sb.ensure_keys(str(tmp_path / "k"))
    proc = subprocess.run([sys.executable, "-m", "ccidkit.scripts.main", "uefi", "build",
                           "--sign", "%s,%s" % (keys.key, keys.cert)],
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"^signed: (.*)$", proc.stdout, re.M)
    assert m, proc.stdout
    signed = os.path.join(m.group(1), "EFI", "BOOT", "BOOTX64.EFI")
    assert sb.verify_efi(signed, keys.cert)
    unsigned = os.path.join(default_out_dir(), "esp", "EFI", "BOOT", "BOOTX64.EFI")
    assert not sb.verify_efi(unsigned, keys.cert)
    proc = subprocess.run([sys.executable, "-m", "ccidkit.scripts.main", "uefi", "build",
                           "--sign", "%s,%s" % (keys.key, tmp_path / "none.pem")],
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "BAD_KEY" in proc.stderr
