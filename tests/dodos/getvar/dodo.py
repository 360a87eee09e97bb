"""get_var at import time, and NAME=value on the command line."""
from doit import get_var

EUD = get_var("EUD", "False").lower()


def task_show():
    """Writes the variable."""
    return {"actions": [f"echo EUD={EUD} > eud.txt", f"echo show EUD={EUD} >> ran.log"],
            "file_dep": ["input.txt"], "targets": ["eud.txt"], "clean": True}
