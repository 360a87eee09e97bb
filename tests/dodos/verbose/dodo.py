"""verbosity 2 (DOIT_CONFIG), a task's title, and its teardown."""
DOIT_CONFIG = {"verbosity": 2}


def greeting(task):
    return f"greeting {task.name}"


def task_hello():
    """Says hello, in its own words."""
    return {"actions": ["echo hello from the task", "echo to stderr >&2",
                        "echo hello > hello.txt", "echo hello >> ran.log"],
            "file_dep": ["name.txt"], "targets": ["hello.txt"], "title": greeting,
            "teardown": ["echo teardown says bye", "echo teardown >> ran.log"],
            "clean": True}
