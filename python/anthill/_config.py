"""Where the default store lives and where the secret comes from.

- Store: the ``url`` argument, else ``$ANTHILL_STORE``, else the folder
  ``anthill/default`` in the user's data folder (``$XDG_DATA_HOME`` or
  ``~/.local/share`` on Linux, ``~/Library/Application Support`` on macOS,
  ``%LOCALAPPDATA%`` on Windows).
- Secret: the ``secret`` argument, else ``$ANTHILL_SECRET``, else the key file
  ``anthill/secret.key`` in the user's config folder (``$XDG_CONFIG_HOME`` or
  ``~/.config`` on Linux, ``~/Library/Application Support`` on macOS,
  ``%APPDATA%`` on Windows), created on first use with 32 random bytes (hex)
  and owner-only permissions.
- State: what this machine has seen of each store (to detect a store rolled
  back to an older state) lives in the user's state folder (``$XDG_STATE_HOME``
  or ``~/.local/state`` on Linux; the data folder on macOS and Windows).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import sys
import time
from pathlib import Path

from ._anthill import is_url
from ._errors import InvalidInputError

__all__ = [
    "config_dir",
    "data_dir",
    "default_store_url",
    "resolve_secret",
    "secret_key_path",
    "state_dir",
]

_log = logging.getLogger("anthill")

SECRET_ENV = "ANTHILL_SECRET"
STORE_ENV = "ANTHILL_STORE"
# How long to wait for a key file another process is writing.
KEY_FILE_WAIT = 5.0


def _xdg(variable: str, fallback: Path) -> Path:
    value = os.environ.get(variable)
    # The XDG spec: relative paths are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return fallback


def _user_folder(windows: tuple[str, str], xdg_variable: str, linux_default: str) -> Path:
    """anthill's folder of one kind among the user's folders: on Windows in
    ``%VARIABLE%`` (else ``~/AppData/<default>``), on macOS in Application
    Support (unless the XDG variable says otherwise), elsewhere in
    ``$xdg_variable`` (else ``~/<linux_default>``)."""
    home = Path.home()
    if sys.platform == "win32":
        variable, default = windows
        base = Path(os.environ.get(variable) or home / "AppData" / default)
    elif sys.platform == "darwin":
        base = _xdg(xdg_variable, home / "Library" / "Application Support")
    else:
        base = _xdg(xdg_variable, home / linux_default)
    return base / "anthill"


def data_dir() -> Path:
    """The user's data folder for anthill (the default store lives here)."""
    return _user_folder(("LOCALAPPDATA", "Local"), "XDG_DATA_HOME", ".local/share")


def state_dir() -> Path:
    """The user's state folder for anthill: this machine's memory of how far
    it has seen each store's log, which lets it notice a rolled-back store,
    and the local copies of large stores' indexes, which make opening fast."""
    return _user_folder(("LOCALAPPDATA", "Local"), "XDG_STATE_HOME", ".local/state")


def config_dir() -> Path:
    """The user's config folder for anthill (the secret key file lives here)."""
    return _user_folder(("APPDATA", "Roaming"), "XDG_CONFIG_HOME", ".config")


def secret_key_path() -> Path:
    """The key file used when neither ``secret=`` nor ``$ANTHILL_SECRET`` is given."""
    return config_dir() / "secret.key"


def to_url(location: str | os.PathLike[str]) -> str:
    """What to hand the core for ``location``: a URL as it is (the core parses
    and checks it), a folder path made absolute (``~`` expanded)."""
    text = os.fspath(location)
    if not text.strip():
        raise InvalidInputError("the store location is empty: pass a URL or a folder path")
    if is_url(text):
        return text
    return str(Path(text).expanduser().absolute())


def default_store_url() -> str:
    """``$ANTHILL_STORE`` if set, else the default store in the user's data folder
    (created, like any folder store, by the open that creates the store)."""
    configured = os.environ.get(STORE_ENV)
    if configured:
        return to_url(configured)
    return to_url(data_dir() / "default")


