"""Reading torch files without running code from them.

Every file this project reads (CLIP weights, OpenAI's TorchScript archive, the authors' release files,
its own model files and Lightning checkpoints) goes through :func:`safe_load` or
:func:`torchscript_state_dict`. Neither hands a byte of the file to plain ``pickle``:

* plain data is read by ``torch.load(weights_only=True)`` (zip archives and legacy raw-pickle files);
* what that refuses is read again by :class:`RestrictedUnpickler`, which rebuilds tensors, plain
  containers and scalars, turns OmegaConf objects (the release files' ``config``) into inert records
  (:func:`to_plain` makes them dicts and lists), and refuses every other global by name;
* TorchScript archives are read as data (``data.pkl`` and ``data/`` storages): their code never runs.

Failures raise :class:`CheckpointError`, which names the file and the reason.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import io
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from tc_clip.errors import UserError

__all__ = [
    "CheckpointError", "NestingError", "Record", "RestrictedUnpickler", "safe_load", "to_plain",
    "torchscript_state_dict",
]


class CheckpointError(UserError, ValueError):
    """A file could not be loaded: missing, corrupt, truncated, or holding something unsafe to rebuild."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot load {self.path}: {reason}")


#: How deeply :func:`to_plain` and :func:`safe_load` follow nested containers (a config needs a handful).
MAX_DEPTH = 100


class NestingError(ValueError):
    """A loaded structure that contains itself, or is nested or sized beyond what a file of data holds."""


class UnsafeGlobalError(pickle.UnpicklingError):
    """The pickle names a global that is neither data nor an inert record."""


class Record:
    """An inert stand-in for an object of a class the file names (OmegaConf nodes, TorchScript modules).

    Nothing of the original class runs: the constructor arguments and the state are only stored.
    """

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Record:
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"Record({self.qualname})"


