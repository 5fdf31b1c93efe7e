"""A minimal kopf operator for the emulator's end-to-end test (run with ``kopf run --standalone``).

It exercises what a real operator leans on: a create handler whose result and status patch must land
(through the status subresource), the finalizer kopf adds for the delete handler, Events posted with
generateName, and a clean deletion once the finalizer is removed.
"""

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    settings.watching.server_timeout = 30
    settings.persistence.finalizer = "test.example.com/finalizer"


@kopf.on.create("test.example.com", "v1", "widgets")
def create_widget(name: str, patch: kopf.Patch, logger: kopf.Logger, **_: object) -> None:
    # No return value: kopf would store it under status.create_widget, which the CRD's schema
    # prunes (as a real API server does), and kopf would warn about the inconsistency.
    logger.info(f"CREATE-HANDLER-RAN {name}")
    patch.status["phase"] = "Ready"
    patch.status["conditions"] = [{"type": "Ready", "status": "True", "reason": "Created"}]


@kopf.on.delete("test.example.com", "v1", "widgets")
def delete_widget(name: str, logger: kopf.Logger, **_: object) -> None:
    logger.info(f"DELETE-HANDLER-RAN {name}")
