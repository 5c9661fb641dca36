"""Hostile files and places: IDX headers that lie, data folders we may not read, download destinations that
cannot be folders, and an install where numba has nowhere to cache its kernels.

Memory is measured, not assumed: each hostile IDX file is parsed in a child process whose address space is
capped (:data:`ADDRESS_SPACE_LIMIT`) and which reports its peak resident memory. A parser that decompressed
the whole file, or allocated what the header claims, would die there with MemoryError (the cap also keeps
a regression from taking the shared test machine's memory).

Permission tests: these tests may run as root, where ``chmod 000`` stops nothing, so :func:`deny` wraps
the operating-system calls to refuse what a non-root user would be refused in such a folder.
"""

from __future__ import annotations

import builtins
import errno
import gzip
import io
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.error
from pathlib import Path

import pytest

from tinyvae import cli, data
from tinyvae.data import DataError

ROOT = Path(__file__).resolve().parent.parent
ADDRESS_SPACE_LIMIT = 768 * 2**20  # the child's whole virtual memory; Python + NumPy + tinyvae use ~150 MB
RSS_LIMIT_KB = 120 * 2**10  # peak resident memory allowed to the child (~36 MB after its imports)
MIB_OF_ZEROS = gzip.compress(bytes(2**20))  # one gzip member of 1 MiB of zeros: about 1 kB


def idx_header(dims):
    """An unsigned-byte IDX header: 0x00 0x00 0x08 ndim, then each size as a big-endian uint32."""
    return bytes([0, 0, 8, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)


def write_gz_bomb(path, dims, head=b"", zeros=0):
    """A gzip file: ``idx_header(dims) + head``, then ``zeros`` zero bytes as further gzip members of 1 MiB
    (concatenated members are one valid gzip stream). 4 GiB of zeros cost about 4 MB on disk."""
    whole_mib, rest = divmod(zeros, 2**20)
    with open(path, "wb") as out:
        out.write(gzip.compress(idx_header(dims) + head))
        for _ in range(whole_mib):
            out.write(MIB_OF_ZEROS)
        out.write(gzip.compress(bytes(rest)))
    return path


def write_sparse(path, dims, head=b"", total_bytes=None):
    """A raw IDX file: header and ``head``, extended with zeros to ``total_bytes`` without using the disk
    (a sparse file): reading it would cost that much memory, holding it costs nothing."""
    path.write_bytes(idx_header(dims) + head)
    if total_bytes is not None:
        os.truncate(path, total_bytes)
    return path


def parse_in_child(call):
    """Run ``call`` (Python source using ``data``) in a capped child; return (error type, message, peak
    resident memory in kB). The cap is set before NumPy is imported, so every allocation of the parse is
    under it."""
    code = textwrap.dedent(f"""
        import json, resource
        resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_LIMIT}, {ADDRESS_SPACE_LIMIT}))
        from tinyvae import data
        try:
            {call}
            outcome = [None, "no error"]
        except BaseException as error:
            outcome = [type(error).__name__, str(error)]
        # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent (pytest, hundreds of
        # MB after a full run) through fork and exec, while VmHWM belongs to this process's own memory.
        with open("/proc/self/status") as status:
            peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        print(json.dumps(outcome + [peak_kb]))
    """)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_bounded_data_error(outcome, *fragments):
    kind, message, peak_kb = outcome
    assert kind == "DataError", f"expected DataError, got {kind}: {message}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert peak_kb < RSS_LIMIT_KB, f"peak memory {peak_kb / 1024:.0f} MB"


# ---------------------------------------------------------------------------------------------------------
# 1. IDX headers checked against the file, memory bounded by the data really there


def test_gz_longer_than_its_header_stops_one_byte_past_the_claim(tmp_path):
    """A gzip whose header claims 10 images but which decompresses to 4 GiB more (a 4 MB file): reading
    stops at 7,841 data bytes, and the message names the file, the declared dims and where it stopped."""
    path = write_gz_bomb(tmp_path / "bomb.gz", (10, 28, 28), bytes(7840), zeros=2**32)
    assert path.stat().st_size < 6e6
    outcome = parse_in_child(f"data.read_idx({str(path)!r})")
    assert_bounded_data_error(
        outcome,
        str(path),
        "IDX file too long: dims (10, 28, 28) need 7840 data bytes after the header, found more "
        "(decompression stopped at 7841 bytes)",
    )


def test_raw_file_size_is_checked_before_reading(tmp_path):
    """A raw file whose header claims 10 images but which is 2 GiB long is refused from its size on disk,
    with the exact excess, without reading the data."""
    path = write_sparse(tmp_path / "long-idx", (10, 28, 28), total_bytes=2**31)
    found = 2**31 - 16
    outcome = parse_in_child(f"data.read_idx({str(path)!r})")
    assert_bounded_data_error(
        outcome,
        str(path),
        f"IDX file too long: dims (10, 28, 28) need 7840 data bytes after the header, found {found} "
        f"({found - 7840} extra)",
    )


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_header_claiming_millions_over_little_data_allocates_nothing(tmp_path, gz):
    """A header claiming 5,000,000 images over 1,000 bytes of data: a truncated file, reported with the
    declared dims and the bytes actually there; nothing the size of the claim (3.9 GB) is allocated."""
    dims, head = (5_000_000, 28, 28), bytes(range(250)) * 4
    if gz:
        path = write_gz_bomb(tmp_path / "liar.gz", dims, head)
    else:
        path = write_sparse(tmp_path / "liar", dims, head)
    outcome = parse_in_child(f"data.read_idx({str(path)!r})")
    assert_bounded_data_error(
        outcome,
        str(path),
        "truncated IDX file: dims (5000000, 28, 28) need 3920000000 data bytes after the header, found 1000",
    )


def write_train_split(folder, image_dims):
    """A train split: a gzip image file whose header says ``image_dims`` and which holds exactly that many
    zero bytes (an honest header), and a valid label file of 10 labels. Returns the image file's path."""
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_header((10,)) + bytes(range(10)))
    return write_gz_bomb(folder / "train-images-idx3-ubyte.gz", image_dims, zeros=math.prod(image_dims))


