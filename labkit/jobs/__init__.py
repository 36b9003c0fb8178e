"""Block jobs: the backup job (sync=none) and the active commit used by failover."""

from .backup import (
    BACKUP_CLUSTER_SIZE_DEFAULT,
    BackupJob,
    CowRequest,
    backup_cow_request_begin,
    backup_cow_request_end,
    backup_do_checkpoint,
    backup_wait_for_overlapping_requests,
)
from .commit import CommitJob

__all__ = [
    "BACKUP_CLUSTER_SIZE_DEFAULT",
    "BackupJob",
    "CommitJob",
    "CowRequest",
    "backup_cow_request_begin",
    "backup_cow_request_end",
    "backup_do_checkpoint",
    "backup_wait_for_overlapping_requests",
]
