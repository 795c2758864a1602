"""ccidkit.uefi: MicroPython inside UEFI firmware (runtime, image builder, in-firmware modules)."""
