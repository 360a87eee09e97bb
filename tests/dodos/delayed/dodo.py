"""create_after: tasks made once another task ran, one per file it made."""
import glob
import os

from doit import create_after


def task_make():
    """Makes parts/p0.txt ... from parts.txt."""
    def make():
        os.makedirs("parts", exist_ok=True)
        for i, line in enumerate(open("parts.txt").read().split()):
            with open(f"parts/p{i}.txt", "w") as out:
                out.write(line + "\n")
        with open("ran.log", "a") as log:
            log.write("make\n")
    return {"actions": [make], "file_dep": ["parts.txt"], "clean": True,
            "targets": ["parts/p0.txt", "parts/p1.txt", "parts/p2.txt"]}


@create_after(executed="make", target_regex=r"parts/.*\.up")
def task_upper():
    """One per part: the part in capitals."""
    for path in sorted(glob.glob("parts/*.txt")):
        up = path[:-4] + ".up"
        yield {"name": os.path.basename(path), "file_dep": [path], "targets": [up],
               "clean": True,
               "actions": [f"tr a-z A-Z < {path} > {up}", f"echo upper:{path} >> ran.log"]}
