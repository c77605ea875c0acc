"""Output discipline shared by every command: nothing lost, nothing half-written, nothing cryptic.

Rules (docs/format.md "Writing" and the README's exit codes):

1. **Check outputs before work starts.** :func:`check_output_file` / :func:`check_output_dir` verify,
   without creating anything, that a path can be written: the parent exists or can be created, is
   writable, is not read-only, names fit, and a file is not a folder (or the reverse). Problems raise
   :class:`~gsdd_cli.core.errors.FileSystemError` (exit code 9).
2. **Never overwrite an input.** :func:`refuse_overwriting_inputs` raises
   :class:`~gsdd_cli.core.errors.ConfigError` (exit code 3) when an output resolves to an input of the
   same command (the `.gsd`, the dataset, the config, the checkpoint).
3. **Atomic writes with ordinary permissions.** :func:`atomic_write_bytes` (and the ``_text`` /
   ``_json`` variants, and the callback form :func:`atomic_write`) write a temporary file in the
   destination folder and rename it into place; the file gets the mode ``open()`` would give
   (``0o666 & ~umask`` for a new file, the old mode for a replaced one). A failure leaves no temporary
   file and the previous file of that name untouched.
4. **File-system errors are typed.** Every ``OSError`` becomes a one-line
   :class:`~gsdd_cli.core.errors.FileSystemError` naming the path and the reason (:func:`fs_error`).
5. **Sets of files appear all at once.** :class:`StagedDir` collects files in a hidden temporary
   folder and moves them into the target folder only when everything was written.
6. **Strict JSON.** :func:`json_safe` turns NaN/Inf into ``null`` (JSON has no such numbers).

Every write goes through :func:`_write_all`, so tests simulate a full disk by patching that one
function to raise ``OSError(errno.ENOSPC, ...)``.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from gsdd_cli.core.errors import ConfigError, FileSystemError

PathLike = Union[str, os.PathLike]

_REASONS = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "file name too long",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "it already exists",
    errno.ENOENT: "no such file or folder",
    errno.EXDEV: "cannot move between file systems",
}
_HINTS = {
    errno.ENOSPC: "free some space or write elsewhere; nothing was left half-written and a previous "
    "file of that name is unchanged",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EROFS: "write to a writable location",
    errno.EACCES: "write to a folder you may write to (or fix its permissions)",
    errno.EPERM: "write to a folder you may write to (or fix its permissions)",
    errno.ENAMETOOLONG: "use a shorter file name",
}


def fs_error(exc: OSError, path: PathLike | None = None, action: str = "write") -> FileSystemError:
    """One-line :class:`FileSystemError` for ``exc`` ("cannot <action> <path>: <reason>")."""
    code = exc.errno if isinstance(exc.errno, int) else None
    reason = _REASONS.get(code) if code is not None else None
    if reason is None:
        reason = exc.strerror or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    where = path if path is not None else exc.filename
    if where is None or str(where) == "":
        what = "write to the output stream" if isinstance(exc, BrokenPipeError) else action
        return FileSystemError(f"cannot {what}: {reason}", hint=_HINTS.get(code), path=None, reason=reason)
    return FileSystemError(f"cannot {action} {where}: {reason}", hint=_HINTS.get(code), path=where, reason=reason)


def _fail(path: PathLike, action: str, code: int, detail: str | None = None) -> FileSystemError:
    reason = detail or _REASONS.get(code, os.strerror(code))
    return FileSystemError(f"cannot {action} {path}: {reason}", hint=_HINTS.get(code), path=path, reason=reason)


# ------------------------------------------------------------------------------------ permissions
def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it to probe is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode(path: PathLike) -> int:
    """The mode ``open(path, "w")`` would leave: the existing file's mode, else ``0o666 & ~umask``."""
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode ``os.mkdir`` gives a new folder: ``0o777 & ~umask``."""
    return 0o777 & ~current_umask()


# ------------------------------------------------------------------------------- path validation
def same_path(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file or folder (symlinks and hard links included)."""
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def refuse_overwriting_inputs(outputs: Mapping[str, Optional[PathLike]],
                              inputs: Mapping[str, Optional[PathLike]]) -> None:
    """Raise :class:`ConfigError` if an output (label → path) is one of the inputs (label → path).

    ``None`` entries are skipped. Labels name the option in the message, e.g. ``{"--out": p}``.
    """
    for olabel, opath in outputs.items():
        if opath is None:
            continue
        for ilabel, ipath in inputs.items():
            if ipath is not None and same_path(opath, ipath):
                raise ConfigError(
                    f"{olabel} {opath} is the same file as the input {ilabel}; refusing to overwrite an input",
                    hint=f"give {olabel} a different path",
                )


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _check_creatable(path: Path, what: str) -> None:
    """``path`` does not exist: its nearest existing ancestor must be a writable folder and every
    missing component a valid name (nothing is created)."""
    missing = [path]
    anc = path.parent
    while not os.path.lexists(anc):
        missing.append(anc)
        if anc.parent == anc:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise _fail(path, f"write {what}", errno.ENOTDIR, f"{anc} is a file, not a folder")
    limit = _name_max(anc)
    for p in missing:
        if len(os.fsencode(p.name)) > limit:
            raise _fail(path, f"write {what}", errno.ENAMETOOLONG,
                        f"file name too long ({len(os.fsencode(p.name))} bytes, at most {limit})")
    _check_writable_dir(anc, path, what)


