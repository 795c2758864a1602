"""In-firmware modules: run inside UEFI on the MicroPython runtime (restricted subset)."""
