"""``python -m cclgs_cli`` (and ``torchrun -m cclgs_cli``) runs the ``cclgs`` command line."""

from cclgs_cli.app import main

main()