def _check_writable_dir(folder: Path, path: Path, what: str) -> None:
    if os.access(folder, os.W_OK | os.X_OK):
        return
    read_only = False
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        pass
    code = errno.EROFS if read_only else errno.EACCES
    detail = f"{folder} is on a read-only file system" if read_only else f"no permission to write in {folder}"
    raise _fail(path, f"write {what}", code, detail)


def check_output_file(path: PathLike, what: str = "output", inputs: Mapping[str, Optional[PathLike]] | None = None) -> Path:
    """Check, without creating anything, that ``path`` can be written as a file; return it.

    ``what`` names the option in messages (e.g. ``"--out"``); ``inputs`` are refused as targets.
    """
    try:
        return _check_output_file(Path(path).expanduser(), what, inputs)
    except OSError as e:  # e.g. ENAMETOOLONG from a stat
        raise fs_error(e, path, f"write {what}") from None


def _check_output_file(p: Path, what: str, inputs: Mapping[str, Optional[PathLike]] | None) -> Path:
    if inputs:
        refuse_overwriting_inputs({what: p}, inputs)
    if p.name in ("", ".", ".."):
        raise _fail(p, f"write {what}", errno.EISDIR, "it names a folder, give a file name")
    if p.is_dir():
        raise _fail(p, f"write {what}", errno.EISDIR, "it is an existing folder, give a file name")
    if os.path.lexists(p):
        if p.exists() and not p.is_file():
            raise _fail(p, f"write {what}", errno.EPERM, "it exists and is not a regular file")
        _check_writable_dir(p.parent if str(p.parent) else Path("."), p, what)
        return p
    _check_creatable(p, what)
    return p


def check_output_dir(path: PathLike, what: str = "output folder",
                     inputs: Mapping[str, Optional[PathLike]] | None = None) -> Path:
    """Check, without creating anything, that ``path`` is (or can become) a writable folder; return it."""
    try:
        return _check_output_dir(Path(path).expanduser(), what, inputs)
    except OSError as e:
        raise fs_error(e, path, f"write {what}") from None


def _check_output_dir(p: Path, what: str, inputs: Mapping[str, Optional[PathLike]] | None) -> Path:
    if inputs:
        refuse_overwriting_inputs({what: p}, inputs)
    if os.path.lexists(p):
        if not p.is_dir():
            raise _fail(p, f"write {what}", errno.ENOTDIR, "it is an existing file, give a folder")
        _check_writable_dir(p, p, what)
        return p
    _check_creatable(p, what)
    return p


