"""`python -m logtaild` runs the command-line interface."""
from logtaild.cli import main

main()
