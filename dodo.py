"""The demo's pipeline: one simulation per data/*.inp, a post-processing step for each, then
one summary over all of them.

`incrun -n 4` runs them; so does plain `doit -n 4`: this is doit's own task file.
"""

from incrun import Rule

simulate = Rule(
    name="simulate",
    inputs=["data/*.inp"],
    command=["{python}", "data/runner.py", "{input}"],
    outputs=["{stem}.out"],
)
post = Rule(
    name="post",
    inputs=simulate,  # every output of `simulate`, made yet or not
    command=["{python}", "data/post.py", "{input}", "{output}"],
    outputs=["{stem}.sum"],
)
summary = Rule(
    name="summary",
    inputs=post,
    gather=True,  # one job over all the inputs
    command=["{python}", "data/summarize.py", "{output}", "{inputs}"],
    outputs=["data/summary.csv"],
)


def task_simulate():
    """Simulate a driven, damped pendulum for each parameter file in data/."""
    yield from simulate.tasks()


def task_post():
    """Reduce each simulation's output to its response and regime."""
    yield from post.tasks()


def task_summary():
    """Gather every data/*.sum into data/summary.csv."""
    yield from summary.tasks()
