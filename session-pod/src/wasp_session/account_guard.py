"""The account pin from the session's side: pin the first account, refuse every other.

Owns ``contract.account_key`` for the session pod: it pins an account (the
phone digits of its JID, SET NX) when the spec names the phone number
(``WASP_PAIRING_PHONE``, at start) or at the first pairing or connection, and
checks every account that pairs or connects against the pin
(``decisions.judge_account``). An account it refuses is logged out on
WhatsApp (when the transport can tell which account it is), its local store
is deleted and never checkpointed (a restored one is deleted from Redis too:
it was just logged out), the send gate stays closed, so no OTP is ever sent
from it, and the phase becomes ``Failed`` with reason ``AccountMismatch`` and
a sentence naming both accounts (masked) and how to re-arm. The refusal is
recorded in the tenant's halt record (``pairing_record``) before it is
shown, so a restarted pod stays refused too; the reactions then wait for a
``pair`` command (which clears the record).

Never deletes the pin: re-arming for another account is a deliberate
platform action (``wasp pair --new-account``).
"""

from __future__ import annotations

import queue

import redis
import structlog

from wasp import contract
from wasp.accounts import account_of_jid, mask_account
from wasp_session import metrics
from wasp_session.auth_store import AuthStore
from wasp_session.checkpoints import CheckpointScheduler
from wasp_session.decisions import AccountVerdict, account_refusal, judge_account
from wasp_session.pairing_record import Pairing, PairingRecord
from wasp_session.phases import ACCOUNT_FIELDS, Phases
from wasp_session.status import PAIRING_FIELDS, StatusBoard
from wasp_session.transport.base import Transport, TransportError

log = structlog.stdlib.get_logger("wasp_session.account")


class AccountPin:
    """Reads and sets (never deletes) the tenant's pinned account in Redis."""

    def __init__(self, client: redis.Redis, tenant: str) -> None:
        """Use ``client`` (decoding to ``str``) for ``tenant``'s pin."""
        self._redis = client
        self._key = contract.account_key(tenant)

    def read(self) -> str | None:
        """The pinned account's digits, if any."""
        value = self._redis.get(self._key)
        return None if value is None else str(value)

    def claim(self, account: str) -> str:
        """Pin ``account`` unless an account is pinned already; return the pin in force."""
        for _ in range(3):  # the pin may be deleted between our SET NX and our GET
            if self._redis.set(self._key, account, nx=True):
                return account
            pinned = self.read()
            if pinned is not None:
                return pinned
        return account


class AccountGuard:
    """Admits the pinned account; refuses any other, leaving nothing behind."""

    def __init__(  # noqa: PLR0913 - keyword-only, each a distinct collaborator
        self,
        *,
        tenant: str,
        pin: AccountPin,
        transport: Transport,
        store: AuthStore,
        checkpoints: CheckpointScheduler,
        phases: Phases,
        status: StatusBoard,
        record: PairingRecord,
    ) -> None:
        """Guard ``tenant``'s session; a refusal is kept in ``record`` (the halt record)."""
        self._tenant = tenant
        self._pin = pin
        self._transport = transport
        self._store = store
        self._checkpoints = checkpoints
        self._phases = phases
        self._status = status
        self._record = record

    def pin_up_front(self, phone_digits: str | None) -> None:
        """Pin the number the spec names, if nothing is pinned yet."""
        if phone_digits is None:
            return
        pinned = self._pin.claim(phone_digits)
        if pinned == phone_digits:
            log.info("account_pinned", pinned=mask_account(pinned), source="pairing_phone")
        else:
            log.warning(
                "account_pin_differs_from_pairing_phone",
                pinned=mask_account(pinned),
                pairing_phone=mask_account(phone_digits),
            )

    def admit(self, jid: str, *, restored: bool) -> bool:
        """Whether the account of ``jid`` may be used; if not, refuse it and return ``False``.

        ``restored``: the device came from the stored auth state, not from a
        pairing in this connection.
        """
        account = account_of_jid(jid)
        pinned = self._pin.read()
        verdict = judge_account(pinned, account)
        if verdict is AccountVerdict.PIN:
            pinned = self._pin.claim(account)
            verdict = judge_account(pinned, account)
            if verdict is AccountVerdict.MATCH:
                log.info("account_pinned", pinned=mask_account(account), source="pairing")
        if verdict is AccountVerdict.MATCH:
            return True
        self._refuse(verdict, account, pinned, restored=restored)
        return False

    def _refuse(
        self, verdict: AccountVerdict, account: str, pinned: str | None, *, restored: bool
    ) -> None:
        decision = account_refusal(
            verdict, tenant=self._tenant, account=account, pinned=pinned, restored=restored
        )
        log.error(
            "account_refused",
            scanned=mask_account(account) if account else None,
            pinned=mask_account(pinned) if pinned else None,
            restored=restored,
        )
        self._checkpoints.account_kept = False  # before anything else: never checkpoint it
        reason = str(decision.reason)
        self._record.save(Pairing(0, "Failed", reason, decision.message))  # a restart stays here
        metrics.ACCOUNTS_REFUSED.inc()
        if verdict is AccountVerdict.MISMATCH:
            try:
                self._transport.logout()
            except TransportError as error:
                log.warning("account_logout_failed", error=str(error))
        self._transport.stop()
        self._drop_pending_events()
        if verdict is AccountVerdict.MISMATCH:
            self._store.wipe_local()
            if restored:
                self._store.delete()  # the stored snapshot is the device just logged out
        self._status.record_error(reason, decision.message)
        self._phases.enter(
            "Failed",
            decision.reason,
            decision.message,
            remove=(*PAIRING_FIELDS, contract.STATUS_PAIRING_WINDOW, *ACCOUNT_FIELDS),
        )

    def _drop_pending_events(self) -> None:
        """Forget what the refused connection reported (its Connected, its LoggedOut).

        The transport is stopped: the simulator has put receipts back in Redis
        already, and nothing else it reported belongs to an account we keep.
        """
        while True:
            try:
                self._transport.events.get_nowait()
            except queue.Empty:
                return
