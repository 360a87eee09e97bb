"""Task params: options after a task's name, and [tool.doit.tasks.NAME] in pyproject.toml."""


def task_cleanclean():
    """Writes what its options say."""
    def write(EUD, config, name):
        with open(f"{name}.txt", "w") as out:
            out.write(f"EUD={EUD} config={config}\n")
        with open("ran.log", "a") as log:
            log.write(f"cleanclean:{name} EUD={EUD} config={config}\n")

    for name in ("cd", "ef"):
        yield {"name": name, "actions": [(write, [], {"name": name})],
               "targets": [f"{name}.txt"], "clean": True,
               "params": [{"name": "EUD", "long": "EUD", "type": str, "default": "False"},
                          {"name": "config", "short": "c", "long": "config", "type": str,
                           "default": "default.yml"}]}
