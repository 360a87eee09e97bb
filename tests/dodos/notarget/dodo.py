"""A task that succeeds without making its declared target, and one after it."""


def task_promise():
    """Says it makes never.txt; does not."""
    return {"actions": ["echo promise >> ran.log"], "file_dep": ["in.txt"],
            "targets": ["never.txt"]}


def task_after():
    """Needs promise done."""
    return {"actions": ["echo after >> ran.log", "cp in.txt after.txt"],
            "file_dep": ["in.txt"], "task_dep": ["promise"], "targets": ["after.txt"],
            "clean": True}
