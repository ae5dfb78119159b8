"""Column types shared by the ORM and the migrations' expectations.

Why compact arrays: every exchange stores several per-token arrays (student log-probs, divergence with
s+f and with s only). As JSON a float costs ~20 bytes and a parse; as float32 it costs 4 bytes and a
``frombytes``. Millions of exchanges make that the difference between a usable and a bloated database.
Float32 is enough precision for display and analysis; the training itself never reads these back.
Bytes are little-endian whatever the host, so a database moves between machines unchanged.

Why ``UTCDateTime``: SQLite has no time zones and returns naive datetimes, PostgreSQL returns them in
the session's zone. This type stores UTC and always hands back aware UTC datetimes on both.
"""

from __future__ import annotations

import sys
from array import array
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import JSON, BigInteger, DateTime, Integer, LargeBinary
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

#: JSON everywhere, JSONB on PostgreSQL (indexable, compact). Python ``None`` is SQL NULL (not the JSON
#: ``null``), so ``IS NULL`` means "not set" on every nullable JSON column.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

#: 64-bit ids for high-volume tables; on SQLite only ``INTEGER PRIMARY KEY`` aliases the rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")

_SWAP = sys.byteorder != "little"


class _PackedArray(TypeDecorator):
    """A list of numbers stored as packed little-endian bytes; ``None`` stays ``None``."""

    impl = LargeBinary
    cache_ok = True
    typecode = ""

    def process_bind_param(self, value: Iterable | None, dialect) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"{type(self).__name__} takes a sequence of numbers, not raw bytes")
        arr = array(self.typecode, value)
        if _SWAP:
            arr.byteswap()
        return arr.tobytes()

    def process_result_value(self, value: bytes | None, dialect) -> list | None:
        if value is None:
            return None
        arr = array(self.typecode)
        arr.frombytes(bytes(value))
        if _SWAP:
            arr.byteswap()
        return arr.tolist()


class FloatArray(_PackedArray):
    """list[float] <-> float32 bytes (values come back rounded to float32)."""

    typecode = "f"


class IntArray(_PackedArray):
    """list[int] <-> int32 bytes (token ids; exact)."""

    typecode = "i"


assert array("f").itemsize == 4 and array("i").itemsize == 4, "float32/int32 array codes expected"


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend. Naive inputs are taken to be UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
