"""The stacks: stateful data (the table) and stateless api (the functions)."""

from infra.stacks.api_stack import ApiStack, shared_layer_source
from infra.stacks.data_stack import DataStack

__all__ = ["ApiStack", "DataStack", "shared_layer_source"]
