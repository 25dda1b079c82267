"""`python -m dlopt` runs the CLI."""

from dlopt.cli import main

if __name__ == "__main__":
    main()
