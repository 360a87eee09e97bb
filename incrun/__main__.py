"""`python -m incrun`."""

from .cli import run

if __name__ == "__main__":  # not when a spawned process imports the main module again
    run()
