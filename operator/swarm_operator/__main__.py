"""``python -m swarm_operator`` is the same as the ``swarm-operator`` command."""

from swarm_operator.cli import main

raise SystemExit(main())
