"""A service with none of the application's code: it enqueues a workflow by
name with DBOSClient and prints the workflow's ID and result.

    python client_script.py URL QUEUE WORKFLOW_NAME N
"""

from __future__ import annotations

import sys

from relos import DBOSClient
from relos.runtime import registry


def main() -> None:
    url, queue_name, workflow_name, n = sys.argv[1:5]
    print(f"no workflow code here: {registry.workflows() == {}}")
    with DBOSClient(url) as client:
        handle = client.enqueue({"queue_name": queue_name, "workflow_name": workflow_name},
                                int(n), note="from a script")
        print(handle.workflow_id, repr(handle.get_result(timeout_seconds=60)), flush=True)


if __name__ == "__main__":
    main()
