"""Entry point of every container: `python -m sampan.runtime` (see container.py)."""

from .container import main

if __name__ == "__main__":
    main()
