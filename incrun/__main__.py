"""`python -m incrun`."""

from .cli import run

run()
