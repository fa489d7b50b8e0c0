"""The stacks: stateful data (the table and its key) and stateless api (everything else)."""

from infra.stacks.api_stack import ApiStack
from infra.stacks.data_stack import DataStack

__all__ = ["ApiStack", "DataStack"]
