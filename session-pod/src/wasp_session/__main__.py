"""Entry point: ``python -m wasp_session``."""

from wasp_session.cli import main

if __name__ == "__main__":
    main()
