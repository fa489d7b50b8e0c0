"""Powertools wiring shared by the Lambda handlers: resolvers, auth, problems, dependencies.

Importing it changes nothing else: the import trimming (``lean_imports``) is installed only by the
Lambda entry points (``functions/<name>/handler.py``), never by the registry, CDK synth or the CLI.
"""
