"""`python -m reft` is the same as the `reft` console script."""

from reft.cli import main

raise SystemExit(main())
