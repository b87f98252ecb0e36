"""Input files are read only when they are regular files, and only as big as
their headers say.

``open()`` on a FIFO waits for a writer, forever (holding the workdir lock);
a device such as ``/dev/zero`` reads without end; a directory fails with a
traceback. Every file the package reads is first passed to
:func:`require_regular_file` (or :func:`not_regular`), which refuses a path
that exists but is not a regular file, with one line naming it.

:func:`array_headers` reads the shapes and dtypes of a .npy or .npz file's
arrays from their headers alone, so that a loader can check them (and the
memory they need, ``sge_jax.data.memory``) before any array is read.
"""

from __future__ import annotations

import os
import pathlib
import stat
import zipfile
from typing import Optional

import numpy as np
from numpy.lib import format as npy_format

from sge_jax.errors import DataError

_KINDS = ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a FIFO (named pipe)'),
          (stat.S_ISSOCK, 'a socket'), (stat.S_ISCHR, 'a character device'),
          (stat.S_ISBLK, 'a block device'))


def not_regular(path: str | os.PathLike) -> Optional[str]:
  """What ``path`` is ('a FIFO (named pipe)', 'a directory', ...) when it
  exists but is not a regular file (symbolic links are followed); None when
  it is a regular file or does not exist (the caller reports a missing file)."""
  try:
    mode = os.stat(path).st_mode
  except OSError:  # missing or unreadable: open() reports it
    return None
  if stat.S_ISREG(mode):
    return None
  return next((kind for test, kind in _KINDS if test(mode)),
              'not a regular file')


def require_regular_file(path: str | os.PathLike, what: str,
                         way_out: str = 'Replace it with one.') -> pathlib.Path:
  """``path`` as a Path; DataError when it exists but is not a regular file.

  Args:
    path: the file about to be read.
    what: what it should be, for the message ("ids file", "config file").
    way_out: what to do (a sentence), for the message.
  """
  kind = not_regular(path)
  if kind:
    raise DataError(f'{path} is {kind}, not a regular file: the {what} must '
                    f'be a regular file. {way_out}')
  return pathlib.Path(path)


def array_headers(path: str | os.PathLike) -> dict[str, tuple[tuple, np.dtype]]:
  """Name -> (shape, dtype) of every array in a .npy ('' is its name) or .npz
  file, read from the headers only (nothing else is read or unpickled).

  Raises:
    DataError: ``path`` is not a regular file.
    OSError, ValueError, zipfile.BadZipFile: the file or a header is damaged,
      or a header promises more data than its file holds (cut short); the
      caller names the file and the way out.
  """
  path = require_regular_file(path, '.npy/.npz file')
  with open(path, 'rb') as file:
    if file.read(len(npy_format.MAGIC_PREFIX)) == npy_format.MAGIC_PREFIX:
      file.seek(0)
      header = read_header(file)
      _require_data(header, path.stat().st_size - file.tell(), path.name)
      return {'': header}
  with zipfile.ZipFile(path) as archive:
    headers = {}
    for info in archive.infolist():
      if info.filename.endswith('.npy'):
        with archive.open(info) as member:
          header = read_header(member)
          _require_data(header, info.file_size - member.tell(), info.filename)
          headers[info.filename[:-len('.npy')]] = header
    return headers


def _require_data(header: tuple[tuple, np.dtype], stored: int,
                  name: str) -> None:
  """ValueError when the header promises more bytes than are stored (pickled
  object arrays have no fixed size and are not checked)."""
  promised = array_bytes({name: header})
  if not header[1].hasobject and promised > stored:
    raise ValueError(f'{name}: the header promises {promised} bytes of data, '
                     f'the file holds {stored} (cut short?)')


def read_header(file) -> tuple[tuple, np.dtype]:
  """(shape, dtype) from the .npy header at the start of ``file``; the file
  is left at the start of the array data. ValueError for a bad header."""
  version = npy_format.read_magic(file)
  read = {(1, 0): npy_format.read_array_header_1_0,
          (2, 0): npy_format.read_array_header_2_0}.get(version)
  if read is None:
    raise ValueError(f'.npy format version {version} is not supported')
  shape, _, dtype = read(file)
  return tuple(shape), dtype


def array_bytes(headers: dict[str, tuple[tuple, np.dtype]]) -> int:
  """Bytes the arrays of ``array_headers`` take once read."""
  return sum(int(np.prod(shape, dtype=object)) * dtype.itemsize
             for shape, dtype in headers.values())
