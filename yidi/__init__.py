"""yidi: remote-order (異地訂單) operations for Chongqing enterprises.

Importing the package fixes Prefect's offline and quiet defaults before Prefect itself is imported,
so no user has to export anything for the product to stay off the internet.
"""

import os

# Offline and quiet by default; an operator's explicit environment still wins (setdefault).
_PREFECT_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    # Record task runs and events in batches (PLATFORM-NOTES: 30 s -> 3 s for 1,000 task runs, nothing lost).
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE": "200",
}
for _key, _value in _PREFECT_DEFAULTS.items():
    os.environ.setdefault(_key, _value)

# The store, documents, reports and exports hold personal data: every file a yidi process creates is readable by
# its owner only (files 0600, directories 0700). Only tightens: a stricter umask the operator set stays.
os.umask(os.umask(0o077) | 0o077)

__version__ = "0.1.0"
