#!/usr/bin/env python3
"""Writes examples/digits/data/digits.bin.gz from scikit-learn's copy of the
UCI optical handwritten digits (sklearn/datasets/data/digits.csv.gz).

The output is gzip of 1,797 records of 65 bytes each: the 8x8 image's 64
pixels row by row (integers 0..16), then the label (0..9); 116,805 bytes
uncompressed. The gzip header's time stamp is 0, so the file is the same
byte for byte on every run. Only the standard library is used.

    scripts/make_digits_data.py [path/to/digits.csv.gz]

Without an argument it looks for Debian's python3-sklearn copy
(apt-get install python3-sklearn; dpkg -L python3-sklearn | grep digits).
"""
import csv
import gzip
import io
import pathlib
import sys

DEFAULT = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"
OUT = pathlib.Path(__file__).resolve().parent.parent / "examples" / "digits" / "data" / "digits.bin.gz"


def main() -> int:
    source = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT)
    if not source.exists():
        sys.exit(f"make_digits_data: {source} not found (install python3-sklearn, or pass the file)")
    records = bytearray()
    count = 0
    with gzip.open(source, "rt") as f:
        for row in csv.reader(f):
            values = [int(float(v)) for v in row]
            if len(values) != 65:
                sys.exit(f"make_digits_data: {source}: row {count + 1} has {len(values)} values, not 65")
            pixels, label = values[:64], values[64]
            if not all(0 <= p <= 16 for p in pixels) or not 0 <= label <= 9:
                sys.exit(f"make_digits_data: {source}: row {count + 1} out of range")
            records += bytes(pixels + [label])
            count += 1
    if count != 1797:
        sys.exit(f"make_digits_data: {source}: {count} rows, expected 1797")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as g:
        g.write(bytes(records))
    OUT.write_bytes(buffer.getvalue())
    print(f"{OUT}: {count} images, {len(records)} bytes raw, {len(buffer.getvalue())} bytes gzipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
