"""incrun: run a command for every input file, incrementally and in parallel, on doit."""

from .rules import Rule

__version__ = "0.1.0"
__all__ = ["Rule", "__version__"]
