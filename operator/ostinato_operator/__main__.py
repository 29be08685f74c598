"""`python -m ostinato_operator`: the same as the `ostinato-operator` command."""

from ._cli import main

raise SystemExit(main())
