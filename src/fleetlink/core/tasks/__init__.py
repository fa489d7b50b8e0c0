"""Tasks: operators send work, agents claim it, report results; timers end what nobody finishes."""
