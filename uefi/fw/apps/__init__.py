"""Pre-OS applications shipped in the image; `--app NAME` picks one (dashes become underscores)."""
