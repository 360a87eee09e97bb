"""The demo's summary: one CSV row per post-processed case, over all of them.

Usage: python data/summarize.py data/summary.csv data/point-00.sum data/point-01.sum ...
"""

import sys


def main(target, sources):
    rows = []
    for path in sources:
        with open(path) as stream:
            rows.append(dict((part.strip() for part in line.split("=", 1))
                             for line in stream if "=" in line))
    columns = sorted({key for row in rows for key in row})
    with open(target, "w") as stream:
        stream.write(",".join(["case", *columns]) + "\n")
        for path, row in zip(sources, rows):
            stream.write(",".join([path, *(row.get(key, "") for key in columns)]) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
