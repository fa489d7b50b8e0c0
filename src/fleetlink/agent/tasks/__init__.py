"""The tasks capability on the agent: the tasks service (runner) and its local store."""
