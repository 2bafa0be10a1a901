"""The 14 CSV files of the data set: which table each feeds, and how their bytes reach COPY.

Files go to PostgreSQL as they are (its C CSV parser is far faster than Python's) with two
exceptions, both decided here:

- Broken quotes. Some rows of the original `photos.csv` lack the closing quote on
  `thumbnail_url`, and a strict CSV parser then runs on into the following lines, swallowing real
  rows into one bogus URL (a plain COPY of the original yields 5,655,463 rows where the highest id
  is 5,655,719). URLs never contain newlines — nor does any field of the files without free text
  (all but product, reviews, questions and answers) — so in those files every line is one record:
  a line with an odd number of `"` gets its open field closed at the end of the line, on the way to
  COPY. The repaired record keeps the URL as far as the line has it, and no following row is lost.
- When COPY refuses a file for its structure (a record with too few or too many fields, an
  unterminated quote, bytes that are not UTF-8), that one file is re-read by Python's csv module,
  which separates the good records (re-written, so PostgreSQL sees exactly what Python parsed)
  from the bad ones (kept with their line number and raw text for the rejects file).
"""

from __future__ import annotations

import csv
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator

CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    file: str
    table: str
    header: tuple[str, ...]
    # Table column fed by each CSV column, in file order (the file's names where they differ).
    columns: tuple[str, ...]
    # Table columns where the bare word `null` means "no value" (CSV itself only knows empty).
    null_words: frozenset[str] = frozenset()
    # No field of this file holds free text that could span lines, so every record is exactly one
    # line and a line with an unbalanced quote can be repaired (see the module docstring).
    one_record_per_line: bool = True

    @property
    def name(self) -> str:
        return self.file.removesuffix(".csv")


def _source(file: str, table: str, header: str, *, rename: dict[str, str] | None = None,
            null_words: tuple[str, ...] = (), free_text: bool = False) -> Source:
    names = tuple(header.split(","))
    rename = rename or {}
    return Source(file, table, names, tuple(rename.get(n, n) for n in names), frozenset(null_words),
                  not free_text)


SOURCES: tuple[Source, ...] = (
    _source("product.csv", "products", "id,name,slogan,description,category,default_price", free_text=True),
    _source("features.csv", "features", "id,product_id,feature,value", null_words=("value",)),
    _source("styles.csv", "styles", "id,productId,name,sale_price,original_price,default_style",
            rename={"productId": "product_id"}, null_words=("sale_price",)),
    _source("photos.csv", "photos", "id,styleId,url,thumbnail_url", rename={"styleId": "style_id"}),
    _source("skus.csv", "skus", "id,styleId,size,quantity", rename={"styleId": "style_id"}),
    _source("related.csv", "related", "id,current_product_id,related_product_id"),
    _source("cart.csv", "cart", "id,user_session,product_id,active"),
    _source("reviews.csv", "reviews",
            "id,product_id,rating,date,summary,body,recommend,reported,reviewer_name,reviewer_email,"
            "response,helpfulness", null_words=("response",), free_text=True),
    _source("reviews_photos.csv", "reviews_photos", "id,review_id,url"),
    _source("characteristics.csv", "characteristics", "id,product_id,name"),
    _source("characteristic_reviews.csv", "characteristic_reviews", "id,characteristic_id,review_id,value"),
    _source("questions.csv", "questions",
            "id,product_id,body,date_written,asker_name,asker_email,reported,helpful", free_text=True),
    _source("answers.csv", "answers",
            "id,question_id,body,date_written,answerer_name,answerer_email,reported,helpful",
            null_words=("answerer_email",), free_text=True),
    _source("answers_photos.csv", "answers_photos", "id,answer_id,url"),
)


class SourceError(Exception):
    """A file the loader cannot use at all (missing, or not the file its name says)."""


def check_folder(data_dir: Path) -> dict[str, Path]:
    """Every file present with the expected header; raise one message naming every problem."""
    problems, paths = [], {}
    for source in SOURCES:
        path = data_dir / source.file
        if not path.is_file():
            problems.append(f"{source.file}: missing")
            continue
        with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
            first = handle.readline()
        # The older edition writes Q&A headers with a space after every comma.
        found = tuple(name.strip().lstrip("\ufeff") for name in next(csv.reader([first]), []))
        if found != source.header:
            problems.append(f"{source.file}: header is {','.join(found)!r}, expected {','.join(source.header)!r}")
        paths[source.file] = path
    if problems:
        raise SourceError(f"{data_dir} is not an Atelier data set: " + "; ".join(problems))
    return paths


def estimate_records(path: Path) -> int:
    """Records in a file, guessed from its size and its first megabyte (for progress ETAs)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    lines = head.count(b"\n") or 1
    return max(1, int(size * lines / max(1, len(head))) - 1)


def repair_line(line: bytes) -> bytes:
    """Close a field left open at the end of a line (the broken photos rows)."""
    if line.count(b'"') % 2 == 0:
        return line
    body = line.rstrip(b"\r\n")
    return body + b'"' + line[len(body):]


# Every byte but the quote and the line feed: what `bytes.translate` deletes to leave a block's skeleton.
_NOT_QUOTE_OR_NEWLINE = bytes(b for b in range(256) if b not in b'"\n')


def _repair_block(block: bytes) -> bytes:
    # Fast path in C: with all other bytes gone and quote pairs removed, a quote is left only
    # where a line has an odd number of them.
    if b'"' not in block.translate(None, _NOT_QUOTE_OR_NEWLINE).replace(b'""', b""):
        return block
    return b"\n".join(repair_line(line) for line in block.split(b"\n"))


async def file_chunks(path: Path, *, repair: bool, on_chunk: Callable[[bytes], None]) -> AsyncIterator[bytes]:
    """The file's bytes for COPY, in large chunks cut at line ends; lines repaired when asked."""
    with path.open("rb") as handle:
        carry = b""
        while True:
            block = handle.read(CHUNK_BYTES)
            if not block:
                break
            block = carry + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                carry = block
                continue
            block, carry = block[:cut], block[cut:]
            if repair:
                block = _repair_block(block)
            on_chunk(block)
            yield block
        if carry:
            if repair:
                carry = repair_line(carry)
            on_chunk(carry)
            yield carry


