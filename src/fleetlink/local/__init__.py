"""unused"""

__all__ = []