def test_loader_refuses_an_absurd_image_count_from_the_header(tmp_path):
    """mnist with a 4 MB gzip holding a genuine 5,000,000 zero images (3.9 GB decompressed): refused from
    its header, over MAX_IDX_EXAMPLES, before any data is decompressed."""
    path = write_train_split(tmp_path, (5_000_000, 28, 28))
    outcome = parse_in_child(f"data.load_dataset('mnist', 'train', data_dir={str(tmp_path)!r})")
    assert_bounded_data_error(
        outcome,
        str(path),
        "the IDX header declares 5,000,000 images (dims (5000000, 28, 28)), more than the 100,000 tinyvae "
        "reads from one file",
        "nothing past the header was read",
    )


def test_loader_refuses_images_that_are_not_28x28_from_the_header(tmp_path):
    """mnist whose image header says (1000, 1000, 1000) over 1 GB of zeros: refused from the header (the
    dims an MNIST image file must have), before the gigabyte is decompressed."""
    path = write_train_split(tmp_path, (1000, 1000, 1000))
    outcome = parse_in_child(f"data.load_dataset('mnist', 'train', data_dir={str(tmp_path)!r})")
    assert_bounded_data_error(
        outcome, str(path), "expected images of dims (N, 28, 28), found (1000, 1000, 1000)"
    )


def test_idx_files_with_zero_images_are_refused(tmp_path):
    """An image file (and label file) holding 0 examples is a DataError, not an empty dataset."""
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_header((0, 28, 28)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_header((0,)))
    with pytest.raises(DataError) as error:
        data.load_dataset("fashion-mnist", "test", data_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "t10k-images-idx3-ubyte") in message
    assert "the IDX header declares 0 images (dims (0, 28, 28)); expected at least one" in message


# ---------------------------------------------------------------------------------------------------------
# 2. Data folders: a file where a folder should be, a folder we may not read


def deny(monkeypatch, folder, writes_only=False):
    """Make ``folder`` behave as ``chmod 000`` (or ``chmod 555`` with ``writes_only``) does for a non-root
    user: looking inside, opening, listing and creating files there raise PermissionError. ``folder`` may
    be a file: then opening it is refused (``chmod 000`` on the file)."""
    folder = os.path.abspath(folder)

    def where(path):
        """ "self", "inside" or None: where ``path`` (a path or a file descriptor) is relative to folder."""
        if isinstance(path, int):
            return None
        path = os.path.abspath(os.fsdecode(path))
        return "self" if path == folder else "inside" if path.startswith(folder + os.sep) else None

    def writes(flags):  # os.open's flags, or open()'s mode
        if isinstance(flags, str):
            return any(c in flags for c in "wax+")
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))

    def guard(function, refused):
        def guarded(path, *args, **kwargs):
            place = where(path)
            if place and refused(place, args[0] if args else kwargs.get("mode", kwargs.get("flags", "r"))):
                raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
            return function(path, *args, **kwargs)

        return guarded

    def opening(place, flags):
        return writes(flags) or not writes_only

    monkeypatch.setattr(os, "mkdir", guard(os.mkdir, lambda place, mode: True))
    monkeypatch.setattr(os, "open", guard(os.open, opening))
    for module in (builtins, io):  # one function under two names: open() and pathlib's io.open()
        monkeypatch.setattr(module, "open", guard(module.open, opening))
    if not writes_only:  # without r and x on the folder, nothing inside can be looked at or listed
        monkeypatch.setattr(os, "stat", guard(os.stat, lambda place, _: place == "inside"))
        monkeypatch.setattr(os, "listdir", guard(os.listdir, lambda place, _: True))
        monkeypatch.setattr(os, "scandir", guard(os.scandir, lambda place, _: True))


