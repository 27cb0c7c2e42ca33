"""``python -m databazaar``: the same entry point as the ``databazaar`` command."""

from databazaar.cli import main

if __name__ == "__main__":
    main()