@dataclass
class BadRecord:
    line: int
    reason: str
    raw: str


@dataclass
class SplitFile:
    """A file re-read by Python: good records re-written to a CSV file for COPY, the bad ones aside."""

    good: Path
    first_lines: array  # physical line where good record N (0-based) starts
    bad: list[BadRecord]


class _Lines:
    """Numbered lines of a file, with room to push lines back after a broken record."""

    def __init__(self, path: Path, repair: bool):
        self._handle = path.open("rb")
        self._number = 0
        self._repair = repair
        self.back: list[tuple[int, str]] = []

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> tuple[int, str]:
        if self.back:
            return self.back.pop()
        line = self._handle.readline()
        if not line:
            self._handle.close()
            raise StopIteration
        self._number += 1
        if self._repair:
            line = repair_line(line)
        return self._number, line.decode("utf-8", errors="surrogateescape")


def _encodable(fields: list[str]) -> bool:
    try:
        for value in fields:
            value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any("\x00" in value for value in fields)


def split_records(path: Path, good: Path, expected_fields: int, *, one_record_per_line: bool) -> SplitFile:
    """Separate records PostgreSQL's COPY would refuse from the rest, keeping line numbers.

    Empty lines are not records and are skipped. A record with the wrong number of fields is
    rejected whole, with the line it starts on. When the CSV syntax itself breaks (a field runs
    past the csv module's size limit), only the first line is rejected and parsing resumes on the
    next one, so the rows a stray quote swallowed are not lost.
    """
    split = SplitFile(good, array("q"), [])
    out = good.open("w", encoding="utf-8", newline="")
    writer = csv.writer(out, lineterminator="\n")
    lines = _Lines(path, one_record_per_line)
    next(lines, None)  # header
    pending: list[tuple[int, str]] = []

    def feed() -> Iterator[str]:
        for number, text in lines:
            pending.append((number, text))
            yield text

    def reject_first(reason: str) -> None:
        number, text = pending[0]
        split.bad.append(BadRecord(number, reason, text))
        lines.back.extend(reversed(pending[1:]))
        pending.clear()

    def take(fields: list[str]) -> None:
        number, raw = pending[0][0], "".join(text for _, text in pending)
        pending.clear()
        if not raw.strip():
            return
        if len(fields) != expected_fields:
            reason = f"wrong number of fields ({len(fields)}, expected {expected_fields})"
            split.bad.append(BadRecord(number, reason, raw))
        elif not _encodable(fields):
            split.bad.append(BadRecord(number, "not valid UTF-8 text",
                                       raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")))
        else:
            writer.writerow(fields)
            split.first_lines.append(number)

    with out:
        while True:
            _parse(lines, feed, pending, take, reject_first, one_record_per_line)
            if not pending:
                break
            reject_first("unparseable CSV (unterminated quoted field)")
    return split


def _parse(lines, feed, pending, take, reject_first, one_record_per_line: bool) -> None:
    while True:
        try:
            if one_record_per_line:
                for number, text in lines:
                    pending.append((number, text))
                    take(next(csv.reader([text]), []))
            else:
                for fields in csv.reader(feed()):
                    take(fields)
            break
        except csv.Error as exc:
            if pending:
                reject_first(f"unparseable CSV ({exc})")


def read_lines(path: Path, wanted: set[int]) -> dict[int, str]:
    """The text of some (1-based) lines of a file, found by counting line breaks in large blocks."""
    targets = sorted(wanted)
    found: dict[int, str] = {}
    first, carry, i = 1, b"", 0  # `first`: number of the line `carry` starts
    with path.open("rb") as handle:
        while i < len(targets):
            block = handle.read(CHUNK_BYTES)
            if not block:
                if carry and targets[i] == first:
                    found[first] = carry.decode("utf-8", "replace").rstrip("\r")
                break
            data = carry + block
            complete = data.count(b"\n")
            if targets[i] < first + complete:
                parts = data.split(b"\n")
                while i < len(targets) and targets[i] < first + complete:
                    found[targets[i]] = parts[targets[i] - first].decode("utf-8", "replace").rstrip("\r")
                    i += 1
            carry = data[data.rfind(b"\n") + 1:] if complete else data
            first += complete
    return found


def record_text(fields: list[str | None]) -> str:
    """One staged record written back as a CSV line (NULL as an empty field, '' as "")."""
    out = []
    for value in fields:
        if value is None:
            out.append("")
        elif value == "" or any(ch in value for ch in ',"\n\r') or value != value.strip():
            out.append('"' + value.replace('"', '""') + '"')
        else:
            out.append(value)
    return ",".join(out)
