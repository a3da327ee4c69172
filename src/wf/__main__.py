"""``python -m wf``: the ``wf`` command."""

from wf.cli.main import main

if __name__ == "__main__":
    main()
