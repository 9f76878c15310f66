"""A restricted unpickler for official YOLOv5/YOLOv7 `.pt` files: plain data in, nothing that can run code.

Official checkpoints are pickles of whole objects, so their globals go beyond what `torch.load(weights_only=True)`
accepts. The rules follow torch's own weights-only unpickler (torch/_weights_only_unpickler.py): start from its
allow-list (tensor rebuilding, storages of every dtype, dtypes, `torch.Size`, `torch.device`, `OrderedDict`,
`set`, `_codecs.encode`), add the numpy array/scalar/dtype constructors torch documents for `add_safe_globals`
(under both `numpy.core` and numpy 2's `numpy._core`) and the few Python globals that training scripts pickle
(`defaultdict`, `argparse.Namespace`, `pathlib` paths, the `copyreg` helpers of protocol 0/1 pickles). Classes
of the official code, `torch.nn` and `torch.optim` become inert stand-ins (`Inert`) that only hold attributes.
Every other global is refused by name before it is imported, and modules that reach the system are refused
even if a later rule would match them.
"""
from __future__ import annotations

import _compat_pickle
import collections
import copyreg
import datetime
import functools
import pathlib
import pickle
import types

import torch

from ..core.errors import CheckpointError

# Never allowed, whatever the rules below say (torch blocks sys/os/posix/nt the same way).
_BLOCKED_MODULES = ("sys", "os", "posix", "nt", "subprocess", "runpy", "importlib", "pickle", "_pickle", "marshal",
                    "ctypes", "shutil", "socket", "pty", "code", "codeop", "webbrowser", "multiprocessing",
                    "operator", "_operator", "functools", "types", "inspect", "pdb", "io", "_io", "tempfile")
# Classes of these modules become stand-ins: the official model code, torch.nn layers, torch.optim optimizers.
_STANDIN_PREFIXES = ("models.", "torch.nn.modules.", "torch.optim.")
_STANDIN_NAMES = ("argparse.Namespace",)


class Inert:
    """Holds a pickled object's attributes; has no behaviour, so unpickling it runs nothing."""
    official_name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


_standins: dict[str, type] = {}


def standin(full_name: str) -> type:
    if full_name not in _standins:
        _standins[full_name] = type(full_name.rsplit(".", 1)[-1], (Inert,), {"official_name": full_name})
    return _standins[full_name]


# Plain Python types: what `defaultdict` factories and protocol 0/1 object pickles name.
_PLAIN_TYPES = (dict, list, tuple, set, frozenset, int, float, complex, bool, str, slice, object,
                collections.OrderedDict)


def _allowed_class(cls) -> bool:
    return isinstance(cls, type) and (issubclass(cls, Inert) or cls in _PLAIN_TYPES or cls in _GLOBALS.values())


def _checked(cls, what: str):
    if not _allowed_class(cls):
        raise CheckpointError(f"refused to load: {what} is asked to build {cls!r}, which is not plain data")
    return cls


def _defaultdict(factory=None, *args):
    """`collections.defaultdict`, whose factory (called on a missing key) must be a plain type."""
    if factory is not None and factory not in _PLAIN_TYPES:
        raise CheckpointError(f"refused to load: a defaultdict names the factory {factory!r}, which is not a "
                              "plain type")
    return collections.defaultdict(factory, *args)


def _reconstructor(cls, base, state):
    """`copyreg._reconstructor` (protocol 0/1 pickles of objects) for stand-ins and plain types only."""
    if base is not object:
        _checked(base, "copyreg._reconstructor")
    return copyreg._reconstructor(_checked(cls, "copyreg._reconstructor"), base, state)


def _newobj(cls, *args):
    return _checked(cls, "copyreg.__newobj__").__new__(cls, *args)


def _newobj_ex(cls, args, kwargs):
    return _checked(cls, "copyreg.__newobj_ex__").__new__(cls, *args, **kwargs)


