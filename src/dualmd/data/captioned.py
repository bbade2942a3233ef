"""A captioned dataset (a Parquet file or a `datasets.save_to_disk` folder) turned into the image folder that
`dualmd.data.datasets` reads: one image file per row and a `metadata.jsonl` of their captions.

The rows are read with pyarrow (the optional extra ``data``), not with the `datasets` library. The image column
holds encoded image bytes, or a struct with a ``bytes`` field (the `datasets` ``Image`` feature, as the Pokemon
BLIP captions are distributed); the text column one caption per row. Row i becomes ``<i>.png`` (or ``.jpg``:
PNG and JPEG bytes are kept as they are, any other format is re-encoded as PNG), its number zero-padded so that
the folder's sorted order, the order `load_dataset` reads, is the row order. Its `metadata.jsonl` line is
``{"file_name": "0000.png", "text": <caption>}``, or with alternative captions ``"text": [<caption>, <alt 1>,
...]`` (the original first: a `_pd` target draws among them, any other trains on the first).

The folder is written under a temporary sibling name and renamed at the end, so a bad row leaves no folder.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from dualmd.data.datasets import CAPTIONS_FILE, DatasetError, DatasetNotFoundError

if TYPE_CHECKING:
    import pyarrow as pa

#: The Arrow stream files of a `datasets.save_to_disk` folder (its state.json lists them in order).
ARROW_FILES = "data-*.arrow"
#: Image formats whose bytes are written unchanged, with their file suffix.
KEPT_FORMATS = {"PNG": ".png", "JPEG": ".jpg"}
MIN_NAME_DIGITS = 4  # 0000.png ... as the image folders of docs/text-to-image.md


@dataclass(frozen=True)
class CaptionedRow:
    """One row of a captioned dataset.

    Attributes:
        index: the row number (0-based, over every file of the dataset in order).
        image: the encoded image file, checked to decode.
        text: the row's caption.
        alternatives: further captions (from a column), possibly none.
    """

    index: int
    image: bytes
    text: str
    alternatives: tuple[str, ...] = ()

    def decode(self) -> Image.Image:
        """The image, decoded (errors name the row)."""
        return _decode(self.image, self.index)


def read_table(source: str | Path, columns: Sequence[str]) -> pa.Table:
    """The `columns` of a Parquet file or of a `datasets.save_to_disk` folder (its ``data-*.arrow`` files).

    Raises:
        DatasetNotFoundError: `source` does not exist, or a folder holds no Arrow files.
        DatasetError: a column is missing (the message lists those there are), or the data is unreadable.
    """
    source = Path(source)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:  # an optional dependency: say how to get it
        raise DatasetError("reading Parquet/Arrow needs pyarrow: pip install 'dualmd[data]'") from err
    if not source.exists():
        raise DatasetNotFoundError(f"captioned dataset {source} does not exist")
    wanted = list(dict.fromkeys(columns))
    files = _arrow_files(source) if source.is_dir() else []
    try:
        if files:
            tables = [_read_stream(pa, path) for path in files]
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            names = table.column_names
        else:  # a Parquet file: only the columns asked for are read
            names = pq.read_schema(source).names
            table = None
    except (OSError, pa.ArrowException) as err:
        raise DatasetError(f"cannot read {source} as Parquet or an Arrow dataset folder: {err}") from err
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DatasetError(f"{source}: no column {', '.join(map(repr, missing))}; it has {names}")
    if table is None:
        try:
            table = pq.read_table(source, columns=wanted)
        except (OSError, pa.ArrowException) as err:
            raise DatasetError(f"cannot read {source} as Parquet: {err}") from err
    return table.select(wanted)


def _arrow_files(folder: Path) -> list[Path]:
    """The Arrow files of a save_to_disk folder, in the order its state.json lists them (else sorted)."""
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise DatasetError(
            f"{folder} holds several splits {splits}: name one split's folder, e.g. {folder}/train"
        )
    state = folder / "state.json"
    if state.is_file():
        files = [folder / f["filename"] for f in json.loads(state.read_text()).get("_data_files", [])]
    else:
        files = sorted(folder.glob(ARROW_FILES))
    if not files:
        raise DatasetNotFoundError(f"{folder} holds no {ARROW_FILES} files (a datasets.save_to_disk folder)")
    return files


def _read_stream(pa: Any, path: Path) -> pa.Table:
    """One Arrow file as `save_to_disk` writes it: the IPC stream format (the file format also accepted)."""
    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_file(source).read_all()


def captioned_rows(
    table: pa.Table, *, image_column: str, text_column: str, captions_column: str | None = None
) -> Iterator[CaptionedRow]:
    """The rows of `table`, checked one by one (a batch of rows at a time in memory).

    Raises:
        DatasetError: a row without image bytes, without text, or whose alternative captions are not a list of
            non-empty strings (the message names the row and the column).
    """
    index = 0
    for batch in table.to_batches():
        for record in batch.to_pylist():
            alternatives = ()
            if captions_column is not None:
                alternatives = _alternatives(record[captions_column], index, captions_column)
            yield CaptionedRow(
                index=index,
                image=_image_bytes(record[image_column], index, image_column),
                text=_text(record[text_column], index, text_column),
                alternatives=alternatives,
            )
            index += 1


def _image_bytes(value: Any, index: int, column: str) -> bytes:
    if isinstance(value, dict):  # the `datasets` Image feature: {"bytes": ..., "path": ...}
        value = value.get("bytes")
    if not isinstance(value, bytes) or not value:
        raise DatasetError(
            f"row {index}: column {column!r} holds no image bytes (got {type(value).__name__})"
        )
    return value


def _text(value: Any, index: int, column: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"row {index}: no text in column {column!r} (got {value!r})")
    return value


def _alternatives(value: Any, index: int, column: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
        raise DatasetError(
            f"row {index}: column {column!r} must hold a list of non-empty captions, got {value!r}"
        )
    return tuple(value)


def _decode(data: bytes, index: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decode now: a truncated file fails here, with its row
            copy = img.copy()
            copy.format = img.format  # copy() drops it; `image_file` keeps PNG and JPEG bytes as they are
            return copy
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DatasetError(f"row {index}: cannot decode its image: {err}") from err


def image_file(row: CaptionedRow, image: Image.Image) -> tuple[str, bytes]:
    """The suffix and bytes of the file of `row`: its own bytes if PNG or JPEG, else `image` as PNG."""
    if image.format in KEPT_FORMATS:
        return KEPT_FORMATS[image.format], row.image
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):  # what PNG can hold
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return ".png", buffer.getvalue()


def write_image_folder(
    rows: Iterator[CaptionedRow],
    out: str | Path,
    *,
    num_rows: int,
    captioner: Callable[[int, Image.Image], Sequence[str]] | None = None,
) -> int:
    """Write each row's image and a `metadata.jsonl` of their captions to the new folder `out`.

    Args:
        rows: the dataset's rows, in order.
        num_rows: how many there are (the width of the zero-padded file names).
        captioner: (row index, RGB image) -> generated alternative captions, appended after a row's own.
    Returns:
        the number of images written.
    Raises:
        DatasetError: `out` exists, or a row is bad; nothing is left at `out` then.
    """
    out = Path(out)
    if out.exists():
        raise DatasetError(f"output folder {out} already exists: remove it or choose another")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    digits = max(MIN_NAME_DIGITS, len(str(max(num_rows - 1, 0))))
    count = 0
    try:
        with open(tmp / CAPTIONS_FILE, "w", encoding="utf-8") as metadata:
            for row in rows:
                image = row.decode()
                suffix, data = image_file(row, image)
                name = f"{row.index:0{digits}d}{suffix}"
                (tmp / name).write_bytes(data)
                texts = [row.text, *row.alternatives]
                if captioner is not None:
                    texts += captioner(row.index, image.convert("RGB"))
                text: str | list[str] = texts[0] if len(texts) == 1 else texts
                metadata.write(json.dumps({"file_name": name, "text": text}, ensure_ascii=False) + "\n")
                count += 1
        if count == 0:
            raise DatasetError("the dataset has no rows")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count
