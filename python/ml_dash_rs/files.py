"""``exp.files(dir)``: saves, uploads, reads; each returns what the SDK returns.

A save returns the stored file's metadata (the SDK's dict: ``id``, ``path``,
``filename``, ``contentType``, ``sizeBytes``, ``checksum``, ...). The content is
hashed and written with the GIL released.
"""

import json
import os

__all__ = ["FilesAccessor", "FileBuilder"]


def _split(path):
    """``"c/x.json"`` as ``("c", "x.json")``; ``"x.json"`` as ``("", "x.json")``."""
    path = (path or "").strip("/")
    head, _, tail = path.rpartition("/")
    return head, tail


def _image(img):
    """(channels, width, height, bytes) of an H×W[×C] uint8 array or a PIL image."""
    if hasattr(img, "mode") and hasattr(img, "tobytes") and hasattr(img, "size"):
        mode = {"L": 1, "RGB": 3, "RGBA": 4}
        if img.mode not in mode:
            img = img.convert("RGBA" if "A" in img.mode else "RGB")
        width, height = img.size
        return mode[img.mode], width, height, img.tobytes()
    shape = getattr(img, "shape", None)
    dtype = str(getattr(img, "dtype", ""))
    if shape is None or not hasattr(img, "tobytes"):
        raise TypeError("save_image: pass a numpy uint8 array (H×W, H×W×3 or H×W×4) or a PIL image")
    if dtype != "uint8":
        raise ValueError(
            f"save_image: the array is {dtype}: convert it to uint8 first "
            "(for floats in [0, 1]: (a * 255).round().astype('uint8'))"
        )
    if len(shape) == 2:
        channels = 1
    elif len(shape) == 3 and shape[2] in (1, 3, 4):
        channels = shape[2]
    else:
        raise ValueError(f"save_image: shape {tuple(shape)}: use H×W, H×W×3 or H×W×4")
    height, width = shape[0], shape[1]
    return channels, width, height, img.tobytes(order="C") if hasattr(img, "flags") else img.tobytes()


class FileBuilder:
    """The files under one folder (or one file's path) of the run."""

    __slots__ = ("_run", "_path", "_options")

    def __init__(self, run, path=None, **options):
        self._run = run
        self._path = (path or "").strip("/")
        self._options = {k: options.get(k) for k in ("description", "tags", "metadata")}

    def _call(self, op, dir, *args, **kw):
        return self._run.files(op, dir, *args, **{**self._options, **kw})

    def _save(self, op, to, *args):
        dir, name = _split(os.path.join(self._path, to) if self._path else to)
        return json.loads(self._call(op, dir, name, *args))

    def save_text(self, content, *, to):
        return self._save("save_text", to, content)

    def save_json(self, content, *, to):
        return self._save("save_json", to, content)

    def save_blob(self, data, *, to):
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        return self._save("save_blob", to, data)

    def save_image(self, array, *, to, quality=95):
        """A PNG of an H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA) uint8 array or a PIL image."""
        channels, width, height, pixels = _image(array)
        return self._save("save_image", to, channels, width, height, pixels)

    def upload(self, fpath, *, to=None, description=None, tags=None, metadata=None):
        """Stores a copy of the file ``fpath`` (named ``to``, else its own name)."""
        name = to or os.path.basename(fpath)
        dir, name = _split(os.path.join(self._path, name) if self._path else name)
        kw = {k: v for k, v in (("description", description), ("tags", tags), ("metadata", metadata)) if v is not None}
        return json.loads(self._call("upload", dir, os.fspath(fpath), name, **kw))

    def list(self, pattern=None):
        return json.loads(self._call("list", self._path, pattern))

    def exists(self):
        dir, name = _split(self._path)
        return self._call("exists", dir, name)

    def read_text(self, encoding="utf-8"):
        dir, name = _split(self._path)
        return self._call("read_text", dir, name)

    def download(self, pattern=None, *, to=None):
        """One file to ``to`` (a path; default its name here), or every match of ``pattern`` into folder ``to``."""
        if pattern is not None:
            return json.loads(self._call("download_matching", self._path, pattern, os.fspath(to or ".")))
        dir, name = _split(self._path)
        return self._call("download", dir, name, os.fspath(to or name))

    def delete(self, pattern=None):
        if pattern is not None:
            return json.loads(self._call("delete_matching", self._path, pattern))
        dir, name = _split(self._path)
        return json.loads(self._call("delete", dir, name))


class FilesAccessor:
    """``exp.files("configs")`` and the shortcuts ``exp.files.save_json(..)`` on the root."""

    __slots__ = ("_run",)

    def __init__(self, run):
        self._run = run

    def __call__(self, dir=None, **options):
        return FileBuilder(self._run, dir, **options)

    def upload(self, fpath, *, to=None, description=None, tags=None, metadata=None):
        return FileBuilder(self._run).upload(fpath, to=to, description=description, tags=tags, metadata=metadata)

    def download(self, path, *, to=None):
        return FileBuilder(self._run, path).download(to=to)

    def delete(self, path):
        return FileBuilder(self._run, path).delete()

    def list(self, pattern=None):
        return FileBuilder(self._run).list(pattern)

    def save_text(self, content, *, to):
        return FileBuilder(self._run).save_text(content, to=to)

    def save_json(self, content, *, to):
        return FileBuilder(self._run).save_json(content, to=to)

    def save_blob(self, data, *, to):
        return FileBuilder(self._run).save_blob(data, to=to)
