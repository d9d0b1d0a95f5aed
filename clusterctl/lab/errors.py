"""Errors of the lab (``clusterctl lab``); the CLI turns them into one line and exit 1.

    BerthError
    ├── UserError
    │   └── LabNameError     the lab name cannot become interface/netns names
    └── PermanentError
        └── LabError         the lab could not be built, started or removed;
                             the message names the log file to read
"""

from __future__ import annotations

from berth.errors import PermanentError, UserError


class LabNameError(UserError):
    """A lab name or host count the lab cannot turn into kernel object names."""


class LabError(PermanentError):
    """Building, starting or removing a lab failed; retrying the same call will not help."""
