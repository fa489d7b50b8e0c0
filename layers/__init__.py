"""How the Lambda layers are built (``layers/build.py``); the output goes to ``layers/build/`` (ignored)."""
