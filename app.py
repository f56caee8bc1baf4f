"""labcore's app: ``python app.py`` (or ``make app``) opens it on http://127.0.0.1:7860, offline, on the tiny model.

Options: ``python app.py --help`` (``--model``, ``--adapter``, ``--data``, ``--host``, ``--port``, ``--share``, ...).
The app lives in ``labcore/app/``; this file only starts it.
"""
from labcore.app.ui import main

if __name__ == "__main__":
    main()
