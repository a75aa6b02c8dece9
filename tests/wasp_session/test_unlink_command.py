"""The `unlink` control command (the operator deleting a session): log out, pair no more.

Unlike `logout`, the pod opens no new pairing window after it: no QR or
code is shown for a session that is going away, and a pod restarted
meanwhile stays logged out until a `pair` command re-arms it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.session_process import Channels, SessionProcess
from wasp import contract

ACCOUNT = "+4915112345678"
JID = "4915112345678@s.whatsapp.net"
QUIET_SECONDS = 2.0  # the simulator shows a new window's QR at once: none in this long is none


def test_unlink_logs_the_device_out_and_shows_no_new_pairing_even_after_a_restart(
    start_session: Callable[..., SessionProcess],
) -> None:
    pod = start_session()
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan", phone=ACCOUNT)
    pod.wait_for_phase("Connected")
    linked = contract.simulator_linked_key(pod.tenant)
    assert pod.redis.smembers(linked) == {JID}
    channels = Channels(pod.redis, pod.tenant)
    try:
        pod.control(contract.CONTROL_UNLINK)

        logged_out = pod.wait_for_phase("LoggedOut")
        assert contract.STATUS_ACCOUNT_JID not in logged_out
        assert pod.redis.smembers(linked) == set(), "the phone still lists the device"
        assert pod.redis.exists(contract.auth_key(pod.tenant)) == 0, "its auth state is kept"
        time.sleep(QUIET_SECONDS)
        assert pod.phase() == "LoggedOut"
        assert channels.published_codes() == [], "a pairing window opened after the unlink"

        token = pod.status()[contract.STATUS_LEASE_TOKEN]
        pod.terminate()
        assert pod.wait_exit() == 0
        assert pod.redis.exists(contract.auth_key(pod.tenant)) == 0, "stopping checkpointed it"
        again = start_session()  # the same tenant, a new process: the halt is on Redis
        again.wait_for(
            lambda: again.status().get(contract.STATUS_LEASE_TOKEN) not in {None, token},
            "the new process holds the lease and reports",
        )
        time.sleep(QUIET_SECONDS)
        assert again.phase() == "LoggedOut"
        assert channels.published_codes() == []

        again.control(contract.CONTROL_PAIR)  # re-armed: pairing as after any logout
        again.wait_for_phase("AwaitingPairing")
        assert channels.published_codes() != []
    finally:
        channels.close()
