"""incrun: run a command for every input file, incrementally and in parallel, on doit."""

__version__ = "0.1.0"
__all__ = ["Rule", "__version__"]


def __getattr__(name: str):
    """`Rule` is imported when first used: a worker process, which imports the package, needs
    none of it."""
    if name == "Rule":
        from .dodo_api import Rule

        return Rule
    raise AttributeError(f"module 'incrun' has no attribute {name!r}")