def resolve_secret(
    secret: str | bytes | bytearray | memoryview | None, *, create: bool = True
) -> bytes:
    """The store secret: the argument, else ``$ANTHILL_SECRET``, else the key file
    (created on first use, unless ``create`` is false: then a missing key file
    is an :class:`InvalidInputError` naming it)."""
    if secret is not None:
        if isinstance(secret, str):
            value = secret.encode()
        elif isinstance(secret, (bytes, bytearray, memoryview)):
            value = bytes(secret)
        else:
            raise InvalidInputError(f"secret must be str or bytes, got {type(secret).__name__}")
        if not value:
            raise InvalidInputError("secret is empty: pass a non-empty str or bytes")
        return value
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        return from_env.encode()
    if not create:
        path = secret_key_path()
        try:
            return _read_key_file(path)
        except FileNotFoundError:
            raise InvalidInputError(
                f"no secret: the key file {path} does not exist (and {SECRET_ENV} is not "
                f"set); restore the key file the store was made with, or pass secret= or "
                f"set {SECRET_ENV}"
            ) from None
    return _read_or_create_key_file(secret_key_path())


def _read_or_create_key_file(path: Path) -> bytes:
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    _make_folder_durably(path.parent)
    key = secrets.token_hex(32)
    # Written whole and flushed under a temporary name, then linked into
    # place: a link never replaces an existing file, so of several processes
    # creating the key at once exactly one wins, and nobody ever sees the
    # key file half-written.
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as key_file:
            key_file.write(key + "\n")
            key_file.flush()
            os.fsync(key_file.fileno())
        os.link(staging, path)
    except FileExistsError:
        # Another process created it first: use theirs.
        return _read_key_file(path)
    except OSError as error:
        raise InvalidInputError(
            f"cannot create the secret key file {path}: {error.strerror}; "
            f"pass secret= or set {SECRET_ENV}"
        ) from error
    finally:
        with contextlib.suppress(OSError):
            os.unlink(staging)
    _sync_folder(path.parent)
    _log.warning(
        "anthill created a new secret key in %s; back it up: without it your stores cannot be read",
        path,
    )
    return key.encode()


def _make_folder_durably(folder: Path) -> None:
    """Creates ``folder`` (owner-only) and any missing folders above it, each
    flushed into its parent: a folder created but not flushed vanishes in a
    power loss with the key file inside it, however well that was flushed."""
    missing = []
    above = folder
    while not above.is_dir() and above.parent != above:
        missing.append(above)
        above = above.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for created in reversed(missing):
        _sync_folder(created.parent)


def _sync_folder(folder: Path) -> None:
    """Flushes a folder's entries to the disk, where the platform allows."""
    if sys.platform == "win32":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _wait_for_key(path: Path) -> str:
    """The key file's text once another process has finished writing it."""
    deadline = time.monotonic() + KEY_FILE_WAIT
    while time.monotonic() < deadline:
        time.sleep(0.05)
        with contextlib.suppress(OSError):
            text = path.read_text().strip()
            if text:
                return text
    raise InvalidInputError(
        f"the secret key file {path} is empty: it holds no key. If you have a backup "
        f"of it, restore it; otherwise pass secret= or set {SECRET_ENV}"
    )


def _read_key_file(path: Path) -> bytes:
    """Reads the key file; raises FileNotFoundError if it does not exist."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise
    except OSError as error:
        raise InvalidInputError(
            f"cannot read the secret key file {path}: {error.strerror}"
        ) from error
    if sys.platform != "win32" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInputError(
            f"the secret key file {path} is accessible by other users "
            f"(mode {stat.S_IMODE(mode):o}); make it private with: chmod 600 {path}"
        )
    try:
        text = path.read_text().strip()
    except PermissionError as error:
        raise InvalidInputError(
            f"cannot read the secret key file {path} (permission denied); "
            f"make it yours and private with: chmod 600 {path}"
        ) from error
    except OSError as error:
        raise InvalidInputError(
            f"cannot read the secret key file {path}: {error.strerror}"
        ) from error
    if not text:
        # Only an older anthill, writing the file in place, left a moment
        # when it was empty: give such a writer time to finish.
        text = _wait_for_key(path)
    return text.encode()
