"""Powertools wiring shared by the Lambda handlers: resolvers, auth, problems, dependencies."""
