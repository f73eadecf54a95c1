"""``python -m modelops`` runs the ``mops`` command line."""

from modelops.cli import main

main()
