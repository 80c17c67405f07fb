"""``python -m reflow``: the command line."""

from reflow.cli.main import entry_point

if __name__ == "__main__":
    entry_point()
