"""How jobs are run: `local` (subprocesses on this machine); `run` plugs them into doit."""
