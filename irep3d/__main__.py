"""`python -m irep3d`: the same app as the `irep3d` command."""

from .cli import main

main()
