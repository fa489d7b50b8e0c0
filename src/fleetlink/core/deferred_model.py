"""The base of fleetlink's pydantic models: each builds its validator on first use, not at import.

Building a model's core schema is most of what importing a module of models costs; a Lambda
function imports many models its first request never touches (other routes' bodies and answers,
the OpenAPI-only ones), so building them at import is paid on every cold start for nothing.
"""

from pydantic import BaseModel, ConfigDict


class DeferredModel(BaseModel):
    """A pydantic model whose schema is built when first validated, serialised or described."""

    model_config = ConfigDict(defer_build=True)