def test_data_dir_that_is_a_file_says_so(tmp_path):
    """data_dir (--data-dir) naming a file: the message says it is a file, not that it does not exist."""
    path = tmp_path / "mnist.tar"
    path.write_bytes(b"not a folder")
    with pytest.raises(DataError) as error:
        data.load_dataset("mnist", "train", data_dir=path)
    message = str(error.value)
    assert f"mnist: data_dir (--data-dir) is {path}, which is a file, not a folder" in message
    assert "expected the folder that holds the IDX files (train-images-idx3-ubyte[.gz]" in message
    assert "does not exist" not in message


def test_tinyvae_data_that_is_a_file_says_so(tmp_path, monkeypatch):
    """$TINYVAE_DATA naming a file: the message names the variable and says it is a file."""
    path = tmp_path / "data.txt"
    path.write_text("oops")
    monkeypatch.setenv("TINYVAE_DATA", str(path))
    with pytest.raises(DataError) as error:
        data.load_dataset("fashion-mnist", "test")
    assert f"fashion-mnist: TINYVAE_DATA is {path}, which is a file, not a folder; expected" in str(
        error.value
    )


def test_unreadable_data_folder_is_a_data_error_naming_it(tmp_path):
    """A data folder we may not look into (PermissionError) is a DataError naming it, not a traceback."""
    folder = tmp_path / "locked"
    folder.mkdir()
    with pytest.MonkeyPatch.context() as monkeypatch:
        deny(monkeypatch, folder)
        with pytest.raises(DataError) as error:
            data.load_dataset("mnist", "test", data_dir=folder)
    message = str(error.value)
    assert (
        f"mnist: cannot look inside the data folder {folder} (Permission denied); make it readable" in message
    )


def test_unreadable_idx_file_is_a_data_error_naming_it(tmp_path):
    """An IDX file that is there but may not be opened: a DataError naming the file."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(idx_header((1, 28, 28)) + bytes(784))
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_header((1,)) + bytes(1))
    with pytest.MonkeyPatch.context() as monkeypatch:
        deny(monkeypatch, folder / "train-images-idx3-ubyte")
        with pytest.raises(DataError) as error:
            data.load_dataset("mnist", "train", data_dir=tmp_path)
    message = str(error.value)
    assert f"{folder / 'train-images-idx3-ubyte'}: cannot read the IDX file (Permission denied)" in message


def test_no_home_directory_is_a_data_error(monkeypatch):
    """No $HOME and no home in the password file (some containers): the download cache cannot be found,
    and the message says so and what to pass instead."""
    import pwd

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("TINYVAE_DATA", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(DataError) as error:
        data.load_dataset("mnist", "train")
    message = str(error.value)
    assert "mnist: there is no home directory for the download cache ~/.cache/tinyvae/mnist" in message
    assert "pass data_dir= / --data-dir or set TINYVAE_DATA" in message


# ---------------------------------------------------------------------------------------------------------
# 3. Download destinations, refused before any network access


@pytest.fixture
def no_network(monkeypatch):
    """The opener download() uses, replaced by one that records each call and fails: nothing may reach it."""
    calls = []

    def opener(url, timeout):
        calls.append(url)
        raise urllib.error.URLError("the test forbids network access")

    monkeypatch.setattr(data, "_urlopen", opener)
    return calls


def test_download_into_a_file_is_refused(tmp_path, no_network):
    """dest (--data-dir) is an existing file: refused by name, before any fetch, and the file is kept."""
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(DataError) as error:
        data.download("mnist", path)
    assert str(error.value) == (
        f"download: dest (--data-dir) {path} is a file, not a folder; expected a folder (or a path where "
        "one can be created) to save the mnist IDX files into"
    )
    assert no_network == [] and path.read_text() == "keep me"


def test_download_under_a_file_names_the_file_in_the_way(tmp_path, no_network):
    """dest is a path below a file (file/sub/dir): the message names dest and the file that blocks it."""
    blocker = tmp_path / "archive.zip"
    blocker.write_bytes(b"PK")
    dest = blocker / "mnist" / "raw"
    with pytest.raises(DataError) as error:
        data.download("fashion-mnist", dest)
    assert str(error.value).startswith(
        f"download: dest (--data-dir) {dest} cannot be created: {blocker} is a file, not a folder; "
        "expected a folder"
    )
    assert no_network == []


@pytest.mark.parametrize("where", ["read-only folder", "new folder in a read-only one"])
def test_download_into_an_unwritable_place_is_refused(tmp_path, no_network, where):
    """A read-only dest, or one to be created inside a read-only folder: refused naming the folder and
    the reason, before any fetch."""
    locked = tmp_path / "shared"
    locked.mkdir()
    dest = locked if where == "read-only folder" else locked / "mnist"
    with pytest.MonkeyPatch.context() as monkeypatch:
        deny(monkeypatch, locked, writes_only=True)
        with pytest.raises(DataError) as error:
            data.download("mnist", dest)
    if where == "read-only folder":
        expected = f"download: cannot write into {dest} (Permission denied); expected a writable folder"
    else:
        expected = f"download: cannot create the folder {dest} (Permission denied); expected a folder"
    assert str(error.value).startswith(expected)
    assert no_network == []


def test_cli_download_into_a_file_exits_2_with_the_message(tmp_path, no_network, capsys):
    """`tinyvae download mnist --data-dir FILE`: exit status 2 and the message, no traceback, no fetch."""
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["download", "mnist", "--data-dir", str(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"tinyvae: error: download: dest (--data-dir) {path} is a file, not a folder" in err
    assert "Traceback" not in err and no_network == []


# ---------------------------------------------------------------------------------------------------------
# 4. numba kernels on an install where nothing can be cached


KERNEL_RUN = textwrap.dedent("""
    import json, warnings, numpy
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a second warning would be recorded, not deduplicated
        from tinyvae.kernels import relu
        x = numpy.array([-1.5, 0.0, 2.0], dtype=numpy.float32)
        y = relu.relu_forward_numba(x)
        g = relu.relu_backward_numba(numpy.ones(3, numpy.float32), y)
    print(json.dumps({
        "file": relu.__file__,
        "y": y.tolist(), "g": g.tolist(),
        "warnings": [[w.category.__name__, str(w.message)] for w in caught],
    }))
