"""Settings of ``xmc serve`` (typed, unknown keys rejected like every xmc config)."""

from __future__ import annotations

import dataclasses

from ..config import Config, check


@dataclasses.dataclass
class ServeSettings(Config):
    """How the server accepts, batches and answers requests.

    Attributes:
        max_documents: documents one predict request may carry (more: 422).
        max_body_bytes: request bodies above this are refused with 413 before they are read whole.
        max_batch_documents: documents one model call may take when concurrent requests are
            micro-batched (a single larger request still runs, alone).
        max_wait_ms: how long the first queued request of a neural model waits for others to join
            its batch. Linear models never wait: they batch what is already queued.
        mmap: load XR-Linear weights memory-mapped (fast start, pages shared between workers).
        max_labels_listed: most label names ``GET /v1/models/{name}/labels`` returns at once.
    """

    max_documents: int = 64
    max_body_bytes: int = 4 * 1024 * 1024
    max_batch_documents: int = 32
    max_wait_ms: float = 5.0
    mmap: bool = True
    max_labels_listed: int = 1000

    def validate(self) -> None:
        check(self.max_documents >= 1, "max_documents must be >= 1")
        check(self.max_body_bytes >= 1024, "max_body_bytes must be >= 1024")
        check(self.max_batch_documents >= 1, "max_batch_documents must be >= 1")
        check(self.max_wait_ms >= 0, "max_wait_ms must be >= 0")
        check(self.max_labels_listed >= 1, "max_labels_listed must be >= 1")
