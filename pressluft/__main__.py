"""`python -m pressluft` runs the CLI."""

from pressluft.cli import main

main()
