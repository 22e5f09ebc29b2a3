"""Command output that grows with the catalogue, written with flat memory.

A command over millions of (feature, track) pairs works page by page; what it
prints is spooled to temporary files as pages go (the disk holds it, not
memory) and printed once the command knows it has succeeded: the same one
JSON document (``--json``) or table as for a few pairs.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from typing import IO, Any

#: Rows of a table laid out together (columns align within such a block).
TABLE_BLOCK = 10_000


class SpooledList:
    """A JSON list written item by item to a temporary file."""

    def __init__(self) -> None:
        self._file: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.count = 0

    def extend(self, items: Iterable[Any]) -> None:
        for item in items:
            self._file.write(("," if self.count else "") + json.dumps(item, default=str))
            self.count += 1

    def write_to(self, out: IO[str]) -> None:
        out.write("[")
        self._file.seek(0)
        shutil.copyfileobj(self._file, out)
        out.write("]")

    def items(self) -> Iterable[Any]:
        """The items back, one at a time."""
        if not self.count:
            return
        self._file.seek(0)
        decoder, text = json.JSONDecoder(), ""
        while chunk := self._file.read(1 << 20):
            text += chunk
            position = 0
            while True:
                while position < len(text) and text[position] == ",":
                    position += 1
                try:
                    item, end = decoder.raw_decode(text, position)
                except json.JSONDecodeError:
                    break
                yield item
                position = end
            text = text[position:]

    def close(self) -> None:
        self._file.close()


class SpooledDocument:
    """A JSON object whose list fields are spooled as they grow, and its table rows beside them."""

    def __init__(self, lists: Sequence[str]):
        self.lists = {name: SpooledList() for name in lists}
        self.rows = SpooledList()

    def __getitem__(self, name: str) -> SpooledList:
        return self.lists[name]

    def emit(self, as_json: bool, fields: dict[str, Any], headers: list[str], out: IO[str] | None = None) -> None:
        """Print the document (its lists, then ``fields``) or its table, in blocks of :data:`TABLE_BLOCK` rows."""
        out = out or sys.stdout
        if as_json:
            out.write("{")
            for i, (name, spooled) in enumerate(self.lists.items()):
                out.write(("," if i else "") + json.dumps(name) + ":")
                spooled.write_to(out)
            for name, value in fields.items():
                out.write("," + json.dumps(name) + ":" + json.dumps(value, default=str))
            out.write("}\n")
            return
        from tabulate import tabulate

        if not self.rows.count:
            print("(nothing)", file=out)
            return
        block: list[Any] = []
        first = True
        for row in self.rows.items():
            block.append(row)
            if len(block) == TABLE_BLOCK:
                print(tabulate(block, headers=headers if first else ()), file=out)
                block, first = [], False
        if block:
            print(tabulate(block, headers=headers if first else ()), file=out)

    def close(self) -> None:
        for spooled in [*self.lists.values(), self.rows]:
            spooled.close()

    def __enter__(self) -> SpooledDocument:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
