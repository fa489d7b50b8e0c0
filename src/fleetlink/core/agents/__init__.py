"""Agents: registration, presence and what operators see and do with agents."""
