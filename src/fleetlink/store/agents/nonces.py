"""The adapter of the nonce port: one conditional put per signed request."""

from __future__ import annotations

import secrets

from pynamodb.exceptions import PutError

from fleetlink.core.agents.ports import NonceScope
from fleetlink.store import keys
from fleetlink.store.agents.items import NonceItem
from fleetlink.store.conditions import condition_failed
from fleetlink.store.errors import translates_store_errors


@translates_store_errors
class DynamoNonceStore:
    def remember(self, scope: NonceScope, key_id: str, nonce: str, *, now_ms: int, lifetime_s: int) -> bool:
        """Conditional put: a nonce item whose TTL passed (but is not yet deleted) counts as unseen, and
        so does the item this very call wrote in an attempt whose answer timed out (its ``claim``)."""
        now_s = now_ms // 1000
        pk = (
            keys.nonce_pk(key_id, nonce)
            if scope is NonceScope.AGENT
            else keys.registration_nonce_pk(key_id, nonce)
        )
        claim = secrets.token_urlsafe(12)
        item = NonceItem(pk, keys.SINGLETON_SK, ttl=now_s + lifetime_s, claim=claim)
        unseen = NonceItem.pk.does_not_exist() | (NonceItem.ttl < now_s) | (NonceItem.claim == claim)
        try:
            item.save(condition=unseen)
        except PutError as error:
            if condition_failed(error):
                return False
            raise
        return True