""")


def copy_of_the_package(tmp_path):
    """tinyvae with its kernels, laid out as installed (``tinyvae/kernels``) in ``tmp_path/site``: the child
    imports this copy (PYTHONPATH, run from tmp_path), so a test can change what is around the kernels."""
    site = tmp_path / "site"
    skip = shutil.ignore_patterns("__pycache__", "*.npz")
    shutil.copytree(ROOT / "tinyvae", site / "tinyvae", ignore=skip)
    shutil.copytree(ROOT / "kernels", site / "tinyvae" / "kernels", ignore=skip)
    return site


def run_kernel_child(site, **environment):
    """Run KERNEL_RUN on the copy in ``site``, from its parent folder (``python -c`` imports from the
    working directory first); without NUMBA_CACHE_DIR and XDG_CACHE_HOME unless ``environment`` sets them."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1", TINYVAE_BACKEND="numba", **environment)
    result = subprocess.run(
        [sys.executable, "-c", KERNEL_RUN],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=site.parent,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(site))  # the copy ran, not the checkout
    assert out["y"] == [0.0, 0.0, 2.0] and out["g"] == [0.0, 0.0, 1.0]
    return out


def test_kernels_compile_without_a_cache_folder_and_warn_once(tmp_path):
    """A read-only install with no writable home: the package's kernels/__pycache__ cannot be created (a
    file is in its place: as root, chmod would not stop numba), HOME is a file, NUMBA_CACHE_DIR is unset.
    numba then finds no cache locator; the kernels still compile and run, with exactly one
    KernelCacheWarning for the two kernels compiled, saying why and what to do."""
    pytest.importorskip("numba")
    site = copy_of_the_package(tmp_path)
    (site / "tinyvae" / "kernels" / "__pycache__").write_text("not a folder")
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    out = run_kernel_child(site, HOME=str(home))
    assert len(out["warnings"]) == 1, out["warnings"]
    category, message = out["warnings"][0]
    assert category == "KernelCacheWarning"
    assert message.startswith("tinyvae.kernels: numba's kernel cache is off: it found no writable folder")
    assert "no locator available" in message and "set NUMBA_CACHE_DIR to a writable folder" in message


def test_kernels_still_cache_when_they_can(tmp_path):
    """With a writable NUMBA_CACHE_DIR the kernels are cached there, silently: the fallback is only a
    fallback (never caching at all would pass the test above)."""
    pytest.importorskip("numba")
    cache = tmp_path / "numba-cache"
    out = run_kernel_child(copy_of_the_package(tmp_path), NUMBA_CACHE_DIR=str(cache))
    assert out["warnings"] == []
    cached = sorted(p.name for p in cache.rglob("*.nbi"))
    assert [name.split("-")[0] for name in cached] == ["relu._backward_pass", "relu._forward_pass"], cached
