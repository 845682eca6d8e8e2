"""Every change of a model's or a job's status, each one named use case in one transaction: the user starts a
training, asks for a drawing, cancels, deletes a model or asks to be forgotten; the engine takes a job, begins a
training, finishes, fails with a code, stops on a cancel or hands a job back; the queue gives up a job whose
engine died at every attempt. Nothing else in Kabina writes a model's or a job's status.

    model: queued ─► training ─► ready          job: queued ─► running ─► done
              │          ├─────► failed                  │  ▲      ├──► failed (a code)
              └──────────┴─────► deleted                 │  └──────┤   (released: back to queued)
                                                         └─────────┴──► cancelled
"""

from __future__ import annotations

from storage.lifecycle.access import AccessCases
from storage.lifecycle.engines import EngineCases
from storage.lifecycle.steps import Note, TrainingStarted
from storage.lifecycle.users import UserCases

__all__ = ["Lifecycle", "Note", "TrainingStarted"]


class Lifecycle(UserCases, EngineCases, AccessCases):
    """The one owner of model and job status (storage.Storage.lifecycle)."""
