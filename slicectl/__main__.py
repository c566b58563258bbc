"""``python -m slicectl``: the same as the ``slicectl`` console script."""

from .cli import run

if __name__ == "__main__":
    run()
