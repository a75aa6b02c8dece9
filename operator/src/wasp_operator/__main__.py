"""Entry point: ``python -m wasp_operator``."""

from wasp_operator.cli import main

if __name__ == "__main__":
    main()