def _torch_globals() -> dict:
    """torch's weights-only allow-list (full name -> object), or the same core by hand on a torch without it."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals
        return dict(_get_allowed_globals())
    except (ImportError, AttributeError):  # private API: keep working on a torch that moved it
        out = {"collections.OrderedDict": collections.OrderedDict, "torch.Size": torch.Size,
               "torch.device": torch.device, "torch.nn.parameter.Parameter": torch.nn.Parameter}
        out.update({f"torch._utils.{n}": getattr(torch._utils, n)
                    for n in dir(torch._utils) if n.startswith("_rebuild")})
        out.update({str(t): t for t in vars(torch).values() if isinstance(t, torch.dtype)})
        return out


def _numpy_globals() -> dict:
    """numpy arrays, scalars and dtypes as numpy 1 (`numpy.core`) and numpy 2 (`numpy._core`) pickle them."""
    import numpy as np
    try:  # numpy 2 warns on any numpy.core access
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric

    def reconstruct(subtype, shape, dtype):
        if subtype is not np.ndarray:
            raise CheckpointError(f"refused to load: numpy _reconstruct is asked to build {subtype!r}")
        return multiarray._reconstruct(subtype, shape, dtype)

    out = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}
    for mod in ("numpy.core", "numpy._core"):
        out[f"{mod}.multiarray._reconstruct"] = reconstruct
        out[f"{mod}.multiarray.scalar"] = multiarray.scalar
        out[f"{mod}.numeric._frombuffer"] = numeric._frombuffer  # protocol 5 arrays
    for name in dir(getattr(np, "dtypes", None)):
        if name.endswith("DType"):
            out[f"numpy.dtypes.{name}"] = getattr(np.dtypes, name)
    for name, value in vars(np).items():  # scalar types (numpy.float64, numpy.int64, ...)
        if isinstance(value, type) and issubclass(value, np.generic) and not name.startswith("_"):
            out[f"numpy.{name}"] = value
    return out


def _python_globals() -> dict:
    out = {f"builtins.{t.__name__}": t for t in _PLAIN_TYPES if t.__module__ == "builtins"}
    out.update({"collections.OrderedDict": collections.OrderedDict, "collections.Counter": collections.Counter,
                "collections.defaultdict": _defaultdict,
                "copyreg._reconstructor": _reconstructor, "copyreg.__newobj__": _newobj,
                "copyreg.__newobj_ex__": _newobj_ex})
    for mod in ("pathlib", "pathlib._local"):  # paths become pure paths: no method of theirs touches the disk
        for name, pure in (("Path", pathlib.PurePath), ("PosixPath", pathlib.PurePosixPath),
                           ("WindowsPath", pathlib.PureWindowsPath), ("PurePath", pathlib.PurePath),
                           ("PurePosixPath", pathlib.PurePosixPath), ("PureWindowsPath", pathlib.PureWindowsPath)):
            out[f"{mod}.{name}"] = pure
    for name in ("datetime", "date", "time", "timedelta", "timezone"):
        out[f"datetime.{name}"] = getattr(datetime, name)
    return out


_GLOBALS: dict = {}


@functools.lru_cache(maxsize=None)
def _load_rules() -> None:
    """Fill _GLOBALS once, on first use (numpy is imported only then)."""
    _GLOBALS.update(_torch_globals())
    _GLOBALS.update(_numpy_globals())
    _GLOBALS.update(_python_globals())


def allowed_global(module: str, name: str):
    """The object a pickle's global `module.name` stands for, or CheckpointError (nothing is imported)."""
    _load_rules()
    # Python 2 era names (protocol 0-2 pickles), mapped as pickle's fix_imports would
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    full = f"{module}.{name}"
    if module.split(".")[0] not in _BLOCKED_MODULES:
        if name.endswith("Storage") and name[:1].isupper() and module in ("torch", "torch.cuda"):
            try:
                return torch.serialization.StorageType(name)  # inert: it only names a dtype
            except (KeyError, AttributeError):
                pass
        if full in _GLOBALS:
            return _GLOBALS[full]
        if name[:1].isupper() and (full in _STANDIN_NAMES or module.startswith(_STANDIN_PREFIXES)):
            return standin(full)
    raise CheckpointError(f"refused to load: the checkpoint names the global '{full}', which is not part of a "
                          "YOLO checkpoint (it could run code); only load files you trust")


class RestrictedUnpickler(pickle.Unpickler):
    """Refuses any global outside the rules above, before it is imported or called."""

    def find_class(self, module, name):
        return allowed_global(module, name)


restricted_pickle = types.SimpleNamespace(
    Unpickler=RestrictedUnpickler, load=lambda f, **kw: RestrictedUnpickler(f, **kw).load(),
    __name__="restricted_pickle")
