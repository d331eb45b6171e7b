"""``python -m piuparts``."""

from piuparts.main import main

raise SystemExit(main())
