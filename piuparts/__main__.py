"""``python -m piuparts``."""

from piuparts.cli import main

raise SystemExit(main())