class _RecordDict(dict):
    """Stand-in for ``collections.defaultdict`` (OmegaConf's resolver cache): a plain dict."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()


_RECORD_MODULES = ("omegaconf", "typing", "__torch__")
_PLAIN = {
    ("builtins", name): getattr(builtins, name)
    for name in ("set", "frozenset", "slice", "complex", "dict", "list", "tuple", "int", "float", "str", "bool")
}
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128, "UntypedStorage": torch.uint8,
}


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return torch.empty(0, dtype=storage.dtype).set_(storage.untyped_storage(), offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride):
    return _rebuild_tensor_v2(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    return torch.nn.Parameter(data, requires_grad)


_TORCH_FUNCS = {
    "_rebuild_tensor_v2": _rebuild_tensor_v2,
    "_rebuild_tensor": _rebuild_tensor,
    "_rebuild_parameter": _rebuild_parameter,
    "_rebuild_parameter_with_state": _rebuild_parameter,
}


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"unsupported bytes encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_global(module: str, name: str) -> Any:
    """numpy's array, dtype and scalar rebuilders (RNG states, metrics): data only, any nested object
    having been rebuilt by the same restricted unpickler."""
    import numpy as np

    if module == "numpy" and name in ("dtype", "ndarray"):
        return getattr(np, name)
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("scalar", "_reconstruct"):
        return getattr(np._core.multiarray if hasattr(np, "_core") else np.core.multiarray, name)
    return None


class RestrictedUnpickler(pickle._Unpickler):
    """Rebuilds tensors (from ``storages``), plain containers, scalars and inert :class:`Record` objects.

    ``storages(key, dtype, numel)`` returns the flat tensor of a persistent storage id. Python's own
    unpickler (not the C one) so that ``BUILD`` can be checked: it sets the state of an *object*; on a
    class or function it would change that class or function for the rest of the process, so it is
    refused (the pickles read here are small: the tensors are in the archive's storages).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: io.BufferedIOBase, storages=None) -> None:
        super().__init__(file)
        self._storages = storages
        self._records: dict[str, type] = {}

    def load_build(self) -> None:
        target = self.stack[-2] if len(self.stack) > 1 else None
        if callable(target):
            name = getattr(target, "__qualname__", type(target).__name__)
            raise UnsafeGlobalError(f"refused a pickle BUILD on {name}: only objects take a state, never a class "
                                    "or a function")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol-2 pickles (torch.save) use Python 2 names
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == "torch._utils" and name in _TORCH_FUNCS:
            return _TORCH_FUNCS[name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if (module, name) in (("torch", "Size"), ("torch", "device")):
            return getattr(torch, name)
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 stores bytes
            return _latin1_bytes
        if (module, name) == ("collections", "defaultdict"):
            return _RecordDict
        if (module, name) in _PLAIN:
            return _PLAIN[(module, name)]
        if module.startswith("numpy") and (found := _numpy_global(module, name)) is not None:
            return found
        if module.split(".")[0] in _RECORD_MODULES:
            qualname = f"{module}.{name}"
            if qualname not in self._records:
                self._records[qualname] = type(name, (Record,), {"qualname": qualname})
            return self._records[qualname]
        raise UnsafeGlobalError(f"refused to rebuild {module}.{name} (only tensors and plain data are read)")

    def persistent_load(self, pid: Any) -> Any:
        if self._storages is None or not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, dtype, key, _location, numel = pid[:5]
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unsupported storage type {dtype!r}")
        return self._storages(str(key), dtype, int(numel))


def _archive_prefix(archive: zipfile.ZipFile) -> str:
    pkls = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise pickle.UnpicklingError("not a torch zip archive (no single <name>/data.pkl)")
    prefix = pkls[0].removesuffix("data.pkl")
    order = f"{prefix}byteorder"
    if order in archive.namelist() and archive.read(order).decode().strip() != "little":
        raise pickle.UnpicklingError("big-endian archives are not supported")
    return prefix


def _read_archive(path: Path) -> Any:
    """The object of a torch zip archive, read with :class:`RestrictedUnpickler`."""
    with zipfile.ZipFile(path) as archive:
        prefix = _archive_prefix(archive)
        cache: dict[str, torch.Tensor] = {}

        def storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
            if key not in cache:
                try:
                    info = archive.getinfo(f"{prefix}data/{key}")
                except KeyError:
                    raise pickle.UnpicklingError(f"storage {key} is missing (truncated file?)") from None
                itemsize = torch.empty(0, dtype=dtype).element_size()
                if info.file_size < numel * itemsize:
                    raise pickle.UnpicklingError(f"storage {key} is short: {info.file_size} < {numel * itemsize} bytes")
                buf = bytearray(info.file_size)
                with archive.open(info) as fh:
                    fh.readinto(buf)
                flat = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
                cache[key] = flat.view(dtype)[:numel] if numel else torch.empty(0, dtype=dtype)
            return cache[key]

        with archive.open(f"{prefix}data.pkl") as fh:
            return RestrictedUnpickler(io.BufferedReader(fh), storage).load()


def _to_device(obj: Any, map_location: Any, memo: dict[int, Any] | None = None, depth: int = 0) -> Any:
    """``obj`` with its tensors on ``map_location``; a shared container is moved once."""
    if isinstance(obj, torch.Tensor):
        return obj.to(map_location)
    if not isinstance(obj, (dict, list, tuple)):
        return obj
    memo = {} if memo is None else memo
    if id(obj) not in memo:
        if depth > MAX_DEPTH:
            raise NestingError(f"is nested deeper than {MAX_DEPTH} levels, or contains itself")
        if isinstance(obj, dict):
            memo[id(obj)] = type(obj)((k, _to_device(v, map_location, memo, depth + 1)) for k, v in obj.items())
        else:
            memo[id(obj)] = type(obj)(_to_device(v, map_location, memo, depth + 1) for v in obj)
    return memo[id(obj)]


def _checked_path(path: str | os.PathLike) -> Path:
    text = str(path)
    if "://" in text:
        raise CheckpointError(path, "remote paths are not loaded; download the file and pass its local path")
    p = Path(text).expanduser()
    if not p.is_file():
        raise CheckpointError(path, "no such file")
    return p


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """OpenAI's ``ViT-B-16.pt`` files are TorchScript archives (a zip with ``constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """Load a ``torch.save`` file without running code from it (see the module docstring).

    ``mmap`` maps the tensors of a plain-data zip archive instead of reading them (cheap inspection).
    OmegaConf objects come back as :class:`Record` (see :func:`to_plain`). Raises
    :class:`CheckpointError` for a missing, remote, corrupt, truncated or unsafe file.
    """
    p = _checked_path(path)
    with open(p, "rb") as fh:
        head = fh.read(4)
    if not zipfile.is_zipfile(p):
        if head == b"PK\x03\x04":
            raise CheckpointError(path, "corrupt or truncated zip archive (no central directory)")
        try:  # legacy raw-pickle format: torch's restricted unpickler reads it, or refuses it
            return torch.load(p, map_location=map_location, weights_only=True)
        except Exception as err:  # noqa: BLE001 - every failure is reported with the file name
            raise CheckpointError(
                path, f"not a torch zip archive, nor a legacy torch file of plain data ({_first_line(err)})"
            ) from err
    if is_torchscript_archive(p):
        raise CheckpointError(path, "is a TorchScript archive; read its weights with torchscript_state_dict()")
    try:
        return torch.load(p, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        pass  # e.g. OmegaConf objects: read again with the restricted unpickler below
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(path, f"corrupt or truncated file ({_first_line(err)})") from err
    obj = _read_archive_or_fail(p, path, "file")
    if str(map_location) == "cpu":
        return obj
    try:
        return _to_device(obj, map_location)
    except NestingError as err:
        raise CheckpointError(path, f"its content {err}") from None


def _read_archive_or_fail(p: Path, path: str | os.PathLike, what: str) -> Any:
    """:func:`_read_archive`, every failure a :class:`CheckpointError` naming the file."""
    try:
        return _read_archive(p)
    except UnsafeGlobalError as err:
        raise CheckpointError(path, str(err)) from err
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(path, f"corrupt or truncated {what} ({_first_line(err)})") from err


def torchscript_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript archive's modules, as ``torch.jit.load(path).state_dict()`` names
    them, read as data: the archive's code is never compiled or run."""
    p = _checked_path(path)
    root = _read_archive_or_fail(p, path, "TorchScript archive")
    if not isinstance(root, Record) or not isinstance(root.state, dict):
        raise CheckpointError(path, "the TorchScript archive does not hold a module")
    state: dict[str, torch.Tensor] = {}

    def walk(module: Record, prefix: str) -> None:
        attrs = module.state if isinstance(module.state, dict) else {}
        for name, value in attrs.items():
            if isinstance(value, torch.Tensor):
                state[prefix + name] = value.detach() if value.requires_grad else value
        for name, value in attrs.items():
            if isinstance(value, Record) and value.qualname.startswith("__torch__."):
                walk(value, f"{prefix}{name}.")

    walk(root, "")
    return state


def _first_line(err: BaseException) -> str:
    """What is wrong, in one line (not torch's advice to allowlist a global or to drop weights_only)."""
    text = str(err)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused:
        return f"refused to rebuild {refused[1]} (only tensors and plain data are read)"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Weights only load failed")]
    return f"{type(err).__name__}: {(lines or [''])[0]}"


def to_plain(obj: Any, max_depth: int = MAX_DEPTH, max_containers: int = 100_000) -> Any:
    """Dicts, lists and scalars from what :func:`safe_load` returned for an OmegaConf object.

    A ``DictConfig``/``ListConfig`` pickles its nodes in ``state["_content"]`` (a dict or a list of
    nodes); a value node keeps its value in ``state["_val"]``. Other records are returned unchanged.
    A structure that contains itself, is nested deeper than ``max_depth`` or holds more than
    ``max_containers`` containers (a shared one counts each time it appears) raises :class:`NestingError`.
    """
    active: set[int] = set()
    left = [max_containers]

    def plain(node: Any, depth: int) -> Any:
        record = isinstance(node, Record) and isinstance(node.state, dict)
        if not record and not isinstance(node, (dict, list, tuple)):
            return node
        if id(node) in active:
            raise NestingError("contains itself (a recursive structure)")
        if depth > max_depth:
            raise NestingError(f"is nested deeper than {max_depth} levels")
        left[0] -= 1
        if left[0] < 0:
            raise NestingError(f"holds more than {max_containers} containers")
        active.add(id(node))
        try:
            if record:
                for field in ("_content", "_val"):
                    if field in node.state:
                        return plain(node.state[field], depth + 1)
                return node
            if isinstance(node, dict):
                out = {}
                for k, v in node.items():
                    key = plain(k, depth + 1)
                    if isinstance(key, (dict, list)):
                        raise NestingError(f"has a key that is a {type(key).__name__}")
                    out[key] = plain(v, depth + 1)
                return out
            return [plain(v, depth + 1) for v in node]
        finally:
            active.discard(id(node))

    return plain(obj, 0)
