"""Tasks that rely on the order they are written in, without saying so."""


def task_folder():
    """Makes the folder, slowly."""
    return {"actions": ["sleep 0.5", "mkdir -p figures", "touch figures/.made",
                        "echo folder >> ran.log"],
            "file_dep": ["data.txt"], "targets": ["figures/.made"], "clean": True,
            "uptodate": [False]}


def task_figures():
    """Writes into the folder the task before makes."""
    return {"actions": ["cp data.txt figures/a.txt", "echo figures >> ran.log"],
            "file_dep": ["data.txt"], "targets": ["figures/a.txt"], "clean": True}
