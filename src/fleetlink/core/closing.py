"""What a ``with`` block closes: a client, a store, an app built from both."""

from __future__ import annotations

from typing import Self


class Closing:
    """Closed when a ``with`` block ends; :meth:`close` releases what it holds."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
