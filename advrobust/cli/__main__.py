"""``python -m advrobust.cli``: the ``advrobust`` command without the console script."""
from advrobust.cli import main

main()
