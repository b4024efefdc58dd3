"""A restricted unpickler for dataset files in Python's pickle format (CIFAR's python batches).

A pickle can name any importable callable, so ``pickle.load`` on a file someone sent runs their code. This reader
resolves only the globals that a pickled NumPy array needs (``numpy``'s array reconstructor, ``ndarray`` and
``dtype``, and ``_codecs.encode``, with which Python 3 pickles bytes at protocol 2); dicts, lists, tuples, strings,
bytes and numbers need no globals. Anything else is refused as :class:`UnsafePickleError` before it is called.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global that a dataset file has no reason to hold."""


class DatasetUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"refused global {module}.{name}: a dataset pickle holds only dicts, lists, strings, bytes, numbers "
                "and NumPy arrays"
            )
        return super().find_class(module, name)


def load_dataset_pickle(fh: IO[bytes], encoding: str = "latin1") -> Any:
    """``pickle.load`` restricted to the types a dataset file has (see the module docstring)."""
    return DatasetUnpickler(fh, encoding=encoding).load()
