"""pos_arg: the words after the task's name (after `--`) are its own."""


def task_test():
    """Records the arguments it was given."""
    def record(args):
        with open("ran.log", "a") as log:
            log.write("test " + " ".join(args or ["(none)"]) + "\n")
    return {"actions": [record], "pos_arg": "args", "verbosity": 2}
