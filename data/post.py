"""The demo's post-processing: one simulation's output reduced to what the summary compares.

Reads `X.out` (`key = value` lines) and writes `X.sum`: the response (peak angle per unit of
drive) and the regime it suggests.
Usage: python data/post.py data/point-07.out data/point-07.sum
"""

import math
import sys


def read_values(path):
    with open(path) as stream:
        return dict((part.strip() for part in line.split("=", 1)) for line in stream if "=" in line)


def main(source, target):
    values = read_values(source)
    drive, peak = float(values["drive"]), float(values["peak"])
    response = peak / drive if drive else 0.0
    regime = "goes over the top" if peak > math.pi else "swings"
    with open(target, "w") as stream:
        for key in ("damping", "drive", "frequency"):
            stream.write(f"{key} = {values[key]}\n")
        stream.write(f"peak = {values['peak']}\nresponse = {response:.6f}\nregime = {regime}\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
