"""Each user's recently clicked items, carried from chunk to chunk (recommendations, revisits)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoprank.simulate.arrays import distinct, group_starts

HISTORY_SIZE = 8


@dataclass
class History:
    """The last ``HISTORY_SIZE`` clicked items per user, oldest first.

    Attributes:
        items: Item numbers, one row per user (-1 where unused).
        count: Used entries per user.
    """

    items: np.ndarray
    count: np.ndarray

    @classmethod
    def empty(cls, n_users: int) -> History:
        """No user has clicked anything yet."""
        return cls(np.full((n_users, HISTORY_SIZE), -1, dtype=np.int64), np.zeros(n_users, dtype=np.int64))

    def sample(self, users: np.ndarray, r: np.ndarray) -> np.ndarray:
        """One recent item per user, uniformly by ``r`` in [0, 1); -1 for users without history."""
        count = self.count[users]
        k = np.minimum((r * count).astype(np.int64), np.maximum(count - 1, 0))
        return np.where(count > 0, self.items[users, k], -1)

    def push(self, users: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        """Append clicks (in time order per user), keeping the newest ``HISTORY_SIZE`` per user."""
        if len(users) == 0:
            return
        touched = distinct(users)
        old_row, old_slot = np.nonzero(np.arange(HISTORY_SIZE)[None, :] < self.count[touched][:, None])
        old_user = touched[old_row]
        user = np.concatenate([old_user, users])
        item = np.concatenate([self.items[old_user, old_slot], items])
        when = np.concatenate([np.iinfo(np.int64).min + old_slot, times])
        order = np.lexsort((when, user))
        user, item = user[order], item[order]
        first = group_starts(user)
        total = np.diff(np.append(first, len(user)))
        rank = np.arange(len(user)) - np.repeat(first, total)
        dropped = np.repeat(np.maximum(total - HISTORY_SIZE, 0), total)
        keep = rank >= dropped
        self.items[user[keep], (rank - dropped)[keep]] = item[keep]
        self.count[user[first]] = np.minimum(total, HISTORY_SIZE)
