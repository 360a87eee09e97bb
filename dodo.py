"""The demo's tasks: one simulation per data/*.inp, then a summary of every output.

`incrun -n 4` runs them; so does plain `doit -n 4`: this is doit's own task file.
"""

from incrun import Rule

sweep = Rule(
    inputs=["data/*.inp"],
    command=["{python}", "data/runner.py", "{input}"],
    outputs=["{stem}.out"],
)


def task_sweep():
    """Simulate a driven, damped pendulum for each parameter file in data/."""
    yield from sweep.tasks()


def write_summary(outputs, target):
    """One CSV row per output file: its parameters and results."""
    rows = []
    for path in outputs:
        with open(path) as stream:
            rows.append(dict(line.strip().split(" = ") for line in stream if " = " in line))
    columns = sorted({key for row in rows for key in row})
    with open(target, "w") as stream:
        stream.write(",".join(["output", *columns]) + "\n")
        for path, row in zip(outputs, rows):
            stream.write(",".join([path, *(row.get(key, "") for key in columns)]) + "\n")


def task_summary():
    """Gather every data/*.out into data/summary.csv."""
    outputs = sweep.outputs()
    return {
        "file_dep": outputs,
        "targets": ["data/summary.csv"],
        "actions": [(write_summary, [outputs, "data/summary.csv"])],
        "clean": True,
    }
