"""A bounds-checked GGUF header reader: key/values and tensor infos, never tensor data.

gguf-py's `GGUFReader` builds a numpy view per array element, which takes 5-13 s on the
embedded model's 49k-token vocabulary; this reader walks the same layout (gguf-py
`constants.GGUFValueType`, the GGUF spec in ggml/docs/gguf.md) in well under a second and checks
every count and offset against the file size, so a lying header ends in ValueError, not a hang.

It also refuses what llama.cpp's own loader (ggml/src/gguf.cpp, gguf_init_from_file_impl)
refuses, so that a file this reader accepts never fails or aborts inside llama.cpp: duplicate
keys and tensor names, tensor names of GGML_MAX_NAME (64) bytes or more, and tensor data that is
not laid out back to back, each tensor at the previous one's end padded to the alignment. Keys
and tensor names must be UTF-8 (they are quoted in messages and reports).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 64  # GGML_MAX_NAME: a tensor name holds at most 63 bytes
_SCALARS = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}
KEEP_ARRAY = 256  # arrays longer than this are summarised by their length


@dataclass(frozen=True)
class ArrayInfo:
    """A long array value, kept as its element type and length."""

    type: GGUFValueType
    count: int


@dataclass(frozen=True)
class TensorHeader:
    name: str
    ne: tuple[int, ...]  # GGML order: ne[0] is the row size
    type: GGMLQuantizationType
    offset: int  # from the start of the data section
    nbytes: int
    file_offset: int  # absolute position of the data in the file

    @property
    def shape(self) -> tuple[int, ...]:
        """PyTorch order (ne reversed): the row size is last."""
        return tuple(reversed(self.ne))


@dataclass(frozen=True)
class GgufHeader:
    version: int
    kv: dict[str, Any]
    tensors: tuple[TensorHeader, ...]
    data_offset: int
    file_size: int

    def types(self) -> dict[str, str]:
        """Tensor name -> GGML type name, as written."""
        return {t.name: t.type.name for t in self.tensors}


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, size: int) -> None:
        self.buf, self.size, self.pos = buf, size, 0

    def take(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise ValueError(f"header runs past the end of the file at byte {self.pos}")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def count(self, what: str, min_item_bytes: int) -> int:
        n = self.take("<Q")
        if n * max(min_item_bytes, 1) > self.size - self.pos:
            raise ValueError(f"{what} count {n} does not fit in the file")
        return int(n)

    def string(self, what: str = "", max_len: int = 0) -> str:
        """A string value (invalid UTF-8 replaced); with `what`, a key or a tensor name: at
        most `max_len` bytes when given, UTF-8 or ValueError."""
        n = self.count(f"{what or 'string'} length", 1)
        if max_len and n > max_len:
            raise ValueError(f"{what} of {n:,} bytes is longer than {max_len}")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        if not what:
            return raw.decode("utf-8", errors="replace")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what} {_quote(raw.decode('utf-8', 'replace'))} is not UTF-8"
                             ) from None

    def value(self, vtype: int, key: str = "") -> Any:
        if vtype not in GGUFValueType._value2member_map_:
            raise ValueError(f"key {_quote(key)} has unknown value type {vtype}")
        t = GGUFValueType(vtype)
        if t in _SCALARS:
            return self.take(_SCALARS[t])
        if t is GGUFValueType.STRING:
            return self.string()
        if t is GGUFValueType.ARRAY:
            et_id = self.take("<I")
            if et_id not in GGUFValueType._value2member_map_:
                raise ValueError(f"array {_quote(key)} has unknown element type {et_id}")
            et = GGUFValueType(et_id)
            if et is GGUFValueType.ARRAY:
                raise ValueError(f"key {_quote(key)}: nested arrays are not supported")
            item = struct.calcsize(_SCALARS[et]) if et in _SCALARS else 8
            n = self.count(f"array {_quote(key)}", item)
            if n <= KEEP_ARRAY:
                return [self.value(et) for _ in range(n)]
            if et is GGUFValueType.STRING:
                for _ in range(n):  # skip, checking every length
                    length = self.count("string length", 1)
                    self.pos += length
            else:
                self.pos += n * item
            return ArrayInfo(et, n)
        raise ValueError(f"key {_quote(key)} has unknown value type {vtype}")


def _quote(text: str, limit: int = 64) -> str:
    """repr of a name from the file, cut to `limit` characters (a key may be megabytes)."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _tensor_bytes(ttype: GGMLQuantizationType, ne: tuple[int, ...]) -> int:
    block, size = GGML_QUANT_SIZES[ttype]
    if ne[0] % block:
        raise ValueError(f"row of {ne[0]} values does not split into {ttype.name} blocks")
    n = 1
    for d in ne:
        n *= d
    return n // block * size


