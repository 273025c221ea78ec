"""``python -m tinyxception``: see tinyxception/cli.py."""
from .cli import main

raise SystemExit(main())
