"""pyproject.toml lists every package folder, so a non-editable install carries all of them."""

import os
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOTS = {"core": "ccidkit.core", "emu": "ccidkit.emu", "uefi": "ccidkit.uefi",
         "scripts": "ccidkit.scripts"}


def package_folders():
    found = set()
    for folder, name in ROOTS.items():
        top = os.path.join(REPO, folder)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "node_modules")]
            if "__init__.py" in filenames:
                rel = os.path.relpath(dirpath, top)
                found.add(name if rel == "." else name + "." + rel.replace(os.sep, "."))
    return found


def test_every_package_folder_is_listed():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        config = tomllib.load(f)
    listed = set(config["tool"]["setuptools"]["packages"])
    missing = package_folders() - listed
    assert not missing, "add to pyproject.toml packages: %s" % sorted(missing)


def test_console_script_and_plugin_entry_points():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        config = tomllib.load(f)
    assert config["project"]["scripts"]["ccidkit"] == "ccidkit.scripts.main:main"
    assert config["project"]["entry-points"]["pytest11"]["ccidkit"] == "ccidkit.emu.pytest_plugin"
    assert config["project"]["dependencies"] == []


def test_every_listed_package_exists():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        config = tomllib.load(f)
    listed = set(config["tool"]["setuptools"]["packages"])
    assert not listed - package_folders()