def read_header(path: Path) -> GgufHeader:
    """Parse a GGUF file's header. Raises ValueError on anything malformed."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        if size < 24:
            raise ValueError(f"{size} bytes is too short for a GGUF header")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(buf, size)


def _parse(buf: mmap.mmap | bytes, size: int) -> GgufHeader:
    c = _Cursor(buf, size)
    if bytes(buf[:4]) != GGUF_MAGIC:
        raise ValueError("bad magic")
    c.pos = 4
    version = c.take("<I")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} is not supported (2 or 3)")
    n_tensors = c.count("tensor", 24)
    n_kv = c.count("key/value", 13)
    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = c.string("key")
        if key in kv:
            raise ValueError(f"duplicate key {_quote(key)}")
        vtype = c.take("<I")
        if key == "general.alignment" and vtype != GGUFValueType.UINT32:
            # gguf.cpp reads it with gguf_get_val_u32, which aborts on any other type
            raise ValueError(f"general.alignment has value type {vtype}, not UINT32 (4)")
        kv[key] = c.value(vtype, key)
    infos = []
    names: set[str] = set()
    for _ in range(n_tensors):
        name = c.string("tensor name", MAX_NAME - 1)
        if name in names:
            raise ValueError(f"duplicate tensor name {name!r}")
        names.add(name)
        n_dims = c.take("<I")
        if not 1 <= n_dims <= MAX_DIMS:
            raise ValueError(f"tensor {name!r} has {n_dims} dimensions")
        ne = tuple(int(c.take("<Q")) for _ in range(n_dims))
        if any(d <= 0 for d in ne):
            raise ValueError(f"tensor {name!r} has shape {ne}")
        type_id = c.take("<I")
        if type_id not in GGMLQuantizationType._value2member_map_:
            raise ValueError(f"tensor {name!r} has unknown GGMLQuantizationType {type_id}")
        ttype = GGMLQuantizationType(type_id)
        offset = int(c.take("<Q"))
        infos.append((name, ne, ttype, offset))
    align = kv.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise ValueError(f"general.alignment {align!r} is not a power of two")
    data_offset = (c.pos + align - 1) // align * align
    tensors = []
    expected = 0  # gguf.cpp: each tensor starts where the previous one ends, padded
    for name, ne, ttype, offset in infos:
        nbytes = _tensor_bytes(ttype, ne)
        if offset % align:
            raise ValueError(f"tensor {name!r} data at offset {offset} is not aligned to "
                             f"general.alignment {align}")
        if data_offset + offset + nbytes > size:
            raise ValueError(f"tensor {name!r} runs past the end of the file")
        if offset != expected:
            how = "overlaps the tensor before it" if offset < expected else "leaves a gap"
            raise ValueError(f"tensor {name!r} data at offset {offset} {how} (expected "
                             f"{expected})")
        tensors.append(TensorHeader(name, ne, ttype, offset, nbytes, data_offset + offset))
        expected = offset + (nbytes + align - 1) // align * align
    return GgufHeader(version, kv, tuple(tensors), data_offset, size)
