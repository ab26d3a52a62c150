"""``python -m runners.cli``: the ``sobolev-sweep`` command."""

from runners.cli.commands import main

main()
