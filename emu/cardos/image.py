"""CardImage: a card's non-volatile memory in one file, written atomically.

The file is JSON: ``{"format": "ccidkit-card-image", "version": 1,
"sections": {key: state}}``; each card OS owns one section (an eSIM has one
per port). Every save writes a temporary file next to the image, fsyncs it,
renames it over the image and fsyncs the directory, so a process killed at
any moment leaves either the old image or the new one, never a torn file.
"""

import glob
import json
import os

from .errors import CardOSError

FORMAT = "ccidkit-card-image"
VERSION = 1


class CardImage:
    def __init__(self, path):
        self.path = os.fspath(path)
        self.saves = 0
        self._sections = None

    def _tmp_name(self):
        return "%s.tmp-%d" % (self.path, os.getpid())

    def stale_temporaries(self):
        """Temporary files left by writers that were killed (their process is gone)."""
        out = []
        for name in glob.glob(glob.escape(self.path) + ".tmp-*"):
            try:
                pid = int(name.rsplit("-", 1)[1])
            except ValueError:
                continue
            if pid == os.getpid():
                continue
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                out.append(name)
            except PermissionError:
                pass   # someone else's live process
        return out

    def load(self):
        """All sections (a dict); {} when the image does not exist yet.

        Temporary files of killed writers are removed first: the image itself
        is always whole, they never are the truth.
        """
        if self._sections is not None:
            return self._sections
        for name in self.stale_temporaries():
            try:
                os.remove(name)
            except FileNotFoundError:
                pass
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            self._sections = {}
            return self._sections
        except OSError as e:
            raise CardOSError("cannot read card image %s: %s" % (self.path, e), name="IMAGE_IO")
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise CardOSError("card image %s is not JSON: %s" % (self.path, e), name="IMAGE_CORRUPT")
        if not isinstance(doc, dict) or doc.get("format") != FORMAT \
                or not isinstance(doc.get("sections"), dict):
            raise CardOSError("%s is not a ccidkit card image" % self.path, name="IMAGE_CORRUPT")
        if doc.get("version") != VERSION:
            raise CardOSError("card image version %r, this kit reads %d" % (doc.get("version"), VERSION),
                              name="IMAGE_CORRUPT")
        self._sections = doc["sections"]
        return self._sections

    def section(self, key):
        st = self.load().get(key)
        return st if isinstance(st, dict) else None

    def save(self, key, state):
        """Replace section ``key`` and write the whole image atomically."""
        sections = dict(self.load())
        sections[key] = state
        doc = {"format": FORMAT, "version": VERSION, "sections": sections}
        payload = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")
        tmp = self._tmp_name()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(payload)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self._fsync_dir()
        except OSError as e:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise CardOSError("cannot write card image %s: %s" % (self.path, e), name="IMAGE_IO")
        self._sections = sections
        self.saves += 1

    def _fsync_dir(self):
        d = os.path.dirname(os.path.abspath(self.path))
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