def make_dirs(folder: PathLike) -> Path:
    """``mkdir -p`` with OSError → FileSystemError."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise fs_error(e, folder, "create folder") from None
    return folder


# ----------------------------------------------------------------------------------------- writes
def _write_all(path: PathLike, data: bytes) -> None:
    """Write ``data`` to the (temporary) file ``path``. The single low-level write of this module."""
    with open(path, "wb") as f:
        f.write(data)


def _tmp_prefix(name: str) -> str:
    # bounded so that a long (but valid) target name still leaves room for the random suffix
    return "." + name[:80] + "."


def atomic_write(path: PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file next to ``path``, then rename it over ``path``.

    The file gets :func:`file_mode` permissions. On any failure the temporary file is removed, the
    previous file at ``path`` (if any) is unchanged and ``OSError`` becomes :class:`FileSystemError`.
    Prefer :func:`atomic_write_bytes`: writers that raise something other than ``OSError`` on a full
    disk (``torch.save``) cannot be told apart from bugs here.
    """
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path.name), suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise fs_error(e, path) from None
    try:
        write(tmp)
        os.chmod(tmp, file_mode(path))
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise fs_error(e, path) from None
        raise
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: _write_all(tmp, data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` (dicts, lists, tuples, scalars) with every NaN/Inf float replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def dumps_json(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text: NaN/Inf become ``null``; Paths and other objects become strings."""
    kwargs.setdefault("default", str)
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def atomic_write_json(path: PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON (see :func:`dumps_json`) to ``path`` atomically."""
    return atomic_write_text(path, dumps_json(obj, indent=indent) + "\n")


def remove_quietly(paths: Iterable[PathLike]) -> None:
    """Delete files (missing ones and errors are ignored): cleanup after a failed run."""
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass


class StagedDir:
    """Write a set of files so that they appear in ``target`` only when all of them were written.

    ``with StagedDir(folder) as stage: stage.write_bytes(name, data) ...`` writes into a hidden
    temporary folder (inside ``target`` when it exists, else next to it) and, when the block ends
    without an exception, moves the files into ``target`` (a new ``target`` is the renamed temporary
    folder). On an exception the temporary folder is deleted and ``target`` is untouched. ``OSError``
    becomes :class:`FileSystemError`. Call :func:`check_output_dir` first to fail before any work.
    """

    def __init__(self, target: PathLike):
        self.target = Path(target)
        self.path: Path | None = None
        self.written: list[str] = []
        self._fresh = False

    def __enter__(self) -> "StagedDir":
        t = self.target
        try:
            if os.path.lexists(t):
                if not t.is_dir():
                    raise _fail(t, "write folder", errno.ENOTDIR, "it is an existing file, give a folder")
                self.path = Path(tempfile.mkdtemp(prefix=".gsdd-staging-", dir=t))
            else:
                make_dirs(t.parent)
                self._fresh = True
                self.path = Path(tempfile.mkdtemp(prefix=_tmp_prefix(t.name), suffix=".tmp", dir=t.parent))
        except OSError as e:
            raise fs_error(e, t, "write folder") from None
        return self

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Write one file ``name`` (no folders) of the set."""
        assert self.path is not None, "use StagedDir as a context manager"
        p = self.path / name
        try:
            _write_all(p, data)
            os.chmod(p, 0o666 & ~current_umask())
        except OSError as e:
            raise fs_error(e, self.target / name) from None
        self.written.append(name)
        return self.target / name

    def commit(self) -> None:
        assert self.path is not None
        try:
            if self._fresh:
                os.chmod(self.path, dir_mode())
                try:
                    os.rename(self.path, self.target)  # fails if target appeared meanwhile
                    self.path = None
                    return
                except OSError:
                    make_dirs(self.target)
            for name in self.written:
                os.replace(self.path / name, self.target / name)
            os.rmdir(self.path)
            self.path = None
        except OSError as e:
            raise fs_error(e, self.target, "write folder") from None

    def discard(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            finally:
                self.discard()
        else:
            self.discard()


def replace_dir(target: PathLike, build: Callable[[Path], Any]) -> Path:
    """Build a whole folder with ``build(tmp)`` in a hidden sibling, then put it in place of ``target``
    (an existing ``target`` is replaced as a whole). On any failure ``target`` is untouched and
    nothing is left behind. Folder mode follows the umask (:func:`dir_mode`)."""
    t = Path(target)
    try:
        make_dirs(t.parent)
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(t.name), suffix=".tmp", dir=t.parent))
    except OSError as e:
        raise fs_error(e, t, "write folder") from None
    try:
        build(tmp)
        os.chmod(tmp, dir_mode())
        if os.path.lexists(t):
            old = Path(tempfile.mkdtemp(prefix=_tmp_prefix(t.name), suffix=".old", dir=t.parent))
            os.replace(t, old / "replaced")
            os.replace(tmp, t)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, t)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise fs_error(e, t, "write folder") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return t


__all__ = [
    "StagedDir",
    "replace_dir",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
    "current_umask",
    "dir_mode",
    "dumps_json",
    "file_mode",
    "fs_error",
    "json_safe",
    "make_dirs",
    "refuse_overwriting_inputs",
    "remove_quietly",
    "same_path",
]
