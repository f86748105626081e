"""Run irep3d from a checkout: `python cli.py --help` (same app as the `irep3d` command)."""

from irep3d.cli import main

if __name__ == "__main__":
    main()
