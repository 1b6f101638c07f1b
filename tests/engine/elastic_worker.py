"""torchrun entry point of the elastic-restart test: ``attmask pretrain``, except that on the first
attempt (``TORCHELASTIC_RESTART_COUNT=0``) the process of global rank ``ATTMASK_TEST_KILL_RANK``
kills itself with SIGKILL just before logging step ``ATTMASK_TEST_KILL_STEP``: a node's worker
lost without any clean-up, as when a machine goes away."""

from __future__ import annotations

import os
import signal
import sys

from attmask.cli.main import main
from attmask.engine.trainer import Trainer


def _arm() -> None:
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if not first_attempt or os.environ["RANK"] != os.environ["ATTMASK_TEST_KILL_RANK"]:
        return
    step, original = int(os.environ["ATTMASK_TEST_KILL_STEP"]), Trainer._log_step

    def killed(self, logs, bar, rate):
        if self.progress.global_step == step:
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, logs, bar, rate)

    Trainer._log_step = killed


if __name__ == "__main__":
    _arm()
    sys.exit(main(sys.argv[1:]))
