"""Files written so that a crash, a full disk or a Ctrl-C never leaves half of one: the atomic write every
run file goes through (checkpoints, metrics, config, figures, evaluation), and the temporaries it makes.

Nothing here knows about models or runs, so every module that writes a file can use it.
"""

from __future__ import annotations

import os
import tempfile

TEMPORARY_PREFIX = ".tmp-"  # the name of a file being written; never read as a checkpoint


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that ``path`` holds either the old or the new content, never a mix.

    The bytes go to ``.tmp-<random><name>`` in the same directory first. On any exception (Ctrl-C included)
    that temporary is removed; a process killed outright (SIGKILL, power loss) can leave one behind, which
    nothing reads (loaders open fixed names such as ``last.npz``) and :func:`remove_stale_temporaries`
    deletes when training starts or resumes in that directory. The directory itself is fsynced after the
    rename, so the new name survives a power loss; the file gets the permissions a plain ``open`` would.
    """
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=TEMPORARY_PREFIX, suffix=os.path.basename(path)
    )
    try:
        os.fchmod(handle, 0o666 & ~_current_umask())  # mkstemp makes 0600 files; follow the umask instead
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        _fsync_directory(directory)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _current_umask():
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _fsync_directory(directory):
    """Flush a directory entry (the rename) to disk; a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def temporary_of(name, targets):
    """Whether ``name`` is a temporary that :func:`atomic_write_bytes` made for one of the file names
    ``targets``: ``.tmp-`` + mkstemp's 8 random characters + the target's name."""
    return any(
        name.startswith(TEMPORARY_PREFIX)
        and name.endswith(target)
        and len(name) == len(TEMPORARY_PREFIX) + 8 + len(target)
        for target in targets
    )


def remove_stale_temporaries(directory, targets):
    """Delete the temporaries of the files ``targets`` (names such as ``"last.npz"``) that killed writers
    left in ``directory``; returns their names. Only those: a temporary of another file may belong to a
    process writing beside us (``tinyvae evaluate`` writing evaluation.json while a run resumes), and a
    user's own ``.tmp-notes.txt`` is not ours to delete. Call it only while holding the run's lock."""
    removed = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if temporary_of(name, targets) and os.path.isfile(path) and not os.path.islink(path):
            try:
                os.unlink(path)
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed
